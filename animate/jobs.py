"""Job control for the app, kept out of the UI: a folder per job, per-session cancellation, one generation at a time,
the loaded model, a pose cache that lets "Animate" reuse what "Preview skeleton" extracted, and cleanup of old jobs.

app.py wires these to Gradio; nothing here imports gradio, so the same calls work from a script or a test:

    jobs = Jobs(Path("/tmp/jobs"))
    job = jobs.start("session-1", "animate")              # its own folder, its own cancel event
    conditioning, reused = engine.prepare(character, "dance.mp4", width, height, settings, poses, cancel=job.cancel)
    ...engine.generate(..., cancel=job.cancel)...
    jobs.finish(job)                                       # the folder stays until it is old enough to clean up
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import pose
from animate.generate import GenerationCancelled, GenerationSettings, Progress, load_model
from animate.memory import Fit, apply_memory_mode, weight_sizes
from animate.weights import ModelEntry

logger = logging.getLogger(__name__)

JOB_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{16}$")  # what `new_job_id` makes; anything else is not ours


class JobBusyError(RuntimeError):
    """The session already has a job running."""

    def __init__(self, job: Job):
        self.job = job
        super().__init__(f"a {job.kind} job of this session is still running")


@dataclass
class Job:
    id: str
    session: str
    kind: str  # "preview" or "animate"
    folder: Path
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)  # set by `Jobs.finish`
    timed_out: bool = False  # cancelled by its time limit, not by its user
    timer: threading.Timer | None = None


def new_job_id() -> str:
    """Sortable by time, and unguessable (64 random bits): the id is all a browser needs to fetch its results."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:16]}"


