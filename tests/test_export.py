"""Video export: audio passthrough and frame rate on the real dance video, side-by-side layout, embedded settings,
the hash cache, and what a failed or cancelled export leaves behind."""

import hashlib
import json
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from animate.export import export_video, file_sha256, generation_settings, read_settings, side_by_side
from pose.video import VideoError, VideoWriter, probe_video, read_frames

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
SETTINGS = {"seed": 7, "steps": 20, "guidance": 3.5}


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-y", *args], check=True)


def _audio(path, rate: int = 16000) -> np.ndarray:
    """The first audio stream decoded to mono float samples at `rate`."""
    pcm = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le", "-ac", "1", "-ar", str(rate), "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(pcm, np.int16).astype(np.float32)


@pytest.fixture(scope="module")
def dance_cut(media_dir, tmp_path_factory):
    """The first 3 s of the real dance video, scaled down to keep the test fast; its AAC audio copied as it is."""
    path = tmp_path_factory.mktemp("media") / "dance_3s.mp4"
    _ffmpeg(
        "-i", str(media_dir / "hero_dance.mp4"), "-t", "3", "-vf", "scale=270:480",
        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", str(path),
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def silent_cut(dance_cut, tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "dance_3s_silent.mp4"
    _ffmpeg("-i", str(dance_cut), "-an", "-c:v", "copy", str(path))
    return path


def test_audio_passthrough_and_frame_rate(dance_cut, tmp_path):
    source = probe_video(dance_cut)
    assert source.fps == 24 and source.has_audio
    out = export_video(
        read_frames(dance_cut, max_frames=50), tmp_path / "out.mp4", settings=SETTINGS, driving_video=dance_cut
    )

    result = probe_video(out)
    assert result.fps == source.fps
    assert result.has_audio
    assert sum(1 for _ in read_frames(out)) == 50
    audio, source_audio = _audio(out), _audio(dance_cut)
    assert abs(len(audio) / 16000 - 50 / source.fps) <= 1 / source.fps
    # The driving video's own sound, in sync: the decoded samples line up with the source's.
    assert np.corrcoef(audio, source_audio[: len(audio)])[0, 1] > 0.95


def test_audio_shorter_than_the_video_is_padded(dance_cut, tmp_path):
    one_second_of_audio = tmp_path / "short_audio.mp4"
    _ffmpeg("-i", str(dance_cut), "-af", "atrim=0:1", "-c:v", "copy", "-c:a", "aac", str(one_second_of_audio))
    out = export_video(
        read_frames(dance_cut, max_frames=60),
        tmp_path / "out.mp4",
        settings=SETTINGS,
        driving_video=one_second_of_audio,
    )
    assert sum(1 for _ in read_frames(out)) == 60
    assert abs(len(_audio(out)) / 16000 - 60 / 24) <= 1 / 24


def test_driving_video_without_audio(silent_cut, tmp_path):
    out = export_video(
        read_frames(silent_cut, max_frames=12), tmp_path / "out.mp4", settings=SETTINGS, driving_video=silent_cut
    )
    result = probe_video(out)
    assert not result.has_audio
    assert result.fps == 24


def test_explicit_fps_without_driving_video(tmp_path):
    frames = (np.full((64, 48, 3), value, np.uint8) for value in range(0, 250, 10))
    out = export_video(frames, tmp_path / "out.mp4", settings=SETTINGS, fps=12.5)
    result = probe_video(out)
    assert result.fps == 12.5 and not result.has_audio
    assert sum(1 for _ in read_frames(out)) == 25


def test_fps_is_needed_without_driving_video(tmp_path):
    with pytest.raises(ValueError, match="Give the frame rate"):
        export_video([np.zeros((8, 8, 3), np.uint8)], tmp_path / "out.mp4", settings=SETTINGS)


def test_side_by_side_layout():
    red, green = (255, 0, 0), (0, 255, 0)
    character = np.full((100, 50, 3), red, np.uint8)  # scaled to 80 high: 40 wide
    skeletons = [np.full((60, 40, 3), green, np.uint8)] * 3  # scaled to 80 high: 53 wide
    results = [np.random.default_rng(index).integers(0, 256, (80, 64, 3), dtype=np.uint8) for index in range(3)]

    frames = list(side_by_side(character, skeletons, results))

    assert len(frames) == 3
    for frame, result in zip(frames, results, strict=True):
        assert frame.shape == (80, 40 + 53 + 64 + 1, 3)  # 157 is odd: one black column pads it
        assert (frame[:, :40] == red).all()
        assert (frame[:, 40:93] == green).all()
        assert np.array_equal(frame[:, 93:157], result)
        assert (frame[:, 157] == 0).all()


def test_side_by_side_needs_a_skeleton_for_every_frame():
    frames = side_by_side(
        np.zeros((8, 8, 3), np.uint8), [np.zeros((8, 8, 3), np.uint8)], [np.zeros((8, 8, 3), np.uint8)] * 2
    )
    with pytest.raises(ValueError, match="ran out at frame 1"):
        list(frames)


def test_side_by_side_export_of_real_frames(dance_cut, media_dir, tmp_path):
    character = np.asarray(Image.open(media_dir / "ref_hero.png").convert("RGB"))
    frames = side_by_side(character, read_frames(dance_cut), read_frames(dance_cut, max_frames=24))
    out = export_video(frames, tmp_path / "side.mp4", settings=SETTINGS, driving_video=dance_cut)
    info = probe_video(out)
    character_width = round(character.shape[1] * 480 / character.shape[0])
    assert (info.height, info.width) == (480, character_width + 270 + 270 + (character_width % 2))


def test_settings_round_trip(tmp_path):
    model = tmp_path / "pose_guider.pth"
    model.write_bytes(b"weights" * 1000)
    settings = generation_settings(
        seed=123,
        steps=25,
        guidance=3.5,
        model_files=[model],
        extra={"width": 512, "note": 'odd text: a=b; #c \\ "quoted"\nsecond line, ünïcode'},
        hash_cache=tmp_path / "hashes.json",
    )
    assert settings["models"] == [
        {"file": "pose_guider.pth", "bytes": 7000, "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}
    ]

    out = export_video([np.zeros((16, 16, 3), np.uint8)] * 3, tmp_path / "out.mp4", settings=settings, fps=24)

    assert read_settings(out) == settings
    assert json.loads((tmp_path / "out.json").read_text()) == settings


def test_video_without_settings_reads_as_none(dance_cut):
    assert read_settings(dance_cut) is None


def test_extra_settings_cannot_replace_standard_ones(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        generation_settings(seed=1, steps=2, guidance=3.0, model_files=[], extra={"seed": 5})


def test_hash_cache_is_used_until_the_file_changes(tmp_path):
    model, cache = tmp_path / "model.pth", tmp_path / "hashes.json"
    model.write_bytes(b"a" * 100)
    assert file_sha256(model, cache) == hashlib.sha256(b"a" * 100).hexdigest()

    # A planted value comes back while size and mtime are unchanged: the file was not read again.
    entries = json.loads(cache.read_text())
    entries[str(model.resolve())]["sha256"] = "from the cache"
    cache.write_text(json.dumps(entries))
    assert file_sha256(model, cache) == "from the cache"

    model.write_bytes(b"b" * 101)
    assert file_sha256(model, cache) == hashlib.sha256(b"b" * 101).hexdigest()


class Cancelled(Exception):
    """What the app raises from inside the frame stream when the user presses Stop."""


def test_cancelled_export_keeps_the_earlier_result_and_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.mp4"
    export_video([np.full((32, 32, 3), 200, np.uint8)] * 5, target, settings={"run": 1}, fps=24)
    earlier_video, earlier_sidecar = target.read_bytes(), (tmp_path / "out.json").read_text()

    def frames_then_cancel():
        for _ in range(10):
            yield np.zeros((32, 32, 3), np.uint8)
        raise Cancelled

    with pytest.raises(Cancelled):
        export_video(frames_then_cancel(), target, settings={"run": 2}, fps=24)

    assert target.read_bytes() == earlier_video
    assert (tmp_path / "out.json").read_text() == earlier_sidecar
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.json", "out.mp4"]


def test_failed_first_export_leaves_nothing(tmp_path):
    frames = side_by_side(
        np.zeros((8, 8, 3), np.uint8), [np.zeros((8, 8, 3), np.uint8)], [np.zeros((8, 8, 3), np.uint8)] * 4
    )
    with pytest.raises(ValueError, match="ran out"):
        export_video(frames, tmp_path / "out.mp4", settings=SETTINGS, fps=24)
    assert list(tmp_path.iterdir()) == []


def test_unreadable_audio_source_keeps_the_earlier_result_and_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.mp4"
    export_video([np.full((32, 32, 3), 200, np.uint8)] * 5, target, settings={"run": 1}, fps=24)
    earlier = target.read_bytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")

    writer = VideoWriter(target, 24, audio_from=broken)
    writer.write_all([np.zeros((32, 32, 3), np.uint8)] * 5)
    with pytest.raises(VideoError, match="Could not add the audio of broken.mp4"):
        writer.close()

    assert target.read_bytes() == earlier
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken.mp4", "out.json", "out.mp4"]
