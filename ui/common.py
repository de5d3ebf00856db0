"""What every tab shares: the settings a host gives through the environment, the job control, and how an error or
a progress report reaches the user.

Settings: ANIMATE_WEIGHTS_DIR (default ./weights), ANIMATE_RUNS_DIR (training runs, default ./runs), ANIMATE_JOBS_DIR
(one folder per job, default in the temporary folder), ANIMATE_MAX_QUEUE, ANIMATE_KEEP_HOURS, and the limits of one
job (`animate.inputs.Limits`: ANIMATE_MAX_PIXELS, ANIMATE_MAX_FRAMES, ANIMATE_MAX_VIDEO_SECONDS, ANIMATE_MAX_UPLOAD_MB,
ANIMATE_MAX_JOB_SECONDS).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import tempfile
from pathlib import Path

import gradio as gr
import torch

import pose
from animate.inputs import Limits
from animate.jobs import JobBusyError, Jobs, LoadedModel, PoseCache
from animate.training_runs import RunError
from animate.weights import WeightsError

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = Path(os.environ.get("ANIMATE_WEIGHTS_DIR", ROOT / "weights"))
RUNS_DIR = Path(os.environ.get("ANIMATE_RUNS_DIR", ROOT / "runs"))
DATASETS_DIR = RUNS_DIR / "datasets"  # uploaded training videos, a folder per dataset ("datasets" is no run name)
JOBS_DIR = Path(os.environ.get("ANIMATE_JOBS_DIR", Path(tempfile.gettempdir()) / "animate-anyone-jobs"))
LIMITS = Limits.from_environment()
MAX_QUEUE = int(os.environ.get("ANIMATE_MAX_QUEUE", 8))  # animations waiting for the GPU before we turn people away
KEEP_HOURS = float(os.environ.get("ANIMATE_KEEP_HOURS", 24))  # job folders (and Gradio's copies) are kept this long
ON_SPACES = "SPACE_ID" in os.environ  # no folders of the server's own to train from

UserError = functools.partial(gr.Error, print_exception=False)  # a user's mistake: no traceback in the log either
PROGRESS = gr.Progress()  # the default that asks Gradio for a progress tracker (it makes a new one per call)
UI_ONLY = {"api_visibility": "undocumented"}  # listeners that only keep the page in step; callable, not advertised
logger = logging.getLogger("app")
jobs = Jobs(JOBS_DIR, keep_seconds=KEEP_HOURS * 3600, time_limit=LIMITS.max_job_seconds)
poses = PoseCache(WEIGHTS_DIR)
loaded_model = LoadedModel()

# An absolute path on the server (not a URL's path: no ':' or '/' before it), and its last part.
SERVER_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s/'\"`()]+/)+([^\s/'\"`()]+)")


def without_paths(message: str) -> str:
    """The message with each server path cut to its last part: users see their file's name, never where the server
    keeps it (an upload's temporary folder, the weights folder)."""
    return SERVER_PATH.sub(r"\1", message)


def user_errors(function):
    """Every failure reaches the user as one sentence (gr.Error), never as a traceback: our libraries' errors already
    say what to do; anything unexpected is logged in full here and summarised there."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except gr.Error as error:
            error.message = without_paths(str(error.message))
            raise
        except (ValueError, FileNotFoundError, NotADirectoryError, WeightsError, RunError) as error:
            logger.info("%s: %s", function.__name__, error)
            raise UserError(without_paths(str(error))) from error
        except torch.cuda.OutOfMemoryError as error:
            message = "The GPU ran out of memory: lower the output size or the window size (Advanced), or use fp16."
            raise UserError(message) from error
        except Exception as error:
            logger.exception("Unexpected error in %s", function.__name__)
            message = f"Something went wrong ({type(error).__name__}: {error}). The app's log has the details."
            raise UserError(without_paths(message)) from error

    return wrapper


def path_of(file: dict | str | None) -> str | None:
    """The server path of an upload. The listeners that open files get Gradio's file data unprocessed
    (`preprocess=False`), so that a file that is not what it claims gets our sentence, not Gradio's generic error;
    Gradio has already checked that the path is an upload of this session."""
    if file is None or isinstance(file, str):
        return file
    if isinstance(file, dict) and isinstance(file.get("path"), str):
        return file["path"]
    raise UserError("Send files as uploads (gradio_client's handle_file), not as other values.")


def check_size(path: str, what: str) -> None:
    LIMITS.check_upload(Path(path).stat().st_size, what)


def progress_callback(progress: gr.Progress):
    """Our libraries report (fraction, "Stage: counts, time left"); Gradio shows the message over its bar."""
    return lambda fraction, message: progress(fraction, desc=message)


def start_job(request: gr.Request | None, kind: str, job_id: str | None = None):
    try:
        return jobs.start(request.session_hash if request else "", kind, job_id or None)
    except JobBusyError as error:
        message = f"Your {error.job.kind} is still running: wait for it, or press Cancel."
        raise UserError(message) from None


def backend_choices() -> list[tuple[str, str]]:
    available = pose.available_backends(WEIGHTS_DIR)
    labels = {name: name if name in available else f"{name} (not downloaded)" for name in pose.BACKENDS}
    return [("auto", "auto"), *[(label, name) for name, label in labels.items()]]
