"""The built-in model's speed as a user meets it: `python -m animate generate` on the app's example, end to end.

    python bench/builtin.py [--runs 5] [--frames 48]

Each run is a fresh process (Python start-up, imports, model loading, reading the skeleton video, generation,
decoding and writing the mp4), timed from outside. Prints every run and the median; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "weights" / "tiny" / "examples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--model", type=Path, default=ROOT / "weights" / "tiny")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before the first run")
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.runs):
            command = [
                sys.executable, "-m", "animate", "generate", "--model", str(args.model),
                "--image", str(EXAMPLES / "puppet1.png"), "--video", str(EXAMPLES / "dance_kps.mp4"),
                "--frames", str(args.frames), "--seed", "0", "-o", str(Path(folder) / f"run{run}.mp4"),
            ]  # fmt: skip
            started = time.perf_counter()
            result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            if result.returncode != 0:
                raise SystemExit(result.stderr)
            summary = result.stdout.strip().splitlines()[-1]
            times.append(seconds)
            print(f"run {run + 1}: {seconds:.1f} s  ({summary})")
    print("\n| runs | frames | median | min | max |\n|---|---|---|---|---|")
    print(
        f"| {args.runs} | {args.frames} | {statistics.median(times):.1f} s | {min(times):.1f} s | {max(times):.1f} s |"
    )


if __name__ == "__main__":
    main()
