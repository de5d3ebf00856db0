"""Video -> pose sequence on the real dance video and on short clips made with imageio-ffmpeg's ffmpeg, bad files
included; skeleton videos written and recognised."""

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from pose import (
    NoPersonFoundError,
    PoseSequence,
    VideoError,
    extract_poses,
    is_skeleton_video,
    probe_video,
    read_frames,
    smooth_sequence,
    write_skeleton_video,
)
from pose.keypoints import CONFIDENCE_THRESHOLD, L_WRIST, LEFT_HAND, R_WRIST, RIGHT_HAND


def _ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def clips(media_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    dance = str(media_dir / "hero_dance.mp4")
    # The first 2 s, stream-copied (540 x 960, 24 fps, with audio), in an mp4 and a mov.
    _ffmpeg("-i", dance, "-t", "2", "-c", "copy", "-movflags", "+faststart", str(folder / "dance_2s.mp4"))
    _ffmpeg("-i", dance, "-t", "2", "-c", "copy", str(folder / "dance_2s.mov"))
    # Landscape webm without audio: the dancer small, in the middle of a wide black frame.
    _ffmpeg("-i", dance, "-t", "1", "-an", "-vf", "scale=270:480,pad=854:480:292:0", "-c:v", "libvpx", "-b:v", "1M",
            str(folder / "landscape.webm"))  # fmt: skip
    # Variable frame rate: every third frame held twice as long.
    _ffmpeg("-i", dance, "-t", "1", "-an", "-vf", "scale=270:480,setpts='(N+floor(N/3))/24/TB'", "-fps_mode", "vfr",
            str(folder / "vfr.mp4"))  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=24", "-t", "1", str(folder / "nobody.mp4"))
    _ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=7680x4320:rate=5", "-t", "0.4", str(folder / "huge.mp4"))
    whole = (folder / "dance_2s.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("these are my notes, not a video")
    return folder


@pytest.fixture(scope="module")
def dance_body(media_dir):
    """The whole 4 s dance, body only, unsmoothed (smoothing is compared against it)."""
    return extract_poses(media_dir / "hero_dance.mp4", backend="mediapipe", hands=False, face=False, smooth=False)


def test_whole_dance_keeps_frame_count_and_fps_and_finds_the_dancer(dance_body):
    assert len(dance_body) == 96 and dance_body.fps == 24.0
    assert (dance_body.width, dance_body.height) == (540, 960)
    found = sum(bool(frame.people) for frame in dance_body.frames)
    assert found >= 0.95 * 96
    assert dance_body.backend == "mediapipe"


def test_smoothing_lowers_frame_to_frame_jitter_on_the_dance(dance_body):
    smoothed = smooth_sequence(dance_body)

    def stacked(sequence: PoseSequence) -> np.ndarray:
        return np.stack([f.people[0].body for f in sequence.frames if f.people]) * [540, 960, 1]

    raw, smooth = stacked(dance_body), stacked(smoothed)
    seen = raw[..., 2] > CONFIDENCE_THRESHOLD
    raw_jitter = np.abs(np.diff(raw[..., :2], n=2, axis=0))[seen[1:-1]].mean()
    smooth_jitter = np.abs(np.diff(smooth[..., :2], n=2, axis=0))[seen[1:-1]].mean()
    assert smooth_jitter < 0.6 * raw_jitter
    # ...without drifting away from the detections: on average within 1 % of the frame height.
    assert np.abs(smooth[..., :2] - raw[..., :2])[seen].mean() < 9.6


def _frame_count(path) -> int:
    return sum(1 for _ in read_frames(path, max_side=64))


def test_hands_and_face_with_stride_and_progress(clips):
    calls = []
    sequence = extract_poses(clips / "dance_2s.mp4", backend="mediapipe", stride=2, progress=lambda *c: calls.append(c))
    kept = (_frame_count(clips / "dance_2s.mp4") + 1) // 2
    assert len(sequence) == kept and sequence.fps == 12.0
    # One call per frame (`total` estimated from the header), then a last one with the exact total if it differed.
    assert [done for done, _ in calls[:kept]] == list(range(1, kept + 1))
    assert calls[-1] == (kept, kept) and len(calls) <= kept + 1
    assert all(done <= total for done, total in calls)
    people = [frame.people[0] for frame in sequence.frames if frame.people]
    assert sum(person.face[:, 2].min() > 0 for person in people) >= 20
    wrists_matched = 0
    for person in people:
        for side, own, other in ((LEFT_HAND, L_WRIST, R_WRIST), (RIGHT_HAND, R_WRIST, L_WRIST)):
            if person.hands[side, 0, 2] > 0:
                hand = person.hands[side, 0, :2]
                assert np.linalg.norm(hand - person.body[own, :2]) < np.linalg.norm(hand - person.body[other, :2])
                wrists_matched += 1
    assert wrists_matched >= 10


@pytest.mark.parametrize("name, size", [("dance_2s.mov", (540, 960)), ("landscape.webm", (854, 480))])
def test_other_containers_and_orientations(clips, name, size):
    sequence = extract_poses(clips / name, backend="mediapipe", hands=False, face=False, max_frames=12)
    assert len(sequence) == 12 and sequence.fps == 24.0
    assert (sequence.width, sequence.height) == size
    assert len(sequence.missing_frames) <= 1


def test_variable_frame_rate_is_read_at_its_average_rate(clips):
    info = probe_video(clips / "vfr.mp4")
    sequence = extract_poses(clips / "vfr.mp4", backend="mediapipe", hands=False, face=False)
    assert sequence.fps == pytest.approx(info.fps)
    assert abs(len(sequence) - info.duration * info.fps) <= 2


def test_video_without_a_person_raises_a_clear_error(clips):
    with pytest.raises(NoPersonFoundError, match="No person was found in nobody.mp4") as caught:
        extract_poses(clips / "nobody.mp4", backend="mediapipe")
    assert isinstance(caught.value, ValueError)
    assert "clearly visible" in str(caught.value)


def test_huge_resolution_is_decoded_small_and_handled(clips):
    assert next(read_frames(clips / "huge.mp4", max_side=640)).shape == (360, 640, 3)
    with pytest.raises(NoPersonFoundError):
        extract_poses(clips / "huge.mp4", backend="mediapipe")


@pytest.mark.parametrize("name, message", [("empty.mp4", "empty"), ("notes.mp4", "Could not read notes.mp4")])
def test_files_that_are_not_videos_raise_video_error(clips, name, message):
    with pytest.raises(VideoError, match=message):
        extract_poses(clips / name, backend="mediapipe")


def test_truncated_video_gives_its_readable_frames_or_a_video_error(clips):
    try:
        sequence = extract_poses(clips / "truncated.mp4", backend="mediapipe", hands=False, face=False)
    except VideoError as error:
        assert "truncated" in str(error) or "Could not read" in str(error)
    else:
        assert 0 < len(sequence) < _frame_count(clips / "dance_2s.mp4")


def test_skeleton_video_has_the_clips_frames_and_is_recognised(clips, media_dir, tmp_path):
    sequence = extract_poses(clips / "dance_2s.mp4", backend="mediapipe", hands=False, face=False, max_frames=24)
    path = write_skeleton_video(sequence, tmp_path / "dance_kps.mp4")
    info = probe_video(path)
    assert (info.width, info.height) == (512, 910) and info.fps == 24.0 and not info.has_audio
    assert sum(1 for _ in read_frames(path)) == 24
    assert is_skeleton_video(path)
    assert is_skeleton_video(media_dir / "dance_kps.mp4")
    assert not is_skeleton_video(media_dir / "hero_dance.mp4")
    assert not is_skeleton_video(clips / "nobody.mp4")
    _ffmpeg("-f", "lavfi", "-i", "color=c=0x0a0a0a:size=320x240:rate=24", "-t", "1", str(tmp_path / "dark.mp4"))
    assert not is_skeleton_video(tmp_path / "dark.mp4")


@pytest.mark.parametrize("name", ["hero_dance.mp4", "dance_kps.mp4"])
def test_reading_from_a_start_frame_gives_exactly_those_frames(media_dir, name):
    """Seeking (used to sample training clips from long videos) lands on the same frames as decoding from the start."""
    from pose.video import read_frames

    everything = list(read_frames(media_dir / name, max_side=160, max_frames=60))
    for start in (1, 2, 23, 57):
        part = list(read_frames(media_dir / name, start=start, max_frames=3, max_side=160))
        assert len(part) == 3
        for offset, frame in enumerate(part):
            assert np.array_equal(frame, everything[start + offset]), (start, offset)
