"""`python -m animate.eval`: its metrics, its stage-1 baseline, and the command on a tiny model."""

import json

import numpy as np
import torch
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

from animate.architecture import build_pipeline
from animate.eval import held_out_clips, main, score, spatial_unet
from animate.training.puppets import puppet_seeds


def test_scores_of_the_truth_and_of_a_frozen_copy():
    clip = held_out_clips(1, 6, 64, 96, seed=0)[0]
    perfect = score(clip.frames.astype(np.float32) / 255, clip)
    assert perfect.psnr > 100 and perfect.character_psnr > 100 and perfect.ssim > 0.999 and perfect.flicker < 1e-6
    frozen = np.repeat(clip.frames[:1].astype(np.float32) / 255, 6, axis=0)
    scores = score(frozen, clip)
    # The background does not move, so the whole frame scores better than the character.
    assert scores.character_psnr < scores.psnr < 60
    true_change = np.abs(np.diff(clip.frames.astype(np.float64) / 255, axis=0)).mean()
    assert np.isclose(scores.flicker, true_change)  # a still video misses exactly the true changes


def test_held_out_clips_use_held_out_seeds():
    clips = held_out_clips(2, 2, 64, 96, seed=0)
    assert len(clips) == 2 and not np.array_equal(clips[0].reference, clips[1].reference)
    from animate.training.dataset import PuppetSamples

    seeds = PuppetSamples(2, 64, 96, split="heldout").clip_seeds(0)
    assert all(seed in puppet_seeds("heldout") for seed in seeds)


def test_spatial_unet_is_the_model_without_its_motion_modules():
    """With motion modules that add nothing (zero output projections, as stage 2 starts), the motion UNet and its
    spatial part give the same prediction frame by frame."""
    pipeline = build_pipeline("tiny", seed=0)
    unet = pipeline.denoising_unet
    for module in unet.modules():
        if isinstance(module, AnimateDiffTransformer3D):
            torch.nn.init.zeros_(module.proj_out.weight)
            torch.nn.init.zeros_(module.proj_out.bias)
    image_unet = spatial_unet(unet, pipeline.reference_unet)
    pipeline.reference_features.features = {}
    from animate.reference_attention import ReferenceFeatures, install_reference_attention

    store = ReferenceFeatures()
    install_reference_attention(pipeline.reference_unet, unet, store)
    context = torch.randn(1, 1, 32)
    with torch.no_grad():
        pipeline.reference_unet(torch.randn(1, 4, 8, 6), 0, encoder_hidden_states=context)
        store.reading = torch.tensor([True])
        latents = torch.randn(1, 4, 3, 8, 6)
        video = unet(latents, 500, encoder_hidden_states=context.repeat(3, 1, 1)).sample
        install_reference_attention(pipeline.reference_unet, image_unet, store)  # same names, same features
        frames = image_unet(latents[0].transpose(0, 1), 500, encoder_hidden_states=context.repeat(3, 1, 1)).sample
    torch.testing.assert_close(frames, video[0].transpose(0, 1), atol=1e-5, rtol=0)


def test_eval_command_prints_and_writes_the_table(tmp_path, capsys):
    build_pipeline("tiny", seed=0).save_pretrained(tmp_path / "model")
    result = main(
        ["--model", str(tmp_path / "model"), "--clips", "1", "--frames", "3", "--steps", "1", "--size", "64", "96",
         "--json", str(tmp_path / "scores.json"), "--videos", str(tmp_path / "videos")]
    )  # fmt: skip
    assert result == 0
    printed = capsys.readouterr().out
    assert "| reference copied to every frame |" in printed and "| stage 1 (no motion modules) |" in printed
    scores = json.loads((tmp_path / "scores.json").read_text())["scores"]
    assert set(scores) == {"reference copied to every frame", "stage 1 (no motion modules)", "model (stage 2)"}
    assert (tmp_path / "videos" / "heldout_0.mp4").is_file()
