"""Procedural puppets: deterministic, varied, split into disjoint seeds, with skeletons and masks that fit the body;
and the puppet training samples."""

import time

import cv2
import numpy as np
import pytest
import torch

from animate.training.dataset import PUPPET_SAMPLES, PuppetSamples, make_samples
from animate.training.puppets import Puppet, puppet_seeds, render_clip, render_with_poses
from pose.keypoints import CONFIDENCE_THRESHOLD, NECK


def _joints_on_mask(clip) -> tuple[int, int]:
    """(joints inside the mask grown by 1 pixel, visible joints in the frame) over a clip."""
    on, total = 0, 0
    for frame, mask in zip(clip.poses.frames, clip.masks, strict=True):
        grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8))
        for x, y, confidence in frame.people[0].body if frame.people else []:
            if confidence > CONFIDENCE_THRESHOLD:
                total += 1
                on += bool(grown[int(y * mask.shape[0]), int(x * mask.shape[1])])
    return on, total


def test_a_clip_is_a_pure_function_of_its_seeds():
    first, second = render_clip(3, 4, 3, 64, 96), render_clip(3, 4, 3, 64, 96)
    for name in ("frames", "skeletons", "masks", "reference", "reference_mask"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    np.testing.assert_array_equal(first.poses.frames[2].people[0].body, second.poses.frames[2].people[0].body)


def test_characters_and_motions_vary_with_their_own_seed():
    base = render_clip(3, 4, 2, 64, 96)
    other_character = render_clip(5, 4, 2, 64, 96)
    other_motion = render_clip(3, 6, 2, 64, 96)
    assert Puppet.random(3) != Puppet.random(5)
    assert np.abs(base.frames.astype(int) - other_character.frames).mean() > 10
    assert not np.allclose(base.poses.frames[1].people[0].body, other_motion.poses.frames[1].people[0].body)
    looks = {(p.skin, p.hair_style, p.top_style, p.bottom_style, p.background) for p in map(Puppet.random, range(30))}
    assert len(looks) == 30


def test_heldout_seeds_are_disjoint_from_training_seeds():
    train, heldout = puppet_seeds("train"), puppet_seeds("heldout")
    assert train.stop <= heldout.start
    samples = PuppetSamples(1, 32, 48, split="heldout")
    for index in (0, 1, 10**9):
        character, motion = samples.clip_seeds(index)
        assert character in heldout and motion in heldout and character not in train and motion not in train
    assert all(seed in train for index in range(5) for seed in PuppetSamples(1, 32, 48).clip_seeds(index))
    with pytest.raises(ValueError, match="split"):
        puppet_seeds("test")


def test_the_skeleton_lies_on_the_drawn_body():
    for character, motion in ((0, 0), (7, 11), (puppet_seeds("heldout")[3], puppet_seeds("heldout")[5])):
        clip = render_clip(character, motion, 12, 128, 192)
        on, total = _joints_on_mask(clip)
        assert total >= 12 * 12 and on == total
        # The skeleton image is drawn from those joints: the neck's colour is where the neck is.
        x, y, _ = clip.poses.frames[0].people[0].body[NECK]
        assert clip.skeletons[0, int(y * 192), int(x * 128)].max() > 100


def test_masks_are_non_empty_and_move_smoothly():
    clip = render_clip(2, 9, 24, 128, 192)
    areas = clip.masks.mean(axis=(1, 2))
    assert clip.masks.dtype == bool and ((areas > 0.02) & (areas < 0.6)).all()
    assert 0.02 < clip.reference_mask.mean() < 0.6
    overlaps = [(a & b).sum() / (a | b).sum() for a, b in zip(clip.masks[:-1], clip.masks[1:], strict=True)]
    assert min(overlaps) > 0.5  # consecutive frames at 24 fps: the same body, moved a little
    # Outside the mask is the background: the character's own colours are inside it.
    skin = np.array(Puppet.random(2).skin)
    near_skin = np.abs(clip.frames[0].astype(int) - skin).sum(-1) < 6
    assert near_skin.sum() > 20 and clip.masks[0][near_skin].mean() > 0.9


def test_render_speed():
    for width, height in ((128, 192), (256, 384)):
        render_clip(1, 1, 1, width, height)
        start = time.process_time()
        render_clip(1, 2, 24, width, height)
        print(f"\npuppets at {width}x{height}: {(time.process_time() - start) / 24 * 1e3:.1f} ms per frame")


def test_render_with_poses_follows_the_given_poses():
    clip = render_clip(4, 8, 6, 128, 192)
    driven = render_with_poses(9, clip.poses, 128, 192)
    np.testing.assert_array_equal(driven.skeletons, clip.skeletons)
    overlaps = [(a & b).sum() / (a | b).sum() for a, b in zip(driven.masks, clip.masks, strict=True)]
    assert min(overlaps) > 0.5
    on, total = _joints_on_mask(driven)
    assert on >= 0.95 * total
    assert driven.reference.shape == (192, 128, 3) and driven.reference_mask.any()
    # Another frame shape: the poses' frame is scaled to cover it and centre-cropped.
    wide = render_with_poses(9, clip.poses, 256, 256)
    source, target = clip.poses.frames[0].people[0].body, wide.poses.frames[0].people[0].body
    expected_x, expected_y = source[:, 0] * 128 * 2 / 256, (source[:, 1] * 192 * 2 - 64) / 256
    seen = target[:, 2] > 0
    np.testing.assert_allclose(target[seen, 0], expected_x[seen], atol=1e-5)
    np.testing.assert_allclose(target[seen, 1], expected_y[seen], atol=1e-5)


@pytest.mark.parametrize("num_frames", [1, 4])
def test_puppet_samples_have_the_documented_tensors(num_frames):
    samples = PuppetSamples(num_frames, 64, 96, seed=5, frame_stride=2)
    sample = samples[123]
    assert set(sample) == {"reference", "frames", "poses", "masks"}
    shapes = {name: tuple(tensor.shape) for name, tensor in sample.items()}
    assert shapes == {
        "reference": (3, 96, 64),
        "frames": (num_frames, 3, 96, 64),
        "poses": (num_frames, 3, 96, 64),
        "masks": (num_frames, 1, 96, 64),
    }
    assert all(tensor.dtype == torch.float32 and tensor.is_contiguous() for tensor in sample.values())
    assert -1 <= sample["frames"].min() < 0 < sample["frames"].max() <= 1
    assert -1 <= sample["reference"].min() < 0 < sample["reference"].max() <= 1
    assert sample["poses"].min() == 0 and 0 < sample["poses"].max() <= 1
    assert set(sample["masks"].unique().tolist()) == {0.0, 1.0}
    # The reference is the same character in another pose, not a copy of a target frame.
    assert not torch.equal(sample["reference"], sample["frames"][0])


def test_samples_are_a_pure_function_of_seed_and_index():
    samples = make_samples("puppets", 2, 32, 48, seed=1)
    assert len(samples) == PUPPET_SAMPLES
    first, again = samples[7], make_samples("puppets", 2, 32, 48, seed=1)[7]
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not torch.equal(first["frames"], samples[8]["frames"])
    assert not torch.equal(first["frames"], make_samples("puppets", 2, 32, 48, seed=2)[7]["frames"])
    samples[10**15]  # any non-negative index
    with pytest.raises(IndexError):
        samples[-1]
    with pytest.raises(ValueError, match="puppets"):
        make_samples("no/such/index.json", 1, 32, 48)
