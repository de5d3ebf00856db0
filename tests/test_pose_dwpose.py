"""The DWPose runner's pre- and post-processing, on tiny ONNX models with the real models' signatures.

The stand-in detector reports a person box around red pixels (channel 2 minus channel 0: red in OpenCV's BGR
order); the stand-in pose model puts every keypoint at the bluest pixel of its crop (channel 0) with a score of
0.4 x that pixel's normalised value. So a wrong colour order, letterbox, anchor decoding, crop, normalisation or
mapping back to the image moves the points or changes the scores.
"""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pose import MissingWeightsError, available_backends, default_backend, get_detector
from pose.detect_dwpose import PIXEL_MEAN, PIXEL_STD, wholebody_to_person

BOX_CELLS = 4  # the stand-in detector's box side, in stride-32 cells
SCORE_SCALE = 0.4


def _save(graph: onnx.GraphProto, path) -> None:
    # IR version 8 (ONNX 1.12): what the real DWPose files use, and readable by every onnxruntime we support.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


def _constant(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _build_detector(path) -> None:
    """(1, 3, 640, 640) -> (1, 8400, 85): the 400 stride-32 anchors (last in YOLOX's order) score their cell's
    redness (red minus blue, over 255)."""
    anchors = 20 * 20
    constants = [
        _constant("red_start", np.array([2])),
        _constant("red_end", np.array([3])),
        _constant("blue_start", np.array([0])),
        _constant("blue_end", np.array([1])),
        _constant("channel_axis", np.array([1])),
        _constant("per_255", np.array(1 / 255, dtype=np.float32)),
        _constant("column", np.array([1, anchors, 1])),
        _constant("centre", np.full((1, anchors, 2), 0.5, dtype=np.float32)),
        _constant("size", np.full((1, anchors, 2), np.log(BOX_CELLS), dtype=np.float32)),
        _constant("person", np.ones((1, anchors, 1), dtype=np.float32)),
        _constant("other_classes", np.zeros((1, anchors, 79), dtype=np.float32)),
        _constant("finer_anchors", np.zeros((1, 80 * 80 + 40 * 40, 85), dtype=np.float32)),
    ]
    nodes = [
        helper.make_node("Slice", ["images", "red_start", "red_end", "channel_axis"], ["red"]),
        helper.make_node("Slice", ["images", "blue_start", "blue_end", "channel_axis"], ["blue"]),
        helper.make_node("Sub", ["red", "blue"], ["red_over_blue"]),  # 0 on the grey letterbox padding
        helper.make_node("Mul", ["red_over_blue", "per_255"], ["redness"]),
        helper.make_node("AveragePool", ["redness"], ["cells"], kernel_shape=[32, 32], strides=[32, 32]),
        helper.make_node("Reshape", ["cells", "column"], ["objectness"]),
        helper.make_node("Concat", ["centre", "size", "objectness", "person", "other_classes"], ["coarse"], axis=2),
        helper.make_node("Concat", ["finer_anchors", "coarse"], ["output"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "stand_in_yolox",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8400, 85])],
        initializer=constants,
    )
    _save(graph, path)


def _build_estimator(path) -> None:
    """(1, 3, 384, 288) -> simcc_x (1, 133, 576), simcc_y (1, 133, 768): each axis's profile of channel 0's
    maximum, every bin doubled (SimCC's split ratio 2), the same for all 133 points."""
    constants = [
        _constant("blue_start", np.array([0])),
        _constant("blue_end", np.array([1])),
        _constant("channel_axis", np.array([1])),
        _constant("last_axis", np.array([3])),
        _constant("score_scale", np.array(SCORE_SCALE, dtype=np.float32)),
        _constant("x_bins", np.array([1, 1, 576])),
        _constant("y_bins", np.array([1, 1, 768])),
        _constant("x_shape", np.array([1, 133, 576])),
        _constant("y_shape", np.array([1, 133, 768])),
    ]
    nodes = [helper.make_node("Slice", ["input", "blue_start", "blue_end", "channel_axis"], ["blue"])]
    for axis, reduced in (("x", 2), ("y", 3)):
        nodes += [
            helper.make_node("ReduceMax", ["blue"], [f"{axis}_profile"], axes=[reduced], keepdims=0),  # (1, 1, n)
            helper.make_node("Unsqueeze", [f"{axis}_profile", "last_axis"], [f"{axis}_column"]),  # (1, 1, n, 1)
            helper.make_node("Concat", [f"{axis}_column", f"{axis}_column"], [f"{axis}_pairs"], axis=3),
            helper.make_node("Reshape", [f"{axis}_pairs", f"{axis}_bins"], [f"{axis}_doubled"]),  # (1, 1, 2n)
            helper.make_node("Mul", [f"{axis}_doubled", "score_scale"], [f"{axis}_scored"]),
            helper.make_node("Expand", [f"{axis}_scored", f"{axis}_shape"], [f"simcc_{axis}"]),
        ]
    graph = helper.make_graph(
        nodes,
        "stand_in_dwpose",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 384, 288])],
        [
            helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [1, 133, 576]),
            helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [1, 133, 768]),
        ],
        initializer=constants,
    )
    _save(graph, path)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    _build_detector(folder / "DWPose" / "yolox_l.onnx")
    _build_estimator(folder / "DWPose" / "dw-ll_ucoco_384.onnx")
    return folder


