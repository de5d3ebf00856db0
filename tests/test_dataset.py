"""The dataset builder on real video (a cut of data/dance.mp4, a too-short cut, a video with nobody in it), resuming,
and the video samples read from its index."""

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from animate.training.dataset import VideoSamples, build_dataset, load_index, main
from pose.keypoints import CONFIDENCE_THRESHOLD, PoseSequence


def _ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def built(media_dir, tmp_path_factory):
    """A folder with 2 s of the dance (scaled down: detection does not need 1080p), 0.5 s of it, and a test
    pattern, built into a dataset with the bundled MediaPipe detector."""
    folder = tmp_path_factory.mktemp("videos")
    for name, seconds in (("dance.mp4", "2"), ("short.mp4", "0.5")):
        _ffmpeg(
            "-ss",
            "1",
            "-t",
            seconds,
            "-i",
            str(media_dir / "hero_dance.mp4"),
            "-vf",
            "scale=360:640",
            "-an",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(folder / name),
        )
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=2:size=320x240:rate=24",
        "-pix_fmt",
        "yuv420p",
        str(folder / "nobody.mp4"),
    )
    calls = []
    index = build_dataset(folder, backend="mediapipe", progress=lambda fraction, message: calls.append(fraction))
    return folder, index, calls


def test_the_index_lists_the_good_clip_and_why_the_others_are_left_out(built):
    folder, index, calls = built
    assert load_index(folder / "dataset.json") == index
    (clip,) = index["clips"]
    assert clip["name"] == "dance.mp4" and clip["backend"] == "mediapipe"
    assert (clip["fps"], clip["num_frames"], clip["width"], clip["height"]) == (24.0, 48, 360, 640)
    assert clip["detection_rate"] >= 0.9
    for key in ("video", "skeleton_video", "keypoints"):
        assert (folder / clip[key]).is_file()
    assert len(PoseSequence.load(folder / clip["keypoints"])) == 48
    reasons = {entry["name"]: entry["reason"] for entry in index["rejected"]}
    assert reasons.keys() == {"nobody.mp4", "short.mp4"}
    assert "no person" in reasons["nobody.mp4"]
    assert "too short: 12 frames" in reasons["short.mp4"]
    assert calls[0] == 0 and calls[-1] == 1 and calls == sorted(calls)


def test_a_second_build_reuses_the_extracted_poses(built, capsys):
    folder, index, _ = built
    outputs = sorted((folder / "dataset_kps").iterdir())
    stamps = [path.stat().st_mtime_ns for path in outputs]
    assert main(["build", str(folder), "--backend", "mediapipe"]) == 0
    assert [path.stat().st_mtime_ns for path in outputs] == stamps
    assert sorted((folder / "dataset_kps").iterdir()) == outputs
    assert load_index(folder / "dataset.json") == index
    table = capsys.readouterr().out
    assert "already done, skipped" in table and "nobody.mp4" in table and "no person found" in table


def test_video_samples_read_the_index(built):
    folder, index, _ = built
    samples = VideoSamples(folder / "dataset.json", 24, 64, 96, seed=3)
    assert len(samples) == 1
    sample = samples[5]
    assert set(sample) == {"reference", "frames", "poses"}  # no masks for real videos
    assert tuple(sample["frames"].shape) == (24, 3, 96, 64) and tuple(sample["poses"].shape) == (24, 3, 96, 64)
    assert tuple(sample["reference"].shape) == (3, 96, 64)
    assert all(tensor.dtype == torch.float32 for tensor in sample.values())
    assert -1 <= sample["frames"].min() < 0 < sample["frames"].max() <= 1
    assert sample["poses"].min() >= 0 and sample["poses"].max() <= 1
    again = VideoSamples(folder / "dataset.json", 24, 64, 96, seed=3)[5]
    assert all(torch.equal(sample[name], again[name]) for name in sample)
    targets, reference = samples.frames_of(5)
    assert targets == list(range(targets[0], targets[0] + 24)) and reference not in targets
    assert samples.frames_of(6) != samples.frames_of(5)  # indices wrap around the clips with fresh frames

    # The skeletons get the frames' crop: each seen body point lands on the drawn skeleton.
    stage1 = VideoSamples(folder / "dataset.json", 1, 128, 192, seed=1)
    (target,), _ = stage1.frames_of(0)
    skeleton = stage1[0]["poses"][0].amax(0).numpy()
    body = PoseSequence.load(folder / index["clips"][0]["keypoints"]).frames[target].people[0].body
    zoom = max(128 / 360, 192 / 640)
    x = body[:, 0] * 360 * zoom - (360 * zoom - 128) / 2
    y = body[:, 1] * 640 * zoom - (640 * zoom - 192) / 2
    seen = (body[:, 2] > CONFIDENCE_THRESHOLD) & (x >= 1) & (x < 127) & (y >= 1) & (y < 191)
    on_skeleton = [
        skeleton[int(b) - 1 : int(b) + 2, int(a) - 1 : int(a) + 2].max() > 0.3
        for a, b in zip(x[seen], y[seen], strict=True)
    ]
    assert len(on_skeleton) >= 8 and all(on_skeleton)
    assert not np.isclose(stage1[0]["reference"].numpy(), stage1[0]["frames"][0].numpy()).all()
