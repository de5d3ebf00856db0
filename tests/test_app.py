"""The app through its API, as a user's script calls it (gradio_client): the whole path on the real dance video with
the built-in model, every kind of bad input, cancel and the queue, the weights panel and the training tab.

One server for the session (`app_url`), on weights, runs and job folders of its own in a temporary folder; the
browser test (test_app_browser.py) uses the same one.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import psutil
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from animate.engines.wan_tiny import save_tiny_wan
from animate.export import read_settings
from conftest import ROOT
from pose.video import probe_video, read_frames

MAX_UPLOAD_MB = 4


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# test_app_browser.py imports these fixtures, which makes pytest hold a second instance of each for that module; the
# server (and what it is built on) is made once per test session all the same.
_SESSION: dict = {}


@pytest.fixture(scope="session")
def app_home(tmp_path_factory) -> Path:
    """A weights folder with the built-in model (and its examples), a tiny random Wan-Animate model, and room for
    runs and jobs."""
    if "home" not in _SESSION:
        home = tmp_path_factory.mktemp("app")
        shutil.copytree(ROOT / "weights" / "tiny", home / "weights" / "tiny")
        save_tiny_wan(home / "weights" / "custom" / "wan-tiny")  # the Wan-Animate engine's path, at a tiny size
        _SESSION["home"] = home
    return _SESSION["home"]


@pytest.fixture(scope="session")
def app_module(app_home):
    """`import app` with its environment pointing into `app_home`; what the import did is noted before any call."""
    if "app" not in _SESSION:
        environment = {
            "ANIMATE_WEIGHTS_DIR": str(app_home / "weights"),
            "ANIMATE_RUNS_DIR": str(app_home / "runs"),
            "ANIMATE_JOBS_DIR": str(app_home / "jobs"),
            "ANIMATE_MAX_UPLOAD_MB": str(MAX_UPLOAD_MB),
            "ANIMATE_MAX_QUEUE": "1",
            "ANIMATE_MAX_VIDEO_SECONDS": "30",
            "ANIMATE_MAX_FRAMES": "400",
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
        with pytest.MonkeyPatch.context() as patch:
            for name, value in environment.items():
                patch.setenv(name, value)
            import app
        app.after_import = {"running": app.demo.is_running, "model loaded": app.loaded_model._loaded is not None}
        _SESSION["app"] = app
    return _SESSION["app"]


@pytest.fixture(scope="session")
def app_url(app_module):
    if "url" not in _SESSION:
        port = free_port()
        app_module.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        _SESSION["url"] = f"http://127.0.0.1:{port}/"
    yield _SESSION["url"]
    if app_module.demo.is_running:
        app_module.demo.close()


@pytest.fixture
def client(app_url) -> Client:
    """A fresh browser session."""
    return Client(app_url, verbose=False, download_files=True)


@pytest.fixture(scope="session")
def media(media_dir, tmp_path_factory) -> dict[str, Path]:
    """The first two seconds of the real dance video (with its audio), and files that are not what they claim."""
    folder = tmp_path_factory.mktemp("media")
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    dance = folder / "dance_2s.mp4"
    source = media_dir / "hero_dance.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-i", str(source), "-t", "2", "-c", "copy", str(dance)], check=True)
    nobody = folder / "nobody.mp4"  # a test pattern: a video, but no person in it
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=12", "-t", "1",
                    "-pix_fmt", "yuv420p", str(nobody)], check=True)  # fmt: skip
    (folder / "notes.mp4").write_text("not a video")
    whole = dance.read_bytes()  # its index (moov) comes last: half of the file is no readable video
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.png").write_text("not an image")
    Image.new("RGB", (400, 600), (40, 120, 200)).save(folder / "blank.png")
    (folder / "huge.mp4").write_bytes(os.urandom((MAX_UPLOAD_MB + 1) * 1_000_000))
    named = {"dance": dance, "nobody": nobody, "hero": media_dir / "ref_hero.png", "kps": media_dir / "dance_kps.mp4"}
    return named | {path.name: path for path in folder.iterdir()}


def warnings_of(job) -> list[str]:
    """The gr.Warning messages a finished job sent."""
    messages = []
    while not job.communicator.updates.empty():
        update = job.communicator.updates.get_nowait()
        if getattr(update, "log", None) and update.log[1] == "warning":
            messages.append(update.log[0])
    return messages


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_importing_the_app_loads_no_model_and_starts_no_server(app_module):
    assert app_module.after_import == {"running": False, "model loaded": False}


def test_every_listener_has_an_api_name(app_module):
    names = [fn.api_name for fn in app_module.demo.fns.values()]
    assert all(names), names
    assert len(set(names)) == len(names)
    assert {"preview", "animate", "cancel", "download_weights", "build_dataset", "start_training"} <= set(names)


def test_python_app_py_serves_on_gradio_host_and_port_and_borrows_a_spaces_gpu(app_home, tmp_path):
    """`python app.py` as a Space runs it: host and port from Gradio's variables, and `spaces.GPU` wrapping the
    generation when the `spaces` package is there (a stand-in here: the real one needs a Space)."""
    (tmp_path / "spaces.py").write_text(
        "def GPU(duration=None):\n"
        "    def lend(function):\n"
        "        print(f'spaces.GPU({duration}) lends a GPU to {function.__name__}', flush=True)\n"
        "        return function\n"
        "    return lend\n"
    )
    port = free_port()
    env = os.environ | {
        "PYTHONPATH": str(tmp_path), "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
        "ANIMATE_WEIGHTS_DIR": str(app_home / "weights"), "ANIMATE_JOBS_DIR": str(tmp_path / "jobs"),
        "ANIMATE_RUNS_DIR": str(tmp_path / "runs"), "GRADIO_ANALYTICS_ENABLED": "False",
    }  # fmt: skip
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        wait_for(lambda: lines.append(server.stdout.readline()) or f":{port}" in lines[-1], 120, "the server")
        assert f"http://127.0.0.1:{port}" in lines[-1]
        assert any("spaces.GPU(300) lends a GPU to generate_on_gpu" in line for line in lines)
        api = Client(f"http://127.0.0.1:{port}/", verbose=False).view_api(print_info=False, return_format="dict")
        assert "/animate" in api["named_endpoints"]
    finally:
        server.terminate()
        server.wait(30)


def test_preview_then_animate_on_the_dance_video(client, media):
    """The user's path: preview the skeleton, animate (reusing the poses), get an mp4 with the dance's audio, its
    settings file, the seed, and the result again under Recent results."""
    hero, dance = handle_file(media["hero"]), handle_file(media["dance"])
    video, overlay, notes = client.predict(hero, dance, api_name="/preview")
    frames = list(read_frames(video))
    assert len(frames) > 40 and "extracted with mediapipe" in notes
    skeleton = frames[len(frames) // 2]
    assert (skeleton.max(axis=2) < 30).mean() > 0.8  # black, with a coloured skeleton on it
    assert np.asarray(Image.open(overlay)).shape[:2] == (677, 451)  # drawn over the character itself

    history = client.predict(hero, dance, "tiny", [], api_name="/check_animate")  # the job id goes into the history
    result, settings_file, seed, notes = client.predict(
        character=hero, driving_video=dance, steps=2, resolution=64, clip_length=12, clip_unit="frames",
        api_name="/animate",
    )  # fmt: skip
    assert "The poses from the preview were reused" in notes
    info = probe_video(result)
    assert info.has_audio and info.fps == 24 and (info.width, info.height) == (64, 96)
    assert abs(info.duration - 12 / 24) < 0.05
    settings = json.loads(Path(settings_file).read_text())
    assert settings["seed"] == int(seed) >= 0 and settings["frames"] == 12 and settings["steps"] == 2
    assert read_settings(result)["seed"] == int(seed)
    gallery = client.predict(history, api_name="/recent_results")
    assert Path(result).name == f"ref_hero-dance_2s-seed{seed}.mp4"
    assert len(history) == 1 and len(gallery) == 1 and Path(gallery[0]["video"]).name == Path(result).name


def test_a_skeleton_video_is_detected_and_used_as_it_is(client, media):
    text, _ = client.predict(handle_file(media["kps"]), "seconds", 1, api_name="/describe_video")
    assert text.startswith("**Skeleton video**")
    video, _, notes = client.predict(handle_file(media["hero"]), handle_file(media["kps"]), clip_length=10,
                                     clip_unit="frames", api_name="/preview")  # fmt: skip
    assert "10 frames at 30 fps, poses read from the skeleton video" in notes
    assert probe_video(video).fps == 30


def test_a_clip_longer_than_the_video_is_cut_to_it_with_a_note(client, media):
    job = client.submit(handle_file(media["hero"]), handle_file(media["dance"]), clip_length=60, api_name="/preview")
    notes = job.result()[2]
    assert "shorter than the 60 s asked for: the whole video is animated" in notes
    assert warnings_of(job) == []  # said once, in the notes, not again in a toast over the result


@pytest.mark.parametrize(
    ("character", "video", "message"),
    [
        (None, "dance", "Upload a character image first"),
        ("hero", None, "Upload a driving video"),
        ("notes.png", "dance", "notes.png is not an image that can be read"),
        ("hero", "notes.mp4", "Could not read notes.mp4 as a video"),
        ("hero", "truncated.mp4", "Could not read truncated.mp4 as a video"),
        ("hero", "nobody", "No person was found in nobody.mp4"),
    ],
)
def test_bad_input_gets_a_sentence_saying_what_to_do(client, media, character, video, message):
    inputs = {
        "character": handle_file(media[character]) if character else None,
        "driving_video": handle_file(media[video]) if video else None,
        "clip_length": 6,
        "clip_unit": "frames",
    }
    for endpoint, options in (("/preview", {}), ("/animate", {"steps": 1, "resolution": 64})):
        with pytest.raises(AppError, match=message) as error:
            client.predict(**inputs, **options, api_name=endpoint)
        assert "Traceback" not in str(error.value)


def test_a_character_without_a_person_is_a_warning(client, media):
    job = client.submit(handle_file(media["blank.png"]), handle_file(media["dance"]), clip_length=6,
                        clip_unit="frames", api_name="/preview")  # fmt: skip
    assert "No person was found in the character image" in job.result()[2]
    assert warnings_of(job) == []


def test_a_too_large_upload_is_refused_before_it_is_sent(client, media):
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        client.predict(handle_file(media["hero"]), handle_file(media["huge.mp4"]), api_name="/preview")


def test_a_model_with_a_missing_weight_file_or_an_unknown_model(client, media, app_home):
    broken = app_home / "weights" / "trained" / "broken"
    shutil.copytree(app_home / "weights" / "tiny", broken)
    for weights in (broken / "denoising_unet").glob("*.safetensors"):
        weights.unlink()
    inputs = {"character": handle_file(media["hero"]), "driving_video": handle_file(media["dance"]), "steps": 1,
              "resolution": 64, "clip_length": 4, "clip_unit": "frames"}  # fmt: skip
    with pytest.raises(AppError, match="The model trained/broken could not be loaded. .*incomplete.*export it again"):
        client.predict(**inputs, model="trained/broken", api_name="/animate")
    with pytest.raises(AppError, match="Unknown model 'nonesuch': choose one of tiny, trained/broken"):
        client.predict(**inputs, model="nonesuch", api_name="/animate")
    shutil.rmtree(broken)


def progress_of(job) -> str:
    return " ".join(unit.desc or "" for unit in job.status().progress_data or [])


def test_one_animation_at_a_time_a_bounded_queue_and_cancel(app_url, media):
    """A runs; A clicking again is told to wait; B waits in the queue and is shown its place as progress; C finds
    the queue full (1 here); B's Cancel takes it out of the queue and A's stops A at once."""
    hero, dance = handle_file(media["hero"]), handle_file(media["dance"])
    a, b, c = (Client(app_url, verbose=False) for _ in range(3))
    long_job = {"character": hero, "driving_video": dance, "steps": 100, "resolution": 64, "clip_length": 8,
                "clip_unit": "frames"}  # fmt: skip
    running = a.submit(**long_job, api_name="/animate")
    wait_for(lambda: "Denoising" in progress_of(running), 120, "the first denoising step")
    with pytest.raises(AppError, match="Your previous job is still running: wait for it, or press Cancel"):
        a.predict(hero, dance, "tiny", [], api_name="/check_animate")
    check = b.submit(hero, dance, "tiny", [], api_name="/check_animate")
    check.result()
    assert warnings_of(check) == []  # a place in the queue is no warning
    waiting = b.submit(**long_job, api_name="/animate")
    wait_for(lambda: "Waiting: 1 job is ahead of yours" in progress_of(waiting), 60, "B to wait with its place")
    with pytest.raises(AppError, match="1 animation is already waiting, the most this app queues"):
        c.predict(hero, dance, "tiny", [], api_name="/check_animate")
    assert b.predict(api_name="/cancel") == "The animation was cancelled."
    assert waiting.result() == (None, None, None, "Cancelled: nothing was written.")
    asked = time.monotonic()
    assert a.predict(api_name="/cancel") == "The animation was cancelled."
    assert running.result() == (None, None, None, "Cancelled: nothing was written.")
    assert time.monotonic() - asked < 5  # at the next layer of the model
    assert a.predict(api_name="/cancel") == "Nothing is running."


def test_cancel_while_decoding_frees_the_queue_for_the_next_job(app_url, media):
    """A's frames are being decoded (one denoising step, many large frames) when it is cancelled: it stops within a
    second or two, and B, waiting behind it, runs to its result."""
    hero, dance = handle_file(media["hero"]), handle_file(media["dance"])
    a, b = Client(app_url, verbose=False), Client(app_url, verbose=False)
    big = {"character": hero, "driving_video": dance, "steps": 1, "resolution": 512, "clip_length": 48,
           "clip_unit": "frames"}  # fmt: skip
    first = a.submit(**big, api_name="/animate")
    wait_for(lambda: "Decoding" in progress_of(first), 240, "A to decode")
    second = b.submit(character=hero, driving_video=dance, steps=1, resolution=64, clip_length=4, clip_unit="frames",
                      api_name="/animate")  # fmt: skip
    asked = time.monotonic()
    assert a.predict(api_name="/cancel") == "The animation was cancelled."
    assert time.monotonic() - asked < 5
    assert first.result()[3] == "Cancelled: nothing was written."
    video, _, _, notes = second.result()
    assert notes.startswith("**Done in") and probe_video(video).duration > 0


BASE = {"steps": 1, "resolution": 64, "clip_length": 4, "clip_unit": "frames"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"seed": 2**70}, "Seed must be a whole number from -1 to 4294967295; got 1180591620717411303424."),
        ({"resolution": 0}, "Output size (short side, px) must be a whole number from 64 to 1024; got 0."),
        ({"resolution": 10000}, "Output size (short side, px) must be a whole number from 64 to 1024; got 10000."),
        ({"frame_stride": 0}, "Frame stride must be a whole number from 1 to 8; got 0."),
        ({"steps": 10000}, "Sampling steps must be a whole number from 1 to 100; got 10000."),
        ({"steps": 2.5}, "Sampling steps must be a whole number from 1 to 100; got 2.5."),
        ({"steps": "many"}, "Sampling steps must be a whole number from 1 to 100; got 'many'."),
        ({"guidance": 1e9}, "Guidance scale must be a number from 1 to 10; got 1000000000.0."),
        ({"clip_length": -1}, "Clip length must be a number from 0 to 3600; got -1."),
        ({"clip_unit": "hours"}, "Clip length in must be one of seconds, frames; got 'hours'."),
        ({"window_size": 1000}, "Window size (frames) must be a whole number from 2 to 64; got 1000."),
        ({"window_overlap": -2}, "Window overlap (frames) must be a whole number from 0 to 16; got -2."),
        ({"scheduler": "magic"}, "Scheduler must be one of ddim, dpm++, euler; got 'magic'."),
        ({"precision": "fp8"}, "Precision must be one of auto, fp32, fp16, bf16; got 'fp8'."),
        ({"pose_backend": "kinect"}, "Pose detector must be one of auto, dwpose, openpose, mediapipe; got 'kinect'."),
        ({"alignment": "sideways"}, "Fit to the character must be one of none, global, per-bone; got 'sideways'."),
        ({"hands": "yes"}, "Hands must be true or false; got 'yes'."),
        ({"side_by_side": 3}, "Side-by-side video must be true or false; got 3."),
        ({"model": 7}, "Unknown model 7: choose one of tiny"),
        ({"clip_length": 500, "frame_stride": 1, "clip_unit": "frames"}, None),  # over the video: a note, no error
    ],
)
def test_the_api_refuses_bad_values_with_a_sentence_and_no_work(client, media, values, message):
    inputs = {"character": handle_file(media["hero"]), "driving_video": handle_file(media["dance"]), **BASE, **values}
    if message is None:
        inputs["clip_length"] = 4
        client.predict(**inputs, api_name="/animate")
        return
    started = time.monotonic()
    with pytest.raises(AppError) as error:
        client.predict(**inputs, api_name="/animate")
    assert message in str(error.value) and "Traceback" not in str(error.value)
    assert time.monotonic() - started < 10  # refused before pose extraction or generation


def test_the_hosts_limits_are_refused_before_any_work(client, media, app_module, tmp_path):
    """Over the output pixels per frame, the frames per job, the video's duration: each refused at once."""
    hero, dance = handle_file(media["hero"]), handle_file(media["dance"])
    tall = tmp_path / "tall.png"  # 1024 px wide is 2.3 megapixels at this shape
    Image.new("RGB", (450, 1000), "white").save(tall)
    with pytest.raises(AppError, match="over this app's limit of 1.57 megapixels per frame: choose an output size"):
        client.predict(character=handle_file(tall), driving_video=dance, resolution=1024, steps=1, api_name="/animate")
    with pytest.raises(AppError, match=r"That is \d+ frames to generate; this app makes at most 40 per job"):
        limits = app_module.LIMITS
        object.__setattr__(limits, "max_frames", 40)
        try:
            client.predict(character=hero, driving_video=dance, resolution=64, steps=1, api_name="/animate")
        finally:
            object.__setattr__(limits, "max_frames", 400)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    long_video = tmp_path / "long.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "color=c=gray:size=64x64:rate=5", "-t", "40",
                    str(long_video)], check=True)  # fmt: skip
    with pytest.raises(AppError, match="The driving video is 40 s long; this app takes videos of up to 30 s"):
        client.predict(hero, handle_file(long_video), api_name="/preview")
    text, _ = client.predict(handle_file(long_video), "seconds", 1, api_name="/describe_video")
    assert text.startswith("**This video cannot be used.** The driving video is 40 s long")