@pytest.fixture(scope="module")
def detector(weights_dir):
    return get_detector("dwpose", weights_dir)


def _scene() -> np.ndarray:
    """1280 x 720 RGB: a red square that fills stride-32 cell (10, 5) of the letterboxed detector input (scale 0.5)
    and a blue-200 dot inside the person box."""
    image = np.zeros((720, 1280, 3), dtype=np.uint8)
    image[320:384, 640:704] = (255, 0, 0)
    image[300:311, 600:611] = (0, 0, 200)
    return image


def test_person_box_is_decoded_back_to_image_pixels(detector):
    bgr = np.ascontiguousarray(_scene()[:, :, ::-1])
    boxes = detector.find_people(bgr)
    # Cell (10, 5) has its centre at (336, 176) in the letterboxed input, (672, 352) in the image; the box is
    # BOX_CELLS x 32 input pixels, twice that in the image.
    half = BOX_CELLS * 32 / 0.5 / 2
    np.testing.assert_allclose(boxes, [[672 - half, 352 - half, 672 + half, 352 + half]], atol=0.5)


def test_keypoints_land_on_the_image_point_with_the_normalised_score(detector):
    frame = detector.detect(_scene())
    assert (frame.width, frame.height) == (1280, 720)
    assert len(frame.people) == 1
    person = frame.people[0]
    # The dot covers pixels 600-610 x 300-310; the stand-in reports the first bluest column and row of the crop.
    pixels = person.body[:, :2] * [1280, 720]
    assert np.all(np.abs(pixels - [605, 305]) <= 6), pixels
    expected_score = SCORE_SCALE * (200 - PIXEL_MEAN[0]) / PIXEL_STD[0]  # channel 0 is blue in BGR order
    np.testing.assert_allclose(person.body[:, 2], expected_score, atol=0.01)
    np.testing.assert_allclose(person.hands[..., :2] * [1280, 720], np.broadcast_to([605, 305], (2, 21, 2)), atol=6)
    np.testing.assert_allclose(person.face[:, 2], expected_score, atol=0.01)


def test_switched_off_parts_stay_empty(weights_dir):
    person = get_detector("dwpose", weights_dir, hands=False, face=False).detect(_scene()).people[0]
    assert person.body[:, 2].min() > 0.5
    assert not person.hands.any() and not person.face.any()


def test_no_person_box_means_no_people(detector):
    frame = detector.detect(np.zeros((480, 640, 3), dtype=np.uint8))
    assert frame.people == [] and (frame.width, frame.height) == (640, 480)


def test_wholebody_points_map_to_openpose_order():
    # Point i of the 133 sits at x = i pixels, with score i / 200.
    keypoints = np.stack([np.arange(133.0), np.zeros(133)], axis=1)
    person = wholebody_to_person(keypoints, np.arange(133) / 200, width=200, height=100)
    coco_of_body = [0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]
    for joint, coco in enumerate(coco_of_body):
        if coco is not None:
            assert person.body[joint, 0] * 200 == pytest.approx(coco), joint
            assert person.body[joint, 2] == pytest.approx(coco / 200)
    # The neck is the shoulders' midpoint, as sure as the less sure shoulder.
    assert person.body[1, 0] * 200 == pytest.approx(5.5) and person.body[1, 2] == pytest.approx(5 / 200)
    assert person.face[0, 0] * 200 == pytest.approx(23) and person.face[67, 0] * 200 == pytest.approx(90)
    assert person.hands[0, 0, 0] * 200 == pytest.approx(91)  # the person's left hand comes first
    assert person.hands[1, 20, 0] * 200 == pytest.approx(132)
    # The feet are kept: left big toe, small toe, heel, then the right's (points 17 to 22).
    np.testing.assert_allclose(person.feet[:, 0] * 200, np.arange(17, 23), rtol=1e-6)
    np.testing.assert_allclose(person.feet[:, 2], np.arange(17, 23) / 200, rtol=1e-6)


def test_missing_weights_error_names_file_folder_and_command(tmp_path):
    (tmp_path / "DWPose").mkdir()
    (tmp_path / "DWPose" / "yolox_l.onnx").write_bytes(b"")
    with pytest.raises(MissingWeightsError) as caught:
        get_detector("dwpose", tmp_path)
    message = str(caught.value)
    assert "dw-ll_ucoco_384.onnx" in message
    assert str(tmp_path / "DWPose") in message
    assert "python -m animate.weights download --only dwpose" in message
    assert isinstance(caught.value, FileNotFoundError)


def test_default_backend_is_dwpose_only_when_its_weights_are_there(weights_dir, tmp_path):
    assert default_backend(weights_dir) == "dwpose"
    assert available_backends(weights_dir) == ["dwpose", "mediapipe"]
    assert default_backend(tmp_path) == "mediapipe"
    assert available_backends(tmp_path) == ["mediapipe"]
