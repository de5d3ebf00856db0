"""One generation job, as the CLI and the app run it: character image + driving video -> mp4 with its audio.

    skeletons = prepare_skeletons(character, "dance.mp4", width, height, settings)   # extract + align, or decode
    result = generate_video(pipeline, character, skeletons, "out.mp4", settings, driving_video="dance.mp4")

The driving video may be a raw video (poses are extracted, followed, smoothed and fitted to the character through
`pose/`) or an already-extracted skeleton video (used as it is, fitted into the frame). Frames are generated,
decoded and written window by window, so a long video costs no more memory than a short one.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UNetMotionModel

import pose
from animate.checkpoints import RELEASED_FILES, CheckpointError, load_released_pipeline
from animate.export import export_video, generation_settings, side_by_side
from animate.memory import apply_memory_mode
from animate.pipeline import AnimateAnyonePipeline, to_uint8
from animate.unet import motion_max_frames
from animate.weights import WEIGHTS_DIR, ModelEntry

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is happening)
SCHEDULERS = {"ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler}


class GenerationCancelled(Exception):
    """The user cancelled the job; nothing was written."""


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


@dataclass
class Skeletons:
    frames: Sequence[np.ndarray]  # (height, width, 3) uint8 skeleton images, possibly drawn on demand
    fps: float
    source: str  # "extracted" or "skeleton video"
    warnings: list[str] = field(default_factory=list)
    poses: pose.PoseSequence | None = None  # the aligned poses, when extracted


@dataclass
class GenerationResult:
    path: Path
    seed: int
    frames: int
    fps: float
    warnings: list[str]
    settings: dict


def output_size(image_width: int, image_height: int, short_side: int, multiple: int = 8) -> tuple[int, int]:
    """(width, height) with the image's aspect ratio, the short side near `short_side`, both multiples of 8."""
    scale = short_side / min(image_width, image_height)
    width = max(multiple, round(image_width * scale / multiple) * multiple)
    height = max(multiple, round(image_height * scale / multiple) * multiple)
    return width, height


class SkeletonVideoFrames(Sequence):
    """The frames of a skeleton video fitted into width x height (aspect kept, black borders), held as PNG bytes:
    skeleton images compress about 50x, so even a long clip stays small in memory."""

    def __init__(self, path: str | os.PathLike, width: int, height: int, stride: int = 1, max_frames=None):
        self.width, self.height = width, height
        self._encoded = []
        for frame in pose.read_frames(path, stride=stride, max_frames=max_frames):
            buffer = io.BytesIO()
            PIL.Image.fromarray(_letterbox(frame, width, height)).save(buffer, format="PNG", compress_level=1)
            self._encoded.append(buffer.getvalue())

    def __len__(self) -> int:
        return len(self._encoded)

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(PIL.Image.open(io.BytesIO(self._encoded[index])).convert("RGB"))


def _letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    scale = min(width / image.shape[1], height / image.shape[0])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    resized = np.asarray(PIL.Image.fromarray(image).resize(size, PIL.Image.BILINEAR))
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - size[1]) // 2, (width - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = resized
    return canvas


def extraction_progress(progress: Progress | None, cancel: threading.Event | None) -> Callable[[int, int], None]:
    """A pose-extraction progress callback (done, total) that reports frames and time left, and stops the
    extraction (GenerationCancelled) once `cancel` is set."""
    started = time.monotonic()

    def report(done: int, total: int) -> None:
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled()
        left = (time.monotonic() - started) / done * (total - done)
        _report(progress, done / total, f"Detecting poses: frame {done}/{total}, about {left:.0f} s left")

    return report


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


def prepare_skeletons(
    character: np.ndarray,
    driving_video: str | os.PathLike,
    width: int,
    height: int,
    settings: GenerationSettings,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    weights_dir: Path = WEIGHTS_DIR,
) -> Skeletons:
    """The skeleton frames to animate `character` with, at width x height.

    A skeleton video is used as it is (fitted into the frame); a raw video goes through pose extraction, and the
    poses are fitted to the character (`fit_to_character`).
    """
    if pose.is_skeleton_video(driving_video):
        _report(progress, 0.0, "Reading the skeleton video")
        frames = SkeletonVideoFrames(driving_video, width, height, settings.stride, settings.max_frames)
        fps = pose.probe_video(driving_video).fps / settings.stride
        return Skeletons(frames=frames, fps=fps, source="skeleton video")
    sequence = pose.extract_poses(
        driving_video,
        backend=settings.backend,
        stride=settings.stride,
        max_frames=settings.max_frames,
        hands=settings.hands,
        face=settings.face,
        progress=extraction_progress(progress, cancel),
        weights_dir=weights_dir,
    )
    return fit_to_character(character, sequence, width, height, settings, weights_dir=weights_dir)


