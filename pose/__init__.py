"""The pose stage: driving video -> the main dancer's keypoints -> DWPose-style skeleton images.

from pose import extract_poses, align_poses, get_detector, SkeletonFrames
sequence = extract_poses("dance.mp4")                      # detect, follow, fill gaps, smooth
reference = get_detector().detect(character_rgb)           # the character's own skeleton
aligned, warnings = align_poses(sequence, reference)       # the motion with the character's proportions
frames = SkeletonFrames(aligned, 512, 768)                 # skeleton images, drawn on demand
"""

from .align import ALIGN_MODES, align_poses
from .detect import (
    BACKENDS,
    WEIGHTS_DIR,
    MissingWeightsError,
    PoseDetector,
    available_backends,
    default_backend,
    detect_image,
    get_detector,
)
from .draw import SkeletonFrames, draw_pose, overlay_pose
from .extract import NoPersonFoundError, extract_poses
from .image import read_image
from .keypoints import BODY_NAMES, CONFIDENCE_THRESHOLD, Person, PoseFrame, PoseSequence
from .preview import is_skeleton_video, preview_on_character, skeleton_size, write_skeleton_video
from .tracking import fill_gaps, follow_main_person, smooth_sequence
from .video import VideoError, VideoInfo, VideoWriter, probe_video, read_frames

__all__ = [
    "ALIGN_MODES",
    "BACKENDS",
    "BODY_NAMES",
    "CONFIDENCE_THRESHOLD",
    "WEIGHTS_DIR",
    "MissingWeightsError",
    "NoPersonFoundError",
    "Person",
    "PoseDetector",
    "PoseFrame",
    "PoseSequence",
    "SkeletonFrames",
    "VideoError",
    "VideoInfo",
    "VideoWriter",
    "align_poses",
    "available_backends",
    "default_backend",
    "draw_pose",
    "extract_poses",
    "fill_gaps",
    "follow_main_person",
    "detect_image",
    "get_detector",
    "is_skeleton_video",
    "overlay_pose",
    "preview_on_character",
    "probe_video",
    "read_image",
    "read_frames",
    "skeleton_size",
    "smooth_sequence",
    "write_skeleton_video",
]
