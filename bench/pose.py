"""Pose extraction speed: frames per second of each available backend, end to end (decode + detect + follow, fill,
smooth + draw every skeleton frame at the size DWPose draws), body only and with hands and face.

    python bench/pose.py [--video PATH] [--max-frames N] [--repeat N]     (or: python -m bench.pose ...)

Prints a table; nothing is asserted. Wall-clock fps depends on what else runs on the machine, so the table also
gives the CPU time each frame cost (this process plus its ffmpeg decoder) and the load average at the start;
with --repeat, the fastest run counts.
"""

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as `python bench/pose.py`, this file's folder comes first on the import path and its name would shadow the
# `pose` package it measures.
if Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

from pose import SkeletonFrames, available_backends, extract_poses, probe_video, skeleton_size  # noqa: E402

DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "dance.mp4"


def cpu_seconds() -> float:
    """CPU time used so far by this process and its finished children (the ffmpeg decoders)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(video: Path, backend: str, parts: bool, max_frames: int | None) -> tuple[int, float, float]:
    """Frames, wall seconds, CPU seconds for one extraction plus drawing every skeleton frame."""
    start_wall, start_cpu = time.perf_counter(), cpu_seconds()
    sequence = extract_poses(video, backend=backend, hands=parts, face=parts, max_frames=max_frames)
    width, height = skeleton_size(sequence.width, sequence.height)
    for frame in SkeletonFrames(sequence, width, height, hands=parts, face=parts):
        assert frame.shape == (height, width, 3)
    return len(sequence), time.perf_counter() - start_wall, cpu_seconds() - start_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--max-frames", type=int)
    parser.add_argument("--repeat", type=int, default=1, help="runs per row; the fastest counts")
    args = parser.parse_args()

    info = probe_video(args.video)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"{args.video.name}: {info.width}x{info.height}, {info.fps:g} fps, {info.duration:g} s")
    print(f"{os.cpu_count()} CPUs; load average (1, 5, 15 min) at start: {load}")
    print(f"{'backend':<10} {'parts':<16} {'frames':>6} {'seconds':>8} {'fps':>6} {'CPU ms/frame':>13}")
    for backend in available_backends():
        for parts in (False, True):
            frames, wall, cpu = min(
                (run(args.video, backend, parts, args.max_frames) for _ in range(args.repeat)), key=lambda r: r[1]
            )
            label = "body+hands+face" if parts else "body"
            print(
                f"{backend:<10} {label:<16} {frames:>6} {wall:>8.2f} {frames / wall:>6.1f} {1000 * cpu / frames:>13.1f}"
            )


if __name__ == "__main__":
    main()
