"""Many generation jobs at once, split across processes and GPUs: `accelerate launch -m animate batch JOBS.jsonl`.

Each process takes every n-th job (n processes), loads the model once on its own device, and runs its jobs one
after another. Outputs are written atomically (an mp4 and its .json appear only when finished), so a job whose
output is already there is skipped on a rerun, and a job that fails is reported with its reason while the others
go on. The first process prints a table of every job at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from animate.jobs import LoadedModel

BATCH_HELP = """\
Runs the generation jobs of a JSON-lines file, one job per line, split across the processes that `accelerate launch`
starts (one per GPU), or that torchrun starts on CPUs (`ACCELERATE_USE_CPU=true torchrun --nproc_per_node=2 -m animate
batch ...`). A job holds the options of `generate`, by
their names with underscores, and relative paths count from the file's folder:

    {"image": "hero.png", "video": "dance.mp4", "output": "out/hero.mp4", "steps": 25, "seed": 7}
    {"image": "girl.png", "video": "dance.mp4", "output": "out/girl.mp4", "no_hands": true}

A job without a seed (or with -1) takes one made from its output's name, so that a job gives the same video however
the jobs are split. A job whose output (the mp4 and its .json) exists is skipped; a failed job is reported and the
others go on. The exit status is 1 when a job failed.
"""

PATH_OPTIONS = ("image", "video", "pose_video", "output")


def read_jobs(path: Path) -> list[dict]:
    """The jobs of a JSON-lines file (blank lines skipped), each with its line number, checked for the basics."""
    jobs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path.name}, line {number}: not a JSON object ({error.msg}).") from None
        if not isinstance(job, dict) or "output" not in job or "image" not in job:
            raise ValueError(f'{path.name}, line {number}: a job needs at least "image" and "output".')
        for key in PATH_OPTIONS:
            if key in job:
                job[key] = str(path.parent / job[key])
        jobs.append({"line": number, **job})
    if not jobs:
        raise ValueError(f"{path.name} holds no jobs.")
    return jobs


def job_arguments(job: dict, common: argparse.Namespace) -> list[str]:
    """The job as `generate` command-line arguments, after the batch's own --model, --device, ... options."""
    arguments = ["--weights-dir", str(common.weights_dir), "--precision", common.precision]
    arguments += ["--memory-mode", common.memory_mode] + (["--offload"] if common.offload else [])
    if common.model:
        arguments += ["--model", common.model]
    seed = job.get("seed", -1)
    if seed == -1:  # the same seed however the jobs are split
        seed = int.from_bytes(hashlib.sha256(Path(job["output"]).name.encode()).digest()[:4]) >> 1
    for key, value in {**job, "seed": seed}.items():
        flag = "--" + key.replace("_", "-")
        if key == "line" or value is False or value is None:
            continue
        arguments += [flag] if value is True else [flag, str(value)]
    return arguments


def run_batch(args: argparse.Namespace, job_parser: argparse.ArgumentParser, run_job: Callable) -> int:
    """Runs this process's share of the jobs with `run_job(arguments, loaded, device=...)` and prints the summary."""
    from accelerate import PartialState
    from accelerate.utils import gather_object, parse_flag_from_env

    # CPU processes (torchrun with ACCELERATE_USE_CPU=true) join a gloo group; GPU processes an NCCL one.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    # A CPU process's device is "cpu:0" under torchrun: "cpu" is the same memory, and it is what a single process
    # uses, which keeps the results the same however the jobs are split.
    device = state.device if state.device.type != "cpu" else torch.device("cpu")
    device = device if args.device == "auto" else None
    jobs = read_jobs(args.jobs)
    loaded = LoadedModel()  # the model, loaded once per process
    rows = []
    for job in jobs[state.process_index :: state.num_processes]:
        output = Path(job["output"])
        row = {"line": job["line"], "output": output.name, "process": state.process_index, "seconds": 0.0}
        started = time.monotonic()
        if output.is_file() and output.with_suffix(".json").is_file():
            rows.append({**row, "status": "skipped: already done"})
            continue
        try:
            arguments = job_parser.parse_args(job_arguments(job, args))
            if device is None:
                arguments.device = args.device
            result = run_job(arguments, loaded, device=device)
            status = f"done: {result.frames} frames, seed {result.seed}"
        except SystemExit:  # argparse has printed what is wrong with the job's options
            status = "failed: its options are not valid for `generate` (see the message above)"
        except Exception as error:  # the reason is reported and the other jobs go on
            if not isinstance(error, ValueError | FileNotFoundError):
                traceback.print_exc()
            status = f"failed: {error}"
        rows.append({**row, "status": status, "seconds": time.monotonic() - started})
        print(f"[process {state.process_index}] line {job['line']}: {status}", flush=True)
    everything = sorted(gather_object(rows), key=lambda row: row["line"])
    if state.is_main_process:
        print("\n| line | output | process | status | seconds |\n|---|---|---|---|---|")
        for row in everything:
            print(f"| {row['line']} | {row['output']} | {row['process']} | {row['status']} | {row['seconds']:.1f} |")
        failed = sum(row["status"].startswith("failed") for row in everything)
        print(f"\n{len(everything)} jobs on {state.num_processes} process(es): {failed} failed.")
    state.wait_for_everyone()
    return 1 if any(row["status"].startswith("failed") for row in everything) else 0
