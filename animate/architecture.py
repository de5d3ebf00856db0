"""Named model sizes, and building an AnimateAnyonePipeline with fresh weights from one of them.

"sd15" is the released model's shape (SD1.5 UNet, sd-vae-ft-mse, CLIP ViT-L/14, Pose Guider (16, 32, 96, 256),
AnimateDiff v2 motion modules); "tiny" is for tests (a few hundred thousand parameters, same code paths).
Training from scratch starts from `build_pipeline`; fine-tuning starts from released or saved weights instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from animate.checkpoints import ANIMATE_ANYONE_SCHEDULER
from animate.patch_vae import PatchVAE
from animate.pipeline import AnimateAnyonePipeline, clip_processor
from animate.pose_guider import PoseGuider

SD15_UNET = {
    "act_fn": "silu",
    "attention_head_dim": 8,  # legacy name: the number of heads in SD1.5
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD_VAE = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 256,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
CLIP_VIT_L14 = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}


@dataclass(frozen=True)
class Architecture:
    name: str
    unet: dict  # UNet2DConditionModel config, shared by ReferenceNet and the denoising UNet
    vae: dict  # the VAE's config (for `vae_model`)
    image_encoder: dict  # CLIPVisionConfig arguments; projection_dim must equal the UNet's cross_attention_dim
    pose_guider_channels: tuple[int, ...]  # one stride-2 stage per entry after the first: 2^(n-1) = VAE factor
    motion_max_frames: int = 32  # temporal position encoding length
    motion_num_attention_heads: int = 8
    scheduler: dict = field(default_factory=lambda: dict(ANIMATE_ANYONE_SCHEDULER))
    vae_model: type = AutoencoderKL  # AutoencoderKL, or PatchVAE for a VAE trained from scratch on a CPU


ARCHITECTURES = {
    "sd15": Architecture("sd15", SD15_UNET, SD_VAE, CLIP_VIT_L14, (16, 32, 96, 256)),
    "tiny": Architecture(
        "tiny",
        unet={
            **SD15_UNET,
            "block_out_channels": [32, 64],
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "layers_per_block": 1,
            "cross_attention_dim": 32,
            "attention_head_dim": 4,
            "sample_size": 8,
        },
        vae={**SD_VAE, "block_out_channels": [16, 16, 16, 16], "layers_per_block": 1, "norm_num_groups": 8},
        image_encoder={
            **CLIP_VIT_L14,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "patch_size": 8,
            "image_size": 32,
            "projection_dim": 32,
        },
        pose_guider_channels=(8, 16, 16, 32),
        motion_num_attention_heads=4,
    ),
    # The built-in model (weights/tiny/): sized so that 48 frames at 128x192 generate within a minute on 2 CPU
    # cores. Its image encoder is never trained (frozen at its random initialisation): appearance reaches the UNet
    # through reference attention, the encoder only adds a global summary of the reference.
    "small": Architecture(
        "small",
        unet={
            **SD15_UNET,
            "block_out_channels": [32, 64, 128],
            "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            "layers_per_block": 1,
            "cross_attention_dim": 128,
            # One head per attention layer (head size 32 and 64): PyTorch's CPU attention kernel is slow for tiny
            # heads, and SD1.5's 8 heads would be 4 channels each here. Measured on 2 cores: a UNet training step
            # (forward and backward) takes 28 ms per frame with one head against 55 ms with 8.
            "attention_head_dim": 1,
            "sample_size": 24,
            "in_channels": 8,  # the VAE's latent channels (SD: 4; a wider latent blurs less)
            "out_channels": 8,
        },
        vae={"latent_channels": 8, "patch_size": 8, "channels": 128, "layers": 2, "refine_channels": 16},
        image_encoder={
            **CLIP_VIT_L14,
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "patch_size": 16,
            "image_size": 64,
            "projection_dim": 128,
        },
        pose_guider_channels=(16, 32, 64, 128),
        motion_num_attention_heads=1,  # as its spatial attention: 8 heads of 4 channels are slow on a CPU
        vae_model=PatchVAE,
    ),
}


def build_pipeline(
    architecture: Architecture | str, seed: int = 0, motion: bool = True, device: str | torch.device = "cpu"
) -> AnimateAnyonePipeline:
    """A pipeline with freshly initialised weights (diffusers' and transformers' own initialisation, seeded).

    `motion=False` gives the stage-1 model (a 2D denoising UNet). On the "meta" device nothing is allocated.
    """
    if isinstance(architecture, str):
        architecture = ARCHITECTURES[architecture]
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        vae = architecture.vae_model.from_config(architecture.vae)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**architecture.image_encoder))
        reference_unet = UNet2DConditionModel.from_config(architecture.unet)
        denoising_unet = UNet2DConditionModel.from_config(architecture.unet)
        if motion:
            adapter = motion_adapter(
                architecture.unet, architecture.motion_num_attention_heads, architecture.motion_max_frames
            )
            denoising_unet = UNetMotionModel.from_unet2d(denoising_unet, adapter, load_weights=device != "meta")
        pose_guider = PoseGuider(
            conditioning_embedding_channels=architecture.unet["block_out_channels"][0],
            block_out_channels=architecture.pose_guider_channels,
        )
    image_size = architecture.image_encoder["image_size"]
    return AnimateAnyonePipeline(
        vae=vae,
        image_encoder=image_encoder,
        reference_unet=reference_unet,
        denoising_unet=denoising_unet,
        pose_guider=pose_guider,
        scheduler=DDIMScheduler(**architecture.scheduler),
        feature_extractor=clip_processor(image_size),
    )


def motion_adapter(unet_config: Mapping, num_attention_heads: int, max_frames: int = 32) -> MotionAdapter:
    """New AnimateDiff v2 motion modules (with the mid-block one) for a 2D UNet of this config, randomly initialised."""
    return MotionAdapter(
        block_out_channels=tuple(unet_config["block_out_channels"]),
        motion_layers_per_block=unet_config["layers_per_block"],
        motion_num_attention_heads=num_attention_heads,
        motion_max_seq_length=max_frames,
        use_motion_mid_block=True,
    )
