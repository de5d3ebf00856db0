"""AnimateAnyonePipeline on tiny random components: shapes, determinism, windows, inputs, save/load."""

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from animate.architecture import build_pipeline
from animate.pipeline import AnimateAnyonePipeline
from animate.unet import motion_max_frames
from animate.windows import blend_weights, context_windows

HEIGHT, WIDTH = 64, 48


def make_pipeline(motion: bool = True, seed: int = 0) -> AnimateAnyonePipeline:
    pipeline = build_pipeline("tiny", seed=seed, motion=motion)
    # Fresh models zero-initialise the Pose Guider's output (training starts from "no pose effect"); give it
    # weights so these tests can see whether the pose reaches the UNet.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.nn.init.normal_(pipeline.pose_guider.conv_out.weight, std=1.0)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def pipeline() -> AnimateAnyonePipeline:
    return make_pipeline()


def random_images(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(count)]


REFERENCE = random_images(1, seed=100)[0]
POSES = random_images(7, seed=200)


def generate(pipeline, poses=POSES, reference=REFERENCE, seed=0, **options):
    options = {"num_inference_steps": 2, "context_frames": 4, "context_overlap": 1, **options}
    return pipeline(reference, poses, generator=torch.Generator().manual_seed(seed), **options)


def test_output_shapes_and_range(pipeline):
    output = generate(pipeline)
    assert output.frames.shape == (7, HEIGHT, WIDTH, 3) and output.frames.dtype == np.float32
    assert output.frames.min() >= 0.0 and output.frames.max() <= 1.0 and output.frames.std() > 0.01
    assert output.latents.shape == (1, 4, 7, HEIGHT // 8, WIDTH // 8)
    pil_frames = generate(pipeline, output_type="pil", num_frames=3).frames
    assert len(pil_frames) == 3 and pil_frames[0].size == (WIDTH, HEIGHT)


def test_size_defaults_to_the_reference_rounded_to_multiples_of_8(pipeline):
    reference = np.zeros((70, 53, 3), dtype=np.uint8)
    output = generate(pipeline, reference=reference, num_frames=2, output_type="latent")
    assert output.latents.shape[-2:] == (64 // 8, 48 // 8)


def test_same_seed_same_video_other_seed_other_video(pipeline):
    first, again, other = generate(pipeline, seed=1), generate(pipeline, seed=1), generate(pipeline, seed=2)
    assert np.array_equal(first.frames, again.frames)
    assert np.abs(first.frames - other.frames).max() > 0.05


def test_output_depends_on_reference_and_pose(pipeline):
    # A disconnected input gives exactly zero difference; a random tiny model reacts weakly but clearly.
    base = generate(pipeline, output_type="latent").latents
    other_reference = generate(pipeline, reference=random_images(1, seed=101)[0], output_type="latent").latents
    other_poses = generate(pipeline, poses=random_images(7, seed=201), output_type="latent").latents
    assert (base - other_reference).abs().max() > 2e-3
    assert (base - other_poses).abs().max() > 2e-3


def test_given_initial_latents_are_used(pipeline):
    latents = torch.randn(1, 4, 7, HEIGHT // 8, WIDTH // 8, generator=torch.Generator().manual_seed(5))
    first = generate(pipeline, latents=latents.clone(), seed=1).frames
    second = generate(pipeline, latents=latents.clone(), seed=2).frames  # the generator is then unused
    assert np.array_equal(first, second)


def test_a_frame_by_frame_model_does_not_depend_on_the_windows():
    """With the stage-1 (2D) UNet every frame is denoised on its own, so any window layout and blending must give
    the same frames: this checks that the windowed accumulation and normalisation are exact."""
    image_model = make_pipeline(motion=False)
    one_window = generate(image_model, context_frames=24).frames
    many_windows = generate(image_model, context_frames=3, context_overlap=2).frames
    wrapping = generate(image_model, windows=[[0, 1, 2], [2, 3, 4], [5, 6, 0]], context_blending="uniform").frames
    np.testing.assert_allclose(many_windows, one_window, atol=2e-5)
    np.testing.assert_allclose(wrapping, one_window, atol=2e-5)


def test_windows_longer_than_the_position_encoding_extend_it():
    pipeline = make_pipeline()
    assert motion_max_frames(pipeline.denoising_unet) == 32
    poses = random_images(40, seed=3)
    output = generate(pipeline, poses=poses, num_inference_steps=1, context_frames=40, output_type="latent")
    assert output.latents.shape[2] == 40
    assert motion_max_frames(pipeline.denoising_unet) == 40
    position_tables = [b for n, b in pipeline.denoising_unet.named_buffers() if n.endswith("pos_embed.pe")]
    assert all(table.shape[1] == 40 for table in position_tables)


def test_callback_can_interrupt_within_one_step(pipeline):
    steps_seen = []

    def stop_after_first_step(pipe, step, timestep, tensors):
        steps_seen.append(step)
        pipe._interrupt = True
        return tensors

    output = generate(pipeline, num_inference_steps=5, callback_on_step_end=stop_after_first_step)
    assert output.interrupted and output.frames is None and steps_seen == [0]
    assert not generate(pipeline, num_frames=2).interrupted  # the next call starts afresh


class CountingFrames(Sequence):
    """A lazy skeleton sequence that records which frames were read (as pose.SkeletonFrames is used)."""

    def __init__(self, frames):
        self.frames, self.reads = frames, []

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, index):
        self.reads.append(index)
        return self.frames[index]


def test_pose_frames_are_read_lazily_window_by_window(pipeline):
    frames = CountingFrames(POSES * 2)  # 14 frames, only the first 6 are asked for
    generate(pipeline, poses=frames, num_frames=6, num_inference_steps=1, context_frames=4, context_overlap=2)
    assert sorted(set(frames.reads)) == list(range(6))
    assert frames.reads[:4] == [0, 1, 2, 3]  # one window at a time


def test_decoding_in_chunks_matches_decoding_at_once(pipeline):
    latents = generate(pipeline, output_type="latent").latents
    chunked = torch.cat(list(pipeline.decode_latents(latents, chunk_size=2)))
    whole = torch.cat(list(pipeline.decode_latents(latents, chunk_size=7)))
    assert chunked.shape == (7, 3, HEIGHT, WIDTH)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)


def test_save_and_reload_gives_the_same_video(pipeline, tmp_path):
    pipeline.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "denoising_unet" / "diffusion_pytorch_model.safetensors").is_file()
    reloaded = AnimateAnyonePipeline.from_pretrained(tmp_path / "model")
    reloaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(generate(reloaded).frames, generate(pipeline).frames, atol=1e-5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_frames": 9}, "num_frames must be between 1 and the 7 pose frames, got 9"),
        ({"height": 60}, "height must be a positive multiple of 8, got 60"),
        ({"width": -8}, "width must be a positive multiple of 8, got -8"),
        ({"num_inference_steps": 0}, "num_inference_steps must be at least 1, got 0"),
        ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number >= 0, got nan"),
        ({"context_frames": 0}, "context_frames must be at least 1, got 0"),
        ({"context_overlap": 4}, r"context_overlap must be in \[0, context_frames\), got 4 for 4"),
        ({"windows": [[0, 1, 2], [4, 5, 6]]}, r"context windows leave frames \[3\] uncovered"),
        ({"windows": [[0, 1, 2, 3, 4, 5, 7]]}, r"context windows must be non-empty lists of frame indices in \[0, 7\)"),
        ({"context_blending": "gauss"}, "context_blending must be 'ramp' or 'uniform', got 'gauss'"),
        ({"clip_resize": "pad"}, "clip_resize must be 'squash' or 'crop', got 'pad'"),
        ({"output_type": "mp4"}, "output_type must be one of"),
        ({"decode_chunk_size": 0}, "decode_chunk_size must be at least 1, got 0"),
        ({"latents": torch.zeros(1, 4, 7, 8, 8)}, r"latents must have shape \(1, 4, 7, 8, 6\), got \(1, 4, 7, 8, 8\)"),
    ],
)
def test_check_inputs_names_the_bad_value(pipeline, options, message):
    with pytest.raises(ValueError, match=message):
        generate(pipeline, **options)


