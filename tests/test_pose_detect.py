"""Detector backends on real photos, and their errors."""

import numpy as np
import pytest
import skimage.data

from pose import MissingWeightsError, get_detector
from pose.keypoints import (
    L_ANKLE,
    L_BIG_TOE,
    L_EYE,
    L_HEEL,
    L_SHOULDER,
    L_SMALL_TOE,
    LEFT_HAND,
    NOSE,
    R_ANKLE,
    R_BIG_TOE,
    R_EYE,
    R_HEEL,
    R_SHOULDER,
    R_SMALL_TOE,
    RIGHT_HAND,
)


@pytest.fixture(scope="module")
def mediapipe():
    detector = get_detector("mediapipe")
    yield detector
    detector.close()


def test_astronaut_photo_points_land_on_her_face_and_shoulders(mediapipe):
    image = skimage.data.astronaut()  # 512 x 512, Eileen Collins facing the camera
    frame = mediapipe.detect(image)
    assert (frame.width, frame.height) == (512, 512)
    assert len(frame.people) == 1
    body = frame.people[0].body
    pixels = body[:, :2] * 512
    # Where they are in the photo, measured by eye; her right side is on the image's left.
    expected = {NOSE: (222, 126), R_EYE: (201, 101), L_EYE: (249, 101), R_SHOULDER: (115, 240), L_SHOULDER: (305, 255)}
    for joint, (x, y) in expected.items():
        tolerance = 12 if joint in (NOSE, R_EYE, L_EYE) else 30
        assert np.hypot(*(pixels[joint] - (x, y))) < tolerance, (joint, pixels[joint])
        assert body[joint, 2] > 0.5
    face = frame.people[0].face
    assert (face[:, 2] == 1).all()
    # iBUG point 30 is the nose tip, 36 and 45 the outer eye corners.
    assert np.hypot(*(face[30, :2] * 512 - (222, 126))) < 12
    assert face[36, 0] < face[39, 0] < face[42, 0] < face[45, 0]


def test_body_only_detector_leaves_hands_and_face_empty():
    detector = get_detector("mediapipe", hands=False, face=False)
    person = detector.detect(skimage.data.astronaut()).people[0]
    detector.close()
    assert person.body[NOSE, 2] > 0.5
    assert not person.hands.any() and not person.face.any()


def test_photo_without_a_person_gives_an_empty_frame(mediapipe):
    frame = mediapipe.detect(skimage.data.coffee())
    assert frame.people == [] and (frame.width, frame.height) == (600, 400)


def test_hands_are_ordered_left_then_right_of_the_person(mediapipe, media_dir):
    from PIL import Image

    image = np.asarray(Image.open(media_dir / "ref_hero.png").convert("RGB"))
    person = mediapipe.detect(image).people[0]
    for side, wrist in ((LEFT_HAND, 7), (RIGHT_HAND, 4)):
        if person.hands[side, 0, 2] > 0:
            other = 4 if wrist == 7 else 7
            hand_wrist = person.hands[side, 0, :2]
            assert np.linalg.norm(hand_wrist - person.body[wrist, :2]) < np.linalg.norm(
                hand_wrist - person.body[other, :2]
            )
    assert person.hands[:, 0, 2].any(), "no hand found on the full-body photo"


def test_feet_are_found_below_the_ankles_on_the_right_sides(mediapipe, media_dir):
    from PIL import Image

    # A full-body drawing in sandals: ankles near y = 578 of 677, toes near y = 620 pointing at the viewer; she faces
    # the camera, so her left foot is on the image's right.
    image = np.asarray(Image.open(media_dir / "ref_hero.png").convert("RGB"))
    person = mediapipe.detect(image).people[0]
    pixels = person.feet[:, :2] * [image.shape[1], image.shape[0]]
    for big_toe, heel, ankle in ((L_BIG_TOE, L_HEEL, L_ANKLE), (R_BIG_TOE, R_HEEL, R_ANKLE)):
        ankle_y = person.body[ankle, 1] * image.shape[0]
        assert person.feet[big_toe, 2] > 0.5 and person.feet[heel, 2] > 0.5
        assert ankle_y < pixels[heel, 1] < pixels[big_toe, 1] < 650, (ankle_y, pixels[[heel, big_toe]])
        assert np.hypot(*(pixels[heel] - person.body[ankle, :2] * [image.shape[1], image.shape[0]])) < 40
    assert pixels[[L_BIG_TOE, L_HEEL], 0].min() > 220 > pixels[[R_BIG_TOE, R_HEEL], 0].max()
    assert not person.feet[[L_SMALL_TOE, R_SMALL_TOE]].any()  # MediaPipe has no small toe


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((64, 64), dtype=np.uint8), "RGB uint8"),
        (np.zeros((64, 64, 4), dtype=np.uint8), "RGB uint8"),
        (np.zeros((64, 64, 3), dtype=np.float32), "RGB uint8"),
        (np.zeros((4, 64, 3), dtype=np.uint8), "too small"),
    ],
)
def test_bad_images_are_rejected_with_a_clear_message(mediapipe, image, message):
    with pytest.raises(ValueError, match=message):
        mediapipe.detect(image)


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="dwpose, openpose, mediapipe"):
        get_detector("posenet")


def test_openpose_without_weights_says_what_to_download(tmp_path):
    with pytest.raises(MissingWeightsError) as caught:
        get_detector("openpose", tmp_path)
    message = str(caught.value)
    assert "body_pose_model.pth" in message and str(tmp_path / "openpose") in message
    assert "python -m animate.weights download --only openpose" in message


@pytest.mark.slow
def test_openpose_backend_runs_with_randomly_initialised_networks(tmp_path):
    """Wires our wrapper to controlnet-aux's networks, saved in lllyasviel/Annotators' key layout (half a GB of
    random weights, hence slow); a real person is not expected to be found."""
    import torch
    from controlnet_aux.open_pose.face import FaceNet
    from controlnet_aux.open_pose.model import bodypose_model, handpose_model

    folder = tmp_path / "openpose"
    folder.mkdir()
    torch.manual_seed(0)
    for network, name in ((bodypose_model(), "body_pose_model.pth"), (handpose_model(), "hand_pose_model.pth")):
        # Annotators' files name each tensor without the stage prefix that controlnet-aux adds.
        torch.save({key.split(".", 1)[1]: value for key, value in network.state_dict().items()}, folder / name)
    torch.save(FaceNet().state_dict(), folder / "facenet.pth")
    detector = get_detector("openpose", tmp_path)
    frame = detector.detect(skimage.data.astronaut())
    assert (frame.width, frame.height) == (512, 512)
    for person in frame.people:
        assert person.body.shape == (18, 3) and person.body[:, 2].min() >= 0 and person.body[:, 2].max() <= 1
