"""The Animate tab: character image + driving video -> preview the skeleton -> animate, with Cancel, a queue and this
browser's recent results.

Every value an endpoint receives goes through `animate.inputs` first (the API is public on a Space), and a job that
asks for more than the host's limits is refused before any work starts. Warnings go into the notes under the output
they concern, once; the queue position is shown as the job's progress.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict

import gradio as gr
import torch

import pose
from animate.checkpoints import CheckpointError
from animate.device import PRECISIONS, select_device
from animate.engines.animate_anyone import SCHEDULERS, AnimateAnyoneEngine
from animate.examples import EXAMPLES_DIR
from animate.generate import (
    MODES,
    QUANTIZATIONS,
    GenerationCancelled,
    GenerationSettings,
    engine_for,
    model_defaults,
    unusual_settings,
)
from animate.inputs import NUMBERS, check_choice, check_flag, check_number, check_text
from animate.jobs import clip_frames, new_job_id, result_name
from animate.memory import MEMORY_MODES, choose_memory_mode, describe_device, out_of_memory_message
from animate.weights import list_models
from ui.common import (
    LIMITS,
    MAX_QUEUE,
    PROGRESS,
    UI_ONLY,
    WEIGHTS_DIR,
    UserError,
    backend_choices,
    check_size,
    jobs,
    loaded_model,
    path_of,
    poses,
    progress_callback,
    start_job,
    user_errors,
    without_paths,
)

try:  # Hugging Face Spaces with ZeroGPU: `spaces.GPU` lends a GPU to each call of the function it decorates
    import spaces
except ImportError:
    spaces = None

GPU_SECONDS = 300  # what a ZeroGPU Space lends per animation


def on_gpu(function):
    """On a ZeroGPU Space the function borrows a GPU for each call; anywhere else it runs as it is."""
    return spaces.GPU(duration=GPU_SECONDS)(function) if spaces is not None else function


def model_choices() -> list[tuple[str, str]]:
    return [(f"{model.name} ({model.kind})", model.name) for model in list_models(WEIGHTS_DIR)]


def find_model(name: object):
    models = {model.name: model for model in list_models(WEIGHTS_DIR, include_incomplete=True)}
    usable = [model.name for model in models.values() if model.usable]
    if not usable:
        raise UserError(
            "No model is ready. Download the released weights in the Models tab, or train one in the Training tab."
        )
    if not isinstance(name, str) or name not in models:
        raise UserError(f"Unknown model {name!r}: choose one of {', '.join(usable)}.")
    if not models[name].usable:
        raise UserError(f"The model {name} is not complete. {models[name].missing}")
    return models[name]


def load_inputs(character, driving_video):
    """The character (RGB array), the driving video's path and its header, or a gr.Error that says what to upload."""
    character, driving_video = path_of(character), path_of(driving_video)
    if character is None:
        raise UserError("Upload a character image first (a full-body picture works best).")
    if driving_video is None:
        raise UserError("Upload a driving video: a dance clip, or an already-extracted skeleton video.")
    check_size(character, "character image")
    check_size(driving_video, "driving video")
    image = pose.read_image(character)
    info = pose.probe_video(driving_video)
    LIMITS.check_video(info.duration)
    return image, driving_video, info


def pose_options(pose_backend, alignment, hands, face, clip_length, clip_unit, frame_stride) -> dict:
    """The pose and clip values of a request, checked (ValueError names the bad one)."""
    return {
        "backend": check_choice("Pose detector", pose_backend, ["auto", *pose.BACKENDS]),
        "align": check_choice("Fit to the character", alignment, pose.ALIGN_MODES),
        "hands": check_flag("Hands", hands),
        "face": check_flag("Face", face),
        "clip_length": check_number("clip_length", clip_length),
        "clip_unit": check_choice("Clip length in", clip_unit, ["seconds", "frames"]),
        "stride": check_number("frame_stride", frame_stride),
    }


def settings_from(info: pose.VideoInfo, options: dict, **generation) -> tuple[GenerationSettings, str]:
    """GenerationSettings for checked options, and a note when the clip asked for is longer than the video."""
    clip_length, clip_unit = options.pop("clip_length"), options.pop("clip_unit")
    stride = options["stride"]
    max_frames, note = clip_frames(info, clip_length, clip_unit, stride) if clip_length else (None, "")
    settings = GenerationSettings(max_frames=max_frames, **options, **generation)
    return settings, note


