"""AnimateAnyonePipeline: a character image + skeleton frames -> video frames (Hu et al. 2023, arXiv 2311.17117).

The semantics follow the reference implementation (Moore-AnimateAnyone's `pipeline_pose2vid_long.py`), which
`tests/test_moore_fixture.py` checks to float tolerance: CLIP image embedding as the one-token cross-attention
context (zeros for the unconditional branch), ReferenceNet run once at timestep 0, Pose Guider features added
after `conv_in`, classifier-free guidance whose unconditional branch has no reference attention but does get the
pose, DDIM with v-prediction. What differs on purpose: context windows never wrap around the clip's end and are
blended with edge-decaying weights (both selectable back to the reference's behaviour), and frames are decoded
window by window so that nothing but the latents grows with the video's length.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel, UNetMotionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

from animate.patch_vae import PatchVAE
from animate.pose_guider import PoseGuider
from animate.reference_attention import ReferenceFeatures, install_reference_attention
from animate.unet import denoise, extend_motion_position_encoding, normalize_motion_modules_per_frame
from animate.windows import blend_weights, context_windows

ImageInput = PIL.Image.Image | np.ndarray
OUTPUT_TYPES = ("np", "pil", "pt", "latent")


@dataclass
class AnimateAnyonePipelineOutput(BaseOutput):
    """`frames`: (frames, H, W, 3) float in [0, 1] for "np", a list of PIL images for "pil", (frames, 3, H, W) for
    "pt", the latents for "latent"; None if the run was interrupted. `latents`: (1, 4, frames, H/8, W/8)."""

    frames: np.ndarray | list[PIL.Image.Image] | torch.Tensor | None
    latents: torch.Tensor
    interrupted: bool = False


class AnimateAnyonePipeline(DiffusionPipeline):
    model_cpu_offload_seq = "image_encoder->reference_unet->pose_guider->denoising_unet->vae"
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        vae: AutoencoderKL | PatchVAE,
        image_encoder: CLIPVisionModelWithProjection,
        reference_unet: UNet2DConditionModel,
        denoising_unet: UNetMotionModel | UNet2DConditionModel,
        pose_guider: PoseGuider,
        scheduler: KarrasDiffusionSchedulers,
        feature_extractor: CLIPImageProcessorPil,
    ):
        super().__init__()
        self.register_modules(
            vae=vae,
            image_encoder=image_encoder,
            reference_unet=reference_unet,
            denoising_unet=denoising_unet,
            pose_guider=pose_guider,
            scheduler=scheduler,
            feature_extractor=feature_extractor,
        )
        if isinstance(vae, PatchVAE):
            self.vae_scale_factor = vae.config.patch_size
        else:
            self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)  # -> [-1, 1]
        self.pose_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_normalize=False)  # [0, 1]
        self.reference_features = ReferenceFeatures()
        install_reference_attention(reference_unet, denoising_unet, self.reference_features)
        if isinstance(denoising_unet, UNetMotionModel):
            normalize_motion_modules_per_frame(denoising_unet)
        self._interrupt = False

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def check_inputs(
        self,
        reference_image: ImageInput,
        pose_frames: Sequence[ImageInput],
        height: int,
        width: int,
        num_frames: int,
        num_inference_steps: int,
        guidance_scale: float,
        latents: torch.Tensor | None,
        context_frames: int,
        context_overlap: int,
        windows: list[list[int]] | None,
        context_blending: str,
        clip_resize: str,
        output_type: str,
        decode_chunk_size: int,
    ) -> None:
        if len(pose_frames) == 0:
            raise ValueError("pose_frames is empty: give at least one skeleton frame")
        if not 1 <= num_frames <= len(pose_frames):
            raise ValueError(f"num_frames must be between 1 and the {len(pose_frames)} pose frames, got {num_frames}")
        for name, size in (("height", height), ("width", width)):
            if size <= 0 or size % self.vae_scale_factor:
                raise ValueError(f"{name} must be a positive multiple of {self.vae_scale_factor}, got {size}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
        if not np.isfinite(guidance_scale) or guidance_scale < 0:
            raise ValueError(f"guidance_scale must be a finite number >= 0, got {guidance_scale}")
        expected_shape = (1, self.vae.config.latent_channels, num_frames, height // self.vae_scale_factor)
        expected_shape += (width // self.vae_scale_factor,)
        if latents is not None and tuple(latents.shape) != expected_shape:
            raise ValueError(f"latents must have shape {expected_shape}, got {tuple(latents.shape)}")
        if windows is None:
            context_windows(num_frames, context_frames, context_overlap)  # raises on bad window settings
        else:
            covered = {frame for window in windows for frame in window}
            if any(not window for window in windows) or not covered <= set(range(num_frames)):
                raise ValueError(f"context windows must be non-empty lists of frame indices in [0, {num_frames})")
            if covered != set(range(num_frames)):
                raise ValueError(f"context windows leave frames {sorted(set(range(num_frames)) - covered)} uncovered")
        if context_blending not in ("ramp", "uniform"):
            raise ValueError(f"context_blending must be 'ramp' or 'uniform', got {context_blending!r}")
        if clip_resize not in ("squash", "crop"):
            raise ValueError(f"clip_resize must be 'squash' or 'crop', got {clip_resize!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if decode_chunk_size < 1:
            raise ValueError(f"decode_chunk_size must be at least 1, got {decode_chunk_size}")

    @torch.no_grad()
    def __call__(
        self,
        reference_image: ImageInput,
        pose_frames: Sequence[ImageInput],
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = 30,
        guidance_scale: float = 3.5,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        context_frames: int = 24,
        context_overlap: int = 4,
        windows: list[list[int]] | None = None,
        context_blending: str = "ramp",
        clip_resize: str = "squash",
        output_type: str = "np",
        decode_chunk_size: int = 8,
        callback_on_step_end: Callable[[AnimateAnyonePipeline, int, int, dict], dict] | None = None,
        callback_on_window_end: Callable[[AnimateAnyonePipeline, int, int, int], None] | None = None,
    ) -> AnimateAnyonePipelineOutput:
        """Animates `reference_image` with the skeletons in `pose_frames`.

        `pose_frames` is any sequence (a lazy one is fine: frames are read window by window) of RGB skeleton
        images; they and the reference are resized to `width` x `height` (default: the reference's size, rounded
        down to a multiple of 8). `windows` replaces the automatic context windows (e.g. the reference's
        wrap-around ones) and `context_blending="uniform"` averages overlaps plainly, as the reference does.
        `clip_resize` chooses how the reference is fitted to the CLIP input: "squash" (the reference's long-video
        pipeline and app) or "crop" (its short pipeline's centre crop). `callback_on_step_end(pipeline, step,
        timestep, {"latents": ...})` runs after every step and `callback_on_window_end(pipeline, step, window,
        windows)` after every window (a step of a long video runs many); set `pipeline._interrupt = True` in either to
        stop before the next window.
        """
        # 1. Defaults and input checks
        if not isinstance(reference_image, PIL.Image.Image | np.ndarray):
            raise ValueError(f"reference_image must be a PIL image or an array, got {type(reference_image).__name__}")
        if isinstance(reference_image, np.ndarray):
            reference_image = PIL.Image.fromarray(reference_image)
        height = height or reference_image.height // self.vae_scale_factor * self.vae_scale_factor
        width = width or reference_image.width // self.vae_scale_factor * self.vae_scale_factor
        num_frames = num_frames or len(pose_frames)
        self.check_inputs(
            reference_image, pose_frames, height, width, num_frames, num_inference_steps, guidance_scale, latents,
            context_frames, context_overlap, windows, context_blending, clip_resize, output_type, decode_chunk_size,
        )  # fmt: skip
        self._interrupt = False
        device = self._execution_device
        do_guidance = guidance_scale > 1.0
        windows = windows or context_windows(num_frames, context_frames, context_overlap)
        if isinstance(self.denoising_unet, UNetMotionModel):
            extend_motion_position_encoding(self.denoising_unet, max(len(window) for window in windows))

        # 2. Reference: CLIP embedding (cross-attention context) and ReferenceNet features, once. The processors are
        # bound again first: another pipeline sharing these UNets (say, one with the same ReferenceNet and a 2D UNet)
        # may have bound them to its own feature store since.
        context = self.prepare_reference(reference_image, height, width, clip_resize, do_guidance)

        # 3. Timesteps and initial noise (kept in float32 whatever the models' precision)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        if latents is None:
            shape = (1, self.vae.config.latent_channels, num_frames, height // self.vae_scale_factor)
            shape += (width // self.vae_scale_factor,)
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
            latents = latents * self.scheduler.init_noise_sigma
        latents = latents.to(device=device, dtype=torch.float32)
        step_kwargs = {"eta": 0.0} if "eta" in inspect.signature(self.scheduler.step).parameters else {}

        # 4. Denoise: every step runs each window and blends the overlapping predictions
        frame_weights = torch.zeros(num_frames, device=device)
        window_weights = []
        for window in windows:
            weights = blend_weights(len(window), context_overlap, context_blending).to(device)
            window_weights.append(weights)
            frame_weights.index_add_(0, torch.tensor(window, device=device), weights)
        try:
            with self.progress_bar(total=len(timesteps) * len(windows)) as progress_bar:
                for step, timestep in enumerate(timesteps):
                    model_output = torch.zeros_like(latents)
                    for index, (window, weights) in enumerate(zip(windows, window_weights, strict=True)):
                        if self.interrupt:
                            break
                        prediction = self.predict_window(
                            latents[:, :, window], timestep, context, pose_frames, window, height, width,
                            guidance_scale if do_guidance else None,
                        )  # fmt: skip
                        model_output[:, :, window] += prediction * weights[:, None, None]
                        progress_bar.update()
                        if callback_on_window_end is not None:
                            callback_on_window_end(self, step, index, len(windows))
                    if self.interrupt:
                        break
                    model_output /= frame_weights[:, None, None]
                    latents = self.scheduler.step(model_output, timestep, latents, **step_kwargs).prev_sample
                    if callback_on_step_end is not None:
                        callback_outputs = callback_on_step_end(self, step, timestep, {"latents": latents})
                        latents = callback_outputs.get("latents", latents)
        finally:
            self.reference_features.clear()
        if self.interrupt:
            return AnimateAnyonePipelineOutput(frames=None, latents=latents, interrupted=True)

        # 5. Decode
        if output_type == "latent":
            return AnimateAnyonePipelineOutput(frames=latents, latents=latents)
        video = torch.cat(list(self.decode_latents(latents, decode_chunk_size)))  # (frames, 3, H, W) in [0, 1]
        if output_type == "pt":
            frames = video
        elif output_type == "np":
            frames = video.permute(0, 2, 3, 1).numpy()
        else:
            frames = [PIL.Image.fromarray(frame) for frame in to_uint8(video)]
        self.maybe_free_model_hooks()
        return AnimateAnyonePipelineOutput(frames=frames, latents=latents)

    def prepare_reference(
        self, image: PIL.Image.Image, height: int, width: int, clip_resize: str, do_guidance: bool
    ) -> torch.Tensor:
        """Runs ReferenceNet on the reference (once per job) so that the denoising UNet's self-attention reads its
        features, and returns the cross-attention context: the CLIP embedding, after a zero one for the
        unconditional branch with guidance, (1 or 2, 1, dim). `reference_features` holds the features until cleared."""
        install_reference_attention(self.reference_unet, self.denoising_unet, self.reference_features)
        image_embeds = self.encode_reference_image(image, clip_resize)  # (1, 1, dim)
        reference_latents = self.encode_reference_latents(image, height, width)
        self.reference_unet(reference_latents, 0, encoder_hidden_states=image_embeds)
        reading = [False, True] if do_guidance else [True]
        self.reference_features.reading = torch.tensor(reading, device=self._execution_device)
        return torch.cat([torch.zeros_like(image_embeds), image_embeds]) if do_guidance else image_embeds

    def encode_reference_image(self, image: PIL.Image.Image | list[PIL.Image.Image], clip_resize: str) -> torch.Tensor:
        """CLIP image embedding as a one-token context, (1, 1, projection_dim); (n, 1, projection_dim) for a list of
        n images, in one batch (training encodes a batch of references per step)."""
        images = image if isinstance(image, list) else [image]
        if clip_resize == "squash":
            size = self.feature_extractor.crop_size
            images = [
                image.convert("RGB").resize((size["width"], size["height"]), PIL.Image.BICUBIC) for image in images
            ]
        pixel_values = self.feature_extractor(images=images, return_tensors="pt").pixel_values
        pixel_values = pixel_values.to(self._execution_device, self.image_encoder.dtype)
        return self.image_encoder(pixel_values).image_embeds.unsqueeze(1)

    def encode_reference_latents(self, image: PIL.Image.Image, height: int, width: int) -> torch.Tensor:
        """The reference's VAE latents (mean of the posterior, scaled), (1, 4, height / 8, width / 8)."""
        pixels = self.image_processor.preprocess(image.convert("RGB"), height=height, width=width)
        pixels = pixels.to(self._execution_device, self.vae.dtype)
        return self.vae.encode(pixels).latent_dist.mean * self.vae.config.scaling_factor

    def encode_poses(self, pose_frames: Sequence[ImageInput], window: list[int], height: int, width: int):
        """Pose Guider features of the window's frames, (frames, channels, height / 8, width / 8).

        Computed per window at every step rather than once for the whole clip: the features have 320 channels at
        latent resolution (80x the latents' size), so keeping them for every frame is what makes the reference's
        memory grow with video length, while recomputing them costs under 1% of a denoising step.
        """
        images = [_to_pil(pose_frames[index]) for index in window]
        pixels = self.pose_processor.preprocess(images, height=height, width=width)
        return self.pose_guider(pixels.to(self._execution_device, self.pose_guider.dtype))

    def predict_window(
        self,
        window_latents: torch.Tensor,
        timestep: torch.Tensor,
        context: torch.Tensor,
        pose_frames: Sequence[ImageInput],
        window: list[int],
        height: int,
        width: int,
        guidance_scale: float | None,
    ) -> torch.Tensor:
        """The guided model output for one window's latents (1, 4, frames, h, w), in float32."""
        videos = context.shape[0]  # 2 with guidance: [unconditional, conditional]
        pose_features = self.encode_poses(pose_frames, window, height, width).repeat(videos, 1, 1, 1)
        model_input = self.scheduler.scale_model_input(window_latents, timestep).repeat(videos, 1, 1, 1, 1)
        output = denoise(self.denoising_unet, model_input, timestep, context, pose_features).float()
        if guidance_scale is None:
            return output
        unconditional, conditional = output.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)

    def decode_latents(self, latents: torch.Tensor, chunk_size: int = 8) -> Iterator[torch.Tensor]:
        """Yields decoded frames, `chunk_size` at a time, as float32 CPU tensors (n, 3, H, W) in [0, 1].

        Streaming this into a video writer keeps memory independent of the video's length.
        """
        frames = latents.shape[2]
        for start in range(0, frames, chunk_size):
            # (n, 4, h, w)
            chunk = latents[0, :, start : start + chunk_size].permute(1, 0, 2, 3)
            chunk = chunk.to(self._execution_device, self.vae.dtype) / self.vae.config.scaling_factor
            with torch.no_grad():
                pixels = self.vae.decode(chunk).sample
            yield (pixels.float() / 2 + 0.5).clamp(0, 1).cpu()


def clip_processor(image_size: int) -> CLIPImageProcessorPil:
    """CLIP's preprocessing (PIL bicubic resize, centre crop, CLIP mean/std) for an encoder of this input size.

    The PIL variant, not transformers' default torchvision one: it reproduces the reference's CLIP inputs exactly.
    """
    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(n, 3, H, W) float in [0, 1] -> (n, H, W, 3) uint8."""
    return (frames.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()


def _to_pil(image: ImageInput) -> PIL.Image.Image:
    return image.convert("RGB") if isinstance(image, PIL.Image.Image) else PIL.Image.fromarray(image).convert("RGB")
