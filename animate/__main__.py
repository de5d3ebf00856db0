"""Command line: `python -m animate generate --image CHARACTER --video DRIVING -o OUT.mp4 [options]`, and
`[accelerate launch] -m animate batch JOBS.jsonl` for many jobs at once (animate/batch.py).

The driving video may be a raw video (poses are extracted and fitted to the character) or an already-extracted
skeleton video; `--pose-video` gives a skeleton video separately, `--video` then only supplies fps and audio.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

import pose
from animate.batch import BATCH_HELP, run_batch
from animate.checkpoints import CheckpointError
from animate.device import select_device
from animate.engines.animate_anyone import SCHEDULERS
from animate.generate import GenerationSettings, engine_for, model_defaults, unusual_settings
from animate.inputs import check_number
from animate.jobs import LoadedModel, PoseCache
from animate.memory import MEMORY_MODES, choose_memory_mode, describe_device, out_of_memory_message
from animate.weights import WEIGHTS_DIR, ModelEntry, list_models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m animate", description="Animate a character with a video.")
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="character image + driving video -> animated mp4")
    generate.add_argument("--image", type=Path, required=True, help="the character image")
    generate.add_argument("--video", type=Path, help="driving video: raw, or an extracted skeleton video")
    generate.add_argument("--pose-video", type=Path, help="an extracted skeleton video (then --video gives the audio)")
    generate.add_argument("-o", "--output", type=Path, required=True, help="the mp4 to write (+ a .json sidecar)")
    generate.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    generate.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    generate.add_argument("--frames", type=int, help="generate at most this many frames (default: the whole clip)")
    generate.add_argument("--seed", type=int, default=-1, help="random seed (-1: random; the seed used is printed)")
    generate.add_argument("--stride", type=int, default=1, help="use every n-th driving frame")
    generate.add_argument("--resolution", type=int, help="short side of the output in pixels (default: the model's)")
    generate.add_argument("--context-frames", type=int, help="frames per window (default: the model's)")
    generate.add_argument("--context-overlap", type=int, help="frames shared by windows (default: the model's)")
    generate.add_argument("--scheduler", default="ddim", choices=sorted(SCHEDULERS), help="sampler (default: ddim)")
    generate.add_argument("--backend", default="auto", choices=["auto", *pose.BACKENDS], help="pose detector")
    generate.add_argument("--align", default="global", choices=pose.ALIGN_MODES, help="fit of the skeleton")
    generate.add_argument("--no-hands", action="store_true", help="leave the hands out of the skeleton")
    generate.add_argument("--no-face", action="store_true", help="leave the face out of the skeleton")
    # The built-in model was trained on body-only skeletons, so its defaults leave hands and face out.
    generate.add_argument("--side-by-side", action="store_true", help="write character | skeleton | result")
    wan = generate.add_argument_group("Wan-Animate models")
    wan.add_argument(
        "--mode",
        choices=["animate", "replace"],
        default="animate",
        help="animate: the character moves in a new video; replace: it takes the place of the driving video's person",
    )
    wan.add_argument("--segment-frames", type=int, help="frames per segment, 4n+1 (default: the model's, 77)")
    wan.add_argument("--prompt", default="", help="optional text prompt (default: the official one)")
    wan.add_argument(
        "--fps", type=float, help="output fps: the driving video resampled to it, same duration (default: its own)"
    )
    wan.add_argument(
        "--quantize",
        choices=["none", "int8"],
        default="none",
        help="int8: the transformer's weights in 8 bits (torchao), about half the memory",
    )
    batch = commands.add_parser(
        "batch",
        help="the jobs of a JSON-lines file, split across processes and GPUs by `accelerate launch -m animate batch`",
        description=BATCH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    batch.add_argument("jobs", type=Path, help="a .jsonl file: one job per line (see above)")
    for command in (generate, batch):
        command.add_argument("--model", help="a weights folder or a model name from the list (default: the best found)")
        command.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR, help="where downloaded weights live")
        command.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
        command.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
        command.add_argument(
            "--memory-mode", default="auto", choices=["auto", *MEMORY_MODES], help="GPU memory mode (animate/memory.py)"
        )
        command.add_argument("--offload", action="store_true", help="the same as --memory-mode model-offload")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.command == "batch":
        return run_batch(args, generate, _generate)
    try:
        _generate(args, LoadedModel(), progress=_progress_printer())
        return 0
    except (ValueError, FileNotFoundError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _generate(args: argparse.Namespace, loaded: LoadedModel, progress=None, device: torch.device | None = None):
    """One job: checks every value, loads the model (or takes it from `loaded`, shared by a batch's jobs), writes
    the mp4 and its settings; returns the GenerationResult."""
    if args.video is None and args.pose_video is None:
        raise ValueError("Give a driving video with --video (raw or skeleton) or --pose-video.")
    model = _find_model(args.model, args.weights_dir)
    defaults = model_defaults(model)
    settings = GenerationSettings(
        steps=args.steps or defaults["steps"],
        guidance=args.guidance if args.guidance is not None else defaults["guidance"],
        seed=args.seed,
        max_frames=args.frames,
        stride=args.stride,
        short_side=args.resolution or defaults["short_side"],
        context_frames=args.context_frames or defaults["context_frames"],
        context_overlap=args.context_overlap if args.context_overlap is not None else defaults["context_overlap"],
        scheduler=args.scheduler,
        backend=args.backend,
        align=args.align,
        hands=defaults["hands"] and not args.no_hands,
        face=defaults["face"] and not args.no_face,
        side_by_side=args.side_by_side,
        mode=args.mode,
        segment_frames=args.segment_frames or defaults["segment_frames"],
        prompt=args.prompt,
        fps=args.fps or 0.0,
        quantize=args.quantize,
    )
    # The same ranges as the app's controls and API (animate.inputs); the host limits are the app's alone.
    checked = {"steps": settings.steps, "guidance": settings.guidance, "seed": settings.seed,
               "resolution": settings.short_side, "frame_stride": settings.stride,
               "window_size": settings.context_frames, "window_overlap": settings.context_overlap,
               "segment_frames": settings.segment_frames}  # fmt: skip
    for name, value in checked.items():
        check_number(name, value)
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be at least 1; got {args.frames}.")
    if args.fps is not None:
        check_number("output_fps", args.fps)
    model_name = model.name if isinstance(model, ModelEntry) else Path(model).name
    say = print if progress is not None else lambda *_, **__: None
    for warning in unusual_settings(model_name, defaults, settings.steps, settings.guidance):
        say(f"warning: {warning}")
    character = pose.read_image(args.image)
    driving = args.pose_video or args.video
    info = pose.probe_video(driving)
    engine = engine_for(model)
    given = [flag for flag, value in (("--mode", args.mode != "animate"), ("--segment-frames", args.segment_frames),
                                      ("--prompt", args.prompt), ("--fps", args.fps)) if value]  # fmt: skip
    if given and "mode" not in engine.settings:
        say(f"warning: {', '.join(given)} apply to Wan-Animate models only; {model_name} ignores them.")
    width, height = engine.output_size(character.shape[1::-1], (info.width, info.height), settings)

    device = device or select_device(args.device)
    folder = Path(model.path if isinstance(model, ModelEntry) else model)
    dtype = engine.dtype(device, args.precision, folder)
    requested = "model-offload" if args.offload else args.memory_mode
    window, knob = engine.memory_window(settings), engine.memory_knob(settings)

    def choose(sizes: dict[str, int]):
        guided = settings.guidance > 1
        return choose_memory_mode(requested, sizes, device, window, width, height, dtype, guided, knob)

    pipeline, model_files, fit = loaded.get(model, device, dtype, choose, settings.quantize)
    say(f"Model: {model} on {describe_device(device)} ({str(dtype).removeprefix('torch.')}, memory mode {fit.mode})")
    if fit.warning:
        say(f"warning: {fit.warning}")
    pipeline.set_progress_bar_config(disable=True)  # one progress line per stage instead
    started = time.monotonic()
    poses = PoseCache(args.weights_dir)
    conditioning, _ = engine.prepare(character, driving, width, height, settings, poses, progress)
    try:
        result = engine.generate(
            pipeline,
            character,
            conditioning,
            args.output,
            settings,
            driving_video=args.video or args.pose_video,
            model_name=model_name,
            model_files=model_files,
            progress=progress,
        )
    except torch.cuda.OutOfMemoryError as error:
        torch.cuda.empty_cache()
        raise ValueError(out_of_memory_message(fit.mode, window, width, height, knob)) from error
    for warning in result.warnings:
        say(f"\nwarning: {warning}", end="")
    say(
        f"\nWrote {result.path} ({result.frames} frames, {width}x{height}, {result.fps:g} fps, seed {result.seed}) "
        f"in {time.monotonic() - started:.1f} s; settings in {result.path.with_suffix('.json')}"
    )
    return result


def _progress_printer():
    shown = {"stage": "", "time": 0.0}

    def progress(fraction: float, message: str) -> None:
        stage, now = message.split(":")[0], time.monotonic()
        if stage == shown["stage"] and fraction < 1 and now - shown["time"] < 1.0:
            return  # at most one update a second within a stage
        print(("\n" if shown["stage"] and stage != shown["stage"] else "\r") + f"{message:<72}", end="", flush=True)
        shown.update(stage=stage, time=now)

    return progress


def _find_model(name: str | None, weights_dir: Path):
    models = list_models(weights_dir)
    if name is None:
        if not models:
            raise ValueError(
                f"No usable model in {weights_dir}. Download the released weights with "
                "`python -m animate.weights download`, or pass --model FOLDER."
            )
        return models[0]
    by_name = {model.name: model for model in models}
    if name in by_name:
        return by_name[name]
    if Path(name).is_dir():
        return Path(name)
    incomplete = {model.name: model for model in list_models(weights_dir, include_incomplete=True)}
    if name in incomplete:
        raise ValueError(f"The model {name} is not complete in {weights_dir}: {incomplete[name].missing}")
    choices = ", ".join(by_name) or "none found"
    raise ValueError(f"Unknown model {name!r}: give a weights folder or one of: {choices}.")


if __name__ == "__main__":
    sys.exit(main())
