"""Wan2.2-Animate's pose preprocessing, our own implementation: the pose layout, the conditioning image, the face
crop, the replacement-mode masks, the resizing rules and the retargeting of a driving pose onto a character.

Wan-Animate (Wan-Video/Wan2.2, `wan/modules/animate/preprocess/`) was trained on pose videos drawn its own way, so
we reproduce that drawing and the maths around it number for number; `tests/test_wan_pose.py` checks every function
against the official functions' outputs (tests/data/reference/wan_pose). Where the official code does something
surprising, we do the same and say so, because the model learnt from what that code produced.

A `WanPose` holds one person in pixels of a `width` x `height` image. Wan's own metas store the same numbers
divided by the image size; `wholebody_to_wan` builds one from the 133 COCO-WholeBody points a detector gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .draw import BODY_COLORS, HAND_EDGE_COLORS, HAND_EDGES, HAND_POINT_COLOR
from .keypoints import (
    BODY_FROM_COCO,
    BODY_LIMBS,
    COCO_LEFT_SHOULDER,
    COCO_RIGHT_SHOULDER,
    L_ANKLE,
    L_HIP,
    L_KNEE,
    L_WRIST,
    NECK,
    NOSE,
    NUM_BODY,
    R_ANKLE,
    R_HIP,
    R_KNEE,
    R_WRIST,
    WHOLEBODY_LEFT_HAND,
    WHOLEBODY_RIGHT_HAND,
)

# Wan's body is OpenPose-18 plus one point per foot: the midpoint of the big and small toe.
L_TOE, R_TOE = NUM_BODY, NUM_BODY + 1
NUM_WAN_BODY = NUM_BODY + 2
# COCO-WholeBody's big and small toe of each foot, which Wan averages into its toe points.
COCO_LEFT_TOES, COCO_RIGHT_TOES = (17, 18), (20, 21)
# Wan's face: COCO-WholeBody points 22 to 90, i.e. the right heel followed by the 68 iBUG face points.
WHOLEBODY_WAN_FACE = slice(22, 91)

# The OpenPose limbs, then ankle to toe. Parents come before children, which retargeting relies on.
WAN_LIMBS = (*BODY_LIMBS, (L_ANKLE, L_TOE), (R_ANKLE, R_TOE))
# Joint i and limb i take colour i: the OpenPose palette and two olive tones for the toes. There is one limb fewer
# than joints, so the left foot's limb takes the last OpenPose colour and the right foot's the first olive.
WAN_BODY_COLORS = (*BODY_COLORS, (200, 200, 0), (100, 100, 0))
WAN_LIMB_COLORS = WAN_BODY_COLORS[: len(WAN_LIMBS)]
LIMB_DIMMING = 0.6  # limbs are drawn at 60 % of their joint's colour

R_SHIN, L_SHIN = WAN_LIMBS.index((R_KNEE, R_ANKLE)), WAN_LIMBS.index((L_KNEE, L_ANKLE))
L_FOOT, R_FOOT = WAN_LIMBS.index((L_ANKLE, L_TOE)), WAN_LIMBS.index((R_ANKLE, R_TOE))
MAX_FOOT_TO_SHIN = 0.5  # retargeting keeps each foot within half its lower leg
# Retargeting gives both limbs of a pair the larger of their two length ratios...
PAIRED_LIMBS = ((0, 1), (2, 4), (3, 5), (6, 9), (7, 10), (8, 11), (17, 18))
# ...and the eyes' and ears' limbs the mean of theirs: nose-eye (13, 15) and eye-ear (14, 16).
AVERAGED_LIMBS = ((13, 15), (14, 16))
RETARGET_THRESHOLD = 0.4  # confidence at which retargeting counts a hip, ankle or hand point as found
HEIGHT_THRESHOLD = 0.5  # confidence above which nose, ankles and hips may measure the body's height
# How much of the body both poses show, from least to most: retargeting anchors on the feet only if both are full.
HALF_BODY, THREE_QUARTER_BODY, FULL_BODY = 0, 1, 2


@dataclass
class WanPose:
    """One person in Wan-Animate's layout, in pixels of a `width` x `height` image; every row is (x, y, confidence).

    `body` is (20, 3): OpenPose-18, then the left and the right toe. `left_hand` and `right_hand` are (21, 3), the
    person's own left and right. `face` is (69, 3): COCO-WholeBody's right heel, then the 68 iBUG points, as Wan
    lays it out (`face[1:]` is the face proper); retargeted poses have no face. A point that is missing has
    confidence 0 (and, after retargeting, NaN coordinates).
    """

    body: np.ndarray
    left_hand: np.ndarray
    right_hand: np.ndarray
    face: np.ndarray | None
    width: int
    height: int


def wholebody_to_wan(kp2ds: np.ndarray, width: int, height: int) -> WanPose:
    """Wan's pose of one person from their 133 COCO-WholeBody points `kp2ds` (133, 3), in pixels of the image.

    As Wan's `load_pose_metas_from_kp2ds_seq` builds it: the neck is the shoulders' midpoint and each toe the
    midpoint of the big and small toe, confidences averaged the same way (of the toes found: see `_found_mean`).
    """
    kp2ds = np.asarray(kp2ds, dtype=np.float64)
    body = np.empty((NUM_WAN_BODY, 3))
    body[:NUM_BODY] = kp2ds[list(BODY_FROM_COCO)]  # the neck's -1 picks a placeholder, replaced on the next line
    body[NECK] = kp2ds[[COCO_LEFT_SHOULDER, COCO_RIGHT_SHOULDER]].mean(axis=0)
    body[L_TOE] = _found_mean(kp2ds[list(COCO_LEFT_TOES)])
    body[R_TOE] = _found_mean(kp2ds[list(COCO_RIGHT_TOES)])
    return WanPose(
        body=body,
        left_hand=kp2ds[WHOLEBODY_LEFT_HAND].copy(),
        right_hand=kp2ds[WHOLEBODY_RIGHT_HAND].copy(),
        face=kp2ds[WHOLEBODY_WAN_FACE].copy(),
        width=width,
        height=height,
    )


def _found_mean(points: np.ndarray) -> np.ndarray:
    """The mean of the points that were found (confidence above 0), as Wan averages a foot's two toes; DWPose finds
    both, MediaPipe only the big toe (its foot index), whose half with a small toe at (0, 0) would be no toe at all."""
    found = points[points[:, 2] > 0]
    return found.mean(axis=0) if len(found) else np.zeros(3)


def draw_wan_pose(canvas: np.ndarray | tuple[int, int], pose: WanPose, threshold: float = 0.5) -> np.ndarray:
    """The conditioning image of `pose`, as Wan's `draw_aapose_by_meta_new` draws it (stick width type "v2").

    `canvas` is an (H, W, 3) uint8 RGB image to draw over (it is not modified) or the (H, W) of a black one.
    Points below `threshold` are left out, with every limb and hand edge that touches them. Body limbs are filled
    ellipses and joints discs, both `max(min(H, W) // 200 - 1, 1)` px; hand edges are lines coloured around the hue
    circle and hand points blue discs, both half the body's width (at least 1 px).
    """
    image = np.zeros((*canvas, 3), np.uint8) if isinstance(canvas, tuple) else canvas.copy()
    height, width = image.shape[:2]
    body_width = max(int(min(height, width) / 200) - 1, 1)
    hand_width = max(body_width // 2, 1)
    body = pose.body.tolist()

    for (parent, child), color in zip(WAN_LIMBS, WAN_LIMB_COLORS, strict=True):
        (x1, y1, score1), (x2, y2, score2) = body[parent], body[child]
        if score1 < threshold or score2 < threshold:
            continue
        half_length = int(math.sqrt((x1 - x2) ** 2 + (y1 - y2) ** 2) / 2)
        angle = int(math.degrees(math.atan2(y1 - y2, x1 - x2)))
        center = (int((x1 + x2) / 2), int((y1 + y2) / 2))
        polygon = cv2.ellipse2Poly(center, (half_length, body_width), angle, 0, 360, 1)
        cv2.fillConvexPoly(image, polygon, [int(channel * LIMB_DIMMING) for channel in color])
    for (x, y, score), color in zip(body, WAN_BODY_COLORS, strict=True):
        if score >= threshold:
            cv2.circle(image, (int(x), int(y)), body_width, color, thickness=-1)

    for hand in (pose.left_hand, pose.right_hand):
        hand = hand.tolist()
        for (start, end), color in zip(HAND_EDGES, HAND_EDGE_COLORS, strict=True):
            (x1, y1, score1), (x2, y2, score2) = hand[start], hand[end]
            if score1 < threshold or score2 < threshold:
                continue
            ends = (int(x1), int(y1)), (int(x2), int(y2))
            # Wan skips edges touching the image's top row or left column (its test for "not detected" is > 0.01).
            if min(*ends[0], *ends[1]) > 0:
                cv2.line(image, *ends, color, thickness=hand_width)
        for x, y, score in hand:
            if score >= threshold and int(x) > 0 and int(y) > 0:
                cv2.circle(image, (int(x), int(y)), hand_width, HAND_POINT_COLOR, thickness=-1)
    return image


def face_box(face_points: np.ndarray, *, scale: float = 1.3, image_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The face crop `(x1, x2, y1, y2)` around the 68 iBUG face points (68, 2+) in pixels, as Wan's get_face_bboxes.

    The points' box grows to `scale` times its area at the same aspect ratio; the growth in height goes three parts
    above the face to one below (room for the forehead and hair). The box is clipped to `image_shape` (H, W).
    """
    image_height, image_width = image_shape
    (min_x, min_y), (max_x, max_y) = face_points[:, :2].min(axis=0), face_points[:, :2].max(axis=0)
    box_width, box_height = max_x - min_x, max_y - min_y
    grown_area = box_width * box_height * scale
    grow_x = (np.sqrt(grown_area * box_width / box_height) - box_width) / 2
    grow_y = (np.sqrt(grown_area * box_height / box_width) - box_height) / 4
    return (
        int(max(min_x - grow_x, 0)),
        int(min(max_x + grow_x, image_width)),
        int(max(min_y - 3 * grow_y, 0)),
        int(min(max_y + grow_y, image_height)),
    )


