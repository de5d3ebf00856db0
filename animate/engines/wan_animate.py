"""The Wan-Animate engine (Wan2.2-Animate-14B, Wan team 2025, Apache-2.0) through diffusers' `WanAnimatePipeline`.

Wan-Animate follows three videos made from the driving video, which the official release builds with a separate
preprocessing script and its own detectors; here they come from our pose stage (`pose/`, drawn and cut as the official
functions do: pose/wan.py, tested pixel-exact against them):

    pose video   the driving skeletons in Wan's drawing style, retargeted to the character's proportions unless the
                 alignment is "none"
    face video   the dancer's face cut from each driving frame (Wan's face box), for the motion encoder
    background   replace mode only: the driving frame with the dancer's (dilated, blocked) mask blacked out, and the
    and mask     mask itself (white: where the character is painted in)

Generation runs in segments of `segment_frames` (4n+1) frames, each starting from the last frame of the one before,
as the pipeline's own `__call__` does (tests check the frames are the same); unlike it, this loop builds each segment's
inputs when it needs them and streams the decoded frames to the writer, so memory stays that of one segment however
long the video.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch

import pose
from animate.checkpoints import CheckpointError
from animate.device import cpu_has_fast_bf16, select_dtype
from animate.export import export_video, generation_settings
from animate.generate import (
    QUANTIZATIONS,
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
from animate.weights import ModelEntry
from pose.wan import (
    WanPose,
    block_mask,
    dilate_person_mask,
    draw_wan_pose,
    face_box,
    face_crop,
    padding_resize,
    replacement_background,
    retarget,
    wholebody_to_wan,
)

WAN_PIPELINE_CLASS = "WanAnimatePipeline"  # model_index.json's _class_name of a saved Wan-Animate pipeline
DEFAULT_PROMPT = "视频中的人在做动作"  # "the person in the video is moving": the official generate.py's default
PREVIOUS_FRAMES = 1  # frames each segment takes from the one before (the pipeline's default; the official uses 1)
FACE_SIZE = 512  # the official face crops' size; the pipeline resizes them to the motion encoder's input
FACE_CONFIDENCE = 0.3  # mean face-point confidence above which a frame's face counts as found

WAN_DEFAULTS = {
    "steps": 20,  # the official default
    "guidance": 1.0,  # the official default: no classifier-free guidance (one transformer call per step)
    "short_side": 720,  # Wan-Animate's 1280x720 area
    "segment_frames": 77,
    "hands": True,
    "face": True,
    "sensible": {"steps": [4, 50], "guidance": [1.0, 5.0]},
}


def load_wan_pipeline(model: ModelEntry | Path, dtype: torch.dtype, quantize: str = "none"):
    """The pipeline on the CPU: every model in `dtype` but the VAE, which stays in fp32 (diffusers' advice for Wan:
    its decoder loses detail in half precision); with `quantize="int8"` the transformer's weights in 8 bits
    (torchao's weight-only int8: 14B parameters in about 17 GB instead of 35). Returns it and its weight files."""
    from diffusers import WanAnimatePipeline  # imported here: only Wan models pay for it

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantize!r}: use {' or '.join(QUANTIZATIONS)}.")
    folder = Path(model.path if isinstance(model, ModelEntry) else model)
    if isinstance(model, ModelEntry) and model.missing:
        raise CheckpointError(f"The model {model.name} is not complete. {model.missing}")
    try:
        parts = {"transformer": _int8_transformer(folder, dtype)} if quantize == "int8" else {}
        pipeline = WanAnimatePipeline.from_pretrained(
            folder, torch_dtype={"default": dtype, "vae": torch.float32}, use_safetensors=True, **parts
        )
    except (OSError, ValueError) as error:
        raise CheckpointError(
            f"The Wan-Animate model in {folder} is incomplete or does not match its configs ({error}). Download it "
            "again: python -m animate.weights download --only wan_animate"
        ) from error
    _check_every_weight_was_loaded(pipeline, folder)
    pipeline.set_progress_bar_config(leave=False)
    return pipeline, sorted(folder.glob("*/*.safetensors"))


