"""Animate Anyone in the browser: `python app.py`, then open the address it prints.

Animate tab: character image + driving video -> preview the skeleton -> animate. Models tab: what is in weights/
and downloading the rest. Training tab: videos -> dataset -> stage 1 and 2 as background processes -> a new model in
the list. This file is the UI only (layout, event wiring, job control); the work is done by `pose`, `animate.generate`,
`animate.jobs`, `animate.weights`, `animate.training` and `animate.training_runs`.

Importing it loads no weights and starts no server. Settings come from the environment: ANIMATE_WEIGHTS_DIR (default
./weights), ANIMATE_RUNS_DIR (training runs, default ./runs), ANIMATE_JOBS_DIR (one folder per job, default in the
temporary folder), ANIMATE_MAX_UPLOAD_MB, ANIMATE_MAX_QUEUE, ANIMATE_KEEP_HOURS, and Gradio's own variables
(GRADIO_SERVER_NAME, GRADIO_SERVER_PORT, ...).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import gradio as gr
import pandas as pd
import torch

import pose
from animate import training_runs
from animate.checkpoints import CheckpointError
from animate.device import PRECISIONS, select_device, select_dtype
from animate.examples import EXAMPLES_DIR
from animate.generate import (
    SCHEDULERS,
    GenerationCancelled,
    GenerationSettings,
    generate_video,
    model_defaults,
    output_size,
)
from animate.jobs import (
    JobBusyError,
    Jobs,
    LoadedModel,
    PoseCache,
    clip_frames,
    new_job_id,
    read_character,
    result_name,
    write_preview,
)
from animate.training.config import load_config
from animate.training.dataset import build_dataset, load_index
from animate.training_runs import RunError
from animate.weights import GROUPS, WeightsError, download, list_models, status

try:  # Hugging Face Spaces with ZeroGPU: `spaces.GPU` lends a GPU to each call of the function it decorates
    import spaces
except ImportError:
    spaces = None

ROOT = Path(__file__).resolve().parent
WEIGHTS_DIR = Path(os.environ.get("ANIMATE_WEIGHTS_DIR", ROOT / "weights"))
RUNS_DIR = Path(os.environ.get("ANIMATE_RUNS_DIR", ROOT / "runs"))
DATASETS_DIR = RUNS_DIR / "datasets"  # uploaded training videos, a folder per dataset ("datasets" is no run name)
JOBS_DIR = Path(os.environ.get("ANIMATE_JOBS_DIR", Path(tempfile.gettempdir()) / "animate-anyone-jobs"))
MAX_UPLOAD_MB = float(os.environ.get("ANIMATE_MAX_UPLOAD_MB", 500))
MAX_QUEUE = int(os.environ.get("ANIMATE_MAX_QUEUE", 8))  # animations waiting for the GPU before we turn people away
KEEP_HOURS = float(os.environ.get("ANIMATE_KEEP_HOURS", 24))  # job folders (and Gradio's copies) are kept this long
GPU_SECONDS = 300  # what a ZeroGPU Space lends per animation
ON_SPACES = "SPACE_ID" in os.environ  # no folders of the server's own to train from

UserError = functools.partial(gr.Error, print_exception=False)  # a user's mistake: no traceback in the log either
PROGRESS = gr.Progress()  # the default that asks Gradio for a progress tracker (it makes a new one per call)
logger = logging.getLogger("app")
jobs = Jobs(JOBS_DIR, keep_seconds=KEEP_HOURS * 3600)
poses = PoseCache(WEIGHTS_DIR)
loaded_model = LoadedModel()


def user_errors(function):
    """Every failure reaches the user as one sentence (gr.Error), never as a traceback: our libraries' errors already
    say what to do; anything unexpected is logged in full here and summarised there."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, FileNotFoundError, NotADirectoryError, WeightsError, RunError) as error:
            logger.info("%s: %s", function.__name__, error)
            raise UserError(str(error)) from error
        except torch.cuda.OutOfMemoryError as error:
            message = "The GPU ran out of memory: lower the output size or the window size (Advanced), or use fp16."
            raise UserError(message) from error
        except Exception as error:
            logger.exception("Unexpected error in %s", function.__name__)
            message = f"Something went wrong ({type(error).__name__}: {error}). The app's log has the details."
            raise UserError(message) from error

    return wrapper


def on_gpu(function):
    """On a ZeroGPU Space the function borrows a GPU for each call; anywhere else it runs as it is."""
    return spaces.GPU(duration=GPU_SECONDS)(function) if spaces is not None else function


def path_of(file: dict | str | None) -> str | None:
    """The server path of an upload. The listeners that open files get Gradio's file data unprocessed
    (`preprocess=False`), so that a file that is not what it claims gets our sentence, not Gradio's generic error;
    Gradio has already checked that the path is an upload of this session."""
    return file["path"] if isinstance(file, dict) else file


# ---------------------------------------------------------------------------------------------------------------------
# Animate: what each button and upload does


def model_choices() -> list[tuple[str, str]]:
    return [(f"{model.name} ({model.kind})", model.name) for model in list_models(WEIGHTS_DIR)]


def find_model(name: str | None):
    models = {model.name: model for model in list_models(WEIGHTS_DIR, include_incomplete=True)}
    usable = [model.name for model in models.values() if model.usable]
    if not usable:
        raise UserError(
            f"No model is ready in {WEIGHTS_DIR}. Download the released weights in the Models tab, or "
            "train one in the Training tab."
        )
    if name not in models:
        raise UserError(f"Unknown model {name!r}: choose one of {', '.join(usable)}.")
    if not models[name].usable:
        raise UserError(f"The model {name} is not complete. {models[name].missing}")
    return models[name]