def test_check_inputs_rejects_empty_poses_and_bad_reference(pipeline):
    with pytest.raises(ValueError, match="pose_frames is empty"):
        generate(pipeline, poses=[])
    with pytest.raises(ValueError, match="reference_image must be a PIL image or an array, got str"):
        pipeline("character.png", POSES)


@pytest.mark.parametrize(
    ("frames", "context", "overlap"), [(1, 24, 4), (24, 24, 4), (25, 24, 4), (100, 24, 4), (97, 16, 8)]
)
def test_context_windows_cover_every_frame_without_wrapping(frames, context, overlap):
    windows = context_windows(frames, context, overlap)
    assert sorted({frame for window in windows for frame in window}) == list(range(frames))
    for window in windows:
        assert window == list(range(window[0], window[0] + len(window)))  # consecutive: never wraps
        assert len(window) == min(context, frames) and window[-1] < frames
    for previous, current in zip(windows, windows[1:], strict=False):
        assert previous[-1] - current[0] + 1 >= overlap  # neighbours overlap by at least `overlap`


def test_blend_weights_fall_towards_window_edges():
    weights = blend_weights(8, overlap=3)
    assert torch.equal(weights, weights.flip(0)) and (weights > 0).all()
    assert weights[0] < weights[1] < weights[2] < weights[3] == 1.0
    assert torch.equal(blend_weights(8, overlap=3, mode="uniform"), torch.ones(8))


def test_window_callback_reports_every_window_and_can_stop_mid_step(pipeline):
    seen = []

    def after_window(pipe, step, window, windows):
        seen.append((step, window, windows))
        if (step, window) == (1, 0):
            pipe._interrupt = True

    output = generate(pipeline, num_inference_steps=3, callback_on_window_end=after_window)
    assert seen == [(0, 0, 2), (0, 1, 2), (1, 0, 2)]  # 7 frames in windows of 4: two windows per step
    assert output.interrupted