def _check_every_weight_was_loaded(pipeline, folder: Path) -> None:
    """Raises CheckpointError naming the weights a model expects and its folder's files lack: diffusers and
    transformers leave such weights at their random start with a log line, which would make noise, not video.
    (Reads only the files' headers; a weight tied to one that is present, like UMT5's embeddings, counts.)
    Not yet run on the released 14B files, whose names diffusers' conversion set: if it ever refuses them wrongly,
    the message names the weights."""
    from safetensors import safe_open

    for name, model in pipeline.components.items():
        if not isinstance(model, torch.nn.Module):
            continue
        stored = set()
        for path in sorted((folder / name).glob("*.safetensors")):
            with safe_open(path, framework="pt") as file:
                stored.update(file.keys())
        # Parameters only: buffers (rotary tables and the like) may be computed at load time rather than stored.
        parameters = dict(model.named_parameters(remove_duplicate=False))
        present = {id(parameters[key]) for key in stored if key in parameters}
        missing = sorted(key for key, tensor in parameters.items() if key not in stored and id(tensor) not in present)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise CheckpointError(
                f"The Wan-Animate model in {folder} lacks {len(missing)} weight(s) of its {name}: {shown}. Its "
                "files are incomplete or from another model; download it again: "
                "python -m animate.weights download --only wan_animate"
            )


def _int8_transformer(folder: Path, dtype: torch.dtype):
    """The transformer with its linear layers' weights in int8 (torchao, through diffusers' quantization config);
    the computation stays in `dtype`."""
    from diffusers import TorchAoConfig, WanAnimateTransformer3DModel

    try:
        from torchao.quantization import Int8WeightOnlyConfig
    except ImportError as error:
        raise ValueError("8-bit weights need torchao: pip install torchao==0.18.0 (see requirements.txt).") from error
    config = TorchAoConfig(Int8WeightOnlyConfig())
    return WanAnimateTransformer3DModel.from_pretrained(
        folder, subfolder="transformer", quantization_config=config, torch_dtype=dtype, use_safetensors=True
    )


@dataclass
class WanConditioning:
    """What Wan-Animate follows, one entry per output frame, made by `prepare_wan`.

    Poses, face boxes and masks are small and kept; the driving frames they are cut from are read again when a
    segment needs them (`segment_inputs`), so nothing here grows with the video's pixels.
    """

    driving_video: Path
    stride: int
    source_frames: list[int]  # the driving frame (at the stride) of each output frame
    poses: list[WanPose | None]  # per output frame, in pixels of the output; None where nobody was found
    face_boxes: list[tuple[int, int, int, int]] | None  # per driving frame (x1, x2, y1, y2); None: no face anywhere
    masks: list[bytes] | None  # per driving frame, the blocked person mask at the output size (PNG); replace only
    reference: np.ndarray  # the character padded to the output size, as the pipeline gets it
    fps: float
    mode: str
    size: tuple[int, int]  # (width, height) of the output
    warnings: list[str] = field(default_factory=list)
    source: str = "extracted"

    def __len__(self) -> int:
        return len(self.source_frames)

    def pose_image(self, index: int) -> np.ndarray:
        pose_ = self.poses[index]
        width, height = self.size
        return draw_wan_pose((height, width), pose_) if pose_ is not None else np.zeros((height, width, 3), np.uint8)

    def mask(self, source: int) -> np.ndarray:
        return np.asarray(PIL.Image.open(io.BytesIO(self.masks[source])))

    def frames(self, indices: Sequence[int]) -> Iterator[dict[str, np.ndarray]]:
        """For each output frame in `indices` (in any order, repeats allowed): its pose image, face crop and, in
        replace mode, the driving frame, background and mask (0/255) at the output size, read from the driving video
        in one pass."""
        sources = [self.source_frames[index] for index in indices]
        wanted, first = set(sources), min(sources)
        kept = {}
        frames = pose.read_frames(
            self.driving_video, start=first * self.stride, stride=self.stride, max_frames=max(sources) - first + 1
        )
        for number, frame in enumerate(frames, start=first):
            if number in wanted:
                kept[number] = frame
        width, height = self.size
        for index, source in zip(indices, sources, strict=True):
            frame = kept[source]
            inputs = {"pose": self.pose_image(index)}
            if self.face_boxes is None:
                inputs["face"] = np.zeros((FACE_SIZE, FACE_SIZE, 3), np.uint8)
            else:
                inputs["face"] = face_crop(frame, self.face_boxes[source], FACE_SIZE)
            if self.mode == "replace":
                mask = self.mask(source)
                resized = np.asarray(PIL.Image.fromarray(frame).resize((width, height), PIL.Image.BILINEAR))
                inputs["driving"] = resized
                inputs["background"] = replacement_background(resized, mask)
                inputs["mask"] = mask * 255
            yield inputs


