"""PatchVAE: the built-in small model's autoencoder, with the interface of diffusers' AutoencoderKL.

Why not a small AutoencoderKL: trained from scratch on puppet frames within a CPU budget, diffusers' AutoencoderKL
(and its norm-free AutoencoderTiny) stalled near 18.5 dB held-out PSNR with washed-out colours, below even a
greyscale copy of the frames (20.6 dB), while a plain linear 8x8-patch autoencoder reached 24 dB in 300 steps. So
the encoder starts as that patch projection (a stride-8 convolution) and the decoder ends as its inverse (a
convolution to 8x8 patches, pixel-shuffled into place), with residual convolutions at latent resolution in between
for what a linear map cannot do, and a small full-resolution convolution that smooths the patch seams.

`encode(x).latent_dist` is a diffusers `DiagonalGaussianDistribution` and `decode(z).sample` an image, exactly as
for AutoencoderKL, so the pipeline and the training code use either without knowing which.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKLOutput
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states + self.conv2(F.silu(self.conv1(F.silu(hidden_states))))


class PatchVAE(ModelMixin, ConfigMixin):
    """Images (batch, 3, H, W) in [-1, 1] <-> latents (batch, latent_channels, H / patch_size, W / patch_size)."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        latent_channels: int = 8,
        patch_size: int = 8,  # the downsampling factor (H and W must be multiples of it)
        channels: int = 128,  # width of the latent-resolution layers
        layers: int = 2,  # residual blocks in the encoder and in the decoder
        refine_channels: int = 16,  # width of the final full-resolution convolution
        scaling_factor: float = 1.0,  # set after training to 1 / std of the latents, as SD's 0.18215
    ):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, channels, patch_size, stride=patch_size),
            *(ResidualBlock(channels) for _ in range(layers)),
            nn.SiLU(),
            nn.Conv2d(channels, 2 * latent_channels, 3, padding=1),  # mean and log-variance
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, channels, 3, padding=1),
            *(ResidualBlock(channels) for _ in range(layers)),
            nn.SiLU(),
            nn.Conv2d(channels, in_channels * patch_size**2, 3, padding=1),
            nn.PixelShuffle(patch_size),
        )
        self.refine = nn.Sequential(
            nn.Conv2d(in_channels, refine_channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(refine_channels, in_channels, 3, padding=1),
        )

    def encode(self, sample: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput:
        posterior = DiagonalGaussianDistribution(self.encoder(sample))
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, latents: torch.Tensor, return_dict: bool = True) -> DecoderOutput:
        image = self.decoder(latents)
        image = image + self.refine(image)
        return DecoderOutput(sample=image) if return_dict else (image,)
