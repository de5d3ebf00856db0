"""OpenPose backend: controlnet-aux's port of the CMU body, hand and face networks (lllyasviel/Annotators weights).

We call its body, hand and face estimators directly rather than `OpenposeDetector.detect_poses`, because that
method drops the body points' scores, which tracking and alignment need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .detect import check_image
from .keypoints import LEFT_HAND, NUM_FACE, RIGHT_HAND, Person, PoseFrame

# The face network has 70 heatmaps (68 iBUG points, 2 pupils) plus background; controlnet-aux returns one peak per
# heatmap that passed its threshold, so only a full set keeps each point at its own index.
FACE_HEATMAPS = 71


class OpenPoseDetector:
    name = "openpose"
    detect_side = 1024  # the body network sees a 184 px high image; hands and face are cropped from the frame

    def __init__(self, weights_folder: Path, *, hands: bool = True, face: bool = True):
        # Imported here: controlnet-aux imports every annotator it has, which takes seconds.
        from controlnet_aux.open_pose import OpenposeDetector

        self.model = OpenposeDetector.from_pretrained(str(weights_folder))
        self.hands = hands
        self.face = face

    def detect(self, image: np.ndarray) -> PoseFrame:
        image = check_image(image)
        height, width = image.shape[:2]
        bgr = np.ascontiguousarray(image[:, :, ::-1])  # the CMU networks were trained on OpenCV's BGR images
        candidate, subset = self.model.body_estimation(bgr)
        people = []
        for body in self.model.body_estimation.format_body_result(candidate, subset):
            person = Person.empty()
            for joint, point in enumerate(body.keypoints):
                if point is not None:
                    person.body[joint] = (point.x / width, point.y / height, min(1.0, point.score))
            if self.hands:
                left, right = self.model.detect_hands(body, bgr)
                for side, hand in ((LEFT_HAND, left), (RIGHT_HAND, right)):
                    if hand is not None:
                        person.hands[side] = _found_points(hand)
            if self.face:
                face = self.model.detect_face(body, bgr)
                if face is not None and len(face) == FACE_HEATMAPS:
                    person.face[:] = _found_points(face[:NUM_FACE])
            people.append(person)
        return PoseFrame(people=people, width=width, height=height)

    def close(self) -> None:
        pass


def _found_points(keypoints: list) -> np.ndarray:
    """controlnet-aux's normalised hand/face points, where a point not found is negative, as (n, 3) rows. These
    networks give no score for a point they found, so it counts as fully confident."""
    xy = np.array([(point.x, point.y) for point in keypoints], dtype=np.float32)
    found = (xy >= 0).all(axis=1)
    return np.concatenate([np.where(found[:, None], xy, 0.0), found[:, None]], axis=1)
