"""The denoising UNet: diffusers' `UNetMotionModel` (SD1.5 + AnimateDiff motion modules) with two adjustments.

1. Motion-module GroupNorm statistics per frame. AnimateDiff, and the released Animate Anyone weights, normalise
   each frame on its own before the temporal attention; diffusers' `AnimateDiffTransformer3D` normalises over all
   frames together, which changes the output noticeably (0.56 max difference on the fixture's first UNet call).
   `FrameGroupNorm` replaces those norms with the same parameters (same state-dict keys), so the weights load
   unchanged. It is applied by the pipeline and the training script to whatever UNetMotionModel they are given,
   rather than through a `UNetMotionModel` subclass: diffusers rebuilds a model from its config by reading the
   `__init__` signature, and a subclass would have to restate all of its ~40 arguments.
2. The pose features are added to the output of `conv_in` (the reference's `sample = conv_in(sample) + pose`),
   through a forward hook scoped to one call, since diffusers' UNets have no input for it.

`denoise` is the one model call that inference and training share, for either UNet.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel, UNetMotionModel
from diffusers.models.embeddings import SinusoidalPositionalEmbedding
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

DenoisingUNet = UNet2DConditionModel | UNetMotionModel


class FrameGroupNorm(torch.nn.GroupNorm):
    """GroupNorm of a (batch, channels, frames, height, width) tensor with statistics per frame."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, channels, frames, height, width = hidden_states.shape
        # (batch * frames, channels, height, width)
        per_frame = hidden_states.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
        per_frame = F.group_norm(per_frame, self.num_groups, self.weight, self.bias, self.eps)
        return per_frame.reshape(batch, frames, channels, height, width).permute(0, 2, 1, 3, 4)


def normalize_motion_modules_per_frame(unet: UNetMotionModel) -> None:
    """Swaps every motion module's GroupNorm for a `FrameGroupNorm` with the same parameters (idempotent)."""
    for module in unet.modules():
        if isinstance(module, AnimateDiffTransformer3D) and not isinstance(module.norm, FrameGroupNorm):
            norm = module.norm
            frame_norm = FrameGroupNorm(norm.num_groups, norm.num_channels, norm.eps, norm.affine)
            frame_norm.to(device=norm.weight.device, dtype=norm.weight.dtype)
            if norm.weight.device.type != "meta":
                frame_norm.load_state_dict(norm.state_dict())
            else:
                frame_norm.weight, frame_norm.bias = norm.weight, norm.bias
            module.norm = frame_norm


def motion_max_frames(unet: UNetMotionModel) -> int:
    """How many frames the motion modules' temporal position encoding covers."""
    return unet.config.motion_max_seq_length


def extend_motion_position_encoding(unet: UNetMotionModel, frames: int) -> None:
    """Rebuilds the sinusoidal temporal position encodings to cover `frames` (never shortens them).

    The encoding is a fixed sinusoid, so the first positions keep their exact values; windows longer than the
    trained length (32 in the released weights) then see positions the model never saw in training, as in the
    reference implementation, which rebuilds the same table longer.
    """
    if frames <= motion_max_frames(unet):
        return
    for module in unet.modules():
        if isinstance(module, SinusoidalPositionalEmbedding):
            channels = module.pe.shape[-1]
            module.pe = sinusoidal_position_encoding(frames, channels).to(module.pe.device, module.pe.dtype)
    unet.register_to_config(motion_max_seq_length=frames)


def sinusoidal_position_encoding(length: int, channels: int) -> torch.Tensor:
    """The (1, length, channels) table of AnimateDiff's temporal position encoding (sin on even, cos on odd)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, channels, 2, dtype=torch.float32) * (-math.log(10000.0) / channels))
    table = torch.zeros(1, length, channels)
    table[0, :, 0::2] = torch.sin(position * frequency)
    table[0, :, 1::2] = torch.cos(position * frequency)
    return table


@contextmanager
def pose_features_added_after_conv_in(unet: DenoisingUNet, pose_features: torch.Tensor) -> Iterator[None]:
    """Within the block, `unet.conv_in(x)` returns `conv_in(x) + pose_features`.

    `pose_features` is (batch * frames, channels, height, width) in the UNet's own flattening order (video-major),
    which is how both UNet2DConditionModel (batch = frames) and UNetMotionModel lay out their `conv_in` input.
    """

    def add_pose(module: torch.nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor:
        if output.shape != pose_features.shape:
            raise ValueError(f"pose features {tuple(pose_features.shape)} do not match conv_in's {tuple(output.shape)}")
        return output + pose_features.to(output.dtype)

    handle = unet.conv_in.register_forward_hook(add_pose)
    try:
        yield
    finally:
        handle.remove()


def denoise(
    unet: DenoisingUNet,
    latents: torch.Tensor,
    timesteps: torch.Tensor | int,
    context: torch.Tensor,
    pose_features: torch.Tensor,
) -> torch.Tensor:
    """The UNet's output for video latents (videos, C, frames, h, w), in their layout and the UNet's dtype.

    `timesteps` is one timestep or one per video, `context` the image embedding per video (videos, 1, dim) and
    `pose_features` (videos * frames, C', h, w). Both UNets take the context per frame, as diffusers' AnimateDiff
    pipeline gives it; the stage-1 2D UNet sees each frame on its own, frames in the batch.
    """
    videos, _, frames = latents.shape[:3]
    encoder_hidden_states = context.repeat_interleave(frames, dim=0)  # (videos * frames, 1, dim)
    motion = isinstance(unet, UNetMotionModel)
    if not motion:
        latents = latents.permute(0, 2, 1, 3, 4).flatten(0, 1)  # (videos * frames, C, h, w)
        if torch.is_tensor(timesteps) and timesteps.ndim == 1:
            timesteps = timesteps.repeat_interleave(frames)
    with pose_features_added_after_conv_in(unet, pose_features):
        output = unet(latents.to(unet.dtype), timesteps, encoder_hidden_states=encoder_hidden_states).sample
    if not motion:
        output = output.unflatten(0, (videos, frames)).permute(0, 2, 1, 3, 4)
    return output
