"""The Training tab: videos -> a dataset -> stage 1 and stage 2 as background processes (`accelerate launch -m
animate.training`) -> a new model in the Animate tab's list; the selected run's state, loss curve, samples and log."""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path

import gradio as gr
import pandas as pd

from animate import training_runs
from animate.training.config import load_config
from animate.training.dataset import build_dataset, load_index
from animate.weights import list_models
from ui.common import (
    DATASETS_DIR,
    ON_SPACES,
    PROGRESS,
    RUNS_DIR,
    UI_ONLY,
    WEIGHTS_DIR,
    UserError,
    backend_choices,
    check_size,
    progress_callback,
    user_errors,
)


def dataset_choices() -> list[tuple[str, str]]:
    choices = [("Puppets: procedural characters, built in (no videos needed)", "puppets")]
    for index in sorted(DATASETS_DIR.glob("*/dataset.json")):
        try:
            choices.append((f"{index.parent.name} ({len(load_index(index)['clips'])} clips)", str(index)))
        except (OSError, ValueError):
            continue
    return choices


def start_choices(stage: int) -> list[tuple[str, str]]:
    """What a stage can start from: new weights or an image model for stage 1 (the released weights, or a stage-1
    export); for stage 2, any model (stage-2 models go on training their motion modules)."""
    choices = [("New tiny model (CPU-sized)", "tiny"), ("New SD 1.5-sized model", "sd15")] if stage == 1 else []
    for model in list_models(WEIGHTS_DIR):
        unet_config = model.path / "denoising_unet" / "config.json"
        has_motion = unet_config.is_file() and "UNetMotionModel" in unet_config.read_text()
        if model.kind == "wan-animate":  # trained elsewhere; this app trains the Animate Anyone family
            continue
        if model.kind == "released" or stage == 2 or not has_motion:
            choices.append((f"{model.name}: {model.description}", str(model.path)))
    return choices


@user_errors
def build_training_dataset(videos: list[str] | None, folder: str, name: str, pose_backend: str, progress=PROGRESS):
    """Uploaded videos (or a folder on this machine) -> skeletons and a dataset index; returns its summary."""
    if videos:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", (name or "").strip()).strip("._")
        if not name:
            raise UserError("Give the dataset a name (letters, digits, - and _).")
        target = DATASETS_DIR / name
        target.mkdir(parents=True, exist_ok=True)
        for video in videos:
            check_size(video, f"video {Path(video).name}")
            shutil.copy(video, target / Path(video).name)
    elif folder and not ON_SPACES:
        target = Path(folder).expanduser()
    else:
        message = "Upload some videos (one dancer each), or give a folder of videos on this machine."
        raise UserError(message)
    index = build_dataset(target, backend=pose_backend, progress=progress_callback(progress), weights_dir=WEIGHTS_DIR)
    rows = [
        [
            entry["name"],
            entry.get("num_frames", "-"),
            f"{entry['fps']:g}" if "fps" in entry else "-",
            f"{entry['detection_rate']:.0%}" if "detection_rate" in entry else "-",
            entry.get("reason", "ok"),
        ]
        for entry in index["clips"] + index["rejected"]
    ]
    index_path = str(target / "dataset.json")
    if not index["clips"]:
        gr.Warning("No video is usable for training: the table says why.")
    clips = f"{len(index['clips'])} clip{'' if len(index['clips']) == 1 else 's'}"
    choices = dataset_choices()
    if index_path not in [value for _, value in choices]:
        choices.append((f"{target.name} ({clips})", index_path))
    summary = f"{clips} usable, {len(index['rejected'])} left out. Index: `{index_path}`"
    return summary, rows, gr.update(choices=choices, value=index_path if index["clips"] else "puppets")


def preset(stage: int, size: str) -> str:
    """The training config preset (animate/training/configs) for this stage and model size."""
    return f"{'tiny_' if size == 'tiny' else ''}stage{int(stage)}"


@user_errors
def training_defaults(stage: int, size: str):
    """The preset's values for the form, and what this stage can start from."""
    config = load_config(preset(stage, size))
    choices = start_choices(stage)
    if stage == 1:
        start_from = (
            "tiny"
            if size == "tiny"
            else ("sd15" if str(WEIGHTS_DIR) not in dict(choices).values() else str(WEIGHTS_DIR))
        )
    else:  # the newest model trained here, else the released weights
        trained = sorted(
            (model.path for model in list_models(WEIGHTS_DIR) if model.kind == "trained"),
            key=lambda path: path.stat().st_mtime,
        )
        start_from = str(trained[-1]) if trained else next((value for _, value in choices), None)
    return (
        gr.update(choices=choices, value=start_from),
        preset(stage, size),
        config.max_steps,
        config.learning_rate,
        config.width,
        config.height,
        gr.update(value=config.num_frames, visible=stage == 2),
        config.batch_size,
        config.validate_every,
        config.checkpoint_every,
        config.mixed_precision,
    )


