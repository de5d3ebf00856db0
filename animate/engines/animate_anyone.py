"""The Animate Anyone engine (Hu et al. 2023, as Moore-AnimateAnyone and MusePose release it): the driving video's
poses, fitted to the character, drawn as DWPose-style skeletons; ReferenceNet + Pose Guider + motion modules denoise
them in overlapping windows (animate/pipeline.py), decoded window by window and streamed to the writer.

The driving video may be a raw video (poses are extracted, followed, smoothed and fitted to the character through
`pose/`) or an already-extracted skeleton video (used as it is, fitted into the frame).
"""

from __future__ import annotations

import io
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UNetMotionModel

import pose
from animate.checkpoints import RELEASED_FILES, CheckpointError, load_released_pipeline
from animate.device import select_dtype
from animate.export import export_video, generation_settings, side_by_side
from animate.generate import (
    GenerationCancelled,
    GenerationResult,
    GenerationSettings,
    Progress,
    extraction_progress,
    output_size,
    report,
    stop_between_layers,
)
from animate.memory import is_large
from animate.pipeline import AnimateAnyonePipeline, to_uint8
from animate.unet import motion_max_frames
from animate.weights import WEIGHTS_DIR, ModelEntry

SCHEDULERS = {"ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler}


@dataclass
class Skeletons:
    frames: Sequence[np.ndarray]  # (height, width, 3) uint8 skeleton images, possibly drawn on demand
    fps: float
    source: str  # "extracted" or "skeleton video"
    warnings: list[str] = field(default_factory=list)
    poses: pose.PoseSequence | None = None  # the aligned poses, when extracted

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        height, width = self.frames[0].shape[:2]
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
        report(progress, 0.0, "Reading the skeleton video")
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
        report(progress, 0.9 * done, f"Denoising: {counts}, about {left:.0f} s left")

    report(progress, 0.0, f"Generating {num_frames} frames at {width}x{height}")
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
                    report(progress, fraction, f"Decoding and writing: frame {done}/{num_frames}")
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
    report(progress, 1.0, f"Done: {num_frames} frames in {time.monotonic() - started:.0f} s")
    return GenerationResult(path, seed, num_frames, skeletons.fps, warnings, record)


RELEASED_DEFAULTS = {
    "short_side": 512,
    **{
        name: getattr(GenerationSettings, name)
        for name in ("steps", "guidance", "hands", "face", "context_frames", "context_overlap")
    },
    "sensible": {"steps": [10, 100], "guidance": [1.0, 6.0]},
}


def load_pipeline(model: ModelEntry | Path, dtype: torch.dtype) -> tuple[AnimateAnyonePipeline, list[Path]]:
    """A pipeline on the CPU in `dtype`, and the files its weights came from (for the settings record).

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
    return pipeline, files


def write_preview(
    character: np.ndarray,
    skeletons: Skeletons,
    folder: Path,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> tuple[Path, np.ndarray]:
    """What the user checks before spending time on generation: `folder/skeleton.mp4`, the skeleton frames the model
    will follow, and one of them drawn over the character (the most confident one, or the middle one of a skeleton
    video)."""
    frames = skeletons.frames
    if skeletons.poses is not None:
        overlay = pose.preview_on_character(character, skeletons.poses)
    else:
        skeleton = frames[len(frames) // 2]
        size = (skeleton.shape[1], skeleton.shape[0])
        resized = np.asarray(PIL.Image.fromarray(character).resize(size, PIL.Image.LANCZOS))
        drawn = skeleton.max(axis=2, keepdims=True) > 30
        overlay = np.where(drawn, skeleton, (resized * 0.5).astype(np.uint8))
    path = folder / "skeleton.mp4"
    started = time.monotonic()
    with pose.VideoWriter(path, skeletons.fps) as writer:
        for index in range(len(frames)):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled()
            writer.write(frames[index])
            done = index + 1
            if progress is not None and (done % 8 == 0 or done == len(frames)):
                left = (time.monotonic() - started) / done * (len(frames) - done)
                progress(
                    done / len(frames),
                    f"Drawing the skeleton video: frame {done}/{len(frames)}, about {left:.0f} s left",
                )
    return path, overlay


class AnimateAnyoneEngine:
    """The `animate.generate.Engine` of the Animate Anyone family."""

    name = "animate-anyone"
    settings = frozenset({"context_frames", "context_overlap", "scheduler"})

    def defaults(self, folder: Path) -> dict:
        return dict(RELEASED_DEFAULTS)

    def output_size(self, character: tuple[int, int], video: tuple[int, int], settings: GenerationSettings):
        return output_size(*character, settings.short_side)  # the character's aspect: the reference is not cropped

    def preview_size(self, character: tuple[int, int], video: tuple[int, int], settings: GenerationSettings):
        return pose.skeleton_size(*character)  # DWPose's drawing size (short side 512), the limbs' trained widths

    def dtype(self, device: torch.device, precision: str, folder: Path) -> torch.dtype:
        return select_dtype(device, precision, large_model=is_large(folder))

    def load(
        self, model: ModelEntry | Path, dtype: torch.dtype, quantize: str = "none"
    ) -> tuple[AnimateAnyonePipeline, list[Path]]:
        if quantize != "none":
            raise ValueError("8-bit weights are offered for Wan-Animate models only: choose quantize none.")
        return load_pipeline(model, dtype)

    def prepare(self, character, driving_video, width, height, settings, poses, progress=None, cancel=None):
        """The skeleton frames (`Skeletons`), with the slow pose extraction cached in `poses`."""
        if poses.is_skeleton_video(driving_video):
            skeletons = prepare_skeletons(
                character, driving_video, width, height, settings, progress, cancel, poses.weights_dir
            )
            return skeletons, False
        sequence, reused = poses.driving_poses(driving_video, settings, extraction_progress(progress, cancel))
        backend = sequence.backend or settings.backend
        character_pose = poses.character_pose(character, backend, settings.hands, settings.face)
        fitted = fit_to_character(character, sequence, width, height, settings, character_pose, poses.weights_dir)
        return fitted, reused

    def preview(self, character, conditioning, folder, progress=None, cancel=None):
        video, overlay = write_preview(character, conditioning, folder, progress, cancel)
        return video, overlay, []

    generate = staticmethod(generate_video)

    def memory_window(self, settings: GenerationSettings) -> int:
        return settings.context_frames

    def memory_knob(self, settings: GenerationSettings) -> str:
        return f"the window (now {settings.context_frames} frames; Advanced)"
