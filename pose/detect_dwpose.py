"""DWPose on ONNX Runtime: YOLOX-L finds people, DWPose-L (an RTMPose SimCC model) finds 133 whole-body points in each.

controlnet-aux 0.0.10 runs DWPose only through mmpose/mmdet, which do not install with our stack, so this is a
compact runner of our own for yzd-v/DWPose's two ONNX files. Pre- and post-processing follow DWPose's ONNX demo,
which produced the skeletons the released Animate Anyone weights were trained on: both models get the image in
OpenCV's BGR order, the detector raw 0-255 pixels letterboxed onto grey 114, the pose model a 1.25x padded box
normalised with the (RGB-ordered) ImageNet mean and std it was exported with. One deliberate difference: when the
detector finds nobody we report nobody, where the demo would run the pose model on the whole image.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .detect import check_image
from .keypoints import Person, PoseFrame

DETECTOR_STRIDES = (8, 16, 32)
LETTERBOX_GREY = 114
PERSON_SCORE = 0.3  # boxes kept after NMS (DWPose's threshold)
CANDIDATE_SCORE = 0.1  # boxes considered by NMS
NMS_IOU = 0.45
BOX_PADDING = 1.25
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
SIMCC_SPLIT_RATIO = 2.0  # SimCC bins per input pixel


class DWPoseDetector:
    name = "dwpose"
    detect_side = 1280  # the detector letterboxes to 640 px, but the pose crops are cut from the full frame

    def __init__(self, detector_path: Path, estimator_path: Path, *, hands: bool = True, face: bool = True):
        import onnxruntime

        # Azure's provider runs models remotely; every other one listed is a local device, best first.
        providers = [name for name in onnxruntime.get_available_providers() if name != "AzureExecutionProvider"]
        self.detector = onnxruntime.InferenceSession(str(detector_path), providers=providers)
        self.estimator = onnxruntime.InferenceSession(str(estimator_path), providers=providers)
        self.hands = hands
        self.face = face

    def detect(self, image: np.ndarray) -> PoseFrame:
        image = check_image(image)
        height, width = image.shape[:2]
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        people = []
        for box in self.find_people(bgr):
            keypoints, scores = self.estimate_keypoints(bgr, box)
            people.append(wholebody_to_person(keypoints, scores, width, height, hands=self.hands, face=self.face))
        return PoseFrame(people=people, width=width, height=height)

    def find_people(self, bgr: np.ndarray) -> np.ndarray:
        """Person boxes (n, 4) as x0, y0, x1, y1 in image pixels, best first."""
        model_input = self.detector.get_inputs()[0]
        input_height, input_width = model_input.shape[2:]
        ratio = min(input_height / bgr.shape[0], input_width / bgr.shape[1])
        resized_size = (int(bgr.shape[1] * ratio), int(bgr.shape[0] * ratio))
        letterboxed = np.full((input_height, input_width, 3), LETTERBOX_GREY, dtype=np.uint8)
        letterboxed[: resized_size[1], : resized_size[0]] = cv2.resize(
            bgr, resized_size, interpolation=cv2.INTER_LINEAR
        )
        batch = letterboxed.transpose(2, 0, 1)[None].astype(np.float32)  # (1, 3, height, width)

        predictions = self.detector.run(None, {model_input.name: batch})[0][0]  # (anchors, 4 + 1 + classes)
        centers, sizes = _decode_anchors(predictions, input_height, input_width)
        person_scores = predictions[:, 4] * predictions[:, 5]  # objectness x class 0 ("person")
        boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1) / ratio

        candidates = np.flatnonzero(person_scores > CANDIDATE_SCORE)
        # OpenCV's NMS (boxes as x, y, w, h) instead of hand-written numpy: the same greedy algorithm.
        xywh = np.concatenate([boxes[candidates, :2], boxes[candidates, 2:] - boxes[candidates, :2]], axis=1)
        kept = cv2.dnn.NMSBoxes(xywh.tolist(), person_scores[candidates].tolist(), CANDIDATE_SCORE, NMS_IOU)
        kept = candidates[np.asarray(kept, dtype=int).reshape(-1)]
        kept = kept[person_scores[kept] > PERSON_SCORE]
        return boxes[kept[np.argsort(-person_scores[kept])]]

    def estimate_keypoints(self, bgr: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The 133 COCO-WholeBody points of the person in `box`: (133, 2) pixel positions and (133,) scores."""
        model_input = self.estimator.get_inputs()[0]
        input_height, input_width = model_input.shape[2:]
        center = (box[:2] + box[2:]) / 2
        box_width, box_height = (box[2:] - box[:2]) * BOX_PADDING
        # Grow the box to the model's aspect ratio, then map it onto the input: pixel -> (pixel - center) * zoom + half.
        aspect = input_width / input_height
        if box_width > box_height * aspect:
            box_height = box_width / aspect
        else:
            box_width = box_height * aspect
        zoom = input_width / box_width
        warp = np.array(
            [[zoom, 0, input_width / 2 - zoom * center[0]], [0, zoom, input_height / 2 - zoom * center[1]]],
            dtype=np.float32,
        )
        crop = cv2.warpAffine(bgr, warp, (input_width, input_height), flags=cv2.INTER_LINEAR)
        batch = ((crop - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)[None].astype(np.float32)

        simcc_x, simcc_y = self.estimator.run(None, {model_input.name: batch})  # (1, 133, bins) each
        x_bins, y_bins = simcc_x[0].argmax(axis=1), simcc_y[0].argmax(axis=1)
        # A point's score is the weaker of its two axes' peaks.
        scores = np.minimum(simcc_x[0].max(axis=1), simcc_y[0].max(axis=1))
        in_crop = np.stack([x_bins, y_bins], axis=1) / SIMCC_SPLIT_RATIO
        keypoints = (in_crop - [input_width / 2, input_height / 2]) / zoom + center
        return keypoints.astype(np.float32), scores.astype(np.float32)

    def close(self) -> None:
        pass


def wholebody_to_person(
    keypoints: np.ndarray, scores: np.ndarray, width: int, height: int, *, hands: bool = True, face: bool = True
) -> Person:
    """Maps DWPose's 133 COCO-WholeBody points ((133, 2) pixels and (133,) scores) to a `Person` (normalised, OpenPose
    body order, feet kept), leaving the hands or face not found when they are switched off."""
    person = Person.from_wholebody(np.concatenate([keypoints, scores[:, None]], axis=1), width, height)
    if not hands:
        person.hands[:] = 0.0
    if not face:
        person.face[:] = 0.0
    return person


def _decode_anchors(predictions: np.ndarray, input_height: int, input_width: int) -> tuple[np.ndarray, np.ndarray]:
    """YOLOX box centres and sizes in input pixels: each anchor is one cell of a stride-8, 16 or 32 grid (row by
    row, finest grid first) and predicts its offset within the cell and its log size in cells."""
    cells, strides = [], []
    for stride in DETECTOR_STRIDES:
        grid_y, grid_x = np.mgrid[: input_height // stride, : input_width // stride]
        cells.append(np.stack([grid_x.ravel(), grid_y.ravel()], axis=1))
        strides.append(np.full((grid_x.size, 1), stride))
    cells, strides = np.concatenate(cells), np.concatenate(strides)
    centers = (predictions[:, :2] + cells) * strides
    sizes = np.exp(predictions[:, 2:4]) * strides
    return centers, sizes
