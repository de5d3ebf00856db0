"""Training speed and memory of the tiny presets on this machine. Prints a table; asserts nothing.

    python bench/train.py                # both stages, with and without gradient checkpointing, 12 steps each
    python bench/train.py --steps 30 --threads 2

Each row is a fresh `python -m animate.training` process (stage 2 on top of the stage-1 run's export), so its peak
resident memory (the kernel's ru_maxrss for that child) is the run's own. Step time and samples/s are the medians of
the steps after the first two (warm-up), read from the run's metrics.jsonl; they include loading the puppet samples.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]


def run(stage: int, checkpointing: bool, steps: int, root: Path, threads: int) -> dict:
    name = f"stage{stage}-{'ckpt' if checkpointing else 'plain'}"
    command = [
        sys.executable, "-m", "animate.training", "--stage", str(stage), "--config", f"tiny_stage{stage}",
        f"--run_name={name}", f"--output_dir={root / 'runs'}", f"--export_dir={root / 'trained'}",
        f"--max_steps={steps}", f"--checkpoint_every={steps}", "--log_every=1", "--validate_every=0",
        f"--gradient_checkpointing={checkpointing}",
    ]  # fmt: skip
    if stage == 2:
        command.append(f"--init_from={root / 'trained' / 'stage1-plain'}")
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed:\n{stderr.decode()[-3000:]}")
    lines = (root / "runs" / name / "metrics.jsonl").read_text().splitlines()
    timed = [record for record in map(json.loads, lines) if "loss" in record][2:]
    return {
        "name": name,
        "step_time": median(record["step_time"] for record in timed),
        "samples_per_s": median(record["samples_per_s"] for record in timed),
        "peak_rss_mb": usage.ru_maxrss / 1024,  # kilobytes on Linux
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run (default: %(default)s)")
    args = parser.parse_args()
    print(f"tiny presets, {args.steps} steps per run, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder:
        rows = [
            run(stage, checkpointing, args.steps, Path(folder), args.threads)
            for stage in (1, 2)
            for checkpointing in (False, True)
        ]
    print(f"\n{'run':<14} {'step time':>10} {'samples/s':>10} {'peak RSS':>10}")
    for row in rows:
        print(
            f"{row['name']:<14} {row['step_time']:>9.3f}s {row['samples_per_s']:>10.2f} {row['peak_rss_mb']:>7.0f} MB"
        )
    print("\nstage 1: 2 images of 64x64 per step; stage 2: 1 clip of 8 frames of 64x64 per step (the tiny presets)")


if __name__ == "__main__":
    main()
