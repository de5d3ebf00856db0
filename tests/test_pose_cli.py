"""`python -m pose extract`: one video with alignment, and a folder run that resumes where it stopped."""

import subprocess
import sys

import imageio_ffmpeg
import pytest
from PIL import Image

from conftest import ROOT
from pose import PoseSequence, probe_video, read_frames
from pose.__main__ import main

FAST = ["--backend", "mediapipe", "--no-hands", "--no-face"]


def _ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def clip(media_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "dance_1s.mp4"
    _ffmpeg("-i", str(media_dir / "hero_dance.mp4"), "-t", "1", "-c", "copy", str(path))
    return path


def test_extract_with_alignment_writes_video_json_and_preview(clip, media_dir, tmp_path):
    output = tmp_path / "out" / "dance_kps.mp4"
    assert main(["extract", str(clip), "-o", str(output), "--align", str(media_dir / "ref_hero.png"), *FAST]) == 0

    source_frames = sum(1 for _ in read_frames(clip, max_side=64))
    sequence = PoseSequence.load(output.with_suffix(".json"))
    character = Image.open(media_dir / "ref_hero.png")
    assert (sequence.width, sequence.height) == character.size  # aligned: in the character's frame
    assert len(sequence) == source_frames and sequence.fps == 24.0
    info = probe_video(output)
    assert info.fps == 24.0 and info.width == 512  # short side 512, as DWPose draws
    assert sum(1 for _ in read_frames(output)) == source_frames
    assert Image.open(tmp_path / "out" / "dance_kps_preview.png").size == character.size


def test_folder_run_skips_finished_videos_and_redoes_unfinished_ones(clip, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mov"):
        _ffmpeg("-i", str(clip), "-c", "copy", str(videos / name))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=24", "-t", "0.5", str(videos / "nobody.mp4"))
    (videos / "notes.txt").write_text("not a video")
    arguments = ["extract", str(videos), "--max-frames", "6", *FAST]

    assert main(arguments) == 1  # nobody.mp4 has no person: reported, the others still done
    output = tmp_path / "videos_kps"
    assert sorted(path.name for path in output.iterdir()) == ["a_kps.json", "a_kps.mp4", "b_kps.json", "b_kps.mp4"]
    assert "nobody.mp4: No person was found" in capsys.readouterr().err
    assert len(PoseSequence.load(output / "b_kps.json")) == 6

    # As if killed between writing b's video and its JSON, with a partial file left behind.
    (output / "b_kps.json").unlink()
    (output / ".b_kps.partial.mp4").write_bytes(b"half a video")
    finished = (output / "a_kps.mp4").stat().st_mtime_ns
    main(arguments)
    printed = capsys.readouterr().out
    assert "a.mp4: already done, skipped" in printed and "b.mov: 6 frames" in printed
    assert (output / "a_kps.mp4").stat().st_mtime_ns == finished
    assert (output / "b_kps.json").is_file() and sum(1 for _ in read_frames(output / "b_kps.mp4")) == 6


def test_module_entry_point_reports_a_bad_file_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    result = subprocess.run(
        [sys.executable, "-m", "pose", "extract", str(bad), "--backend", "mediapipe"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Could not read bad.mp4 as a video" in result.stderr and "Traceback" not in result.stderr