def prepare_wan(
    character: np.ndarray,
    driving_video: str | os.PathLike,
    width: int,
    height: int,
    settings: GenerationSettings,
    poses,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> tuple[WanConditioning, bool]:
    """Wan-Animate's pose, face and (replace mode) mask inputs from the driving video, through the pose stage (the
    poses are cached in `poses`, an animate.jobs.PoseCache), and whether the poses were reused."""
    if settings.mode not in ("animate", "replace"):
        raise ValueError(f"Unknown mode {settings.mode!r}: use animate or replace.")
    if settings.segment_frames % 4 != 1:
        raise ValueError(f"The segment length must be 4n+1 frames (77, 81, ...); got {settings.segment_frames}.")
    if poses.is_skeleton_video(driving_video):
        raise ValueError(
            "Wan-Animate needs the raw driving video, not a skeleton video: it also follows the dancer's face (and, "
            "in replace mode, the background). Upload the original video."
        )
    # The face keypoints are what the face crops are cut by, so they are always detected (Wan's pose video never
    # draws them; the Face option is Animate Anyone's).
    settings = dataclasses.replace(settings, face=True)
    sequence, reused = poses.driving_poses(driving_video, settings, extraction_progress(progress, cancel))
    warnings = []
    if sequence.missing_frames:
        warnings.append(f"No person was found in {len(sequence.missing_frames)} of {len(sequence)} driving frames.")

    # Output frames: the driving frames, or resampled to another frame rate over the same duration.
    fps = settings.fps or sequence.fps
    count = max(1, round(len(sequence) * fps / sequence.fps))
    source_frames = [min(len(sequence) - 1, round(index * sequence.fps / fps)) for index in range(count)]
    if settings.fps and abs(fps - sequence.fps) > 1e-3:
        warnings.append(
            f"Resampled from {sequence.fps:g} to {fps:g} fps: {len(sequence)} driving frames become {count}, "
            "the duration and the audio stay the same."
        )

    driving = [
        wholebody_to_wan(frame.people[0].to_wholebody(sequence.width, sequence.height), sequence.width, sequence.height)
        if frame.people
        else None
        for frame in sequence.frames
    ]
    placed = _aligned_poses(character, driving, settings, poses, sequence.backend, warnings)
    face_boxes = _face_boxes(sequence, driving, warnings)
    masks = None
    if settings.mode == "replace":
        masks = _person_masks(driving_video, settings, len(sequence), width, height, progress, cancel)
    reference = padding_resize(character, height, width)
    return (
        WanConditioning(
            driving_video=Path(driving_video),
            stride=settings.stride,
            source_frames=source_frames,
            poses=[_fit(placed[source], width, height) for source in source_frames],
            face_boxes=face_boxes,
            masks=masks,
            reference=reference,
            fps=fps,
            mode=settings.mode,
            size=(width, height),
            warnings=warnings,
        ),
        reused,
    )


def _aligned_poses(character, driving, settings, poses, backend, warnings) -> list[WanPose | None]:
    """The driving poses, retargeted to the character's proportions (Wan's retargeting) in animate mode unless the
    alignment is "none"; replace mode keeps the dancer's own (the character takes their place)."""
    if settings.mode == "replace" or settings.align == "none":
        return driving
    found = poses.character_pose(character, backend or settings.backend, settings.hands, settings.face)
    first = next((pose_ for pose_ in driving if pose_ is not None), None)
    if not found.people or first is None:
        warnings.append(
            "No person was found in the character image, so the poses are not fitted to its proportions. Use a "
            "character image that shows the whole body."
        )
        return driving
    height, width = character.shape[:2]
    reference = wholebody_to_wan(found.people[0].to_wholebody(width, height), width, height)
    present = [index for index, pose_ in enumerate(driving) if pose_ is not None]
    retargeted = retarget(first, reference, [driving[index] for index in present])
    aligned: list[WanPose | None] = [None] * len(driving)
    for index, pose_ in zip(present, retargeted, strict=True):
        aligned[index] = pose_
    return aligned


def _fit(pose_: WanPose | None, width: int, height: int) -> WanPose | None:
    """The pose scaled into a width x height canvas (aspect kept, centred), confidences unchanged."""
    if pose_ is None:
        return None
    scale = min(width / pose_.width, height / pose_.height)
    offset = np.array([(width - pose_.width * scale) / 2, (height - pose_.height * scale) / 2])

    def moved(points: np.ndarray) -> np.ndarray:
        points = points.copy()
        points[:, :2] = points[:, :2] * scale + offset
        return points

    face = None if pose_.face is None else moved(pose_.face)
    return WanPose(moved(pose_.body), moved(pose_.left_hand), moved(pose_.right_hand), face, width, height)


def _face_boxes(sequence, driving, warnings) -> list[tuple[int, int, int, int]] | None:
    """Wan's face box of each driving frame; a frame whose face was not found takes the nearest frame's box, so the
    crops stay steady. None (with a warning) when no frame shows a face."""
    shape = (sequence.height, sequence.width)
    boxes = [
        face_box(pose_.face[1:], image_shape=shape)
        if pose_ is not None and pose_.face[1:, 2].mean() > FACE_CONFIDENCE
        else None
        for pose_ in driving
    ]
    found = [index for index, box in enumerate(boxes) if box is not None]
    if not found:
        warnings.append(
            "No face was found in the driving video: the face video is blank, so the character's expressions and "
            "head motion are the model's guess. A video where the dancer's face is visible works better."
        )
        return None
    if len(found) < len(boxes):
        warnings.append(f"No face was found in {len(boxes) - len(found)} of {len(boxes)} driving frames: the nearest "
                        "frame's face box is used there.")  # fmt: skip
    nearest = np.searchsorted(found, np.arange(len(boxes)))
    for index in range(len(boxes)):
        if boxes[index] is None:
            candidates = [found[max(nearest[index] - 1, 0)], found[min(nearest[index], len(found) - 1)]]
            boxes[index] = boxes[min(candidates, key=lambda other: abs(other - index))]
    return boxes


def _person_masks(driving_video, settings, count, width, height, progress, cancel) -> list[bytes]:
    """Replace mode's mask of each driving frame at the output size: MediaPipe's person mask, dilated and blocked as
    the official defaults do (pose/wan.py), kept as PNG (a 0/1 image compresses to a few kB)."""
    from pose.segment import PersonSegmenter

    masks, found = [], 0
    started = time.monotonic()
    with PersonSegmenter() as segmenter:
        for index, frame in enumerate(pose.read_frames(driving_video, stride=settings.stride, max_frames=count)):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled()
            resized = np.asarray(PIL.Image.fromarray(frame).resize((width, height), PIL.Image.BILINEAR))
            person = segmenter.mask(resized)
            found += bool(person.any())
            blocked = block_mask(dilate_person_mask(person))
            buffer = io.BytesIO()
            PIL.Image.fromarray(blocked).save(buffer, format="PNG")
            masks.append(buffer.getvalue())
            left = (time.monotonic() - started) / (index + 1) * (count - index - 1)
            report(progress, (index + 1) / count, f"Masking the dancer: frame {index + 1}/{count}, {left:.0f} s left")
    if not found:
        raise ValueError(
            "Replace mode found no person in the driving video, so there is nobody to replace. Use a video that "
            "shows a person, or animate mode."
        )
    return masks


def write_wan_preview(
    character: np.ndarray,
    conditioning: WanConditioning,
    folder: Path,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> tuple[Path, np.ndarray, list[str]]:
    """`folder/conditioning.mp4`: the pose video | the face crops | (replace mode) the mask over the driving video,
    side by side as the model gets them; the clearest pose over the character; and what the preview shows."""
    width, height = conditioning.size
    path = folder / "conditioning.mp4"
    started = time.monotonic()
    count = len(conditioning)
    with pose.VideoWriter(path, conditioning.fps) as writer:
        for index, inputs in enumerate(conditioning.frames(range(count))):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled()
            face = np.asarray(PIL.Image.fromarray(inputs["face"]).resize((height, height), PIL.Image.BILINEAR))
            panels = [inputs["pose"], face]
            if conditioning.mode == "replace":
                tint = np.array([255, 60, 60], np.float32)
                shown = inputs["background"].astype(np.float32)
                masked = inputs["mask"][:, :, None] > 0
                original = np.where(masked, 0.5 * inputs["driving"] + 0.5 * tint, shown)
                panels.append(original.astype(np.uint8))
            writer.write(np.concatenate(panels, axis=1))
            left = (time.monotonic() - started) / (index + 1) * (count - index - 1)
            report(progress, (index + 1) / count, f"Drawing the preview: frame {index + 1}/{count}, {left:.0f} s left")
    clearest = max(range(count), key=lambda index: _confidence(conditioning.poses[index]))
    drawn = conditioning.pose_image(clearest)
    overlay = np.where(drawn.max(axis=2, keepdims=True) > 0, drawn, (conditioning.reference * 0.5).astype(np.uint8))
    notes = ["Preview: the pose video | the face crops" + (" | the mask (red) over the driving video."
             if conditioning.mode == "replace" else ".")]  # fmt: skip
    return path, overlay, notes


def _confidence(pose_: WanPose | None) -> float:
    return 0.0 if pose_ is None else float(np.nan_to_num(pose_.body[:, 2]).sum())


def segment_plan(frames: int, segment_frames: int) -> tuple[int, list[int]]:
    """How `frames` output frames are generated: the number of segments, and the output frame each position of the
    padded clip shows (the pipeline's `pad_video_frames`: the clip played back and forth to fill the last segment)."""
    step = segment_frames - PREVIOUS_FRAMES
    segments = max(1, math.ceil((frames - PREVIOUS_FRAMES) / step))
    total = segments * step + PREVIOUS_FRAMES
    order, index, backwards = [], 0, False
    while len(order) < total:
        order.append(index)
        if frames > 1:
            index += -1 if backwards else 1
            if index in (0, frames - 1):
                backwards = not backwards
    return segments, order


def denoise_segments(
    pipeline,
    conditioning: WanConditioning,
    settings: GenerationSettings,
    seed: int,
    progress: Progress | None = None,
) -> Iterator[torch.Tensor]:
    """Yields the generated video segment by segment: (frames, height, width, 3) floats in [0, 1], every output frame
    once, in order. The steps are those of `WanAnimatePipeline.__call__` (diffusers 0.42), one segment's inputs at a
    time."""
    width, height = conditioning.size
    device = pipeline._execution_device
    dtype = pipeline.transformer.dtype
    segment = settings.segment_frames
    count = len(conditioning)
    segments, order = segment_plan(count, segment)
    guided = settings.guidance > 1
    generator = torch.Generator().manual_seed(seed)

    # 1. What stays the same for every segment: the prompt, the character's CLIP features and latents.
    prompt_embeds, negative_embeds = pipeline.encode_prompt(
        prompt=settings.prompt or DEFAULT_PROMPT,
        negative_prompt="",
        do_classifier_free_guidance=guided,
        max_sequence_length=512,
        device=device,
    )
    reference = PIL.Image.fromarray(conditioning.reference)
    image_embeds = pipeline.encode_image(reference, device).to(dtype)
    pixels = pipeline.vae_image_processor.preprocess(reference, height=height, width=width, resize_mode="fill")
    reference_latents = pipeline.prepare_reference_image_latents(pixels.to(device, torch.float32), device=device)
    face_size = pipeline.transformer.config.motion_encoder_size

    def video(frames: list[np.ndarray], size: tuple[int, int], processor=None) -> torch.Tensor:
        images = [PIL.Image.fromarray(frame) for frame in frames]
        processor = processor or pipeline.video_processor
        return processor.preprocess_video(images, height=size[1], width=size[0]).to(device, torch.float32)

    started, previous = time.monotonic(), None
    for number in range(segments):
        start = number * (segment - PREVIOUS_FRAMES)
        inputs = list(conditioning.frames(order[start : start + segment]))
        # 2. The segment's inputs: pose latents, face pixels, the previous segment's last frame (or the background).
        latents = pipeline.prepare_latents(
            1, pipeline.vae.config.z_dim, height, width, segment, torch.float32, device, generator
        )
        pose_latents = pipeline.prepare_pose_latents(video([i["pose"] for i in inputs], (width, height)), device=device)
        faces = video([i["face"] for i in inputs], (face_size, face_size)).to(dtype)
        background = mask = None
        if conditioning.mode == "replace":
            background = video([i["background"] for i in inputs], (width, height))
            mask = video([i["mask"] for i in inputs], (width, height), pipeline.video_processor_for_mask)
        condition = pipeline.prepare_prev_segment_cond_latents(
            previous,
            background_video=background,
            mask_video=mask,
            segment_frame_length=segment,
            start_frame=start,
            height=height,
            width=width,
            prev_segment_cond_frames=PREVIOUS_FRAMES,
            task=conditioning.mode,
            device=device,
        )
        context = torch.cat([reference_latents, condition], dim=2)

        # 3. Denoising.
        pipeline.scheduler.set_timesteps(settings.steps, device=device)
        for step, timestep in enumerate(pipeline.scheduler.timesteps):
            model_input = torch.cat([latents, context], dim=1).to(dtype)
            arguments = dict(
                hidden_states=model_input,
                timestep=timestep.expand(1),
                encoder_hidden_states_image=image_embeds,
                pose_hidden_states=pose_latents.to(dtype),
                return_dict=False,
            )
            noise = pipeline.transformer(**arguments, encoder_hidden_states=prompt_embeds.to(dtype),
                                         face_pixel_values=faces)[0]  # fmt: skip
            if guided:  # the unguided branch sees no face (all -1, as the pipeline does)
                unguided = pipeline.transformer(**arguments, encoder_hidden_states=negative_embeds.to(dtype),
                                                face_pixel_values=faces * 0 - 1)[0]  # fmt: skip
                noise = unguided + settings.guidance * (noise - unguided)
            latents = pipeline.scheduler.step(noise, timestep, latents, return_dict=False)[0]
            done = (number * settings.steps + step + 1) / (segments * settings.steps)
            left = (time.monotonic() - started) / done * (1 - done)
            counts = f"segment {number + 1}/{segments}, step {step + 1}/{settings.steps}"
            report(progress, 0.9 * done, f"Denoising: {counts}, about {left:.0f} s left")

        # 4. Decoding, without the reference frame; later segments drop the frames they took from the one before.
        config = pipeline.vae.config
        mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1).to(device, pipeline.vae.dtype)
        reciprocal = 1.0 / torch.tensor(config.latents_std).view(1, -1, 1, 1, 1).to(device, pipeline.vae.dtype)
        latents = latents.to(pipeline.vae.dtype) / reciprocal + mean  # as the pipeline computes it, to the last bit
        decoded = pipeline.vae.decode(latents[:, :, 1:], return_dict=False)[0]  # (1, 3, frames, height, width)
        previous = decoded[:, :, -PREVIOUS_FRAMES:]
        new = decoded if number == 0 else decoded[:, :, PREVIOUS_FRAMES:]
        new = new[:, :, : max(0, count - (start + (0 if number == 0 else PREVIOUS_FRAMES)))]
        yield pipeline.video_processor.postprocess_video(new, output_type="pt")[0].permute(0, 2, 3, 1)


# Settings recorded apart (seed, steps, guidance) or that only Animate Anyone reads.
IGNORED = ("seed", "steps", "guidance", "context_frames", "context_overlap", "scheduler")


def generate_wan(
    pipeline,
    character: np.ndarray,
    conditioning: WanConditioning,
    output: str | os.PathLike,
    settings: GenerationSettings,
    *,
    driving_video: str | os.PathLike | None = None,
    model_name: str = "",
    model_files: Sequence[Path] = (),
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> GenerationResult:
    """Animates the character with `conditioning` and writes the mp4 (with the driving video's audio), streaming the
    frames segment by segment."""
    width, height = conditioning.size
    count = len(conditioning)
    seed = settings.seed if settings.seed >= 0 else random.randrange(2**31)
    started = time.monotonic()
    report(progress, 0.0, f"Generating {count} frames at {width}x{height}")
    should_stop = cancel.is_set if cancel is not None else lambda: False

    with stop_between_layers(pipeline.components.values(), should_stop), torch.inference_mode():

        def frames() -> Iterator[np.ndarray]:
            done = 0
            for segment in denoise_segments(pipeline, conditioning, settings, seed, progress):
                for frame in (segment * 255).round().to(torch.uint8).cpu().numpy():
                    if settings.side_by_side:  # character | pose | result
                        frame = np.concatenate([conditioning.reference, conditioning.pose_image(done), frame], axis=1)
                    done += 1
                    report(progress, 0.9 + 0.1 * done / count, f"Decoding and writing: frame {done}/{count}")
                    yield frame

        extra = {
            "model": model_name,
            "engine": WanAnimateEngine.name,
            "width": width,
            "height": height,
            "frames": count,
            "fps": conditioning.fps,
            "prompt_used": settings.prompt or DEFAULT_PROMPT,
            "previous_frames": PREVIOUS_FRAMES,
            "warnings": conditioning.warnings,
            **{key: value for key, value in asdict(settings).items() if key not in IGNORED},
        }
        record = generation_settings(
            seed=seed, steps=settings.steps, guidance=settings.guidance, model_files=model_files, extra=extra
        )
        path = export_video(frames(), output, settings=record, driving_video=driving_video, fps=conditioning.fps)
    report(progress, 1.0, f"Done: {count} frames in {time.monotonic() - started:.0f} s")
    return GenerationResult(path, seed, count, conditioning.fps, list(conditioning.warnings), record)


class WanAnimateEngine:
    """The `animate.generate.Engine` of Wan-Animate."""

    name = "wan-animate"
    settings = frozenset({"mode", "segment_frames", "prompt", "fps", "quantize"})

    def defaults(self, folder: Path) -> dict:
        return dict(WAN_DEFAULTS)

    def output_size(self, character: tuple[int, int], video: tuple[int, int], settings: GenerationSettings):
        """Retargeted poses live in the character's frame (the official canvas is the reference image), so animate
        mode keeps the character's aspect; replace mode and unaligned poses keep the driving video's. Sides are
        multiples of 16 (the VAE's 8 times the transformer's 2x2 patches)."""
        follows_character = settings.mode == "animate" and settings.align != "none"
        return output_size(*(character if follows_character else video), settings.short_side, multiple=16)

    def preview_size(self, character: tuple[int, int], video: tuple[int, int], settings: GenerationSettings):
        return self.output_size(character, video, dataclasses.replace(settings, short_side=512))  # the output's frame

    def dtype(self, device: torch.device, precision: str, folder: Path) -> torch.dtype:
        if precision == "auto" and device.type == "cuda":
            # bf16, as the weights are meant to run (fp16 overflows in Wan's attention); Ampere or newer.
            return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
        if precision == "auto" and device.type == "cpu":
            return torch.bfloat16 if is_large(folder) and cpu_has_fast_bf16() else torch.float32
        return select_dtype(device, precision)

    # The rest of the interface is this module's functions.
    load = staticmethod(load_wan_pipeline)
    prepare = staticmethod(prepare_wan)
    preview = staticmethod(write_wan_preview)
    generate = staticmethod(generate_wan)

    def memory_window(self, settings: GenerationSettings) -> int:
        # animate.memory's activation estimate counts SD 1.5 latent frames (8x smaller per side); a Wan segment's
        # latents are 4x fewer frames plus the reference frame. A rough match: bench/gpu_wan.py measures the real peak.
        return (settings.segment_frames - 1) // 4 + 2

    def memory_knob(self, settings: GenerationSettings) -> str:
        knob = f"the segment length (now {settings.segment_frames} frames)"
        return knob if settings.quantize != "none" else f"{knob} or the weights' precision (8-bit weights: int8)"
