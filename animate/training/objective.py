"""The training objective: the model as one module (ReferenceNet, Pose Guider, denoising UNet) and its loss.

Apart from the data and the loop (train.py), so that a benchmark on a bare GPU machine can run one real training step
with no video or pose libraries installed (bench/gpu.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import PIL.Image
import torch
from accelerate import Accelerator
from diffusers.training_utils import compute_snr

from animate.pipeline import AnimateAnyonePipeline, to_uint8
from animate.unet import denoise

if TYPE_CHECKING:
    from animate.training.config import TrainConfig


def trainable_parameters(pipeline: AnimateAnyonePipeline, stage: int) -> list[torch.nn.Parameter]:
    """Sets `requires_grad` as the stage trains (the VAE and the image encoder never) and returns those parameters."""
    for model in pipeline.components.values():
        if isinstance(model, torch.nn.Module):
            model.requires_grad_(False)
    if stage == 1:
        # As the reference (train_stage_1.py), ReferenceNet's last up block stays frozen: its final layers, like
        # conv_norm_out/conv_out, never reach the loss, since only attn1 inputs are read and the output is discarded.
        frozen = (f"up_blocks.{len(pipeline.reference_unet.up_blocks) - 1}.", "conv_norm_out.", "conv_out.")
        for name, parameter in pipeline.reference_unet.named_parameters():
            parameter.requires_grad_(not name.startswith(frozen))
        pipeline.denoising_unet.requires_grad_(True)
        pipeline.pose_guider.requires_grad_(True)
    else:
        for name, parameter in pipeline.denoising_unet.named_parameters():
            parameter.requires_grad_("motion_modules." in name)
    models = (pipeline.reference_unet, pipeline.denoising_unet, pipeline.pose_guider)
    return [parameter for model in models for parameter in model.parameters() if parameter.requires_grad]


class AnimateAnyoneTrainingModel(torch.nn.Module):
    """ReferenceNet, Pose Guider and denoising UNet as one module whose forward is one prediction, so that
    DistributedDataParallel and DeepSpeed see every trained parameter used in one call (as the reference's `Net`)."""

    def __init__(self, pipeline: AnimateAnyonePipeline):
        super().__init__()
        self.reference_unet = pipeline.reference_unet
        self.denoising_unet = pipeline.denoising_unet
        self.pose_guider = pipeline.pose_guider
        self.reference_features = pipeline.reference_features

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        reference_latents: torch.Tensor,
        image_embeds: torch.Tensor,
        poses: torch.Tensor,
        reading: torch.Tensor,
    ) -> torch.Tensor:
        """The model output (videos, 4, frames, h, w) for noisy latents of the same shape at `timesteps` (videos,).

        `reference_latents` (videos, 4, h, w), `image_embeds` (videos, 1, dim), `poses` (videos, frames, 3, H, W) in
        [0, 1]. A video whose `reading` is False is the unconditional branch exactly as the pipeline runs it at
        inference: zero image embedding and plain self-attention, but the pose features. The reference features
        stay in `reference_features` until the caller clears them (after backward).
        """
        self.reference_unet(reference_latents, 0, encoder_hidden_states=image_embeds)  # at timestep 0, as inference
        self.reference_features.reading = reading
        pose_features = self.pose_guider(poses.flatten(0, 1))  # (videos * frames, C, h, w)
        context = image_embeds * reading[:, None, None]
        return denoise(self.denoising_unet, noisy_latents, timesteps, context, pose_features)


def diffusion_loss(
    accelerator: Accelerator,
    model: torch.nn.Module,
    pipeline: AnimateAnyonePipeline,
    batch: dict[str, torch.Tensor],
    generator: torch.Generator,
    config: TrainConfig,
) -> torch.Tensor:
    """The weighted v-prediction loss of one micro-batch; every random draw comes from `generator` (on the CPU)."""
    device = accelerator.device
    scheduler = pipeline.scheduler
    frames = batch["frames"].to(device)  # (videos, frames, 3, H, W) in [-1, 1]
    videos, num_frames = frames.shape[:2]
    with torch.no_grad(), accelerator.autocast():
        scale = pipeline.vae.config.scaling_factor
        posterior = pipeline.vae.encode(frames.flatten(0, 1)).latent_dist
        # (videos, 4, frames, h, w)
        latents = (posterior.sample(generator) * scale).float().unflatten(0, (videos, num_frames)).transpose(1, 2)
        # The reference image exactly as inference encodes it: posterior mean, and CLIP on the squashed image.
        reference_latents = pipeline.vae.encode(batch["reference"].to(device)).latent_dist.mean.float() * scale
        references = [PIL.Image.fromarray(image) for image in _uint8(batch["reference"])]
        image_embeds = pipeline.encode_reference_image(references, "squash").float()  # (videos, 1, dim)
    timesteps = torch.randint(config.min_timestep, scheduler.config.num_train_timesteps, (videos,), generator=generator)
    reading = torch.rand(videos, generator=generator) >= config.uncond_ratio
    noise = torch.randn(latents.shape, generator=generator)
    noise += config.noise_offset * torch.randn((videos, latents.shape[1], 1, 1, 1), generator=generator)
    timesteps, reading, noise = timesteps.to(device), reading.to(device), noise.to(device)

    noisy_latents = scheduler.add_noise(latents, noise, timesteps)
    target = scheduler.get_velocity(latents, noise, timesteps)
    poses = batch["poses"].to(device)
    prediction = model(noisy_latents, timesteps, reference_latents, image_embeds, poses, reading)
    error = prediction_error(prediction.float(), target.float(), config.temporal_loss_weight)
    if config.snr_gamma:
        # Min-SNR-γ (Hang et al. 2023) as the reference applies it to v-prediction, min(SNR + 1, γ) / (SNR + 1).
        # The paper's min(SNR, γ) / (SNR + 1) would give the zero-SNR last timestep, where the model learns to
        # start from pure noise, no weight at all.
        snr_plus_one = compute_snr(scheduler, timesteps) + 1
        error = error * snr_plus_one.clamp(max=config.snr_gamma) / snr_plus_one
    return error.mean()


def prediction_error(prediction: torch.Tensor, target: torch.Tensor, temporal_weight: float) -> torch.Tensor:
    """The mean squared error of each video (videos, 4, frames, h, w) -> (videos,), plus `temporal_weight` times the
    mean squared frame-to-frame change of the error (0 for one frame)."""
    error = prediction - target
    loss = error.square().mean(dim=(1, 2, 3, 4))
    if temporal_weight and error.shape[2] > 1:
        loss = loss + temporal_weight * error.diff(dim=2).square().mean(dim=(1, 2, 3, 4))
    return loss


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded by a hash of `keys`: draws that depend only on the keys, on any device and after any
    restart (numpy's SeedSequence mixes them, so neighbouring steps get unrelated streams)."""
    high, low = np.random.SeedSequence(keys).generate_state(2)
    return torch.Generator().manual_seed(int(high) << 32 | int(low))


def _uint8(images: torch.Tensor) -> np.ndarray:
    """(n, 3, H, W) in [-1, 1] -> (n, H, W, 3) uint8."""
    return to_uint8((images.float() / 2 + 0.5).clamp(0, 1))
