"""One generation job, whichever engine runs it: character image + driving video -> mp4 with the driving video's audio.

A model belongs to an engine (`engine_for`): the Animate Anyone family (animate/engines/animate_anyone.py: ReferenceNet,
Pose Guider and motion modules on SD 1.5) or Wan2.2-Animate (animate/engines/wan_animate.py). The CLI and the app
talk to an engine only through the `Engine` interface below:

    engine = engine_for(model)
    pipeline, files = engine.load(model, engine.dtype(device, "auto", folder))  # on the CPU; the caller places it
    width, height = engine.output_size(character_size, video_size, settings)
    conditioning, reused = engine.prepare(character, "dance.mp4", width, height, settings, PoseCache(weights_dir))
    video, image, notes = engine.preview(character, conditioning, folder)  # what the user checks first
    result = engine.generate(pipeline, character, conditioning, "out.mp4", settings, driving_video="dance.mp4")

`prepare` is what the engine needs from the pose stage (skeleton frames for Animate Anyone; pose, face and mask videos
for Wan-Animate); `generate` runs with progress and cancel and streams frames to the writer, so a long video costs
no more memory than a short one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from animate.weights import ModelEntry

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is happening)


class GenerationCancelled(Exception):
    """The user cancelled the job; nothing was written."""


MODES = ("animate", "replace")  # Wan-Animate's: the character in a new video, or into the driving video
# Weights stored in 8 bits (torchao's int8 weight-only quantization of the transformer): about half the memory.
QUANTIZATIONS = ("none", "int8")


@dataclass
class GenerationSettings:
    steps: int = 30  # denoising steps (the reference's default)
    guidance: float = 3.5  # classifier-free guidance scale (the reference's default)
    seed: int = -1  # -1: a random seed, reported in the result and the file's settings
    max_frames: int | None = None  # cap on the generated frames; None: the whole driving clip
    stride: int = 1  # take every n-th driving frame (the output's fps is divided accordingly)
    short_side: int | None = None  # output resolution (the character's aspect is kept); None: the model's
    context_frames: int = 24  # frames the motion modules see at once
    context_overlap: int = 4  # frames shared by neighbouring windows
    scheduler: str = "ddim"  # one of SCHEDULERS; all keep the model's trained noise schedule
    backend: str = "auto"  # pose detector for raw driving videos
    align: str = "global"  # fit of the driving skeleton to the character: none, global or per-bone
    hands: bool = True
    face: bool = True
    side_by_side: bool = False  # character | skeleton | result in one video
    # Wan-Animate only (animate/engines/wan_animate.py); Animate Anyone ignores them.
    mode: str = "animate"  # "animate": the character in a new video; "replace": the character into the driving video
    segment_frames: int = 77  # frames per generated segment (4n + 1), the official default
    prompt: str = ""  # optional text; the official default prompt is used when empty
    fps: float = 0.0  # output frame rate: 0 keeps the driving video's; another resamples its frames (see README)
    quantize: str = "none"  # one of QUANTIZATIONS: "int8" keeps the transformer's weights in 8 bits


@dataclass
class GenerationResult:
    path: Path
    seed: int
    frames: int
    fps: float
    warnings: list[str]
    settings: dict


def output_size(image_width: int, image_height: int, short_side: int, multiple: int = 8) -> tuple[int, int]:
    """(width, height) with the image's aspect ratio, the short side near `short_side`, both multiples of
    `multiple`."""
    scale = short_side / min(image_width, image_height)
    width = max(multiple, round(image_width * scale / multiple) * multiple)
    height = max(multiple, round(image_height * scale / multiple) * multiple)
    return width, height


def extraction_progress(progress: Progress | None, cancel: threading.Event | None) -> Callable[[int, int], None]:
    """A pose-extraction progress callback (done, total) that reports frames and time left, and stops the
    extraction (GenerationCancelled) once `cancel` is set."""
    started = time.monotonic()

    def on_frame(done: int, total: int) -> None:
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled()
        left = (time.monotonic() - started) / done * (total - done)
        report(progress, done / total, f"Detecting poses: frame {done}/{total}, about {left:.0f} s left")

    return on_frame


@contextlib.contextmanager
def stop_between_layers(components: Iterable[object], should_stop: Callable[[], bool]):
    """Within the block, every layer of the torch modules among `components` first checks `should_stop()` and raises
    GenerationCancelled once it is true. A denoising window or a decoded chunk of a full-size model takes seconds to
    minutes on some machines, one layer a fraction of a second, so Cancel and a job's time limit act at once in every
    stage (reference encoding, each window, VAE decoding). A forward pre-hook is PyTorch's public way in; it costs
    about a microsecond per layer call."""

    def check(module: torch.nn.Module, args: tuple) -> None:
        if should_stop():
            raise GenerationCancelled()

    modules = [component for component in components if isinstance(component, torch.nn.Module)]
    handles = [layer.register_forward_pre_hook(check) for module in modules for layer in module.modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class Engine(Protocol):
    """What a generation engine offers the CLI and the app (see the module docstring for the order of calls)."""

    name: str  # "animate-anyone" or "wan-animate": recorded in the settings and shown in the app
    settings: frozenset[str]  # the GenerationSettings fields only this engine reads (the app shows their controls)

    def defaults(self, folder: Path) -> dict:
        """The settings the model in `folder` works best with: GenerationSettings field names, plus `sensible`, the
        steps and guidance ranges it works well in ({"steps": [low, high], "guidance": [low, high]})."""

    def output_size(
        self, character: tuple[int, int], video: tuple[int, int], settings: GenerationSettings
    ) -> tuple[int, int]:
        """The output's (width, height) for a character and a driving video of these (width, height), with the
        short side near `settings.short_side`, in the sizes the model can take."""

    def preview_size(
        self, character: tuple[int, int], video: tuple[int, int], settings: GenerationSettings
    ) -> tuple[int, int]:
        """The (width, height) the preview draws its conditioning at (in the output's frame)."""

    def dtype(self, device: torch.device, precision: str, folder: Path) -> torch.dtype:
        """The precision a model in `folder` runs in on `device` ("auto" or one of animate.device.PRECISIONS)."""

    def load(self, model: ModelEntry | Path, dtype: torch.dtype, quantize: str = "none") -> tuple[object, list[Path]]:
        """The pipeline on the CPU in `dtype` (animate.memory places it), and the files its weights came from.
        `quantize`: one of QUANTIZATIONS, for engines that offer it."""

    def prepare(
        self,
        character: np.ndarray,
        driving_video: str | os.PathLike,
        width: int,
        height: int,
        settings: GenerationSettings,
        poses,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ):
        """What the model follows, made from the driving video through the pose stage (`poses`: an
        animate.jobs.PoseCache), and whether the poses were reused from an earlier call. The result has a length,
        `fps`, `size` (width, height), `source` ("extracted" or "skeleton video") and `warnings`."""

    def preview(
        self, character: np.ndarray, conditioning, folder: Path, progress=None, cancel=None
    ) -> tuple[Path, np.ndarray, list[str]]:
        """What the user checks before generating: a video in `folder`, one picture, and notes."""

    def generate(
        self,
        pipeline,
        character: np.ndarray,
        conditioning,
        output: str | os.PathLike,
        settings: GenerationSettings,
        *,
        driving_video: str | os.PathLike | None = None,
        model_name: str = "",
        model_files: Sequence[Path] = (),
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """Generates the frames, streams them to the mp4 (with the driving video's audio) and writes the settings."""

    def memory_window(self, settings: GenerationSettings) -> int:
        """Frames whose activations are on the GPU at once (for animate.memory's estimate)."""

    def memory_knob(self, settings: GenerationSettings) -> str:
        """The settings to lower first when the GPU runs out of memory, as a phrase: "the window (now 24 frames;
        Advanced)"."""


def engine_for(model: ModelEntry | str | os.PathLike) -> Engine:
    """The engine a list entry or a model folder belongs to: Wan-Animate for a saved WanAnimatePipeline, Animate
    Anyone for everything else (released weights, MusePose, the built-in and trained models)."""
    # Imported here: the engines build on this module's types, and Wan-Animate's imports are only paid when used.
    from animate.engines.animate_anyone import AnimateAnyoneEngine
    from animate.engines.wan_animate import WAN_PIPELINE_CLASS, WanAnimateEngine

    folder = Path(model.path if isinstance(model, ModelEntry) else model)
    index = folder / "model_index.json"
    if index.is_file() and json.loads(index.read_text()).get("_class_name") == WAN_PIPELINE_CLASS:
        return WanAnimateEngine()
    if isinstance(model, ModelEntry) and model.kind == "wan-animate":
        return WanAnimateEngine()
    return AnimateAnyoneEngine()


# A saved model folder may carry `generation_defaults.json` with the settings it works best with (the built-in
# model: its training resolution and a step count that keeps it fast), over its engine's defaults.
DEFAULTS_FILE = "generation_defaults.json"


def model_defaults(model: ModelEntry | str | os.PathLike) -> dict:
    """The settings the model is meant to be used with: every GenerationSettings field, its engine's defaults over
    them, and its folder's own file over those."""
    folder = Path(model.path if isinstance(model, ModelEntry) else model)
    defaults = {**asdict(GenerationSettings()), **engine_for(model).defaults(folder)}
    if (folder / DEFAULTS_FILE).is_file():
        defaults.update(json.loads((folder / DEFAULTS_FILE).read_text()))
    return defaults


def load_model(
    model: ModelEntry | str | os.PathLike, dtype: torch.dtype, quantize: str = "none"
) -> tuple[object, list[Path]]:
    """The model's pipeline on the CPU and its weight files, through its engine."""
    return engine_for(model).load(model if isinstance(model, ModelEntry) else Path(model), dtype, quantize)


def unusual_settings(model_name: str, defaults: dict, steps: int, guidance: float) -> list[str]:
    """One warning for each of `steps` and `guidance` that lies outside the model's sensible range."""
    warnings = []
    for label, value in (("steps", steps), ("guidance", guidance)):
        low, high = defaults["sensible"][label]
        if not low <= value <= high:
            unit = "" if label == "guidance" else " step" if high == 1 else " steps"
            allowed = f"{low:g}{unit}" if low == high else f"{low:g} to {high:g}{unit}"
            warnings.append(
                f"{label.capitalize()} {value:g} is outside what the model {model_name} works well with ({allowed}): "
                "expect noisy or saturated frames."
            )
    return warnings


def report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)
