"""A tiny random Wan-Animate pipeline, built from configs with no download: every component of
Wan2.2-Animate-14B-Diffusers (transformer, VAE, UMT5 text encoder and tokenizer, CLIP image encoder and processor,
scheduler) at a few thousand parameters, saved as a WanAnimatePipeline folder.

It produces noise, not animation: it exists so that the Wan-Animate path (preprocessing, segments, memory modes,
export, the app) runs offline on a CPU in seconds, in the tests and for trying the app without the 82 GB download:

    python -m animate.engines.wan_tiny weights/custom/wan-tiny
"""

from __future__ import annotations

import argparse
import json
import string
from pathlib import Path

import torch

MOTION_ENCODER_SIZE = 32  # the face crops' size the tiny motion encoder takes (the real one takes 512)
# The tiny transformer and VAE (bench/gpu_wan.py --cpu-smoke builds them too).
TINY_TRANSFORMER = dict(
    num_attention_heads=2, attention_head_dim=8, in_channels=36, latent_channels=16, out_channels=16, text_dim=16,
    freq_dim=32, ffn_dim=32, num_layers=2, image_dim=8, rope_max_seq_len=32,
    motion_encoder_channel_sizes={str(2**power): 8 for power in range(2, 10)},
    motion_encoder_size=MOTION_ENCODER_SIZE, motion_style_dim=16, motion_dim=4, motion_encoder_dim=16,
    face_encoder_hidden_dim=16, face_encoder_num_heads=2, inject_face_latents_blocks=1, motion_encoder_batch_size=4,
)  # fmt: skip
TINY_VAE = dict(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])


def build_tiny_wan(seed: int = 0):
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanAnimatePipeline, WanAnimateTransformer3DModel
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        PreTrainedTokenizerFast,
        UMT5Config,
        UMT5EncoderModel,
    )

    torch.manual_seed(seed)
    transformer = WanAnimateTransformer3DModel(**TINY_TRANSFORMER)
    vae = AutoencoderKLWan(**TINY_VAE)
    text_encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                   relative_attention_num_buckets=8)
    )  # fmt: skip
    # A character-level tokenizer built here (the real one is umt5-xxl's 256k-word SentencePiece model).
    vocabulary = {
        "<pad>": 0,
        "</s>": 1,
        "<unk>": 2,
        **{letter: 3 + i for i, letter in enumerate(string.ascii_lowercase)},
    }
    words = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                         intermediate_size=16, patch_size=8)
    )  # fmt: skip
    image_processor = CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32})
    # The scheduler of the released pipeline: UniPC on flow-matching sigmas, shift 5.
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    pipeline = WanAnimatePipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        image_processor=image_processor,
        image_encoder=image_encoder,
        transformer=transformer,
    )
    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()  # as from_pretrained leaves them: the text encoder's dropout off
    return pipeline


# Settings that keep it at seconds on a CPU (animate.generate.DEFAULTS_FILE, over the engine's own).
TINY_DEFAULTS = {"short_side": 96, "steps": 4, "segment_frames": 17}


def save_tiny_wan(folder: Path) -> Path:
    from animate.generate import DEFAULTS_FILE  # here: the module's configs import nothing of the app

    build_tiny_wan().save_pretrained(folder)
    (folder / DEFAULTS_FILE).write_text(json.dumps(TINY_DEFAULTS, indent=2) + "\n")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Save a tiny random Wan-Animate pipeline (for offline tests).")
    parser.add_argument("folder", type=Path)
    folder = save_tiny_wan(parser.parse_args(argv).folder)
    print(f"Saved a tiny random WanAnimatePipeline in {folder}")


if __name__ == "__main__":
    main()