def frames_to_make(info: pose.VideoInfo, settings: GenerationSettings) -> int:
    return settings.max_frames or max(1, -(-info.num_frames // settings.stride))


@user_errors
def describe_video(driving_video, clip_unit: str, frame_stride: float, described: str | None = None):
    """What the uploaded video is, and the clip-length slider fitted to it (the whole video), and the video described
    (kept in a State). A file that cannot be used is said here, under the upload, and nowhere else. The Video
    component reports one upload as two changes, the second after the user may have set the clip length: the
    slider is fitted only to a video not `described` yet, so the second leaves the user's choice alone."""
    if driving_video is None:
        return "", gr.update(maximum=NUMBERS["clip_length"].high, value=0), None
    try:
        check_size(driving_video, "driving video")
        info = pose.probe_video(driving_video)
        LIMITS.check_video(info.duration)
    except ValueError as error:
        return f"**This video cannot be used.** {without_paths(str(error))}", gr.skip(), None
    if poses.is_skeleton_video(driving_video):
        kind = "**Skeleton video**: used as it is, no pose extraction (the pose options do not apply)."
    else:
        kind = "**Raw video**: the dancer's poses are extracted when you preview or animate."
    audio = "with audio" if info.has_audio else "no audio"
    size = f"{info.width}×{info.height}"
    text = f"{kind} {info.duration:.1f} s, {info.num_frames} frames at {info.fps:g} fps, {size}, {audio}."
    path = str(path_of(driving_video))
    return text, gr.skip() if path == described else clip_slider(info, clip_unit, int(frame_stride)), path


def clip_slider(info: pose.VideoInfo, clip_unit: str, stride: int, value: float | None = None):
    """The clip-length slider for this video: its length is the maximum (and the value, unless one is given)."""
    if clip_unit == "frames":
        frames = max(1, -(-info.num_frames // stride))
        return gr.update(maximum=frames, value=min(frames, round(value)) if value else frames, step=1)
    seconds = round(info.duration, 1)
    return gr.update(maximum=seconds, value=min(seconds, round(value, 1)) if value else seconds, step=0.1)


@user_errors
def change_clip_unit(driving_video, clip_unit: str, clip_length: float, frame_stride: float):
    """The same clip in the other unit."""
    if driving_video is None:
        return gr.update(step=1 if clip_unit == "frames" else 0.1)
    try:
        info = pose.probe_video(driving_video)
    except ValueError:
        return gr.skip()  # describe_video has said what is wrong with the file
    stride = int(frame_stride)
    factor = info.fps / stride if clip_unit == "frames" else stride / info.fps
    return clip_slider(info, clip_unit, stride, clip_length * factor)


@user_errors
def change_stride(driving_video, clip_unit: str, clip_length: float, frame_stride: float):
    """The same clip length, within what the video has at this stride."""
    if driving_video is None:
        return gr.skip()
    try:
        info = pose.probe_video(driving_video)
    except ValueError:
        return gr.skip()
    return clip_slider(info, clip_unit, int(frame_stride), clip_length)


@user_errors
def describe_size(character, resolution: float, model: str | None, driving_video, mode: str):
    """The exact output size under the slider, and whether it is within this app's limit."""
    try:
        image = pose.read_image(path_of(character)) if character is not None else None
        info = pose.probe_video(path_of(driving_video)) if driving_video is not None else None
        engine = engine_for(find_model(model)) if model else AnimateAnyoneEngine()
    except (ValueError, UserError):
        image = info = None
    if image is None:
        return gr.update(info="The short side of the video.")
    video = (info.width, info.height) if info is not None else image.shape[1::-1]
    settings = GenerationSettings(short_side=int(resolution), mode=mode if mode in MODES else "animate")
    width, height = engine.output_size(image.shape[1::-1], video, settings)
    over = " That is over this app's limit: choose a smaller size." if width * height > LIMITS.max_pixels else ""
    return gr.update(info=f"Output {width}×{height} px.{over}")


PREFERRED = (
    "steps", "guidance", "short_side", "hands", "face", "context_frames", "context_overlap", "segment_frames"
)  # fmt: skip


@user_errors
def select_model(model: str | None):
    """What the model is and where it runs, the settings it works best with (its engine's and its
    generation_defaults.json: steps, guidance, size, the skeleton parts it was trained with, its window or segment),
    and the controls of its engine: the windows and sampler of Animate Anyone, or Wan-Animate's mode, segment, prompt
    and frame rate."""
    if not model:
        return "No model is ready yet: see the Models tab.", *[gr.skip()] * (len(PREFERRED) + 2)
    entry = find_model(model)
    engine = engine_for(entry)
    defaults = model_defaults(entry)
    device = select_device()
    dtype = str(engine.dtype(device, "auto", entry.path)).removeprefix("torch.")
    steps = f"{defaults['steps']} step{'' if defaults['steps'] == 1 else 's'}"
    text = (
        f"{entry.description}. Runs on **{describe_device(device)}** (auto precision: {dtype}). Its defaults: "
        f"{steps}, guidance {defaults['guidance']}, short side {defaults['short_side']} px."
    )
    windows, wan = gr.update(visible="context_frames" in engine.settings), gr.update(visible="mode" in engine.settings)
    return text, *[defaults[name] for name in PREFERRED], windows, wan


def refresh_models(current: str | None):
    choices = model_choices()
    values = [value for _, value in choices]
    return gr.update(choices=choices, value=current if current in values else next(iter(values), None))


@user_errors
def preview(
    character: dict | str | None,
    driving_video: dict | str | None,
    pose_backend: str = "auto",
    alignment: str = "global",
    hands: bool = True,
    face: bool = True,
    clip_length: float = 0,
    clip_unit: str = "seconds",
    frame_stride: float = 1,
    model: str | None = None,
    mode: str = "animate",
    request: gr.Request = None,
    progress=PROGRESS,
):
    """What the model will follow (the skeletons; for Wan-Animate also the face crops and, in replace mode, the mask),
    as a video and one picture over the character; the poses are kept for Animate. Without a model: as Animate
    Anyone models see it."""
    options = pose_options(pose_backend, alignment, hands, face, clip_length, clip_unit, frame_stride)
    mode = check_choice("Mode", mode, MODES)
    image, driving_video, info = load_inputs(character, driving_video)
    engine = engine_for(find_model(model)) if model is not None else AnimateAnyoneEngine()
    settings, note = settings_from(info, options, mode=mode)
    width, height = engine.preview_size(image.shape[1::-1], (info.width, info.height), settings)
    LIMITS.check_job(width, height, frames_to_make(info, settings), 512, info.fps)
    job = start_job(request, "preview")
    started, report = time.monotonic(), progress_callback(progress)
    try:
        conditioning, reused = engine.prepare(image, driving_video, width, height, settings, poses, report, job.cancel)
        video, picture, notes = engine.preview(image, conditioning, job.folder, report, job.cancel)
    except GenerationCancelled:
        return None, None, stopped_message(job, "preview")
    finally:
        jobs.finish(job)
    if conditioning.source == "skeleton video":
        how = "read from the skeleton video"
    else:
        how = "reused from the last extraction" if reused else f"extracted with {poses.backend(settings.backend)}"
    seconds = time.monotonic() - started
    text = (
        f"{len(conditioning)} frames at {conditioning.fps:g} fps, poses {how}, in {seconds:.1f} s. "
        "Animate reuses the poses while the inputs and pose options stay the same."
    )
    notes = [note, *notes, *conditioning.warnings]
    return str(video), picture, "\n".join([text, *[f"- {line}" for line in filter(None, notes)]])


def stopped_message(job, kind: str) -> str:
    """What a stopped job says: cancelled by its user, or stopped by the host's time limit (an error)."""
    if job.timed_out:
        raise UserError(
            f"The {kind} was stopped: it ran longer than {LIMITS.max_job_seconds / 60:g} minutes, the most this app "
            "gives one job. Try a shorter clip, a smaller output size or fewer steps."
        )
    return "Cancelled: nothing was written."


@user_errors
def check_animate(character, driving_video, model, history: list | None, request: gr.Request = None):
    """Runs at once when Animate is clicked, before the job queues: mistakes and a full queue are reported without
    waiting, and the job's id goes into the browser's history, so that a reload still finds the result."""
    if character is None or driving_video is None:
        load_inputs(character, driving_video)
    find_model(model)
    if any(job.session == (request.session_hash if request else "") for job in jobs.active()):
        raise UserError("Your previous job is still running: wait for it, or press Cancel.")
    waiting = jobs.waiting()
    if waiting >= MAX_QUEUE:
        are = "animation is" if waiting == 1 else "animations are"
        raise UserError(f"{waiting} {are} already waiting, the most this app queues. Try again in a few minutes.")
    job_id = new_job_id()
    return job_id, [*(history or []), job_id][-20:]


@user_errors
def animate(
    character: dict | str | None,
    driving_video: dict | str | None,
    model: str | None = None,
    pose_backend: str = "auto",
    alignment: str = "global",
    hands: bool = True,
    face: bool = True,
    steps: float = 30,
    guidance: float = 3.5,
    clip_length: float = 0,
    clip_unit: str = "seconds",
    seed: float | None = -1,
    resolution: float = 512,
    frame_stride: float = 1,
    side_by_side: bool = False,
    window_size: float = 24,
    window_overlap: float = 4,
    scheduler: str = "ddim",
    precision: str = "auto",
    memory_mode: str = "auto",
    mode: str = "animate",
    segment_length: float = 77,
    prompt: str = "",
    output_fps: float = 0,
    quantize: str = "none",
    job_id: str | None = None,
    request: gr.Request = None,
    progress=PROGRESS,
):
    """Character + driving video -> the animated mp4 (with the driving video's audio), its settings and the seed."""
    # 1. Every value checked, then the files, then the host's limits: a refusal costs no work.
    options = pose_options(pose_backend, alignment, hands, face, clip_length, clip_unit, frame_stride)
    seed = check_number("seed", -1 if seed is None else seed)
    generation = {
        "steps": check_number("steps", steps),
        "guidance": check_number("guidance", guidance),
        "seed": seed if seed >= 0 else int.from_bytes(os.urandom(4)) >> 1,
        "short_side": check_number("resolution", resolution),
        "side_by_side": check_flag("Side-by-side video", side_by_side),
        "context_frames": check_number("window_size", window_size),
        "context_overlap": check_number("window_overlap", window_overlap),
        "scheduler": check_choice("Scheduler", scheduler, SCHEDULERS),
        "mode": check_choice("Mode", mode, MODES),
        "segment_frames": check_number("segment_frames", segment_length),
        "prompt": check_text("Prompt", prompt, 500),
        "fps": check_number("output_fps", output_fps),
        "quantize": check_choice("8-bit weights", quantize, QUANTIZATIONS),
    }
    precision = check_choice("Precision", precision, ["auto", *PRECISIONS])
    memory_mode = check_choice("Memory mode", memory_mode, ["auto", *MEMORY_MODES])
    if job_id is not None and not isinstance(job_id, str):
        raise UserError("job_id is the value /check_animate returns; leave it out otherwise.")
    image, driving_video, info = load_inputs(character, driving_video)
    entry = find_model(model)
    settings, note = settings_from(info, options, **generation)
    engine = engine_for(entry)
    width, height = engine.output_size(image.shape[1::-1], (info.width, info.height), settings)
    fps = info.fps / settings.stride
    frames = frames_to_make(info, settings)
    if settings.fps and "fps" in engine.settings:  # resampled to another frame rate: as many seconds, other frames
        frames, fps = round(frames * settings.fps / fps), settings.fps
    LIMITS.check_job(width, height, frames, settings.short_side, fps)
    unusual = unusual_settings(entry.name, model_defaults(entry), settings.steps, settings.guidance)

    # 2. Poses, a turn on the GPU, generation.
    job = start_job(request, "animation", job_id)
    started, report = time.monotonic(), progress_callback(progress)
    try:
        conditioning, reused = engine.prepare(image, driving_video, width, height, settings, poses, report, job.cancel)
        jobs.wait_for_gpu(job, report)
        try:
            output = job.folder / result_name(path_of(character), driving_video, settings.seed)
            result, fit = generate_on_gpu(
                job.id, image, conditioning, settings, entry, precision, memory_mode, driving_video, output, progress
            )
        finally:
            jobs.gpu.release()
    except GenerationCancelled:
        return None, None, None, stopped_message(job, "animation")
    finally:
        jobs.finish(job)
    summary = (
        f"**Done in {time.monotonic() - started:.0f} s**: {result.frames} frames at {result.fps:g} fps, "
        f"{width}×{height}, seed {result.seed}, model {entry.name}"
    )
    summary += f", {fit.describe()}." if fit and fit.free is not None else "."
    if reused:
        summary += " The poses from the preview were reused."
    notes = [note, *unusual, fit.warning if fit else "", *result.warnings]
    lines = [summary, *[f"- {warning}" for warning in filter(None, notes)]]
    return str(result.path), str(result.path.with_suffix(".json")), str(result.seed), "\n".join(lines)


@on_gpu
def generate_on_gpu(job_id, image, conditioning, settings, entry, precision, memory_mode, driving_video, output,
                    progress):  # fmt: skip
    """The part that needs the GPU: the model (kept loaded between jobs, placed in the memory mode that fits this
    job) and the denoising. Returns the result and the memory mode's `Fit`."""
    job = jobs.get(job_id)  # None in a ZeroGPU worker process, which cannot be cancelled from here
    report = progress_callback(progress)
    engine = engine_for(entry)
    device = select_device()
    dtype = engine.dtype(device, precision, entry.path)
    width, height = conditioning.size
    window, knob = engine.memory_window(settings), engine.memory_knob(settings)

    def choose(sizes: dict[str, int]):
        guided = settings.guidance > 1
        return choose_memory_mode(memory_mode, sizes, device, window, width, height, dtype, guided, knob)

    report(0, f"Loading {entry.name} on {device.type}")
    try:
        pipeline, files, fit = loaded_model.get(entry, device, dtype, choose, settings.quantize)
    except CheckpointError as error:  # a saved pipeline's message says how to repair it; released weights download
        hint = " Download it again in the Models tab." if entry.kind in ("released", "musepose") else ""
        raise ValueError(f"The model {entry.name} could not be loaded. {error}{hint}") from error
    except OSError as error:
        raise ValueError(
            f"The model {entry.name} could not be loaded: {error} Download it again in the Models tab, "
            "or export it again from its training run."
        ) from error
    try:
        result = engine.generate(
            pipeline,
            image,
            conditioning,
            output,
            settings,
            driving_video=driving_video,
            model_name=entry.name,
            model_files=files,
            progress=report,
            cancel=job.cancel if job else None,
        )
    except torch.cuda.OutOfMemoryError as error:  # nothing was written: export_video writes its file at the end
        torch.cuda.empty_cache()
        raise ValueError(out_of_memory_message(fit.mode, window, width, height, knob)) from error
    return result, fit


def cancel(request: gr.Request = None) -> str:
    """Stops this browser's preview or animation at once (at the next layer of the model), and says when it has."""
    job = jobs.cancel(request.session_hash if request else "")
    if job is None:
        return "Nothing is running."
    return f"The {job.kind} was cancelled." if job.done.wait(timeout=30) else f"Cancelling the {job.kind}…"


def reload_animate(model: str | None, history: list | None):
    """A page (re)load: the models as they are now, and this browser's results."""
    models = refresh_models(model)
    return models, select_model(models["value"])[0], recent_results(history)


def recent_results(history: list | None):
    """This browser's finished animations that are still on the server (kept for a day), newest first."""
    if not isinstance(history, list):
        return []
    found = [(job_id, jobs.result(job_id)) for job_id in reversed(history) if isinstance(job_id, str)]
    return [(str(path), f"{job_id[:8]} {job_id[9:11]}:{job_id[11:13]}") for job_id, path in found if path]


def slider(name: str, value: float, **options) -> gr.Slider:
    """A slider with the range `animate.inputs` enforces for `name`."""
    spec = NUMBERS[name]
    return gr.Slider(spec.low, spec.high, value=value, label=spec.label, **options)


def build(demo: gr.Blocks, tab: gr.Tab) -> None:
    choices = model_choices()
    first = next((value for _, value in choices), None)
    defaults = model_defaults(find_model(first)) if first else {**asdict(GenerationSettings()), "short_side": 512}
    first_engine = engine_for(find_model(first)) if first else AnimateAnyoneEngine()
    job_id = gr.State(None)
    history = gr.BrowserState([], storage_key="animate-anyone-results")
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            with gr.Row():
                character = gr.Image(
                    label="Character image (transparent parts become white)",
                    type="filepath",
                    height=320,
                    elem_id="character",
                    sources=["upload", "clipboard"],
                )
                driving_video = gr.Video(
                    label="Driving video (raw, or a skeleton video)",
                    height=320,
                    sources=["upload"],
                    elem_id="driving-video",
                )
            video_info = gr.Markdown(elem_id="video-info")
            with gr.Row():
                model = gr.Dropdown(
                    choices, value=first, label="Model", allow_custom_value=True, scale=5, elem_id="model"
                )
                refresh = gr.Button("↻", scale=0, min_width=48)
            model_info = gr.Markdown(label="Model description")
            with gr.Group():
                with gr.Row():
                    pose_backend = gr.Dropdown(
                        backend_choices(), value="auto", label="Pose detector", info="auto: DWPose, else MediaPipe"
                    )
                    alignment = gr.Radio(
                        list(pose.ALIGN_MODES),
                        value="global",
                        label="Fit to the character",
                        info="none: as filmed · global: size, place · per-bone: limb lengths",
                    )
                with gr.Row():
                    hands = gr.Checkbox(value=defaults["hands"], label="Hands")
                    face = gr.Checkbox(value=defaults["face"], label="Face")
                    preview_button = gr.Button("Preview skeleton", elem_id="preview")
            with gr.Group():
                with gr.Row():
                    steps = slider("steps", defaults["steps"], step=1, elem_id="steps")
                    guidance = slider("guidance", defaults["guidance"], step=0.1)
                with gr.Row():
                    clip_length = slider("clip_length", 0, step=0.1, elem_id="clip-length", info="0: the whole video")
                    clip_unit = gr.Radio(["seconds", "frames"], value="seconds", label="Clip length in")
                with gr.Row():
                    resolution = slider("resolution", defaults["short_side"], step=8, elem_id="resolution")
                    frame_stride = slider("frame_stride", 1, step=1, info="use every n-th driving frame")
                with gr.Row():
                    seed = gr.Number(-1, precision=0, label="Seed (-1: random)", elem_id="seed")
                    side_by_side = gr.Checkbox(value=False, label="Side-by-side video: character | skeleton | result")
            with gr.Group(visible="mode" in first_engine.settings, elem_id="wan-settings") as wan_settings:
                with gr.Row():
                    mode = gr.Radio(
                        list(MODES),
                        value="animate",
                        label="Mode",
                        info="animate: the character moves in a new video · replace: the character takes the place "
                        "of the person in the driving video",
                        elem_id="mode",
                    )
                    segment_length = slider(
                        "segment_frames",
                        defaults["segment_frames"],
                        step=4,
                        info="frames per generated segment (4n+1); each continues from the last",
                        elem_id="segment-length",
                    )
                with gr.Row():
                    prompt = gr.Textbox(
                        "",
                        label="Prompt (optional)",
                        placeholder="the official default prompt",
                        scale=3,
                        elem_id="prompt",
                    )
                    output_fps = slider(
                        "output_fps",
                        0,
                        step=1,
                        info="the same duration at another frame rate (trained at 30)",
                        elem_id="output-fps",
                    )
                    quantize = gr.Radio(
                        list(QUANTIZATIONS),
                        value="none",
                        label="8-bit weights",
                        info="int8: the transformer in about half the memory (torchao), slightly different frames",
                        elem_id="quantize",
                    )
            with gr.Accordion("Advanced", open=False):
                with gr.Row(visible="context_frames" in first_engine.settings) as window_settings:
                    window_size = slider(
                        "window_size",
                        defaults["context_frames"],
                        step=1,
                        info="frames the motion modules see at once",
                        elem_id="window-size",
                    )
                    window_overlap = slider("window_overlap", defaults["context_overlap"], step=1)
                    scheduler = gr.Dropdown(list(SCHEDULERS), value="ddim", label="Scheduler")
                with gr.Row():
                    precision = gr.Radio(
                        ["auto", *PRECISIONS],
                        value="auto",
                        label="Precision",
                        info="auto: fp16 on a GPU; on a CPU, bf16 for SD 1.5-sized models where it computes bf16 "
                        "natively (3x faster), else fp32",
                    )
                    memory_mode = gr.Radio(
                        ["auto", *MEMORY_MODES],
                        value="auto",
                        label="Memory mode (GPU)",
                        info="auto: the fastest that fits the free GPU memory; model-offload and lowest keep models "
                        "in RAM and move them to the GPU as they run",
                    )
            with gr.Row():
                animate_button = gr.Button("Animate", variant="primary", scale=3, elem_id="animate")
                cancel_button = gr.Button("Cancel", variant="stop", scale=1, elem_id="cancel")
            cancel_status = gr.Markdown(label="Cancel status")
            characters = sorted(EXAMPLES_DIR.glob("puppet*.png"))
            if characters and (EXAMPLES_DIR / "dance_kps.mp4").is_file():
                gr.Examples(
                    [[str(image), str(EXAMPLES_DIR / "dance_kps.mp4")] for image in characters],
                    [character, driving_video],
                    label="Examples for the built-in model: puppets it never saw, and a real dance's skeleton",
                    elem_id="examples",
                )
        with gr.Column(scale=5):
            with gr.Row():
                skeleton_video = gr.Video(
                    label="What the model will follow", height=320, interactive=False, elem_id="skeleton-video"
                )
                overlay = gr.Image(label="Over the character", height=320, interactive=False, elem_id="overlay")
            preview_info = gr.Markdown(label="Preview notes", elem_id="preview-info")
            result = gr.Video(label="Result", height=420, interactive=False, elem_id="result")
            with gr.Row():
                settings_file = gr.File(label="Settings (JSON)", interactive=False, height=80, scale=3)
                seed_used = gr.Textbox(label="Seed used", interactive=False, scale=1)
            result_info = gr.Markdown(label="Result notes", elem_id="result-info")
            with gr.Accordion("Recent results (this browser; kept for a day)", open=False):
                gallery = gr.Gallery(columns=4, height=240, interactive=False, show_label=False, elem_id="recent")

    described = gr.State(None)
    video_inputs = [driving_video, clip_unit, frame_stride, described]
    driving_video.change(
        describe_video, video_inputs, [video_info, clip_length, described], api_name="describe_video",
        show_progress="hidden", **UI_ONLY,
    )  # fmt: skip
    clip_inputs = [driving_video, clip_unit, clip_length, frame_stride]
    clip_unit.change(
        change_clip_unit, clip_inputs, clip_length, api_name="clip_unit", show_progress="hidden", **UI_ONLY
    )
    frame_stride.input(
        change_stride, clip_inputs, clip_length, api_name="frame_stride", show_progress="hidden", **UI_ONLY
    )
    gr.on(
        [character.change, resolution.change, model.change, driving_video.change, mode.change],
        describe_size,
        [character, resolution, model, driving_video, mode],
        resolution,
        api_name="describe_size",
        trigger_mode="always_last",
        preprocess=False,
        show_progress="hidden",
        **UI_ONLY,
    )
    preferred = [steps, guidance, resolution, hands, face, window_size, window_overlap, segment_length]
    model.change(select_model, model, [model_info, *preferred, window_settings, wan_settings], api_name="select_model")
    gr.on([refresh.click, tab.select], refresh_models, model, model, api_name="list_models")  # new exports show up
    pose_inputs = [pose_backend, alignment, hands, face, clip_length, clip_unit, frame_stride]
    previewing = preview_button.click(
        preview,
        [character, driving_video, *pose_inputs, model, mode],
        [skeleton_video, overlay, preview_info],
        api_name="preview",
        concurrency_id="pose",
        concurrency_limit=1,
        show_progress_on=skeleton_video,
        preprocess=False,  # here and below: our own checks and messages for what was uploaded (see `path_of`)
    )
    generation = [
        steps,
        guidance,
        clip_length,
        clip_unit,
        seed,
        resolution,
        frame_stride,
        side_by_side,
        window_size,
        window_overlap,
        scheduler,
        precision,
        memory_mode,
        mode,
        segment_length,
        prompt,
        output_fps,
        quantize,
    ]
    animate_inputs = [character, driving_video, model, pose_backend, alignment, hands, face, *generation, job_id]
    checked = animate_button.click(
        check_animate,
        [character, driving_video, model, history],
        [job_id, history],
        api_name="check_animate",
        concurrency_limit=None,
        show_progress="hidden",
        preprocess=False,
        **UI_ONLY,
    )
    # Jobs wait for the GPU in our own queue (`Jobs.wait_for_gpu`), which shows each its current place and lets a
    # waiting job be cancelled; Gradio's limit only bounds how many may wait.
    animating = checked.success(
        animate,
        animate_inputs,
        [result, settings_file, seed_used, result_info],
        api_name="animate",
        concurrency_id="gpu",
        concurrency_limit=MAX_QUEUE + 1,
        show_progress_on=result,
        preprocess=False,
    )
    animating.success(recent_results, history, gallery, api_name="recent_results")
    # Ours stops the work at once; Gradio's `cancels` also takes a job out of its queue if it waits there.
    cancel_button.click(cancel, None, cancel_status, api_name="cancel", queue=False, cancels=[previewing, animating])
    demo.load(reload_animate, [model, history], [model, model_info, gallery], api_name="load_animate", **UI_ONLY)