def face_crop(frame: np.ndarray, box: tuple[int, int, int, int], size: int = 512) -> np.ndarray:
    """The `size` x `size` face image Wan-Animate is conditioned on: `frame` cut to `box` (x1, x2, y1, y2), resized."""
    x1, x2, y1, y2 = box
    return cv2.resize(frame[y1:y2, x1:x2], (size, size))


def dilate_person_mask(mask: np.ndarray, iterations: int = 3, k: int = 7) -> np.ndarray:
    """The person mask (H, W) uint8 0/1 grown by a `k` x `k` square `iterations` times, as Wan's get_mask_body_img."""
    return cv2.dilate(mask, np.ones((k, k), np.uint8), iterations=iterations)


def block_mask(mask: np.ndarray, w_len: int = 1, h_len: int = 1) -> np.ndarray:
    """The mask coarsened into blocks, as Wan's get_aug_mask: the mask's bounding box is cut into a `w_len` x
    `h_len` grid and every cell the mask touches is filled. With the defaults, the whole box is filled.

    As in Wan, the cells stop short of the box's last row and column (the box is max - min wide). A mask with no
    person comes back empty.
    """
    blocks = mask.copy()
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return blocks
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    # Cells at least 1 px: Wan's own code fails on boxes narrower than the grid.
    cell_width, cell_height = max(int((x1 - x0) / w_len), 1), max(int((y1 - y0) / h_len), 1)
    for left in range(x0, x1, cell_width):
        for top in range(y0, y1, cell_height):
            cell = (slice(top, min(top + cell_height, y1)), slice(left, min(left + cell_width, x1)))
            if mask[cell].any():
                blocks[cell] = 1
    return blocks


