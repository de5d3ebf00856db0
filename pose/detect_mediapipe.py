"""MediaPipe backend: Pose for the body alone, Holistic when hands or face are wanted.

Both use the models bundled in the mediapipe 0.10.21 wheel (`model_complexity=1` is the one it ships), so this
backend works offline. MediaPipe's own landmark smoothing is off: `pose.track` smooths every backend the same way.
"""

from __future__ import annotations

import numpy as np

from .detect import check_image
from .keypoints import (
    L_BIG_TOE,
    L_HEEL,
    L_SHOULDER,
    LEFT_HAND,
    NECK,
    R_BIG_TOE,
    R_HEEL,
    R_SHOULDER,
    RIGHT_HAND,
    Person,
    PoseFrame,
)

# OpenPose-18 joint -> MediaPipe Pose landmark (the neck, which MediaPipe lacks, is the shoulders' midpoint).
BODY_FROM_POSE = {
    0: 0,  # nose
    2: 12,  # right shoulder
    3: 14,
    4: 16,
    5: 11,  # left shoulder
    6: 13,
    7: 15,
    8: 24,  # right hip
    9: 26,
    10: 28,
    11: 23,  # left hip
    12: 25,
    13: 27,
    14: 5,  # right eye
    15: 2,  # left eye
    16: 8,  # right ear
    17: 7,  # left ear
}
# Person.feet point -> MediaPipe Pose landmark. MediaPipe's "left" is the person's own left, as ours is (see the
# shoulders above). Its foot index (the tip of the foot) stands in for the big toe, the toe nearest to it; it has no
# small toe, which stays not found rather than guessed from a foot width MediaPipe does not give.
FEET_FROM_POSE = {L_BIG_TOE: 31, L_HEEL: 29, R_BIG_TOE: 32, R_HEEL: 30}

# iBUG-68 face point -> MediaPipe face-mesh vertex, chosen on the canonical face mesh: jaw from the person's right
# ear to the left, brows outer to inner (right) and inner to outer (left), nose bridge and base, eyes from the outer
# (right) or inner (left) corner over the upper lid, outer lips from the right corner, then inner lips.
FACE_FROM_MESH = (
    *(127, 234, 93, 132, 58, 172, 150, 176, 152, 400, 379, 397, 288, 361, 323, 454, 356),
    *(70, 63, 105, 66, 107),
    *(336, 296, 334, 293, 300),
    *(168, 197, 5, 4),
    *(98, 97, 2, 326, 327),
    *(33, 160, 158, 133, 153, 144),
    *(362, 385, 387, 263, 373, 380),
    *(61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91),
    *(78, 81, 13, 311, 308, 402, 14, 178),
)

# MediaPipe's pose model sees a 256 px crop and its hand and face models crop from the frame: 960 px keeps a
# full-body dancer's hands and face big enough for them, and the body alone needs far less.
HOLISTIC_SIDE = 960
POSE_SIDE = 640


class MediaPipeDetector:
    name = "mediapipe"

    def __init__(self, *, hands: bool = True, face: bool = True, video: bool = False):
        import mediapipe as mp  # imported here: it takes a second and most runs use another backend

        self.hands = hands
        self.face = face
        if hands or face:
            self.model = mp.solutions.holistic.Holistic(
                static_image_mode=not video, model_complexity=1, smooth_landmarks=False
            )
            self.detect_side = HOLISTIC_SIDE
        else:
            self.model = mp.solutions.pose.Pose(static_image_mode=not video, model_complexity=1, smooth_landmarks=False)
            self.detect_side = POSE_SIDE

    def detect(self, image: np.ndarray) -> PoseFrame:
        image = check_image(image)
        height, width = image.shape[:2]
        result = self.model.process(image)
        if result.pose_landmarks is None:
            return PoseFrame(people=[], width=width, height=height)

        person = Person.empty()
        landmarks = result.pose_landmarks.landmark
        for joint, index in BODY_FROM_POSE.items():
            point = landmarks[index]
            person.body[joint] = (point.x, point.y, point.visibility)
        for foot_point, index in FEET_FROM_POSE.items():
            point = landmarks[index]
            person.feet[foot_point] = (point.x, point.y, point.visibility)
        person.body[:, 2] = np.clip(person.body[:, 2], 0.0, 1.0)
        person.feet[:, 2] = np.clip(person.feet[:, 2], 0.0, 1.0)
        shoulders = person.body[[L_SHOULDER, R_SHOULDER]]
        person.body[NECK] = (*shoulders[:, :2].mean(axis=0), shoulders[:, 2].min())

        # MediaPipe gives hand and face landmarks no per-point score: they exist only when its own presence check
        # passed, so they count as fully confident.
        if self.hands:
            for side, hand in ((LEFT_HAND, result.left_hand_landmarks), (RIGHT_HAND, result.right_hand_landmarks)):
                if hand is not None:
                    person.hands[side] = [(point.x, point.y, 1.0) for point in hand.landmark]
        if self.face and result.face_landmarks is not None:
            mesh = result.face_landmarks.landmark
            person.face[:] = [(mesh[index].x, mesh[index].y, 1.0) for index in FACE_FROM_MESH]
        return PoseFrame(people=[person], width=width, height=height)

    def close(self) -> None:
        self.model.close()
