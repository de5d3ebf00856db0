"""The Wan-Animate engine on a tiny random WanAnimatePipeline (animate/engines/wan_tiny.py), offline on the CPU: our
segment loop gives exactly the frames of diffusers' own `WanAnimatePipeline.__call__`, in both modes and with
guidance; the whole path (raw video -> poses, face crops and masks -> segments -> mp4 with the dance's audio) through
the CLI and the app's API; resampling to another frame rate; the memory modes; and the errors a user can run into.

The pose, face and mask preprocessing itself is checked against the official functions in test_wan_pose.py.
"""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import imageio_ffmpeg
import numpy as np
import PIL.Image
import pytest
import torch
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from test_app import app_home, app_module, app_url, client, media  # noqa: F401 - the same server as the API tests

import pose
from animate.engines.wan_animate import (
    DEFAULT_PROMPT,
    FACE_SIZE,
    _face_boxes,
    denoise_segments,
    load_wan_pipeline,
    prepare_wan,
    segment_plan,
)
from animate.engines.wan_tiny import save_tiny_wan
from animate.generate import GenerationSettings, engine_for
from animate.jobs import PoseCache
from animate.memory import apply_memory_mode
from conftest import ROOT
from pose.video import probe_video, read_frames

ENV = {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory) -> Path:
    return save_tiny_wan(tmp_path_factory.mktemp("wan") / "wan-tiny")


@pytest.fixture(scope="module")
def clip(media_dir, tmp_path_factory) -> Path:
    """The first second of the real dance video (24 frames at 24 fps), with its audio."""
    path = tmp_path_factory.mktemp("clip") / "dance_1s.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(media_dir / "hero_dance.mp4"), "-t",
                    "1", "-c", "copy", str(path)], check=True)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def poses(tmp_path_factory) -> PoseCache:
    """One pose cache for the module: the clip's poses are extracted once."""
    return PoseCache(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def character(media_dir) -> np.ndarray:
    return pose.read_image(media_dir / "ref_hero.png")


def settings(**changes) -> GenerationSettings:
    base = dict(steps=2, guidance=1.0, seed=3, segment_frames=9, max_frames=13, backend="mediapipe", short_side=64)
    return GenerationSettings(**{**base, **changes})


@pytest.mark.parametrize(("mode", "guidance"), [("animate", 1.0), ("replace", 2.0)])
def test_our_segments_are_the_frames_of_the_pipelines_own_call(wan_folder, clip, poses, character, mode, guidance):
    """13 frames in segments of 9 (two segments, the second continuing from the first's last frame)."""
    pipeline, _ = load_wan_pipeline(wan_folder, torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    chosen = settings(mode=mode, guidance=guidance)
    conditioning, _ = prepare_wan(character, clip, 64, 96, chosen, poses)
    with torch.inference_mode():
        ours = torch.cat(list(denoise_segments(pipeline, conditioning, chosen, seed=3)))

    inputs = list(conditioning.frames(range(len(conditioning))))

    def video(key: str) -> list[PIL.Image.Image]:
        return [PIL.Image.fromarray(frame[key]) for frame in inputs]

    extra = dict(background_video=video("background"), mask_video=video("mask")) if mode == "replace" else {}
    theirs = pipeline(
        image=PIL.Image.fromarray(conditioning.reference), pose_video=video("pose"), face_video=video("face"),
        prompt=DEFAULT_PROMPT, height=96, width=64, segment_frame_length=9, num_inference_steps=2, mode=mode,
        guidance_scale=guidance, generator=torch.Generator().manual_seed(3), output_type="pt", **extra,
    ).frames[0]  # fmt: skip
    assert ours.shape == (13, 96, 64, 3)
    torch.testing.assert_close(ours, theirs.permute(0, 2, 3, 1), rtol=0, atol=1e-6)
    assert ours.std() > 0.01  # noise from a random model, but not a constant picture


def test_segment_plan_pads_the_last_segment_back_and_forth():
    assert segment_plan(13, 9) == (2, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 11, 10, 9, 8])
    assert segment_plan(9, 9) == (1, list(range(9)))
    assert segment_plan(1, 5) == (1, [0] * 5)


@pytest.mark.parametrize("mode", ["model-offload", "lowest"])
def test_memory_modes_give_the_same_frames(wan_folder, clip, poses, character, mode):
    chosen = settings(max_frames=5, segment_frames=5, steps=1)
    conditioning, _ = prepare_wan(character, clip, 64, 96, chosen, poses)
    results = []
    for memory_mode in ("none", mode):
        pipeline = apply_memory_mode(load_wan_pipeline(wan_folder, torch.float32)[0], memory_mode, torch.device("cpu"))
        with torch.inference_mode():
            results.append(torch.cat(list(denoise_segments(pipeline, conditioning, chosen, seed=1))))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-6)


