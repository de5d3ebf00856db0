"""Compatibility proof: our pipeline reproduces Moore-AnimateAnyone's own outputs on the moore_tiny fixture.

The fixture (tests/data/reference/moore_tiny, see its README) is a tiny random model in the released format with
the reference implementation's inputs, initial latents, intermediates and outputs. Everything is loaded through
`load_released_pipeline`, the path a user's downloaded weights take. Tolerances are the fixture's (README §8).
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from animate.checkpoints import load_released_pipeline
from animate.unet import pose_features_added_after_conv_in

CASES = {
    # The short pipeline centre-crops the reference for CLIP; all cases' window settings are the reference's.
    "pose2vid": {"clip_resize": "crop", "context_blending": "uniform"},
    "pose2vid_long_default": {"clip_resize": "squash", "context_blending": "uniform"},
    "pose2vid_long_ctx4_ov1": {
        "clip_resize": "squash",
        "context_blending": "uniform",
        "windows": [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 0, 1]],  # the reference wraps around the clip's end
    },
}


@pytest.fixture(scope="module")
def fixture(reference_dir):
    root = reference_dir / "moore_tiny"
    torch.set_num_threads(2)  # the fixture was made with 2 threads
    pipeline = load_released_pipeline(root / "pretrained_weights")
    pipeline.set_progress_bar_config(disable=True)
    return root, pipeline


def expected(root, case: str, name: str) -> np.ndarray:
    path = root / "expected" / json.loads((root / "expected" / case / "case.json").read_text())["files"][name]
    return np.load(path)


def inputs(root):
    reference = Image.open(root / "inputs" / "ref.png").convert("RGB")
    poses = [Image.open(root / "inputs" / f"pose_{index:02d}.png").convert("RGB") for index in range(8)]
    return reference, poses


def assert_close(actual: torch.Tensor | np.ndarray, reference: np.ndarray, atol: float) -> None:
    actual = actual.detach().numpy() if isinstance(actual, torch.Tensor) else actual
    assert actual.shape == reference.shape
    difference = np.abs(actual - reference).max()
    assert difference <= atol, f"max |difference| {difference:.3g} > {atol}"


@pytest.mark.parametrize(("case", "clip_resize"), [("pose2vid", "crop"), ("pose2vid_long_default", "squash")])
def test_clip_image_embedding(fixture, case, clip_resize):
    root, pipeline = fixture
    reference, _ = inputs(root)
    with torch.no_grad():
        embeds = pipeline.encode_reference_image(reference, clip_resize)
    assert_close(embeds[:, 0], expected(root, case, "clip_image_embeds"), atol=1e-5)
    context = expected(root, case, "unet_call00_encoder_hidden_states")  # [zeros, embeds] with a token axis
    assert_close(torch.cat([torch.zeros_like(embeds), embeds]), context, atol=1e-5)


def test_reference_latents(fixture):
    root, pipeline = fixture
    reference, _ = inputs(root)
    with torch.no_grad():
        latents = pipeline.encode_reference_latents(reference, 96, 80)
    assert_close(latents, expected(root, "pose2vid", "ref_latents"), atol=2e-5)


def test_pose_guider_features(fixture):
    root, pipeline = fixture
    _, poses = inputs(root)
    with torch.no_grad():
        features = pipeline.encode_poses(poses, list(range(8)), 96, 80)  # (frames, C, h, w)
    assert_close(features.permute(1, 0, 2, 3)[None], expected(root, "pose2vid_long_default", "pose_fea"), atol=1e-5)


def test_reference_features(fixture):
    root, pipeline = fixture
    banks = np.load(root / "expected" / "pose2vid" / "reference_banks.npz")
    latents = torch.from_numpy(expected(root, "pose2vid", "ref_latents"))
    context = torch.from_numpy(expected(root, "pose2vid", "unet_call00_encoder_hidden_states"))[1:]
    with torch.no_grad():
        pipeline.reference_unet(latents, 0, encoder_hidden_states=context)
    written = dict(pipeline.reference_features.features)
    pipeline.reference_features.clear()
    assert sorted(written) == sorted(f"{name}.attn1" for name in banks)  # paired by module name
    for name, bank in banks.items():
        assert_close(written[f"{name}.attn1"], bank[1:], atol=1e-4)  # the conditional half


@pytest.mark.parametrize("case", ["pose2vid", "pose2vid_long_default", "pose2vid_long_ctx4_ov1"])
def test_single_denoising_unet_call(fixture, case):
    """One UNet call from the stored inputs. The reference casts its feature bank to float16 even in float32 runs
    (README §7.1); rounding the stored banks the same way resolves that detail at this level."""
    root, pipeline = fixture
    bank_case = "pose2vid" if case == "pose2vid" else "pose2vid_long_default"  # where the banks are stored
    banks = np.load(root / "expected" / bank_case / "reference_banks.npz")
    for name, bank in banks.items():
        pipeline.reference_features.features[f"{name}.attn1"] = torch.from_numpy(bank[1:]).half().float()
    pipeline.reference_features.reading = torch.tensor([False, True])
    sample = torch.from_numpy(expected(root, case, "unet_call00_sample"))  # (2, 4, frames, 12, 10)
    frames = sample.shape[2]
    context = torch.from_numpy(expected(root, case, "unet_call00_encoder_hidden_states")).repeat_interleave(frames, 0)
    pose = torch.from_numpy(expected(root, case, "pose_fea"))[0, :, :frames]  # the first window's frames
    pose = pose.permute(1, 0, 2, 3).repeat(2, 1, 1, 1)  # (2 * frames, C, h, w)
    try:
        with torch.no_grad(), pose_features_added_after_conv_in(pipeline.denoising_unet, pose):
            prediction = pipeline.denoising_unet(sample, 999, encoder_hidden_states=context).sample
    finally:
        pipeline.reference_features.clear()
    assert_close(prediction, expected(root, case, "unet_call00_noise_pred"), atol=2e-5)


def test_ddim_steps(fixture):
    root, pipeline = fixture
    scheduler = pipeline.scheduler
    scheduler.set_timesteps(3)
    assert scheduler.timesteps.tolist() == expected(root, "pose2vid", "timesteps").tolist() == [999, 666, 332]
    latents = torch.from_numpy(expected(root, "pose2vid", "init_latents"))
    for step, timestep in enumerate(scheduler.timesteps):
        output = torch.from_numpy(expected(root, "pose2vid", f"step{step}_guided_model_output"))
        latents = scheduler.step(output, timestep, torch.from_numpy(np.asarray(latents)), eta=0.0).prev_sample
        assert_close(latents, expected(root, "pose2vid", f"step{step}_latents_out"), atol=1e-5)
        latents = expected(root, "pose2vid", f"step{step}_latents_out")


def test_vae_decode(fixture):
    root, pipeline = fixture
    latents = torch.from_numpy(expected(root, "pose2vid", "final_latents"))
    video = torch.cat(list(pipeline.decode_latents(latents, chunk_size=3)))  # (frames, 3, H, W)
    assert_close(video.permute(1, 0, 2, 3)[None], expected(root, "pose2vid", "video"), atol=1e-5)


@pytest.mark.parametrize("case", list(CASES))
def test_end_to_end(fixture, case):
    root, pipeline = fixture
    reference, poses = inputs(root)
    initial_latents = torch.from_numpy(expected(root, case, "init_latents"))
    output = pipeline(
        reference, poses, height=96, width=80, num_frames=8, num_inference_steps=3, guidance_scale=3.5,
        latents=initial_latents, context_frames=4 if "ctx4" in case else 24, context_overlap=1 if "ctx4" in case else 4,
        output_type="pt", **CASES[case],
    )  # fmt: skip
    assert_close(output.latents, expected(root, case, "final_latents"), atol=2e-3)
    assert_close(output.frames.permute(1, 0, 2, 3)[None], expected(root, case, "video"), atol=1e-3)


def test_our_default_windows_differ_from_the_reference_wrap_around(fixture):
    """Guards the test above: the reference's wrap-around windows are a real difference (README §8: >= 0.9)."""
    root, pipeline = fixture
    reference, poses = inputs(root)
    output = pipeline(
        reference, poses, height=96, width=80, num_inference_steps=3, context_frames=4, context_overlap=1,
        latents=torch.from_numpy(expected(root, "pose2vid_long_ctx4_ov1", "init_latents")), output_type="pt",
    )  # fmt: skip
    video = output.frames.permute(1, 0, 2, 3)[None].numpy()
    assert np.abs(video - expected(root, "pose2vid_long_ctx4_ov1", "video")).max() > 0.1
