"""PatchVAE (the built-in model's autoencoder) and the VAE trainer."""

import json

import numpy as np
import torch

from animate.architecture import ARCHITECTURES, build_pipeline
from animate.patch_vae import PatchVAE
from animate.pipeline import AnimateAnyonePipeline
from animate.training.vae import VAEConfig, train


def test_patch_vae_has_the_autoencoder_kl_interface():
    vae = PatchVAE(latent_channels=8, patch_size=8, channels=32, layers=1)
    images = torch.rand(2, 3, 48, 32) * 2 - 1
    posterior = vae.encode(images).latent_dist
    assert posterior.mean.shape == (2, 8, 6, 4) and posterior.sample(torch.Generator().manual_seed(0)).shape == (
        2,
        8,
        6,
        4,
    )
    assert posterior.kl().shape == (2,)
    assert vae.decode(posterior.mean).sample.shape == images.shape


def test_pipeline_with_a_patch_vae_saves_reloads_and_generates(tmp_path):
    pipeline = build_pipeline("small", seed=0)
    assert isinstance(pipeline.vae, PatchVAE) and pipeline.vae_scale_factor == 8
    pipeline.save_pretrained(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "model_index.json").read_text())["vae"] == ["animate.patch_vae", "PatchVAE"]
    reloaded = AnimateAnyonePipeline.from_pretrained(tmp_path / "model", use_safetensors=True)
    reloaded.set_progress_bar_config(disable=True)
    frames = [np.full((96, 64, 3), 40 * i, np.uint8) for i in range(3)]
    output = reloaded(np.zeros((96, 64, 3), np.uint8), frames, num_inference_steps=1, output_type="latent")
    assert output.latents.shape == (1, 8, 3, 12, 8)


def test_vae_training_learns_and_sets_the_latent_scale(tmp_path):
    config = VAEConfig(output=str(tmp_path / "run"), steps=30, batch_size=4, crop=32, warmup_steps=5, log_every=10,
                       save_every=15, num_workers=0)  # fmt: skip
    folder = train(config)
    vae = ARCHITECTURES["small"].vae_model.from_pretrained(folder)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [10, 20, 30]
    assert records[-1]["l1"] < records[0]["l1"]  # it learns (a fresh model starts far off)
    with torch.no_grad():
        latents = vae.encode(torch.rand(4, 3, 32, 32) * 2 - 1).latent_dist.mean * vae.config.scaling_factor
    assert vae.config.scaling_factor != 1.0 and 0.3 < latents.std() < 3.0
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