def test_preprocessing_in_replace_mode(clip, poses, character):
    """Poses drawn at the output size, 512 px face crops cut from the dancer, and a mask of the dancer that blacks
    them out of the background."""
    conditioning, _ = prepare_wan(character, clip, 64, 112, settings(mode="replace", max_frames=4), poses)
    (first, *_) = conditioning.frames([0])
    assert first["pose"].shape == (112, 64, 3) and first["pose"].max() > 0
    assert first["face"].shape == (FACE_SIZE, FACE_SIZE, 3) and first["face"].std() > 10  # a real crop
    mask = first["mask"] > 0
    assert set(np.unique(first["mask"])) == {0, 255} and 0.05 < mask.mean() < 0.8
    assert (first["background"][mask] == 0).all() and first["background"][~mask].mean() > 20
    assert conditioning.warnings == []


def test_animate_mode_keeps_the_characters_frame_and_replace_mode_the_videos(character):
    engine = engine_for(ROOT / "weights" / "tiny")  # an Animate Anyone model
    assert engine.name == "animate-anyone"
    from animate.engines.wan_animate import WanAnimateEngine

    wan = WanAnimateEngine()
    portrait, landscape = (451, 677), (1280, 720)
    assert wan.output_size(portrait, landscape, GenerationSettings(short_side=96, mode="animate")) == (96, 144)
    assert wan.output_size(portrait, landscape, GenerationSettings(short_side=96, mode="replace")) == (176, 96)
    # The preview shows the output's frame, at a short side of 512.
    assert wan.preview_size(portrait, landscape, GenerationSettings(mode="animate")) == (512, 768)
    assert wan.preview_size(portrait, landscape, GenerationSettings(mode="replace")) == (912, 512)


def test_another_frame_rate_resamples_the_same_duration(clip, poses, character):
    conditioning, _ = prepare_wan(character, clip, 64, 96, settings(max_frames=12, fps=30), poses)
    assert len(conditioning) == 15 and conditioning.fps == 30
    assert conditioning.source_frames == [0, 1, 2, 2, 3, 4, 5, 6, 6, 7, 8, 9, 10, 10, 11]
    assert "Resampled from 24 to 30 fps: 12 driving frames become 15" in conditioning.warnings[0]


def test_a_video_without_a_face_gives_blank_crops_and_says_so():
    """No frame's face points are confident: the face video is blank (the model guesses expressions), with a
    warning; frames without a face take the nearest frame's box."""
    faceless = SimpleNamespace(face=np.zeros((69, 3)))
    warnings = []
    assert _face_boxes(SimpleNamespace(width=64, height=96), [faceless, None], warnings) is None
    assert "No face was found in the driving video: the face video is blank" in warnings[0]

    face = np.zeros((69, 3))
    face[1:, :2] = np.random.default_rng(0).uniform(20, 40, (68, 2))
    face[1:, 2] = 0.9
    warnings = []
    boxes = _face_boxes(SimpleNamespace(width=64, height=96), [faceless, SimpleNamespace(face=face), None], warnings)
    assert boxes[0] == boxes[1] == boxes[2]
    assert warnings == ["No face was found in 2 of 3 driving frames: the nearest frame's face box is used there."]


def test_errors_say_what_to_do(clip, poses, character, media_dir, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"segment length must be 4n\+1 frames .*got 10"):
        prepare_wan(character, clip, 64, 96, settings(segment_frames=10), poses)
    with pytest.raises(ValueError, match="needs the raw driving video, not a skeleton video"):
        prepare_wan(character, media_dir / "dance_kps.mp4", 64, 96, settings(), poses)

    empty = tmp_path / "empty_room.mp4"
    with pose.VideoWriter(empty, 24) as writer:
        for _ in range(6):
            writer.write(np.full((96, 64, 3), 120, np.uint8))
    with pytest.raises(ValueError, match="No person was found in empty_room.mp4"):
        prepare_wan(character, empty, 64, 96, settings(mode="replace"), poses)

    # The dancer's poses are found but the segmenter sees nobody: there is nothing to replace.
    from pose.segment import PersonSegmenter

    monkeypatch.setattr(PersonSegmenter, "mask", lambda self, image: np.zeros(image.shape[:2], np.uint8))
    with pytest.raises(ValueError, match="Replace mode found no person in the driving video.*or animate mode"):
        prepare_wan(character, clip, 64, 96, settings(mode="replace", max_frames=3), poses)


