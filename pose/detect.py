"""Pose detector backends behind one interface, chosen by name.

- `dwpose`: DWPose on ONNX Runtime, the detector the released Animate Anyone weights were trained with.
- `openpose`: the original OpenPose networks (lllyasviel/Annotators) through controlnet-aux.
- `mediapipe`: MediaPipe Pose/Holistic with the models bundled in its wheel: needs no download, so it is the
  default when the DWPose weights are absent.

Every backend turns an RGB uint8 image into a `PoseFrame` with all the people it found (none is not an error here;
callers decide). Backends load lazily, so importing this module costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from .keypoints import PoseFrame

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
BACKENDS = ("dwpose", "openpose", "mediapipe")

# Files each downloadable backend needs, relative to the weights folder (the layout of Moore-AnimateAnyone's
# pretrained_weights for DWPose, and of lllyasviel/Annotators for OpenPose).
WEIGHT_FILES = {
    "dwpose": ("DWPose/yolox_l.onnx", "DWPose/dw-ll_ucoco_384.onnx"),
    "openpose": ("openpose/body_pose_model.pth", "openpose/hand_pose_model.pth", "openpose/facenet.pth"),
    "mediapipe": (),
}


class PoseDetector(Protocol):
    name: str
    # Longest image side worth feeding the detector: video frames are decoded at this size to save time.
    detect_side: int

    def detect(self, image: np.ndarray) -> PoseFrame:
        """All people in an RGB uint8 (height, width, 3) image."""
        ...

    def close(self) -> None:
        """Frees the backend's resources (MediaPipe's graph threads)."""
        ...


class MissingWeightsError(FileNotFoundError):
    """A backend's weight file is absent; the message names it, where we looked, and how to download it."""

    def __init__(self, backend: str, path: Path):
        self.backend = backend
        self.path = path
        super().__init__(
            f"The {backend} pose detector needs {path.name}, which is not in {path.parent}. "
            f"Download it with: python -m animate.weights download --only {backend}"
        )


def available_backends(weights_dir: Path = WEIGHTS_DIR) -> list[str]:
    """The backends whose weights are all present (mediapipe always is)."""
    return [name for name in BACKENDS if all((Path(weights_dir) / file).is_file() for file in WEIGHT_FILES[name])]


def default_backend(weights_dir: Path = WEIGHTS_DIR) -> str:
    """DWPose when its weights are present (it is what the released weights were trained with), else MediaPipe."""
    return "dwpose" if "dwpose" in available_backends(weights_dir) else "mediapipe"


def get_detector(
    name: str = "auto",
    weights_dir: Path = WEIGHTS_DIR,
    *,
    hands: bool = True,
    face: bool = True,
    video: bool = False,
) -> PoseDetector:
    """A ready detector. `name` is one of BACKENDS or "auto" (`default_backend`).

    `hands` and `face` switch those parts off where that saves time; `video=True` promises frames of one video
    in order, which lets MediaPipe track its region of interest instead of searching every frame from scratch.
    Raises `MissingWeightsError` if the backend's weights are absent and ValueError for an unknown name.
    """
    weights_dir = Path(weights_dir)
    if name == "auto":
        name = default_backend(weights_dir)
    if name not in BACKENDS:
        raise ValueError(f"Unknown pose backend {name!r}; choose one of {', '.join(BACKENDS)} or 'auto'.")
    paths = [weights_dir / file for file in WEIGHT_FILES[name]]
    for path in paths:
        if not path.is_file():
            raise MissingWeightsError(name, path)
    if name == "dwpose":
        from .detect_dwpose import DWPoseDetector

        return DWPoseDetector(*paths, hands=hands, face=face)
    if name == "openpose":
        from .detect_openpose import OpenPoseDetector

        return OpenPoseDetector(paths[0].parent, hands=hands, face=face)
    from .detect_mediapipe import MediaPipeDetector

    return MediaPipeDetector(hands=hands, face=face, video=video)


def detect_image(
    image: np.ndarray, name: str = "auto", weights_dir: Path = WEIGHTS_DIR, *, hands: bool = True, face: bool = True
) -> PoseFrame:
    """The poses in one image (a character picture), with a detector opened for it and closed after."""
    detector = get_detector(name, weights_dir, hands=hands, face=face)
    try:
        return detector.detect(image)
    finally:
        detector.close()


def check_image(image: np.ndarray) -> np.ndarray:
    """The image as a contiguous RGB uint8 array; raises ValueError for anything else."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"pose detectors take an RGB uint8 image of shape (height, width, 3), got {shape}")
    if min(image.shape[:2]) < 8:
        raise ValueError(f"image of {image.shape[1]}x{image.shape[0]} pixels is too small to find a pose in")
    return np.ascontiguousarray(image)