def test_messages_name_the_users_file_not_the_servers_path(client, media, tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(AppError) as error:
        client.predict(handle_file(media["hero"]), handle_file(tmp_path / "empty.mp4"), api_name="/preview")
    assert "Video file is empty: empty.mp4." in str(error.value) and "/tmp" not in str(error.value)


def test_unusual_settings_for_the_model_are_noted_once(client, media):
    inputs = {"character": handle_file(media["hero"]), "driving_video": handle_file(media["dance"])}
    job = client.submit(**inputs, **BASE | {"steps": 3, "guidance": 3.5}, api_name="/animate")
    notes = job.result()[3]
    assert "Steps 3 is outside what the model tiny works well with (1 step)" in notes
    assert "Guidance 3.5 is outside what the model tiny works well with (1)" in notes
    assert warnings_of(job) == []


def test_the_weights_panel_lists_files_and_downloading_offline_says_why_not(client):
    models, files = client.predict(api_name="/weights_status")
    assert "**tiny** (builtin)" in models and "**Ready.**" in models and "animate-anyone" in models
    states = {row[1]: row[2] for row in files["data"]}
    assert states["denoising_unet.pth"] == "missing" and states["DWPose/yolox_l.onnx"] == "missing"
    with pytest.raises(AppError, match="Downloads are switched off: HF_HUB_OFFLINE is set"):
        client.predict(["dwpose"], api_name="/download_weights")
    with pytest.raises(AppError, match="Tick at least one group"):
        client.predict([], api_name="/download_weights")


def test_training_tab_builds_a_dataset_trains_stops_and_exports_a_model(client, media, app_home):
    summary, table, _ = client.predict([handle_file(media["dance"]), handle_file(media["notes.mp4"])], "", "dances",
                                       "auto", api_name="/build_dataset")  # fmt: skip
    assert summary.startswith("1 clip usable, 1 left out")
    index = app_home / "runs" / "datasets" / "dances" / "dataset.json"
    assert {row[0]: row[4] for row in table["data"]}["dance_2s.mp4"] == "ok"

    client.predict(
        stage=1, size="tiny", data=str(index), start_from="tiny", run_name="mine", max_steps=400, learning_rate=1e-4,
        width=64, height=64, num_frames=1, batch_size=1, validate_every=100, checkpoint_every=2,
        mixed_precision="no", extra="log_every=1", api_name="/start_training",
    )  # fmt: skip
    run = app_home / "runs" / "mine"
    process = psutil.Process(json.loads((run / "process.json").read_text())["pid"])
    assert "running" in client.predict("mine", api_name="/show_run")[0]
    wait_for(lambda: (run / "checkpoints" / "checkpoint-00000002").is_dir(), 240, "the first checkpoint")
    status = client.predict("mine", api_name="/stop_training")[1]
    assert "**stopped**" in status and not process.is_running()
    assert "step" in (run / "train.log").read_text()

    client.predict("mine", api_name="/export_training")
    exported = app_home / "weights" / "trained" / "mine"
    wait_for(lambda: "**exported**" in client.predict("mine", api_name="/show_run")[0], 240, "the export")
    assert (exported / "model_index.json").is_file()
    description = client.predict("trained/mine", api_name="/select_model")[0]
    assert description.startswith("Trained in this app")
    assert any(row.get("loss") for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()))


def test_a_gpu_out_of_memory_error_becomes_a_sentence_and_keeps_earlier_results(client, media, monkeypatch):
    """The error is faked (there is no GPU here): it reaches the user as what to lower, and the earlier result of the
    same browser is still there to download."""
    import torch

    from animate.engines.animate_anyone import AnimateAnyoneEngine

    hero, dance = handle_file(media["hero"]), handle_file(media["dance"])
    earlier = client.predict(hero, dance, steps=1, resolution=64, clip_length=2, clip_unit="frames", seed=1,
                             api_name="/animate")[0]  # fmt: skip

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(AnimateAnyoneEngine, "generate", out_of_memory)
    with pytest.raises(AppError) as error:
        client.predict(hero, dance, steps=1, resolution=64, clip_length=2, clip_unit="frames", window_size=8,
                       memory_mode="none", api_name="/animate")  # fmt: skip
    assert str(error.value.message).startswith(
        "The GPU ran out of memory. Lower the window (now 8 frames; Advanced), the output size (now 64×96), or "
        "choose memory mode model-offload (now none; Advanced)."
    )
    assert Path(earlier).is_file()