def replacement_background(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The background video frame of replacement mode: `frame` (H, W, 3) with the (block) mask's pixels blacked out."""
    return frame * (1 - mask[:, :, None])


def padding_resize(image: np.ndarray, height: int, width: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """`image` (H, W, C) scaled to fit `height` x `width` and centred on black, as Wan's padding_resize."""
    image_height, image_width, channels = image.shape
    padded = np.zeros((height, width, channels), np.uint8)
    if image_height / image_width > height / width:
        new_width = int(height / image_height * image_width)
        left = int((width - new_width) / 2)
        padded[:, left : left + new_width] = cv2.resize(image, (new_width, height), interpolation=interpolation)
    else:
        new_height = int(width / image_width * image_height)
        top = int((height - new_height) / 2)
        padded[top : top + new_height] = cv2.resize(image, (width, new_height), interpolation=interpolation)
    return padded


def size_by_area(height: int, width: int, area: int = 1280 * 720, divisor: int = 16) -> tuple[int, int]:
    """The (height, width) Wan-Animate generates at for a `height` x `width` video: about `area` pixels at the same
    aspect ratio, each side rounded down to a multiple of `divisor`.

    Wan's resize_by_area first tries a search over sizes that always fails (it calls a helper with one argument too
    many) and falls back to this closed form, so this is what it computes.
    """
    new_height = math.sqrt(area / (width / height))
    new_width = area / new_height
    return int(new_height // divisor * divisor), int(new_width // divisor * divisor)


def resize_by_area(image: np.ndarray, area: int = 1280 * 720, divisor: int = 16) -> np.ndarray:
    """`image` padded and resized to `size_by_area` of its size, as Wan's resize_by_area."""
    height, width = image.shape[:2]
    new_height, new_width = size_by_area(height, width, area, divisor)
    interpolation = cv2.INTER_AREA if new_width * new_height < width * height else cv2.INTER_LINEAR
    return padding_resize(image, new_height, new_width, interpolation)


def retarget(template_first: WanPose, reference: WanPose, template_sequence: Sequence[WanPose]) -> list[WanPose]:
    """The driving poses `template_sequence` moved onto the character of `reference`, in pixels of the reference
    image, as Wan's get_retarget_pose without its FLUX-edited poses (the `--retarget_flag` path without `--use_flux`).

    `template_first` is the driving video's first pose, which fixes the proportions. Each limb keeps the template's
    angle but takes the reference's length (the driver's bone times the reference-to-driver ratio); the body is then
    placed so the first frame stands where the reference stands (feet and hips if both show the full body, else the
    neck) and scaled to the reference's size. Hands keep their shape, scaled with the shoulders and moved with their
    wrists. Faces are not retargeted.
    """
    scale = _height_ratio(template_first, reference)
    # The reference as if it were drawn at the template's scale.
    scaled_width, scaled_height = int(reference.width * scale), int(reference.height * scale)
    reference_body = reference.body[:, :2] / (reference.width, reference.height) * (scaled_width, scaled_height)
    template_body = template_first.body[:, :2]
    ratios = _limb_lengths(reference_body) / _limb_lengths(template_body)
    for pair in PAIRED_LIMBS:
        ratios[list(pair)] = ratios[list(pair)].max()
    for pair in AVERAGED_LIMBS:
        ratios[list(pair)] = ratios[list(pair)].mean()

    first_rebuilt = _rebuild(template_body, _limb_lengths(template_body) * ratios)
    framing = min(_framing(reference), _framing(template_first))
    if framing == FULL_BODY:
        # Stand on the ground: the lower foot's ankle-toe midpoint, under the middle of the hips.
        reference_ground_y = max(
            (reference_body[R_ANKLE, 1] + reference_body[R_TOE, 1]) / 2,
            (reference_body[L_ANKLE, 1] + reference_body[L_TOE, 1]) / 2,
        )
        offset_y = max(first_rebuilt[R_ANKLE, 1], first_rebuilt[L_ANKLE, 1]) - reference_ground_y
        anchor_x = (first_rebuilt[R_HIP, 0] + first_rebuilt[L_HIP, 0]) / 2
        offset_x = anchor_x - (reference_body[R_HIP, 0] + reference_body[L_HIP, 0]) / 2
    else:
        anchor_x = first_rebuilt[NECK, 0]
        offset_x = anchor_x - reference_body[NECK, 0]
        offset_y = first_rebuilt[NECK, 1] - reference_body[NECK, 1]
    hand_ratio = max(ratios[0], ratios[1]) / scale  # hands scale with the shoulders

    retargeted = []
    for index, frame in enumerate(template_sequence):
        frame_body = frame.body[:, :2]
        lengths = _limb_lengths(frame_body) * ratios
        lengths[R_FOOT] = min(lengths[R_FOOT], lengths[R_SHIN] * MAX_FOOT_TO_SHIN)
        lengths[L_FOOT] = min(lengths[L_FOOT], lengths[L_SHIN] * MAX_FOOT_TO_SHIN)
        rebuilt = _rebuild(frame_body, lengths)
        frame_offset_x = offset_x
        # Wan re-anchors x on the frame being retargeted, but only for the first frame of the sequence (the
        # correction lives in a per-frame local); it is zero when template_first is that frame.
        if index == 0 and framing == FULL_BODY:
            frame_offset_x += (rebuilt[R_HIP, 0] + rebuilt[L_HIP, 0]) / 2 - anchor_x
        elif index == 0 and framing == HALF_BODY:
            frame_offset_x += rebuilt[NECK, 0] - anchor_x
        placed = (rebuilt - (frame_offset_x, offset_y)) / scale
        body = np.column_stack([placed, frame.body[:, 2]])
        left_hand, right_hand = _retarget_hands(frame, placed, hand_ratio)
        retargeted.append(WanPose(body, left_hand, right_hand, None, reference.width, reference.height))
    return retargeted


def _height_ratio(template: WanPose, reference: WanPose) -> float:
    """The template's body height over the reference's: nose to ankles (else nose to hips) where both poses show
    those points surely, else the ratio of the images' square roots of area."""
    for bottom in ((R_ANKLE, L_ANKLE), (R_HIP, L_HIP)):
        points = [NOSE, *bottom]
        if (template.body[points, 2] > HEIGHT_THRESHOLD).all() and (reference.body[points, 2] > HEIGHT_THRESHOLD).all():
            template_height = abs(template.body[list(bottom), 1].mean() - template.body[NOSE, 1])
            reference_height = abs(reference.body[list(bottom), 1].mean() - reference.body[NOSE, 1])
            return template_height / reference_height
    return math.sqrt(template.width * template.height) / math.sqrt(reference.width * reference.height)


def _framing(pose: WanPose) -> int:
    """FULL_BODY if hips and ankles are found inside the image's height, THREE_QUARTER_BODY if the hips are, else
    HALF_BODY."""

    def inside(points: list[int]) -> bool:
        return bool((pose.body[points, 1] <= pose.height).all() and (pose.body[points, 2] >= RETARGET_THRESHOLD).all())

    if inside([R_ANKLE, L_ANKLE, R_HIP, L_HIP]):
        return FULL_BODY
    if inside([R_HIP, L_HIP]):
        return THREE_QUARTER_BODY
    return HALF_BODY


def _limb_lengths(body: np.ndarray) -> np.ndarray:
    """The length of each of WAN_LIMBS in `body` (20, 2): (19,)."""
    parents, children = np.array(WAN_LIMBS).T
    return np.sqrt(((body[parents] - body[children]) ** 2).sum(axis=1))


def _rebuild(body: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """`body` (20, 2) with every limb given its new length along its old direction, from the neck outwards."""
    rebuilt = body.copy()
    for (parent, child), length in zip(WAN_LIMBS, lengths, strict=True):
        dx, dy = body[child] - body[parent]
        angle = math.atan2(dy, dx)
        rebuilt[child] = rebuilt[parent] + length * np.array([math.cos(angle), math.sin(angle)])
    return rebuilt


def _retarget_hands(frame: WanPose, placed_body: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame's (left, right) hand, each scaled by `ratio` about its wrist point and moved with the body's wrist.

    Points below RETARGET_THRESHOLD are dropped (NaN, confidence 0); Wan rounds the others down to whole pixels.
    """
    size = np.array([frame.width, frame.height])
    hands = {"left": frame.left_hand, "right": frame.right_hand}
    body_wrist = {"left": L_WRIST, "right": R_WRIST}
    found = {side: hand[:, 2] >= RETARGET_THRESHOLD for side, hand in hands.items()}
    scaled = {}  # each hand scaled about its wrist point, in units of the image size as Wan computes it: (21, 2)
    for side, hand in hands.items():
        unit = hand[:, :2] / size
        scaled[side] = unit * ratio - unit[0] * (ratio - 1)

    def shift_to_wrist(side: str) -> np.ndarray:
        """The move that takes `side`'s hand wrist point onto the retargeted body wrist; if that hand lost its wrist
        point, the body wrist's own move."""
        wrist = body_wrist[side]
        shift = placed_body[wrist] - frame.body[wrist, :2]
        if found[side][0]:
            shift = shift + (frame.body[wrist, :2] - scaled[side][0] * size)
        return shift

    def moved(side: str, shift: np.ndarray) -> np.ndarray:
        points = np.full((len(hands[side]), 3), np.nan)
        points[found[side], :2] = np.trunc(scaled[side] * size + shift)[found[side]]
        points[:, 2] = np.where(found[side], hands[side][:, 2], 0.0)
        return points

    # Wan guards against a detector that swapped the hands by how far the right hand's wrist point lies from each
    # body wrist (a lost wrist point counts as (-W, -H)): if it lies nearer the left wrist, each hand takes the
    # other side's shift.
    right_root = scaled["right"][0] * size if found["right"][0] else -size
    distance_to_right, distance_to_left = (np.linalg.norm(frame.body[w, :2] - right_root) for w in (R_WRIST, L_WRIST))
    if distance_to_right > distance_to_left:
        return moved("right", shift_to_wrist("left")), moved("left", shift_to_wrist("right"))
    return moved("left", shift_to_wrist("left")), moved("right", shift_to_wrist("right"))