def run_cli(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "animate", "generate", *map(str, arguments)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@pytest.mark.parametrize(("mode", "size"), [("animate", (64, 96)), ("replace", (64, 112))])
def test_the_cli_makes_an_mp4_with_the_dances_audio(wan_folder, clip, media_dir, tmp_path, mode, size):
    output = tmp_path / f"{mode}.mp4"
    result = run_cli("--model", wan_folder, "--mode", mode, "--image", media_dir / "ref_hero.png", "--video", clip,
                     "--frames", 10, "--resolution", 64, "--steps", 1, "--segment-frames", 5, "--backend", "mediapipe",
                     "--seed", 4, "-o", output)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Wrote {output} (10 frames, {size[0]}x{size[1]}, 24 fps, seed 4)" in result.stdout
    info = probe_video(output)
    assert info.has_audio and info.fps == 24 and (info.width, info.height) == size
    assert len(list(read_frames(output))) == 10
    record = json.loads(output.with_suffix(".json").read_text())
    assert (record["engine"], record["mode"], record["segment_frames"], record["seed"]) == ("wan-animate", mode, 5, 4)
    assert record["prompt_used"] == DEFAULT_PROMPT and record["steps"] == 1
    assert any(entry["file"] == "transformer/diffusion_pytorch_model.safetensors" for entry in record["models"])


def test_the_cli_names_the_missing_wan_weights_and_the_command(tmp_path, media_dir, clip):
    result = run_cli("--model", "wan-animate", "--weights-dir", tmp_path, "--image", media_dir / "ref_hero.png",
                     "--video", clip, "-o", tmp_path / "out.mp4")  # fmt: skip
    assert result.returncode != 0
    assert "The model wan-animate is not complete" in result.stdout + result.stderr
    assert "Wan2.2-Animate-14B-Diffusers/model_index.json" in result.stdout + result.stderr
    assert "python -m animate.weights download --only wan_animate" in result.stdout + result.stderr


def test_the_app_previews_and_animates_with_the_wan_model(client, media):  # noqa: F811 - fixtures imported above
    hero, dance = handle_file(media["hero"]), handle_file(media["dance"])
    info = client.predict("custom/wan-tiny", api_name="/select_model")
    assert "Wan-Animate" in info[0] and list(info[1:4]) == [
        4,
        1.0,
        96,
    ]  # its folder's steps and size; the engine's guidance

    video, picture, notes = client.predict(hero, dance, clip_length=6, clip_unit="frames", model="custom/wan-tiny",
                                           mode="replace", api_name="/preview")  # fmt: skip
    assert "6 frames at 24 fps" in notes and "the mask (red) over the driving video" in notes
    frame = next(read_frames(video))
    assert frame.shape[1] > 2 * frame.shape[0]  # three panels: pose (portrait) | face (square) | mask (portrait)
    assert np.asarray(PIL.Image.open(picture)).ndim == 3

    for mode in ("animate", "replace"):
        result, settings_file, seed, notes = client.predict(
            character=hero, driving_video=dance, model="custom/wan-tiny", steps=1, resolution=64, clip_length=6,
            clip_unit="frames", mode=mode, segment_length=5, prompt="a person dancing", api_name="/animate",
        )  # fmt: skip
        info = probe_video(result)
        assert info.has_audio and info.fps == 24 and info.num_frames == 6
        record = json.loads(Path(settings_file).read_text())
        assert (record["engine"], record["mode"], record["prompt_used"]) == ("wan-animate", mode, "a person dancing")

    with pytest.raises(AppError, match=r"4n\+1"):
        client.predict(character=hero, driving_video=dance, model="custom/wan-tiny", steps=1, resolution=64,
                       clip_length=6, clip_unit="frames", segment_length=8, api_name="/animate")  # fmt: skip


def test_int8_weights_take_less_memory_and_give_nearly_the_same_frames(wan_folder, clip, poses, character):
    """torchao's weight-only int8 on the transformer, in every memory mode (here on the CPU, where the hooks run)."""
    from torchao.quantization import Int8Tensor

    from animate.memory import tensor_bytes, weight_sizes

    chosen = settings(max_frames=5, segment_frames=5, steps=2)
    conditioning, _ = prepare_wan(character, clip, 64, 96, chosen, poses)
    plain = load_wan_pipeline(wan_folder, torch.bfloat16)[0]
    quantized = load_wan_pipeline(wan_folder, torch.bfloat16, quantize="int8")[0]
    assert isinstance(quantized.transformer.blocks[0].attn1.to_q.weight, Int8Tensor)
    assert quantized.vae.dtype == torch.float32  # the VAE stays in fp32 either way
    sizes = weight_sizes(plain), weight_sizes(quantized)
    # The tiny model is mostly norms and convolutions; in the 14B one the linear layers are nearly everything.
    assert sizes[1]["transformer"] < 0.9 * sizes[0]["transformer"] and sizes[1]["vae"] == sizes[0]["vae"]
    linear = [
        sum(tensor_bytes(module.weight) for module in pipe.transformer.modules() if isinstance(module, torch.nn.Linear))
        for pipe in (plain, quantized)
    ]
    assert linear[1] < 0.7 * linear[0]  # 1 byte a weight and a scale per row (rows of 8 to 32 here; 5120 in 14B)
    with torch.inference_mode():
        reference = torch.cat(list(denoise_segments(plain, conditioning, chosen, seed=1)))
        for mode in ("none", "lowest"):
            pipeline = load_wan_pipeline(wan_folder, torch.bfloat16, quantize="int8")[0]
            pipeline = apply_memory_mode(pipeline, mode, torch.device("cpu"))
            frames = torch.cat(list(denoise_segments(pipeline, conditioning, chosen, seed=1)))
            assert 0 < (frames - reference).abs().max() < 0.1, mode


def test_a_weight_missing_from_the_files_is_named(wan_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    from animate.checkpoints import CheckpointError

    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(wan_folder, broken)
    path = broken / "transformer" / "diffusion_pytorch_model.safetensors"
    weights = load_file(path)
    del weights["blocks.0.attn1.to_q.weight"]
    save_file(weights, path)
    with pytest.raises(CheckpointError, match=r"(?s)blocks\.0\.attn1\.to_q\.weight.*download --only wan_animate"):
        load_wan_pipeline(broken, torch.float32)


def test_side_by_side_and_cancel(wan_folder, clip, poses, character, tmp_path):
    import threading

    from animate.engines.wan_animate import generate_wan
    from animate.generate import GenerationCancelled

    pipeline = load_wan_pipeline(wan_folder, torch.float32)[0]
    chosen = settings(max_frames=5, segment_frames=5, steps=1, side_by_side=True)
    conditioning, _ = prepare_wan(character, clip, 64, 96, chosen, poses)
    result = generate_wan(pipeline, character, conditioning, tmp_path / "wide.mp4", chosen, driving_video=clip)
    assert (probe_video(result.path).width, probe_video(result.path).height) == (3 * 64, 96)  # character|pose|result
    assert "context_frames" not in result.settings and result.settings["side_by_side"] is True

    cancel = threading.Event()

    def progress(fraction, message):
        if message.startswith("Denoising"):
            cancel.set()  # Cancel pressed during the first step

    with pytest.raises(GenerationCancelled):
        generate_wan(pipeline, character, conditioning, tmp_path / "cancelled.mp4", chosen, progress=progress,
                     cancel=cancel)  # fmt: skip
    assert not (tmp_path / "cancelled.mp4").exists()


def test_out_of_memory_with_the_wan_model_names_its_own_settings(client, media, monkeypatch):  # noqa: F811
    """Faked, as there is no GPU here: the sentence names the segment length and 8-bit weights, not the window."""
    from animate.engines.wan_animate import WanAnimateEngine

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(WanAnimateEngine, "generate", out_of_memory)
    with pytest.raises(AppError) as error:
        client.predict(character=handle_file(media["hero"]), driving_video=handle_file(media["dance"]),
                       model="custom/wan-tiny", steps=1, resolution=64, clip_length=5, clip_unit="frames",
                       segment_length=5, memory_mode="none", api_name="/animate")  # fmt: skip
    assert str(error.value.message).startswith(
        "The GPU ran out of memory. Lower the segment length (now 5 frames) or the weights' precision (8-bit "
        "weights: int8), the output size (now 64×96), or choose memory mode model-offload (now none; Advanced)."
    )


def test_animate_mode_fits_the_dance_to_the_characters_body(clip, poses, character):
    """Retargeted onto the real character image (MediaPipe on both): the first pose's head, hips and feet land near
    the character's own (the feet once stood at mid-shin, when MediaPipe's missing small toe counted as (0, 0))."""
    from pose.wan import wholebody_to_wan

    height, width = character.shape[:2]
    found = poses.character_pose(character, "mediapipe", True, True)
    own = wholebody_to_wan(found.people[0].to_wholebody(width, height), width, height)
    conditioning, _ = prepare_wan(character, clip, width, height, settings(max_frames=2, short_side=None), poses)
    placed = conditioning.poses[0]
    assert (placed.width, placed.height) == (width, height)
    for joint in (0, 8, 11, 10, 13):  # nose, hips, ankles
        assert abs(placed.body[joint, 1] - own.body[joint, 1]) < 0.1 * height, joint