def check_size(path: str, what: str) -> None:
    size_mb = Path(path).stat().st_size / 1e6
    if size_mb > MAX_UPLOAD_MB:
        message = (
            f"The {what} is {size_mb:.0f} MB; this app takes files up to {MAX_UPLOAD_MB:g} MB. Trim or "
            "compress it (a few seconds at 720p is plenty) and upload it again."
        )
        raise UserError(message)


def load_inputs(character: dict | str | None, driving_video: dict | str | None):
    """The character (RGB array), the driving video's path and its header, or a gr.Error that says what to upload."""
    character, driving_video = path_of(character), path_of(driving_video)
    if character is None:
        raise UserError("Upload a character image first (a full-body picture works best).")
    if driving_video is None:
        message = "Upload a driving video: a dance clip, or an already-extracted skeleton video."
        raise UserError(message)
    check_size(character, "character image")
    check_size(driving_video, "driving video")
    return read_character(character), driving_video, pose.probe_video(driving_video)


def settings_from(info, backend, alignment, hands, face, clip_length, clip_unit, stride, **generation):
    """GenerationSettings for the form, and a note when the clip asked for is longer than the video."""
    max_frames, note = clip_frames(info, clip_length, clip_unit, int(stride)) if clip_length else (None, "")
    settings = GenerationSettings(
        max_frames=max_frames,
        stride=int(stride),
        backend=backend,
        align=alignment,
        hands=bool(hands),
        face=bool(face),
        **generation,
    )
    return settings, note


def progress_callback(progress: gr.Progress):
    """Our libraries report (fraction, "Stage: counts, time left"); Gradio shows the message over its bar."""
    return lambda fraction, message: progress(fraction, desc=message)


def start_job(request: gr.Request | None, kind: str, job_id: str | None = None):
    try:
        return jobs.start(request.session_hash if request else "", kind, job_id or None)
    except JobBusyError as error:
        message = f"Your {error.job.kind} is still running: wait for it, or press Cancel."
        raise UserError(message) from None


@user_errors
def describe_video(driving_video: str | None, clip_unit: str, frame_stride: float):
    """What the uploaded video is, and the clip-length slider fitted to it (the whole video)."""
    if driving_video is None:
        return "", gr.update(maximum=3600, value=0)
    check_size(driving_video, "driving video")
    info = pose.probe_video(driving_video)
    if poses.is_skeleton_video(driving_video):
        kind = "**Skeleton video**: used as it is, no pose extraction (the pose options do not apply)."
    else:
        kind = "**Raw video**: the dancer's poses are extracted when you preview or animate."
    audio = "with audio" if info.has_audio else "no audio"
    size = f"{info.width}×{info.height}"
    text = f"{kind} {info.duration:.1f} s, {info.num_frames} frames at {info.fps:g} fps, {size}, {audio}."
    return text, clip_slider(info, clip_unit, int(frame_stride))