def fit_to_character(
    character: np.ndarray,
    sequence: pose.PoseSequence,
    width: int,
    height: int,
    settings: GenerationSettings,
    character_pose: pose.PoseFrame | None = None,
    weights_dir: Path = WEIGHTS_DIR,
) -> Skeletons:
    """Skeletons of extracted driving poses, aligned to the character's own pose (`settings.align`), which is
    detected with the same backend unless given (the app caches it)."""
    warnings = []
    if sequence.missing_frames:
        warnings.append(f"No person was found in {len(sequence.missing_frames)} of {len(sequence)} driving frames.")
    if character_pose is None:
        backend = sequence.backend or settings.backend
        character_pose = pose.detect_image(character, backend, weights_dir, hands=settings.hands, face=settings.face)
    aligned, align_warnings = pose.align_poses(sequence, character_pose, settings.align)
    frames = pose.SkeletonFrames(aligned, width, height, hands=settings.hands, face=settings.face)
    return Skeletons(frames, sequence.fps, "extracted", warnings + align_warnings, aligned)


def generate_video(
    pipeline: AnimateAnyonePipeline,
    character: np.ndarray,
    skeletons: Skeletons,
    output: str | os.PathLike,
    settings: GenerationSettings,
    *,
    driving_video: str | os.PathLike | None = None,
    model_name: str = "",
    model_files: Sequence[Path] = (),
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> GenerationResult:
    """Animates `character` (RGB uint8) with `skeletons` and writes the mp4 (with the driving video's audio)."""
    width, height = skeletons.frames[0].shape[1], skeletons.frames[0].shape[0]
    num_frames = len(skeletons.frames)
    warnings = list(skeletons.warnings)
    if settings.max_frames is not None and settings.max_frames > num_frames:
        warnings.append(f"The driving clip has {num_frames} frames, fewer than the {settings.max_frames} asked for.")
    elif settings.max_frames is not None:
        num_frames = settings.max_frames
    seed = settings.seed if settings.seed >= 0 else random.randrange(2**31)
    if settings.scheduler not in SCHEDULERS:
        raise ValueError(f"Unknown scheduler {settings.scheduler!r}; choose one of {', '.join(SCHEDULERS)}.")
    pipeline.scheduler = SCHEDULERS[settings.scheduler].from_config(pipeline.scheduler.config)
    context_frames = settings.context_frames
    if isinstance(pipeline.denoising_unet, UNetMotionModel):
        context_frames = min(context_frames, max(motion_max_frames(pipeline.denoising_unet), 1))
    overlap = min(settings.context_overlap, context_frames - 1)
    reference = PIL.Image.fromarray(character).resize((width, height), PIL.Image.LANCZOS)

    started = time.monotonic()

    def after_window(pipe: AnimateAnyonePipeline, step: int, window: int, windows: int) -> None:
        done = (step * windows + window + 1) / (settings.steps * windows)
        left = (time.monotonic() - started) / done * (1 - done)
        counts = f"step {step + 1}/{settings.steps}" + (f", window {window + 1}/{windows}" if windows > 1 else "")
        _report(progress, 0.9 * done, f"Denoising: {counts}, about {left:.0f} s left")

    _report(progress, 0.0, f"Generating {num_frames} frames at {width}x{height}")
    should_stop = cancel.is_set if cancel is not None else lambda: False
    # Decoded frames are big: about a megapixel per VAE call keeps one call short and its memory bounded.
    decode_chunk = max(1, min(8, 2**20 // (width * height)))
    with stop_between_layers(pipeline.components.values(), should_stop):
        result = pipeline(
            reference,
            skeletons.frames,
            height=height,
            width=width,
            num_frames=num_frames,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            generator=torch.Generator().manual_seed(seed),
            context_frames=context_frames,
            context_overlap=overlap,
            output_type="latent",
            callback_on_window_end=after_window,
        )

        def decoded_frames():
            done = 0
            for chunk in pipeline.decode_latents(result.latents, decode_chunk):
                for frame in to_uint8(chunk):
                    done += 1
                    fraction = 0.9 + 0.1 * done / num_frames
                    _report(progress, fraction, f"Decoding and writing: frame {done}/{num_frames}")
                    yield frame

        frames = decoded_frames()
        if settings.side_by_side:
            character_panel = np.asarray(reference)
            frames = side_by_side(character_panel, (skeletons.frames[i] for i in range(num_frames)), frames)
        extra = {
            "model": model_name,
            "width": width,
            "height": height,
            "frames": num_frames,
            "fps": skeletons.fps,
            "skeletons": skeletons.source,
            "context_frames": context_frames,
            "context_overlap": overlap,
            "warnings": warnings,
            **{key: value for key, value in asdict(settings).items() if key not in ("seed", "steps", "guidance")},
        }
        record = generation_settings(
            seed=seed, steps=settings.steps, guidance=settings.guidance, model_files=model_files, extra=extra
        )
        path = export_video(frames, output, settings=record, driving_video=driving_video, fps=skeletons.fps)
    _report(progress, 1.0, f"Done: {num_frames} frames in {time.monotonic() - started:.0f} s")
    return GenerationResult(path, seed, num_frames, skeletons.fps, warnings, record)


# A saved model folder may carry `generation_defaults.json` with the settings it works best with (the built-in
# model: its training resolution and a step count that keeps it fast); the released weights use the reference's.
# `sensible` holds the step and guidance ranges it works well in: outside them the result is noisy or saturated, and
# the user is told so (the reference's DDIM sampler wants 10 steps or more; past guidance 6 colours saturate).
DEFAULTS_FILE = "generation_defaults.json"
RELEASED_DEFAULTS = {
    "short_side": 512,
    **{
        name: getattr(GenerationSettings, name)
        for name in ("steps", "guidance", "hands", "face", "context_frames", "context_overlap")
    },
    "sensible": {"steps": [10, 100], "guidance": [1.0, 6.0]},
}


def model_defaults(model: ModelEntry | str | os.PathLike) -> dict:
    """The settings the model is meant to be used with (see RELEASED_DEFAULTS for the keys)."""
    folder = Path(model.path if isinstance(model, ModelEntry) else model)
    if (folder / DEFAULTS_FILE).is_file():
        return {**RELEASED_DEFAULTS, **json.loads((folder / DEFAULTS_FILE).read_text())}
    return dict(RELEASED_DEFAULTS)


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


def load_model(
    model: ModelEntry | str | os.PathLike, device: torch.device, dtype: torch.dtype, memory_mode: str = "none"
) -> tuple[AnimateAnyonePipeline, list[Path]]:
    """A pipeline on `device` in `dtype` and `memory_mode` (animate.memory), and the files its weights came from (for
    the settings record).

    `model` is a `list_models` entry or a folder: a saved pipeline (model_index.json) or released weights.
    """
    folder = Path(model.path if isinstance(model, ModelEntry) else model)
    if (folder / "model_index.json").is_file():
        # Safetensors only: a folder missing one of its files fails instead of falling back to pickle files.
        try:
            pipeline = AnimateAnyonePipeline.from_pretrained(folder, dtype=dtype, use_safetensors=True)
        except (OSError, ValueError) as error:  # a missing file, or weights of other shapes than the configs
            in_tiny = folder.resolve() == (WEIGHTS_DIR / "tiny").resolve()
            builtin = in_tiny or (isinstance(model, ModelEntry) and model.kind == "builtin")
            fix = (
                "restore it with `git checkout weights/tiny` (or rebuild it: python -m animate.training.builtin)"
                if builtin
                else "export it again (Training tab, or python -m animate.training with --max_steps=<its last step>)"
            )
            raise CheckpointError(
                f"The model in {folder} is incomplete or does not match its own configs ({error}); {fix}."
            ) from error
        files = sorted(folder.glob("*/*.safetensors"))
    else:
        profile = "musepose" if isinstance(model, ModelEntry) and model.kind == "musepose" else "animate_anyone"
        weights_dir = folder.parent if profile == "musepose" else folder
        pipeline = load_released_pipeline(weights_dir, profile, torch_dtype=dtype)
        files = [folder / name for name in RELEASED_FILES]
    pipeline.set_progress_bar_config(leave=False)
    return apply_memory_mode(pipeline, memory_mode, device), files


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)
