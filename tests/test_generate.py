"""The generation job and `python -m animate generate` on real media with a tiny model (offline)."""

import subprocess
import sys
import threading

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from animate.architecture import build_pipeline
from animate.engines.animate_anyone import generate_video, prepare_skeletons
from animate.export import read_settings
from animate.generate import GenerationCancelled, GenerationSettings, load_model, output_size
from conftest import ROOT
from pose.video import probe_video


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny"
    build_pipeline("tiny", seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def dance_clip(media_dir, tmp_path_factory):
    """The first two seconds of the real dance video, with its audio."""
    path = tmp_path_factory.mktemp("media") / "dance_2s.mp4"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(media_dir / "hero_dance.mp4"), "-t", "2", "-c", "copy", str(path)], check=True
    )
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "animate", "generate", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_cli_generates_an_mp4_with_the_driving_audio(tiny_model, dance_clip, media_dir, tmp_path):
    output = tmp_path / "out.mp4"
    result = run_cli(
        "--image", str(media_dir / "ref_hero.png"), "--video", str(dance_clip), "--model", str(tiny_model),
        "--steps", "2", "--frames", "20", "--resolution", "64", "--seed", "7", "-o", str(output),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    info = probe_video(output)
    assert info.has_audio and info.fps == 24.0
    assert abs(info.duration - 20 / 24) < 0.05
    settings = read_settings(output)
    assert settings["seed"] == 7 and settings["frames"] == 20 and settings["steps"] == 2
    assert settings["skeletons"] == "extracted" and settings["width"] % 8 == 0 and settings["height"] % 8 == 0
    assert all(len(model["sha256"]) == 64 for model in settings["models"])
    assert output.with_suffix(".json").is_file() and "seed 7" in result.stdout


def test_a_skeleton_video_is_used_as_it_is(tiny_model, media_dir, tmp_path):
    pipeline, files = load_model(tiny_model, torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    character = np.asarray(Image.open(media_dir / "ref_anime.png").convert("RGB"))
    settings = GenerationSettings(steps=1, max_frames=6, seed=3, short_side=64)
    width, height = output_size(character.shape[1], character.shape[0], 64)
    skeletons = prepare_skeletons(character, media_dir / "dance_kps.mp4", width, height, settings)
    assert skeletons.source == "skeleton video" and skeletons.fps == 30.0 and len(skeletons.frames) == 6
    assert skeletons.frames[0].shape == (height, width, 3)
    result = generate_video(
        pipeline, character, skeletons, tmp_path / "kps.mp4", settings, driving_video=media_dir / "dance_kps.mp4",
        model_files=files,
    )  # fmt: skip
    info = probe_video(result.path)
    assert not info.has_audio and info.fps == 30.0 and result.frames == 6 and result.seed == 3


def test_asking_for_more_frames_than_the_clip_has_is_a_warning_not_a_crash(tiny_model, media_dir, tmp_path):
    pipeline, files = load_model(tiny_model, torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    character = np.asarray(Image.open(media_dir / "ref_anime.png").convert("RGB"))
    settings = GenerationSettings(steps=1, max_frames=1000, stride=8, short_side=64)
    skeletons = prepare_skeletons(character, media_dir / "dance_kps.mp4", 64, 96, settings)
    result = generate_video(pipeline, character, skeletons, tmp_path / "all.mp4", settings, model_files=files)
    assert result.frames == 17  # 136 frames, every 8th
    assert any("fewer than the 1000 asked for" in warning for warning in result.warnings)
    assert probe_video(result.path).fps == 30.0 / 8


def test_cancelling_writes_nothing_and_keeps_an_earlier_result(tiny_model, media_dir, tmp_path):
    pipeline, files = load_model(tiny_model, torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    character = np.asarray(Image.open(media_dir / "ref_anime.png").convert("RGB"))
    settings = GenerationSettings(steps=4, max_frames=6, short_side=64)
    skeletons = prepare_skeletons(character, media_dir / "dance_kps.mp4", 64, 96, settings)
    output = tmp_path / "result.mp4"
    output.write_bytes(b"an earlier result")
    cancel = threading.Event()
    steps = []

    def progress(fraction, message):
        if message.startswith("Denoising"):
            steps.append(message)
            cancel.set()  # as the Cancel button does, from another thread

    with pytest.raises(GenerationCancelled):
        generate_video(pipeline, character, skeletons, output, settings, progress=progress, cancel=cancel)
    assert len(steps) == 1  # stopped within one denoising step
    assert output.read_bytes() == b"an earlier result"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["result.mp4"]


def test_cli_errors_are_one_clear_line(tiny_model, media_dir, tmp_path):
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("hello")
    common = ["--model", str(tiny_model), "-o", str(tmp_path / "o.mp4")]
    result = run_cli("--image", str(media_dir / "ref_hero.png"), "--video", str(not_a_video), *common)
    assert result.returncode == 2 and "error: Could not read notes.mp4 as a video" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("--image", str(tmp_path / "missing.png"), "--video", str(media_dir / "dance_kps.mp4"), *common)
    assert result.returncode == 2 and "missing.png is not an image that can be read" in result.stderr
    result = run_cli("--image", str(media_dir / "ref_hero.png"), *common)
    assert result.returncode == 2 and "Give a driving video" in result.stderr
    kps = ["--image", str(media_dir / "ref_hero.png"), "--video", str(media_dir / "dance_kps.mp4"), *common]
    for option, value, message in (
        ("--steps", "10000", "Sampling steps must be a whole number from 1 to 100; got 10000."),
        ("--seed", str(2**70), "Seed must be a whole number from -1 to 4294967295"),
        ("--stride", "0", "Frame stride must be a whole number from 1 to 8; got 0."),
        ("--guidance", "1e9", "Guidance scale must be a number from 1 to 10; got 1000000000.0."),
        ("--resolution", "10000", "Output size (short side, px) must be a whole number from 64 to 1024"),
    ):
        result = run_cli(*kps, option, value)
        assert result.returncode == 2 and f"error: {message}" in result.stderr, result.stderr


def test_output_size_keeps_the_aspect_ratio_on_multiples_of_8():
    assert output_size(1080, 1920, 512) == (512, 912)
    assert output_size(768, 512, 512) == (768, 512)
    width, height = output_size(333, 500, 128)
    assert width % 8 == 0 and height % 8 == 0 and abs(width / height - 333 / 500) < 0.05