def clip_slider(info: pose.VideoInfo, clip_unit: str, stride: int, value: float | None = None):
    """The clip-length slider for this video: its length is the maximum (and the value, unless one is given)."""
    if clip_unit == "frames":
        frames = max(1, -(-info.num_frames // stride))
        return gr.update(maximum=frames, value=min(frames, round(value)) if value else frames, step=1)
    seconds = round(info.duration, 1)
    return gr.update(maximum=seconds, value=min(seconds, round(value, 1)) if value else seconds, step=0.1)


@user_errors
def change_clip_unit(driving_video: str | None, clip_unit: str, clip_length: float, frame_stride: float):
    """The same clip in the other unit."""
    if driving_video is None:
        return gr.update(step=1 if clip_unit == "frames" else 0.1)
    info, stride = pose.probe_video(driving_video), int(frame_stride)
    factor = info.fps / stride if clip_unit == "frames" else stride / info.fps
    return clip_slider(info, clip_unit, stride, clip_length * factor)


@user_errors
def change_stride(driving_video: str | None, clip_unit: str, clip_length: float, frame_stride: float):
    """The same clip length, within what the video has at this stride."""
    if driving_video is None:
        return gr.skip()
    return clip_slider(pose.probe_video(driving_video), clip_unit, int(frame_stride), clip_length)


@user_errors
def describe_size(character: dict | None, resolution: float):
    if character is None:
        return gr.update(info="The short side of the video; the character's aspect ratio is kept.")
    image = read_character(path_of(character))
    width, height = output_size(image.shape[1], image.shape[0], int(resolution))
    return gr.update(info=f"Output {width}×{height} px: the character's aspect ratio is kept.")


@user_errors
def select_model(model: str | None):
    """What the model is and where it runs, and the settings it works best with (its generation_defaults.json):
    steps, guidance, size, the skeleton parts it was trained with, and its window."""
    if not model:
        return "No model is ready yet: see the Models tab.", *[gr.skip()] * 7
    entry = find_model(model)
    defaults = preferred_settings(entry)
    device = select_device()
    dtype = str(select_dtype(device)).removeprefix("torch.")
    steps = f"{defaults['steps']} step{'' if defaults['steps'] == 1 else 's'}"
    text = (
        f"{entry.description}. Runs on **{device.type}** ({dtype}). Its defaults: {steps}, "
        f"guidance {defaults['guidance']}, short side {defaults['short_side']} px."
    )
    return text, *[defaults[name] for name in PREFERRED]


PREFERRED = ("steps", "guidance", "short_side", "hands", "face", "context_frames", "context_overlap")


def preferred_settings(entry) -> dict:
    """The model's own defaults over the generation defaults (hands and face on, windows of 24 overlapping by 4)."""
    return {**asdict(GenerationSettings()), **model_defaults(entry)}


def refresh_models(current: str | None):
    choices = model_choices()
    values = [value for _, value in choices]
    return gr.update(choices=choices, value=current if current in values else next(iter(values), None))


@user_errors
def preview(
    character: dict | str | None,
    driving_video: dict | str | None,
    pose_backend: str = "auto",
    alignment: str = "global",
    hands: bool = True,
    face: bool = True,
    clip_length: float = 0,
    clip_unit: str = "seconds",
    frame_stride: float = 1,
    request: gr.Request = None,
    progress=PROGRESS,
):
    """The skeletons the model will follow, as a video and one frame over the character (poses kept for Animate)."""
    image, driving_video, info = load_inputs(character, driving_video)
    settings, note = settings_from(info, pose_backend, alignment, hands, face, clip_length, clip_unit, frame_stride)
    job = start_job(request, "preview")
    started, report = time.monotonic(), progress_callback(progress)
    try:
        width, height = pose.skeleton_size(image.shape[1], image.shape[0])  # DWPose's drawing size: short side 512
        skeletons, reused = poses.skeletons(image, driving_video, width, height, settings, report, job.cancel)
        video, overlay = write_preview(image, skeletons, job.folder, report, job.cancel)
    except GenerationCancelled:
        gr.Warning("Preview cancelled.")
        return None, None, "Cancelled."
    finally:
        jobs.finish(job)
    notes = [note, *skeletons.warnings]
    for warning in filter(None, notes):
        gr.Warning(warning)
    if skeletons.source == "skeleton video":
        how = "read from the skeleton video"
    else:
        how = "reused from the last extraction" if reused else f"extracted with {poses.backend(settings.backend)}"
    seconds = time.monotonic() - started
    text = (
        f"{len(skeletons.frames)} skeleton frames at {skeletons.fps:g} fps, {how} in {seconds:.1f} s. "
        "Animate reuses them while the inputs and pose options stay the same."
    )
    return str(video), overlay, "\n".join([text, *[f"- {warning}" for warning in filter(None, notes)]])


def waiting_for_gpu() -> int:
    """Animations waiting in Gradio's queue (Gradio has no public call for this; 0 should its internals move)."""
    queues = getattr(getattr(demo, "_queue", None), "event_queue_per_concurrency_id", {})
    return len(getattr(queues.get("gpu"), "queue", []))


@user_errors
def check_animate(character, driving_video, model, history: list | None, request: gr.Request = None):
    """Runs at once when Animate is clicked, before the job queues: mistakes and a full queue are reported without
    waiting, and the job's id goes into the browser's history, so that a reload still finds the result."""
    if character is None or driving_video is None:
        load_inputs(character, driving_video)
    find_model(model)
    if any(job.session == (request.session_hash if request else "") for job in jobs.active()):
        raise UserError("Your previous job is still running: wait for it, or press Cancel.")
    waiting = waiting_for_gpu()
    if waiting >= MAX_QUEUE:
        are = "animation is" if waiting == 1 else "animations are"
        message = f"{waiting} {are} already waiting, the most this app queues. Try again in a few minutes."
        raise UserError(message)
    if jobs.active("animation") or waiting:
        gr.Warning(
            f"Another animation is running: yours is number {waiting + 1} in the queue and starts by itself. "
            "You may close this page; the result will be under Recent results."
        )
    job_id = new_job_id()
    return job_id, [*(history or []), job_id][-20:]


@user_errors
def animate(
    character: dict | str | None,
    driving_video: dict | str | None,
    model: str | None = None,
    pose_backend: str = "auto",
    alignment: str = "global",
    hands: bool = True,
    face: bool = True,
    steps: float = 30,
    guidance: float = 3.5,
    clip_length: float = 0,
    clip_unit: str = "seconds",
    seed: float | None = -1,
    resolution: float = 512,
    frame_stride: float = 1,
    side_by_side: bool = False,
    window_size: float = 24,
    window_overlap: float = 4,
    scheduler: str = "ddim",
    precision: str = "auto",
    job_id: str | None = None,
    request: gr.Request = None,
    progress=PROGRESS,
):
    """Character + driving video -> the animated mp4 (with the driving video's audio), its settings and the seed."""
    image, driving_video, info = load_inputs(character, driving_video)
    entry = find_model(model)
    seed = int(seed) if seed is not None and seed >= 0 else int.from_bytes(os.urandom(4)) >> 1
    settings, note = settings_from(
        info,
        pose_backend,
        alignment,
        hands,
        face,
        clip_length,
        clip_unit,
        frame_stride,
        steps=int(steps),
        guidance=float(guidance),
        seed=seed,
        short_side=int(resolution),
        side_by_side=bool(side_by_side),
        context_frames=int(window_size),
        context_overlap=int(window_overlap),
        scheduler=scheduler,
    )
    if note:
        gr.Warning(note)
    job = start_job(request, "animation", job_id)
    started, report = time.monotonic(), progress_callback(progress)
    try:
        width, height = output_size(image.shape[1], image.shape[0], settings.short_side)
        skeletons, reused = poses.skeletons(image, driving_video, width, height, settings, report, job.cancel)
        while not jobs.gpu.acquire(timeout=0.5):  # a cancelled job may still be stopping
            report(0, "Waiting for the previous job to stop")
            if job.cancel.is_set():
                raise GenerationCancelled()
        try:
            output = job.folder / result_name(path_of(character), driving_video, seed)
            result = generate_on_gpu(
                job.id, image, skeletons, settings, entry, precision, driving_video, output, progress
            )
        finally:
            jobs.gpu.release()
    except GenerationCancelled:
        gr.Warning("Cancelled: nothing was written.")
        return None, None, None, "Cancelled."
    finally:
        jobs.finish(job)
    for warning in result.warnings:
        gr.Warning(warning)
    summary = (
        f"**Done in {time.monotonic() - started:.0f} s**: {result.frames} frames at {result.fps:g} fps, "
        f"{width}×{height}, seed {result.seed}, model {entry.name}."
    )
    if reused:
        summary += " The poses from the preview were reused."
    lines = [summary, *[f"- {warning}" for warning in filter(None, [note, *result.warnings])]]
    return str(result.path), str(result.path.with_suffix(".json")), str(result.seed), "\n".join(lines)


@on_gpu
def generate_on_gpu(job_id, image, skeletons, settings, entry, precision, driving_video, output, progress):
    """The part that needs the GPU: the model (kept loaded between jobs) and the denoising."""
    job = jobs.get(job_id)  # None in a ZeroGPU worker process, which cannot be cancelled from here
    report = progress_callback(progress)
    device = select_device()
    dtype = select_dtype(device, precision)
    report(0, f"Loading {entry.name} on {device.type}")
    try:
        pipeline, files = loaded_model.get(entry, device, dtype)
    except CheckpointError as error:  # a saved pipeline's message says how to repair it; released weights download
        hint = " Download it again in the Models tab." if entry.kind in ("released", "musepose") else ""
        raise ValueError(f"The model {entry.name} could not be loaded. {error}{hint}") from error
    except OSError as error:
        raise ValueError(
            f"The model {entry.name} could not be loaded: {error} Download it again in the Models tab, "
            "or export it again from its training run."
        ) from error
    stop_now = lambda: setattr(pipeline, "_interrupt", True)  # noqa: E731 - the pipeline stops before its next window
    if job is not None:
        job.on_cancel.append(stop_now)
    try:
        return generate_video(
            pipeline,
            image,
            skeletons,
            output,
            settings,
            driving_video=driving_video,
            model_name=entry.name,
            model_files=files,
            progress=report,
            cancel=job.cancel if job else None,
        )
    finally:
        if job is not None:
            job.on_cancel.remove(stop_now)


def cancel(request: gr.Request = None) -> str:
    """Stops this browser's preview or animation within one denoising step, and says when it has stopped."""
    job = jobs.cancel(request.session_hash if request else "")
    if job is None:
        return "Nothing is running."
    return f"The {job.kind} was cancelled." if job.done.wait(timeout=60) else f"Cancelling the {job.kind}…"


def reload_animate(model: str | None, history: list | None):
    """A page (re)load: the models as they are now, and this browser's results."""
    models = refresh_models(model)
    return models, select_model(models["value"])[0], recent_results(history)


def recent_results(history: list | None):
    """This browser's finished animations that are still on the server (kept for a day), newest first."""
    found = [(job_id, jobs.result(job_id)) for job_id in reversed(history or [])]
    return [(str(path), f"{job_id[:8]} {job_id[9:11]}:{job_id[11:13]}") for job_id, path in found if path]


# ---------------------------------------------------------------------------------------------------------------------
# Models


def weights_table():
    """The models (ready or what they lack) and every expected weight file with its state."""
    models = [
        f"- **{model.name}** ({model.kind}): {model.description}. "
        + ("**Ready.**" if model.usable else f"Not ready: {model.missing}")
        for model in list_models(WEIGHTS_DIR, include_incomplete=True)
    ]
    files = [
        [entry.group, entry.file.path, entry.state, _size(entry.file.size), entry.file.repo_id]
        for entry in status(WEIGHTS_DIR)
    ]
    return "\n".join(models), files


@user_errors
def download_weights(groups: list[str], progress=PROGRESS) -> str:
    if not groups:
        raise UserError("Tick at least one group of files to download.")
    paths = download(groups, WEIGHTS_DIR, progress=progress_callback(progress))
    return f"All {len(paths)} files of {', '.join(groups)} are in {WEIGHTS_DIR}."


def _size(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


# ---------------------------------------------------------------------------------------------------------------------
# Training


def dataset_choices() -> list[tuple[str, str]]:
    choices = [("Puppets: procedural characters, built in (no videos needed)", "puppets")]
    for index in sorted(DATASETS_DIR.glob("*/dataset.json")):
        try:
            choices.append((f"{index.parent.name} ({len(load_index(index)['clips'])} clips)", str(index)))
        except (OSError, ValueError):
            continue
    return choices


def start_choices(stage: int) -> list[tuple[str, str]]:
    """What a stage can start from: new weights or an image model for stage 1 (the released weights, or a stage-1
    export); for stage 2, any model (stage-2 models go on training their motion modules)."""
    choices = [("New tiny model (CPU-sized)", "tiny"), ("New SD 1.5-sized model", "sd15")] if stage == 1 else []
    for model in list_models(WEIGHTS_DIR):
        unet_config = model.path / "denoising_unet" / "config.json"
        has_motion = unet_config.is_file() and "UNetMotionModel" in unet_config.read_text()
        if model.kind == "released" or stage == 2 or not has_motion:
            choices.append((f"{model.name}: {model.description}", str(model.path)))
    return choices


@user_errors
def build_training_dataset(videos: list[str] | None, folder: str, name: str, pose_backend: str, progress=PROGRESS):
    """Uploaded videos (or a folder on this machine) -> skeletons and a dataset index; returns its summary."""
    if videos:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", (name or "").strip()).strip("._")
        if not name:
            raise UserError("Give the dataset a name (letters, digits, - and _).")
        target = DATASETS_DIR / name
        target.mkdir(parents=True, exist_ok=True)
        for video in videos:
            check_size(video, f"video {Path(video).name}")
            shutil.copy(video, target / Path(video).name)
    elif folder and not ON_SPACES:
        target = Path(folder).expanduser()
    else:
        message = "Upload some videos (one dancer each), or give a folder of videos on this machine."
        raise UserError(message)
    index = build_dataset(target, backend=pose_backend, progress=progress_callback(progress), weights_dir=WEIGHTS_DIR)
    rows = [
        [
            entry["name"],
            entry.get("num_frames", "-"),
            f"{entry['fps']:g}" if "fps" in entry else "-",
            f"{entry['detection_rate']:.0%}" if "detection_rate" in entry else "-",
            entry.get("reason", "ok"),
        ]
        for entry in index["clips"] + index["rejected"]
    ]
    index_path = str(target / "dataset.json")
    if not index["clips"]:
        gr.Warning("No video is usable for training: the table says why.")
    clips = f"{len(index['clips'])} clip{'' if len(index['clips']) == 1 else 's'}"
    choices = dataset_choices()
    if index_path not in [value for _, value in choices]:
        choices.append((f"{target.name} ({clips})", index_path))
    summary = f"{clips} usable, {len(index['rejected'])} left out. Index: `{index_path}`"
    return summary, rows, gr.update(choices=choices, value=index_path if index["clips"] else "puppets")


def preset(stage: int, size: str) -> str:
    """The training config preset (animate/training/configs) for this stage and model size."""
    return f"{'tiny_' if size == 'tiny' else ''}stage{int(stage)}"


@user_errors
def training_defaults(stage: int, size: str):
    """The preset's values for the form, and what this stage can start from."""
    config = load_config(preset(stage, size))
    choices = start_choices(stage)
    if stage == 1:
        start_from = (
            "tiny"
            if size == "tiny"
            else ("sd15" if str(WEIGHTS_DIR) not in dict(choices).values() else str(WEIGHTS_DIR))
        )
    else:  # the newest model trained here, else the released weights
        trained = sorted(
            (model.path for model in list_models(WEIGHTS_DIR) if model.kind == "trained"),
            key=lambda path: path.stat().st_mtime,
        )
        start_from = str(trained[-1]) if trained else next((value for _, value in choices), None)
    return (
        gr.update(choices=choices, value=start_from),
        preset(stage, size),
        config.max_steps,
        config.learning_rate,
        config.width,
        config.height,
        gr.update(value=config.num_frames, visible=stage == 2),
        config.batch_size,
        config.validate_every,
        config.checkpoint_every,
        config.mixed_precision,
    )


@user_errors
def start_training(
    stage,
    size,
    data,
    start_from,
    run_name,
    max_steps,
    learning_rate,
    width,
    height,
    num_frames,
    batch_size,
    validate_every,
    checkpoint_every,
    mixed_precision,
    extra,
):
    """Starts `accelerate launch -m animate.training` for the stage, in the background; returns the run list."""
    run_name = (run_name or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", run_name) or run_name == DATASETS_DIR.name:
        message = "Give the run a name of letters, digits, - and _ (it names the run folder and the new model)."
        raise UserError(message)
    if not start_from:
        raise UserError("Choose what to start from (stage 2 starts from a stage-1 model).")
    overrides = {
        "init_from": start_from,
        "data": data or "puppets",
        "max_steps": int(max_steps),
        "learning_rate": learning_rate,
        "width": int(width),
        "height": int(height),
        "batch_size": int(batch_size),
        "validate_every": int(validate_every),
        "checkpoint_every": int(checkpoint_every),
        "mixed_precision": mixed_precision,
        "export_dir": WEIGHTS_DIR / "trained",
    }
    if int(stage) == 2:
        overrides["num_frames"] = int(num_frames)
    for line in filter(str.strip, (extra or "").splitlines()):
        key, equals, value = line.strip().removeprefix("--").partition("=")
        if not equals:
            raise UserError(f"Other settings are KEY=VALUE lines; {line.strip()!r} is not.")
        overrides[key.strip()] = value.strip()
    overrides = {key: str(value) for key, value in overrides.items()}
    run = training_runs.start(RUNS_DIR / run_name, int(stage), preset(stage, size), overrides)
    gr.Info(f"Training {run.name} started (pid {run.pid}). It keeps running if you close the app.")
    return run_list(run.name)


def run_list(selected: str | None = None):
    """The runs, selecting `selected`, else a running one (a restarted app finds the training it left), else the
    newest."""
    runs = training_runs.list_runs(RUNS_DIR)
    names = [run.name for run in runs]
    if selected not in names:
        selected = next((run.name for run in runs if run.state in ("running", "exporting")), next(iter(names), None))
    choices = [(f"{run.name} (stage {run.stage or '?'})", run.name) for run in runs]
    return gr.update(choices=choices, value=selected)


@user_errors
def run_action(action: str, run_name: str | None):
    """Stop, resume or export the run."""
    if not run_name:
        raise UserError("Choose a run first.")
    getattr(training_runs, action)(RUNS_DIR / run_name)
    return run_list(run_name), *show_run(run_name)[:-1]


def show_run(run_name: str | None, seen: tuple | None = None):
    """A run's status, loss curve, newest validation samples, log and the buttons that apply; nothing is sent when
    none of its files changed since `seen`."""
    if not run_name:
        return "No training run yet.", None, [], "", *[gr.update(interactive=False)] * 3, None
    run_dir = RUNS_DIR / run_name
    watched = (training_runs.PROCESS_FILE, "metrics.jsonl", training_runs.LOG_FILE, "samples")
    stamp = tuple(_mtime(run_dir / name) for name in watched)
    if seen is not None and tuple(seen) == stamp:
        return *[gr.skip()] * 7, seen
    metrics = training_runs.read_metrics(run_dir)
    run = training_runs.status(run_dir, metrics)
    steps = f"step {run.step}" + (f" of {run.max_steps}" if run.max_steps else "")
    text = f"**{run.name}** · stage {run.stage or '?'} · **{run.state}** · {steps}. {run.message}"
    rows = [
        (record["step"], record[key], label)
        for record in metrics
        for key, label in (("loss", "training"), ("val_loss", "validation"))
        if key in record
    ]
    curve = pd.DataFrame(rows, columns=["step", "loss", "series"]) if rows else None
    samples = [str(path) for path in training_runs.latest_samples(run_dir)]
    running = run.state in ("running", "exporting")
    can_continue = run.state in ("stopped", "failed", "ended", "exported") and run.checkpoint_step is not None
    buttons = [running, can_continue, can_continue or (run.state == "finished" and run.checkpoint_step is not None)]
    buttons = [gr.update(interactive=enabled) for enabled in buttons]
    return text, curve, samples, training_runs.log_tail(run_dir, 15), *buttons, stamp


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


# ---------------------------------------------------------------------------------------------------------------------
# Layout and wiring: each tab lays out its inputs (left) and outputs (right), then connects them

UI_ONLY = {"api_visibility": "undocumented"}  # listeners that only keep the page in step; callable, not advertised


def animate_tab(demo: gr.Blocks, tab: gr.Tab) -> None:
    choices = model_choices()
    first = next((value for _, value in choices), None)
    defaults = preferred_settings(find_model(first)) if first else {**asdict(GenerationSettings()), "short_side": 512}
    job_id = gr.State(None)
    history = gr.BrowserState([], storage_key="animate-anyone-results")
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            with gr.Row():
                character = gr.Image(
                    label="Character image",
                    type="filepath",
                    height=320,
                    elem_id="character",
                    sources=["upload", "clipboard"],
                )
                driving_video = gr.Video(
                    label="Driving video (raw, or a skeleton video)",
                    height=320,
                    sources=["upload"],
                    elem_id="driving-video",
                )
            video_info = gr.Markdown(elem_id="video-info")
            with gr.Row():
                model = gr.Dropdown(choices, value=first, label="Model", allow_custom_value=True, scale=5)
                refresh = gr.Button("↻", scale=0, min_width=48)
            model_info = gr.Markdown(label="Model description")
            with gr.Group():
                with gr.Row():
                    pose_backend = gr.Dropdown(backend_choices(), value="auto", label="Pose detector")
                    alignment = gr.Radio(
                        list(pose.ALIGN_MODES),
                        value="global",
                        label="Fit to the character",
                        info="none: as filmed · global: size, place · per-bone: limb lengths",
                    )
                with gr.Row():
                    hands = gr.Checkbox(value=defaults["hands"], label="Hands")
                    face = gr.Checkbox(value=defaults["face"], label="Face")
                    preview_button = gr.Button("Preview skeleton", elem_id="preview")
            with gr.Group():
                with gr.Row():
                    steps = gr.Slider(1, 100, value=defaults["steps"], step=1, label="Sampling steps", elem_id="steps")
                    guidance = gr.Slider(1, 10, value=defaults["guidance"], step=0.1, label="Guidance scale")
                with gr.Row():
                    clip_length = gr.Slider(
                        0,
                        3600,
                        value=0,
                        step=0.1,
                        label="Clip length",
                        elem_id="clip-length",
                        info="0: the whole video; at most the video's length",
                    )
                    clip_unit = gr.Radio(["seconds", "frames"], value="seconds", label="Clip length in")
                with gr.Row():
                    resolution = gr.Slider(
                        64,
                        1024,
                        value=defaults["short_side"],
                        step=8,
                        elem_id="resolution",
                        label="Output size (short side, px)",
                    )
                    frame_stride = gr.Slider(
                        1, 8, value=1, step=1, label="Frame stride", info="use every n-th driving frame"
                    )
                with gr.Row():
                    seed = gr.Number(-1, precision=0, label="Seed (-1: random)")
                    side_by_side = gr.Checkbox(value=False, label="Side-by-side video: character | skeleton | result")
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    window_size = gr.Slider(
                        2,
                        64,
                        value=defaults["context_frames"],
                        step=1,
                        label="Window size (frames)",
                        info="frames the motion modules see at once",
                    )
                    window_overlap = gr.Slider(
                        0, 16, value=defaults["context_overlap"], step=1, label="Window overlap (frames)"
                    )
                with gr.Row():
                    scheduler = gr.Dropdown(list(SCHEDULERS), value="ddim", label="Scheduler")
                    precision = gr.Radio(
                        ["auto", *PRECISIONS],
                        value="auto",
                        label="Precision",
                        info="auto: fp16 on a GPU, fp32 on the CPU",
                    )
            with gr.Row():
                animate_button = gr.Button("Animate", variant="primary", scale=3, elem_id="animate")
                cancel_button = gr.Button("Cancel", variant="stop", scale=1, elem_id="cancel")
            cancel_status = gr.Markdown(label="Cancel status")
            characters = sorted(EXAMPLES_DIR.glob("puppet*.png"))
            if characters and (EXAMPLES_DIR / "dance_kps.mp4").is_file():
                gr.Examples(
                    [[str(image), str(EXAMPLES_DIR / "dance_kps.mp4")] for image in characters],
                    [character, driving_video],
                    label="Examples for the built-in model: puppets it never saw, and a real dance's skeleton",
                    elem_id="examples",
                )
        with gr.Column(scale=5):
            with gr.Row():
                skeleton_video = gr.Video(
                    label="Skeleton the model will follow", height=320, interactive=False, elem_id="skeleton-video"
                )
                overlay = gr.Image(
                    label="Skeleton over the character", height=320, interactive=False, elem_id="overlay"
                )
            preview_info = gr.Markdown(label="Preview notes", elem_id="preview-info")
            result = gr.Video(label="Result", height=420, interactive=False, elem_id="result")
            with gr.Row():
                settings_file = gr.File(label="Settings (JSON)", interactive=False, height=80, scale=3)
                seed_used = gr.Textbox(label="Seed used", interactive=False, scale=1)
            result_info = gr.Markdown(label="Result notes", elem_id="result-info")
            with gr.Accordion("Recent results (this browser; kept for a day)", open=False):
                gallery = gr.Gallery(columns=4, height=240, interactive=False, show_label=False, elem_id="recent")

    video_inputs = [driving_video, clip_unit, frame_stride]
    driving_video.change(describe_video, video_inputs, [video_info, clip_length], api_name="describe_video", **UI_ONLY)
    clip_inputs = [driving_video, clip_unit, clip_length, frame_stride]
    clip_unit.change(change_clip_unit, clip_inputs, clip_length, api_name="clip_unit", **UI_ONLY)
    frame_stride.input(change_stride, clip_inputs, clip_length, api_name="frame_stride", **UI_ONLY)
    gr.on(
        [character.change, resolution.change],
        describe_size,
        [character, resolution],
        resolution,
        api_name="describe_size",
        trigger_mode="always_last",
        preprocess=False,
        **UI_ONLY,
    )
    preferred = [steps, guidance, resolution, hands, face, window_size, window_overlap]
    model.change(select_model, model, [model_info, *preferred], api_name="select_model")
    gr.on([refresh.click, tab.select], refresh_models, model, model, api_name="list_models")  # new exports show up
    pose_options = [pose_backend, alignment, hands, face, clip_length, clip_unit, frame_stride]
    previewing = preview_button.click(
        preview,
        [character, driving_video, *pose_options],
        [skeleton_video, overlay, preview_info],
        api_name="preview",
        concurrency_id="pose",
        concurrency_limit=1,
        show_progress_on=skeleton_video,
        preprocess=False,  # here and below: our own checks and messages for what was uploaded (see `path_of`)
    )
    generation = [
        steps,
        guidance,
        clip_length,
        clip_unit,
        seed,
        resolution,
        frame_stride,
        side_by_side,
        window_size,
        window_overlap,
        scheduler,
        precision,
    ]
    animate_inputs = [character, driving_video, model, pose_backend, alignment, hands, face, *generation, job_id]
    checked = animate_button.click(
        check_animate,
        [character, driving_video, model, history],
        [job_id, history],
        api_name="check_animate",
        concurrency_limit=None,
        show_progress="hidden",
        preprocess=False,
        **UI_ONLY,
    )
    animating = checked.success(
        animate,
        animate_inputs,
        [result, settings_file, seed_used, result_info],
        api_name="animate",
        concurrency_id="gpu",
        concurrency_limit=1,
        show_progress_on=result,
        preprocess=False,
    )
    animating.success(recent_results, history, gallery, api_name="recent_results")
    # Ours stops the work within a denoising step; Gradio's `cancels` also takes a job out of the queue if it waits.
    cancel_button.click(cancel, None, cancel_status, api_name="cancel", queue=False, cancels=[previewing, animating])
    demo.load(reload_animate, [model, history], [model, model_info, gallery], api_name="load_animate", **UI_ONLY)


def backend_choices() -> list[tuple[str, str]]:
    available = pose.available_backends(WEIGHTS_DIR)
    labels = {name: name if name in available else f"{name} (not downloaded)" for name in pose.BACKENDS}
    return [("auto: DWPose, else MediaPipe", "auto"), *[(label, name) for name, label in labels.items()]]


def models_tab(demo: gr.Blocks) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            models_text = gr.Markdown(label="Models")
            groups = gr.CheckboxGroup(
                [(f"{name}: {group.purpose}", name) for name, group in GROUPS.items()],
                value=[name for name, group in GROUPS.items() if group.default],
                label="Download from the Hugging Face Hub",
            )
            with gr.Row():
                download_button = gr.Button("Download missing files", variant="primary")
                check_button = gr.Button("Check again")
            download_status = gr.Markdown(label="Download status", min_height=40)
        with gr.Column(scale=6):
            files = gr.Dataframe(
                headers=["group", "file", "state", "size", "source"],
                label=f"Files in {WEIGHTS_DIR}",
                column_widths=["14%", "38%", "11%", "11%", "26%"],
                interactive=False,
                wrap=True,
            )

    downloading = download_button.click(
        download_weights,
        groups,
        download_status,
        api_name="download_weights",
        concurrency_id="download",
        concurrency_limit=1,
    )
    check_button.click(weights_table, None, [models_text, files], api_name="weights_status")
    # After a download, finished or not: what is on disk now (an interrupted download keeps its finished files).
    downloading.then(weights_table, None, [models_text, files], api_name="weights_after_download", **UI_ONLY)
    demo.load(weights_table, None, [models_text, files], api_name="load_models", **UI_ONLY)


def training_tab(demo: gr.Blocks) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            gr.Markdown("### 1. Data\nVideos of one dancer each: their poses are extracted and bad clips left out.")
            videos = gr.File(
                label="Videos", file_count="multiple", file_types=["video"], height=120, elem_id="train-videos"
            )
            with gr.Row():
                dataset_name = gr.Textbox(label="Dataset name", value="my_dances")
                folder = gr.Textbox(label="…or a folder of videos on this machine", visible=not ON_SPACES)
            with gr.Row():
                dataset_backend = gr.Dropdown(backend_choices(), value="auto", label="Pose detector")
                build_button = gr.Button("Build dataset")
            dataset_summary = gr.Markdown(label="Dataset summary")
            dataset_table = gr.Dataframe(
                headers=["video", "frames", "fps", "person found", "status"],
                column_widths=["30%", "12%", "10%", "14%", "34%"],
                interactive=False,
                wrap=True,
                max_height=240,
            )
            gr.Markdown("### 2. Train\nStage 1 learns appearance from single frames; stage 2 adds the motion modules.")
            with gr.Row():
                stage = gr.Radio([("1: image model", 1), ("2: motion", 2)], value=1, label="Stage")
                size = gr.Radio(
                    [("tiny (CPU)", "tiny"), ("full (SD 1.5, GPU)", "full")], value="tiny", label="Model size"
                )
            data = gr.Dropdown(dataset_choices(), value="puppets", label="Training data", allow_custom_value=True)
            start_from = gr.Dropdown(start_choices(1), value="tiny", label="Start from", allow_custom_value=True)
            run_name = gr.Textbox(label="Run name (also the new model's name)", value="tiny_stage1")
            with gr.Row():
                max_steps = gr.Number(label="Steps", precision=0, minimum=1, min_width=100)
                learning_rate = gr.Number(label="Learning rate", min_width=100)
                batch_size = gr.Number(label="Batch size", precision=0, minimum=1, min_width=100)
            with gr.Row():
                width = gr.Number(label="Width", precision=0, step=8, min_width=100)
                height = gr.Number(label="Height", precision=0, step=8, min_width=100)
                num_frames = gr.Number(label="Frames per clip", precision=0, visible=False, min_width=100)
            with gr.Accordion("More settings", open=False):
                with gr.Row():
                    validate_every = gr.Number(label="Validate every (steps)", precision=0)
                    checkpoint_every = gr.Number(label="Checkpoint every (steps)", precision=0)
                    mixed_precision = gr.Dropdown(["no", "fp16", "bf16"], label="Mixed precision")
                extra = gr.Textbox(label="Other settings: KEY=VALUE lines (animate/training/config.py)", lines=2)
            start_button = gr.Button("Start training", variant="primary")
        with gr.Column(scale=6):
            with gr.Row():
                run = gr.Dropdown([], label="Run", scale=5, allow_custom_value=True)
                refresh = gr.Button("↻", scale=0, min_width=48)
            run_status = gr.Markdown(label="Run status", elem_id="run-status")
            with gr.Row():
                stop_button = gr.Button("Stop", variant="stop")
                resume_button = gr.Button("Resume")
                export_button = gr.Button("Export newest checkpoint")
            curve = gr.LinePlot(x="step", y="loss", color="series", label="Loss", height=300, elem_id="loss")
            samples = gr.Gallery(
                label="Newest validation samples: reference | skeleton | generated | target",
                columns=4,
                height=300,
                preview=True,
                object_fit="contain",
                interactive=False,
                elem_id="samples",
            )
            log = gr.Textbox(label="Log (newest lines)", lines=12, max_lines=20, interactive=False, elem_id="train-log")
            seen = gr.State(None)
            timer = gr.Timer(2.0)

    build_button.click(
        build_training_dataset,
        [videos, folder, dataset_name, dataset_backend],
        [dataset_summary, dataset_table, data],
        api_name="build_dataset",
        concurrency_id="pose",
        concurrency_limit=1,
    )
    form = [
        start_from,
        run_name,
        max_steps,
        learning_rate,
        width,
        height,
        num_frames,
        batch_size,
        validate_every,
        checkpoint_every,
        mixed_precision,
    ]
    gr.on([stage.change, size.change], training_defaults, [stage, size], form, api_name="training_defaults", **UI_ONLY)
    start_button.click(start_training, [stage, size, data, *form, extra], run, api_name="start_training")
    shown = [run_status, curve, samples, log, stop_button, resume_button, export_button]
    refresh.click(run_list, run, run, api_name="list_runs")
    run.change(show_run, run, [*shown, seen], api_name="show_run")
    timer.tick(
        show_run, [run, seen], [*shown, seen], api_name="training_tick", queue=False, show_progress="hidden", **UI_ONLY
    )
    for button, action in ((stop_button, "stop"), (resume_button, "resume"), (export_button, "export")):
        button.click(functools.partial(run_action, action), run, [run, *shown], api_name=f"{action}_training")
    demo.load(
        lambda: (run_list(), *training_defaults(1, "tiny")), None, [run, *form], api_name="load_training", **UI_ONLY
    )


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Animate Anyone", delete_cache=(3600, int(KEEP_HOURS * 3600))) as demo:
        gr.Markdown(
            "# Animate Anyone\nAnimate a character image with the motion of a driving video: upload both, "
            "check the skeleton, then animate."
        )
        with gr.Tabs():
            with gr.Tab("Animate", id="animate") as tab:
                animate_tab(demo, tab)
            with gr.Tab("Models", id="models"):
                models_tab(demo)
            with gr.Tab("Training", id="training"):
                training_tab(demo)
    return demo


demo = build_demo()


def launch(**options) -> tuple:
    """Starts the server: a bounded queue, and Gradio's own upload limit. `options` go to `Blocks.launch`; host and
    port come from GRADIO_SERVER_NAME and GRADIO_SERVER_PORT unless given."""
    jobs.clean_up()
    queued = demo.queue(max_size=MAX_QUEUE + 16, default_concurrency_limit=2)  # room for the quick listeners
    return queued.launch(max_file_size=f"{MAX_UPLOAD_MB:g}mb", **options)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    launch()