@user_errors
def start_training(
    stage,
    size,
    data,
    start_from,
    run_name,
    max_steps,
    learning_rate,
    width,
    height,
    num_frames,
    batch_size,
    validate_every,
    checkpoint_every,
    mixed_precision,
    extra,
):
    """Starts `accelerate launch -m animate.training` for the stage, in the background; returns the run list."""
    run_name = (run_name or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", run_name) or run_name == DATASETS_DIR.name:
        message = "Give the run a name of letters, digits, - and _ (it names the run folder and the new model)."
        raise UserError(message)
    if not start_from:
        raise UserError("Choose what to start from (stage 2 starts from a stage-1 model).")
    overrides = {
        "init_from": start_from,
        "data": data or "puppets",
        "max_steps": int(max_steps),
        "learning_rate": learning_rate,
        "width": int(width),
        "height": int(height),
        "batch_size": int(batch_size),
        "validate_every": int(validate_every),
        "checkpoint_every": int(checkpoint_every),
        "mixed_precision": mixed_precision,
        "export_dir": WEIGHTS_DIR / "trained",
    }
    if int(stage) == 2:
        overrides["num_frames"] = int(num_frames)
    for line in filter(str.strip, (extra or "").splitlines()):
        key, equals, value = line.strip().removeprefix("--").partition("=")
        if not equals:
            raise UserError(f"Other settings are KEY=VALUE lines; {line.strip()!r} is not.")
        overrides[key.strip()] = value.strip()
    overrides = {key: str(value) for key, value in overrides.items()}
    run = training_runs.start(RUNS_DIR / run_name, int(stage), preset(stage, size), overrides)
    gr.Info(f"Training {run.name} started (pid {run.pid}). It keeps running if you close the app.")
    return run_list(run.name)


def run_list(selected: str | None = None):
    """The runs, selecting `selected`, else a running one (a restarted app finds the training it left), else the
    newest."""
    runs = training_runs.list_runs(RUNS_DIR)
    names = [run.name for run in runs]
    if selected not in names:
        selected = next((run.name for run in runs if run.state in ("running", "exporting")), next(iter(names), None))
    choices = [(f"{run.name} (stage {run.stage or '?'})", run.name) for run in runs]
    return gr.update(choices=choices, value=selected)


@user_errors
def run_action(action: str, run_name: str | None):
    """Stop, resume or export the run."""
    if not run_name:
        raise UserError("Choose a run first.")
    getattr(training_runs, action)(RUNS_DIR / run_name)
    return run_list(run_name), *show_run(run_name)[:-1]


def show_run(run_name: str | None, seen: tuple | None = None):
    """A run's status, loss curve, newest validation samples, log and the buttons that apply; nothing is sent when
    none of its files changed since `seen`."""
    if not run_name:
        return "No training run yet.", None, [], "", *[gr.update(interactive=False)] * 3, None
    run_dir = RUNS_DIR / run_name
    watched = (training_runs.PROCESS_FILE, "metrics.jsonl", training_runs.LOG_FILE, "samples")
    stamp = tuple(_mtime(run_dir / name) for name in watched)
    if seen is not None and tuple(seen) == stamp:
        return *[gr.skip()] * 7, seen
    metrics = training_runs.read_metrics(run_dir)
    run = training_runs.status(run_dir, metrics)
    steps = f"step {run.step}" + (f" of {run.max_steps}" if run.max_steps else "")
    text = f"**{run.name}** · stage {run.stage or '?'} · **{run.state}** · {steps}. {run.message}"
    rows = [
        (record["step"], record[key], label)
        for record in metrics
        for key, label in (("loss", "training"), ("val_loss", "validation"))
        if key in record
    ]
    curve = pd.DataFrame(rows, columns=["step", "loss", "series"]) if rows else None
    samples = [str(path) for path in training_runs.latest_samples(run_dir)]
    running = run.state in ("running", "exporting")
    can_continue = run.state in ("stopped", "failed", "ended", "exported") and run.checkpoint_step is not None
    buttons = [running, can_continue, can_continue or (run.state == "finished" and run.checkpoint_step is not None)]
    buttons = [gr.update(interactive=enabled) for enabled in buttons]
    return text, curve, samples, training_runs.log_tail(run_dir, 15), *buttons, stamp


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


def build(demo: gr.Blocks) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            gr.Markdown("### 1. Data\nVideos of one dancer each: their poses are extracted and bad clips left out.")
            videos = gr.File(
                label="Videos", file_count="multiple", file_types=["video"], height=120, elem_id="train-videos"
            )
            with gr.Row():
                dataset_name = gr.Textbox(label="Dataset name", value="my_dances")
                folder = gr.Textbox(label="…or a folder of videos on this machine", visible=not ON_SPACES)
            with gr.Row():
                dataset_backend = gr.Dropdown(
                    backend_choices(), value="auto", label="Pose detector", info="auto: DWPose, else MediaPipe"
                )
                build_button = gr.Button("Build dataset")
            dataset_summary = gr.Markdown(label="Dataset summary")
            dataset_table = gr.Dataframe(
                headers=["video", "frames", "fps", "person found", "status"],
                column_widths=["28%", "14%", "10%", "16%", "32%"],
                interactive=False,
                wrap=True,
                max_height=240,
            )
            gr.Markdown("### 2. Train\nStage 1 learns appearance from single frames; stage 2 adds the motion modules.")
            with gr.Row():
                stage = gr.Radio([("1: image model", 1), ("2: motion", 2)], value=1, label="Stage")
                size = gr.Radio(
                    [("tiny (CPU)", "tiny"), ("full (SD 1.5, GPU)", "full")], value="tiny", label="Model size"
                )
            data = gr.Dropdown(dataset_choices(), value="puppets", label="Training data", allow_custom_value=True)
            start_from = gr.Dropdown(start_choices(1), value="tiny", label="Start from", allow_custom_value=True)
            run_name = gr.Textbox(label="Run name (also the new model's name)", value="tiny_stage1")
            with gr.Row():
                max_steps = gr.Number(label="Steps", precision=0, minimum=1, min_width=100)
                learning_rate = gr.Number(label="Learning rate", min_width=100)
                batch_size = gr.Number(label="Batch size", precision=0, minimum=1, min_width=100)
            with gr.Row():
                width = gr.Number(label="Width", precision=0, step=8, min_width=100)
                height = gr.Number(label="Height", precision=0, step=8, min_width=100)
                num_frames = gr.Number(label="Frames per clip", precision=0, visible=False, min_width=100)
            with gr.Accordion("More settings", open=False):
                with gr.Row():
                    validate_every = gr.Number(label="Validate every (steps)", precision=0)
                    checkpoint_every = gr.Number(label="Checkpoint every (steps)", precision=0)
                    mixed_precision = gr.Dropdown(["no", "fp16", "bf16"], label="Mixed precision")
                extra = gr.Textbox(label="Other settings: KEY=VALUE lines (animate/training/config.py)", lines=2)
            start_button = gr.Button("Start training", variant="primary")
        with gr.Column(scale=6):
            with gr.Row():
                run = gr.Dropdown([], label="Run", scale=5, allow_custom_value=True)
                refresh = gr.Button("↻", scale=0, min_width=48)
            run_status = gr.Markdown(label="Run status", elem_id="run-status")
            with gr.Row():
                stop_button = gr.Button("Stop", variant="stop")
                resume_button = gr.Button("Resume")
                export_button = gr.Button("Export newest checkpoint")
            curve = gr.LinePlot(x="step", y="loss", color="series", label="Loss", height=300, elem_id="loss")
            samples = gr.Gallery(
                label="Newest validation samples: reference | skeleton | generated | target",
                columns=4,
                height=300,
                preview=True,
                object_fit="contain",
                interactive=False,
                elem_id="samples",
            )
            log = gr.Textbox(label="Log (newest lines)", lines=12, max_lines=20, interactive=False, elem_id="train-log")
            seen = gr.State(None)
            timer = gr.Timer(2.0)

    build_button.click(
        build_training_dataset,
        [videos, folder, dataset_name, dataset_backend],
        [dataset_summary, dataset_table, data],
        api_name="build_dataset",
        concurrency_id="pose",
        concurrency_limit=1,
    )
    form = [
        start_from,
        run_name,
        max_steps,
        learning_rate,
        width,
        height,
        num_frames,
        batch_size,
        validate_every,
        checkpoint_every,
        mixed_precision,
    ]
    gr.on([stage.change, size.change], training_defaults, [stage, size], form, api_name="training_defaults", **UI_ONLY)
    start_button.click(start_training, [stage, size, data, *form, extra], run, api_name="start_training")
    shown = [run_status, curve, samples, log, stop_button, resume_button, export_button]
    refresh.click(run_list, run, run, api_name="list_runs")
    run.change(show_run, run, [*shown, seen], api_name="show_run")
    timer.tick(
        show_run, [run, seen], [*shown, seen], api_name="training_tick", queue=False, show_progress="hidden", **UI_ONLY
    )
    for button, action in ((stop_button, "stop"), (resume_button, "resume"), (export_button, "export")):
        button.click(functools.partial(run_action, action), run, [run, *shown], api_name=f"{action}_training")
    demo.load(
        lambda: (run_list(), *training_defaults(1, "tiny")), None, [run, *form], api_name="load_training", **UI_ONLY
    )
