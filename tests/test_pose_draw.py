"""Skeleton drawing: the DWPose style pixel by pixel, the part switches, confidence colours, lazy frames."""

import cv2
import numpy as np
import pytest
from PIL import Image

from pose import Person, PoseFrame, PoseSequence, SkeletonFrames, draw_pose, overlay_pose
from pose.draw import BODY_COLORS, HAND_POINT_COLOR
from pose.keypoints import L_SHOULDER, NECK, R_ELBOW, R_SHOULDER, R_WRIST


def _t_pose() -> Person:
    """Neck at (256, 100) of a 512 x 512 frame, right arm straight out to the image's left."""
    person = Person.empty()
    for joint, (x, y) in {NECK: (256, 100), R_SHOULDER: (200, 100), R_ELBOW: (120, 100), R_WRIST: (40, 100)}.items():
        person.body[joint] = (x / 512, y / 512, 1.0)
    person.body[L_SHOULDER] = (312 / 512, 100 / 512, 1.0)
    return person


def test_limbs_are_dimmed_palette_ellipses_four_pixels_thick_and_joints_full_colour():
    image = draw_pose(PoseFrame([_t_pose()], 512, 512))
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    # The upper arm (limb 2; x = 160 is 40 px from either joint) in its colour (255, 170, 0) at 60 %.
    np.testing.assert_array_equal(image[100, 160], [153, 102, 0])
    # Across the limb: 4 px either side of the axis, so 9 rows.
    column = image[:, 160].any(axis=1)
    assert column.sum() == 9 and column[96:105].all()
    # Joints are discs of radius 4 in full colour, on top of the limbs.
    np.testing.assert_array_equal(image[100, 120], BODY_COLORS[R_ELBOW])
    np.testing.assert_array_equal(image[104, 120], BODY_COLORS[R_ELBOW])
    assert not image[100, 256 + 100 :].any()  # the left arm past the shoulder was not given
    assert not image[200:].any()


def test_widths_follow_the_short_side_as_the_reference_resize_does():
    image = draw_pose(PoseFrame([_t_pose()], 512, 512), 1024, 1024)
    assert image[:, 320].any(axis=1).sum() == 17  # 8 px either side of the axis at twice the size


def test_points_below_the_confidence_threshold_are_not_drawn():
    person = _t_pose()
    person.body[R_WRIST, 2] = 0.2
    image = draw_pose(PoseFrame([person], 512, 512))
    assert not image[:, :110].any()  # neither the wrist nor the forearm
    assert image[100, 160].any()


def test_confidence_colours_darken_unsure_points():
    person = _t_pose()
    person.body[R_ELBOW, 2] = 0.5
    plain = draw_pose(PoseFrame([person], 512, 512))
    shaded = draw_pose(PoseFrame([person], 512, 512), confidence_colors=True)
    np.testing.assert_array_equal(plain[100, 120], BODY_COLORS[R_ELBOW])
    np.testing.assert_array_equal(shaded[100, 120], np.round(np.array(BODY_COLORS[R_ELBOW]) * 0.5))
    np.testing.assert_array_equal(shaded[100, 240], plain[100, 240])  # the neck-shoulder limb is sure


def _full_person() -> Person:
    person = _t_pose()
    rng = np.random.default_rng(0)
    person.hands[:, :, :2] = rng.uniform(0.6, 0.9, size=(2, 21, 2))
    person.hands[:, :, 2] = 1.0
    person.face[:, :2] = rng.uniform(0.3, 0.5, size=(68, 2))
    person.face[:, 2] = 1.0
    return person


@pytest.mark.parametrize("body, hands, face", [(True, False, False), (False, True, False), (False, False, True)])
def test_each_part_can_be_switched_on_alone(body, hands, face):
    image = draw_pose(PoseFrame([_full_person()], 512, 512), body=body, hands=hands, face=face)
    white = (image == 255).all(axis=2).sum()
    hand_blue = (image == HAND_POINT_COLOR).all(axis=2).sum()
    body_area = image[90:111, 30:330].any(axis=2).sum()
    assert (white > 0) == face
    assert (hand_blue > 0) == hands
    assert (body_area > 0) == body


def test_skeleton_frames_draw_lazily_at_the_requested_size():
    sequence = PoseSequence(
        frames=[PoseFrame([_t_pose()], 512, 512), PoseFrame([], 512, 512)], fps=24, width=512, height=512
    )
    frames = SkeletonFrames(sequence, 256, 384, hands=False)
    assert len(frames) == 2
    assert frames[0].shape == (384, 256, 3) and frames[0].any()
    assert not frames[-1].any()
    assert [frame.shape for frame in frames[0:2]] == [(384, 256, 3)] * 2


def test_overlay_keeps_the_skeleton_colours_and_dims_the_image():
    image = np.full((512, 512, 3), 200, dtype=np.uint8)
    overlaid = overlay_pose(image, PoseFrame([_t_pose()], 512, 512))
    np.testing.assert_array_equal(overlaid[100, 120], BODY_COLORS[R_ELBOW])
    np.testing.assert_array_equal(overlaid[400, 400], [100, 100, 100])


def test_drawing_reproduces_the_released_dwpose_skeleton_image(media_dir):
    """Recover pose.png's body joints from their discs, redraw the body, compare pixels with the original."""
    reference = np.asarray(Image.open(media_dir / "pose.png").convert("RGB"))
    height, width = reference.shape[:2]
    disc = cv2.circle(np.zeros((16, 16), np.uint8), (8, 8), 4, 1, thickness=-1)
    person = Person.empty()
    for joint, color in enumerate(np.array(BODY_COLORS, dtype=np.uint8)):
        mask = (reference == color).all(axis=2).astype(np.uint8)
        count, _, stats, centres = cv2.connectedComponentsWithStats(mask, connectivity=4)
        # Joints half-hidden under the hand or face dots, or sharing the hand points' blue, are skipped.
        whole = [k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] == disc.sum()]
        if len(whole) == 1:
            person.body[joint] = (*((centres[whole[0]] + 0.5) / [width, height]), 1.0)
    assert (person.body[:, 2] > 0).sum() >= 12

    ours = draw_pose(PoseFrame([person], width, height), hands=False, face=False)
    drawn = ours.any(axis=2)
    identical = (ours == reference).all(axis=2)
    # The joints' original sub-pixel positions are lost, so limb outlines may differ by a pixel.
    assert identical[drawn].mean() > 0.9