class Jobs:
    """The jobs of every session: each gets `root/<job id>/`, and a session runs one job at a time.

    Generation takes turns on `gpu` through `wait_for_gpu`, first come first served, whatever the web framework's
    queue does; a job still running `time_limit` seconds after it started is cancelled (`Job.timed_out`), so a stuck
    job never holds the queue. Job folders older than `keep_seconds` are deleted when a new job starts.
    """

    def __init__(self, root: Path, keep_seconds: float = 24 * 3600, time_limit: float | None = None):
        self.root = Path(root)
        self.keep_seconds = keep_seconds
        self.time_limit = time_limit
        self.gpu = threading.Lock()
        self._lock = threading.Lock()
        self._active: dict[str, Job] = {}  # session -> its running job
        self._waiting: list[Job] = []  # jobs waiting for the GPU, in the order they asked

    def start(self, session: str, kind: str, job_id: str | None = None) -> Job:
        """A new job for `session` in a fresh folder; raises JobBusyError if the session has one running."""
        if job_id is not None and not JOB_ID.match(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        with self._lock:
            if session in self._active:
                raise JobBusyError(self._active[session])
            job_id = job_id or new_job_id()
            folder = self.root / job_id
            folder.mkdir(parents=True, exist_ok=True)
            job = Job(job_id, session, kind, folder)
            self._active[session] = job
        if self.time_limit is not None:
            job.timer = threading.Timer(self.time_limit, self._time_out, (job,))
            job.timer.daemon = True
            job.timer.start()
        self.clean_up()
        return job

    def _time_out(self, job: Job) -> None:
        job.timed_out = True
        job.cancel.set()
        logger.warning("Job %s ran past its time limit of %.0f s and was cancelled", job.id, self.time_limit)

    def finish(self, job: Job) -> None:
        if job.timer is not None:
            job.timer.cancel()
        with self._lock:
            if self._active.get(job.session) is job:
                del self._active[job.session]
        job.done.set()

    def cancel(self, session: str) -> Job | None:
        """Asks the session's running job to stop; returns it, or None if there is none."""
        with self._lock:
            job = self._active.get(session)
        if job is not None:
            job.cancel.set()
        return job

    def waiting(self) -> int:
        """How many jobs wait for the GPU."""
        with self._lock:
            return len(self._waiting)

    def wait_for_gpu(self, job: Job, progress: Progress | None = None) -> None:
        """Returns holding `gpu` once the jobs that asked before this one have had their turn; reports the job's
        place in the queue meanwhile, and raises GenerationCancelled if it is cancelled while it waits."""
        with self._lock:
            self._waiting.append(job)
        try:
            while True:
                with self._lock:
                    ahead = self._waiting.index(job)
                if job.cancel.is_set():
                    raise GenerationCancelled()
                if ahead == 0 and self.gpu.acquire(timeout=0.5):
                    return
                if ahead:
                    time.sleep(0.5)
                if progress is not None:
                    ahead += 1  # the job that holds the GPU
                    jobs = "job is" if ahead == 1 else "jobs are"
                    progress(0.0, f"Waiting: {ahead} {jobs} ahead of yours. It starts by itself.")
        finally:
            with self._lock:
                self._waiting.remove(job)

    def get(self, job_id: str) -> Job | None:
        """The running job with this id, or None."""
        with self._lock:
            return next((job for job in self._active.values() if job.id == job_id), None)

    def active(self, kind: str | None = None) -> list[Job]:
        with self._lock:
            return [job for job in self._active.values() if kind is None or job.kind == kind]

    def result(self, job_id: str) -> Path | None:
        """The finished video of a job, if it exists (any string is safe to pass: ids are checked)."""
        if not JOB_ID.match(job_id):
            return None
        videos = sorted((self.root / job_id).glob("[!.]*.mp4"))  # not a partial file (those start with a dot)
        return videos[0] if videos else None

    def clean_up(self) -> list[Path]:
        """Deletes job folders older than `keep_seconds` (never a running job's); returns what was deleted."""
        if not self.root.is_dir():
            return []
        with self._lock:
            running = {job.folder for job in self._active.values()}
        deadline = time.time() - self.keep_seconds
        removed = []
        for folder in self.root.iterdir():
            ours = folder.is_dir() and JOB_ID.match(folder.name) and folder not in running
            if ours and folder.stat().st_mtime < deadline:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        if removed:
            logger.info("Removed %d job folders older than %.0f h", len(removed), self.keep_seconds / 3600)
        return removed


def result_name(character: str | Path, driving_video: str | Path, seed: int) -> str:
    """What the result is called (and so what a download is called): `<character>-<video>-seed<seed>.mp4`."""
    stems = [
        re.sub(r"[^A-Za-z0-9_-]+", "_", Path(path).stem).strip("_")[:40] or "video"
        for path in (character, driving_video)
    ]
    return f"{stems[0]}-{stems[1]}-seed{seed}.mp4"


def clip_frames(info: pose.VideoInfo, length: float, unit: str, stride: int) -> tuple[int, str]:
    """Frames to generate for a clip of `length` seconds or frames (`unit`) with every `stride`-th driving frame, and
    a note for the user when that is more than the video has (the clip is then the whole video)."""
    if unit not in ("seconds", "frames"):
        raise ValueError(f"unit must be seconds or frames, got {unit!r}")
    available = max(1, math.ceil(info.num_frames / stride))
    wanted = round(length * info.fps / stride) if unit == "seconds" else round(length)
    if wanted < 1:
        raise ValueError(f"The clip length must be at least one frame, got {length:g} {unit}.")
    # The app's slider shows seconds to 0.1 s, so its whole-video value may pass the video's end by up to 0.05 s.
    if wanted <= available or (unit == "seconds" and length <= info.duration + 0.05):
        return min(wanted, available), ""
    asked = f"{length:g} s" if unit == "seconds" else f"{wanted} frames"
    return available, (
        f"The driving video is {info.duration:.1f} s long ({available} frames at stride {stride}), shorter than the "
        f"{asked} asked for: the whole video is animated."
    )


def file_digest(path: str | Path) -> str:
    """The file's sha256, computed once per version of the file (one upload is asked for it several times)."""
    path = Path(path).resolve()
    stat = path.stat()
    return _digest(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class _Driving:
    sequence: pose.PoseSequence
    complete: bool  # the extraction reached the end of the video


class PoseCache:
    """Poses already computed, keyed by file content and pose options: the driving video's extracted poses (the slow
    part, reused by "Animate" after "Preview skeleton", or for a shorter clip), the character's detected pose, and
    whether a video is a skeleton video. Holds the last few of each; thread-safe."""

    def __init__(self, weights_dir: Path, size: int = 8):
        self.weights_dir = Path(weights_dir)
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, object] = OrderedDict()

    def _get(self, key: tuple):
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        return None

    def _put(self, key: tuple, value) -> None:
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self.size * 3:
                self._entries.popitem(last=False)

    def backend(self, name: str) -> str:
        return pose.default_backend(self.weights_dir) if name == "auto" else name

    def is_skeleton_video(self, video: str | Path) -> bool:
        key = ("skeleton?", file_digest(video))
        found = self._get(key)
        if found is None:
            found = pose.is_skeleton_video(video)
            self._put(key, found)
        return found

    def driving_poses(
        self,
        video: str | Path,
        settings: GenerationSettings,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[pose.PoseSequence, bool]:
        """The first `settings.max_frames` poses of the video (all when None) and whether they came from the cache."""
        backend = self.backend(settings.backend)
        key = ("driving", file_digest(video), backend, settings.hands, settings.face, settings.stride)
        cached: _Driving | None = self._get(key)
        wanted = settings.max_frames
        if cached is not None and (cached.complete or (wanted is not None and len(cached.sequence) >= wanted)):
            sequence = cached.sequence
            if wanted is not None and wanted < len(sequence):
                frames = sequence.frames[:wanted]
                interpolated = [index for index in sequence.interpolated if index < wanted]
                sequence = pose.PoseSequence(
                    frames, sequence.fps, sequence.width, sequence.height, sequence.backend, interpolated
                )
            return sequence, True
        sequence = pose.extract_poses(
            video,
            backend=backend,
            stride=settings.stride,
            max_frames=wanted,
            hands=settings.hands,
            face=settings.face,
            progress=progress,
            weights_dir=self.weights_dir,
        )
        self._put(key, _Driving(sequence, complete=wanted is None or len(sequence) < wanted))
        return sequence, False

    def character_pose(self, character: np.ndarray, backend: str, hands: bool, face: bool) -> pose.PoseFrame:
        backend = self.backend(backend)
        key = ("character", hashlib.sha256(character.tobytes()).hexdigest(), character.shape, backend, hands, face)
        found = self._get(key)
        if found is None:
            found = pose.detect_image(character, backend, self.weights_dir, hands=hands, face=face)
            self._put(key, found)
        return found


class LoadedModel:
    """The one pipeline kept in memory: loading takes seconds (the released weights: tens of seconds), so it stays
    loaded between jobs and is replaced when another model, device, precision or memory mode is asked for, or its
    files change. The memory mode is chosen per job (`choose`), from the loaded models' sizes, before the models are
    placed on the device."""

    def __init__(self):
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._loaded: tuple[object, list[Path], dict[str, int], str | None] | None = None

    def get(
        self,
        model: ModelEntry | Path,
        device: torch.device,
        dtype: torch.dtype,
        choose: Callable[[dict[str, int]], Fit] | None = None,
        quantize: str = "none",
    ) -> tuple[object, list[Path], Fit | None]:
        """The pipeline of a `list_models` entry or a model folder (its weights quantized as `quantize` says), its
        weight files, and the memory mode it runs in (None: all on the device, unchosen)."""
        folder = model.path if isinstance(model, ModelEntry) else Path(model)
        marker = folder / "model_index.json"
        files = [marker] if marker.is_file() else sorted(folder.glob("*.pth"))
        stamp = tuple((file.name, file.stat().st_mtime_ns) for file in files)
        key = (str(folder), getattr(model, "kind", "folder"), stamp, str(device), str(dtype), quantize)
        with self._lock:
            if key != self._key:
                self._free()
                pipeline, model_files = load_model(model, dtype, quantize)
                self._key, self._loaded = key, (pipeline, model_files, weight_sizes(pipeline), None)
            pipeline, model_files, sizes, placed = self._loaded
            fit = choose(sizes) if choose is not None else None
            mode = fit.mode if fit is not None else "none"
            if placed not in (None, mode):  # offloading hooks are not undone: the models are loaded afresh
                pipeline = None
                self._free()
                pipeline, model_files = load_model(model, dtype, quantize)
            if placed != mode:
                pipeline = apply_memory_mode(pipeline, mode, device)
                pipeline.set_progress_bar_config(disable=True)  # the app reports progress itself
                self._key, self._loaded = key, (pipeline, model_files, sizes, mode)
            return pipeline, model_files, fit

    def _free(self) -> None:
        """Drops the loaded pipeline and gives its GPU memory back before the next is loaded."""
        self._loaded = self._key = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
