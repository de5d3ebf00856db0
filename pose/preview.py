"""What the user checks before generating: the skeleton video, the skeleton over the character, and whether an
uploaded driving video is already a skeleton video."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .draw import DWPOSE_SHORT_SIDE, SkeletonFrames, overlay_pose
from .keypoints import PoseFrame, PoseSequence
from .video import VideoWriter, probe_video, read_frames

# is_skeleton_video: a skeleton frame is almost all black, and what is not black is vivid colour or white dots.
BLACK_LEVEL = 30  # brightest channel below this counts as background
MIN_BLACK_SHARE = 0.8
MIN_DRAWN_SHARE = 0.002  # an all-black video is not a skeleton video
MIN_VIVID_SHARE = 0.7  # of the drawn pixels: saturated (the OpenPose palette) or white (face dots)
SAMPLED_FRAMES = 8


def skeleton_size(width: int, height: int) -> tuple[int, int]:
    """The size DWPose draws at for a `width` x `height` frame: short side 512, aspect kept, even sides (for
    H.264), so the limb widths are those the released weights saw."""
    scale = DWPOSE_SHORT_SIDE / min(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def write_skeleton_video(
    sequence: PoseSequence,
    path: str | os.PathLike,
    *,
    size: tuple[int, int] | None = None,
    body: bool = True,
    hands: bool = True,
    face: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Writes one skeleton frame per pose frame at the sequence's fps (default size: `skeleton_size`). The file
    appears only once complete."""
    width, height = size or skeleton_size(sequence.width, sequence.height)
    frames = SkeletonFrames(sequence, width, height, body=body, hands=hands, face=face)
    with VideoWriter(path, sequence.fps) as writer:
        for index, frame in enumerate(frames):
            writer.write(frame)
            if progress is not None:
                progress(index + 1, len(frames))
    return Path(path)


def preview_on_character(image: np.ndarray, sequence: PoseSequence, index: int | None = None) -> np.ndarray:
    """The (aligned) skeleton of frame `index` drawn over the character image, which must have the sequence's size.

    By default the frame shown is the one with the most confident body, a fair sample of the fit.
    """
    if image.shape[:2] != (sequence.height, sequence.width):
        raise ValueError(
            f"the character image is {image.shape[1]}x{image.shape[0]} but the poses are for "
            f"{sequence.width}x{sequence.height}; align them to this image first (align_poses)"
        )
    if index is None:
        index = max(range(len(sequence)), key=lambda i: _body_confidence(sequence.frames[i]))
    return overlay_pose(image, sequence.frames[index])


def is_skeleton_video(path: str | os.PathLike) -> bool:
    """Whether a video already shows skeletons (black background, vivid OpenPose colours), judged on frames from
    its first seconds, so the app can use it as the driving poses without extracting them."""
    info = probe_video(path)
    stride = max(1, round(info.fps / 2))  # two frames a second: only the start of a long upload gets decoded
    votes = [
        _looks_like_skeleton(frame)
        for frame in read_frames(path, stride=stride, max_frames=SAMPLED_FRAMES, max_side=256)
    ]
    return bool(votes) and sum(votes) > len(votes) / 2


def _looks_like_skeleton(frame: np.ndarray) -> bool:
    brightest = frame.max(axis=2)
    drawn = brightest >= BLACK_LEVEL
    if not MIN_DRAWN_SHARE <= drawn.mean() <= 1 - MIN_BLACK_SHARE:
        return False
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)[drawn]  # (drawn pixels, 3): hue, saturation, value
    vivid = (hsv[:, 1] > 150) | ((hsv[:, 1] < 40) & (hsv[:, 2] > 200))
    return bool(vivid.mean() >= MIN_VIVID_SHARE)


def _body_confidence(frame: PoseFrame) -> float:
    return float(frame.people[0].body[:, 2].sum()) if frame.people else -1.0
