"""Pose extraction speed: frames per second of each available backend, end to end (decode + detect + follow, fill,
smooth + draw every skeleton frame at the size DWPose draws), body only and with hands and face.

    python bench/pose.py [--video PATH] [--max-frames N]     (or: python -m bench.pose ...)

Prints a table; nothing is asserted (timings depend on the machine and on what else runs on it).
"""

import argparse
import os
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


def run(video: Path, backend: str, parts: bool, max_frames: int | None) -> tuple[int, float, float]:
    """Frames, seconds to extract, seconds to draw."""
    start = time.perf_counter()
    sequence = extract_poses(video, backend=backend, hands=parts, face=parts, max_frames=max_frames)
    extracted = time.perf_counter()
    width, height = skeleton_size(sequence.width, sequence.height)
    for frame in SkeletonFrames(sequence, width, height, hands=parts, face=parts):
        assert frame.shape == (height, width, 3)
    return len(sequence), extracted - start, time.perf_counter() - extracted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--max-frames", type=int)
    args = parser.parse_args()

    info = probe_video(args.video)
    print(
        f"{args.video.name}: {info.width}x{info.height}, {info.fps:g} fps, {info.duration:g} s; {os.cpu_count()} CPUs"
    )
    print(f"{'backend':<10} {'parts':<16} {'frames':>6} {'extract s':>9} {'draw s':>7} {'fps':>6}")
    for backend in available_backends():
        for parts in (False, True):
            frames, extract_seconds, draw_seconds = run(args.video, backend, parts, args.max_frames)
            label = "body+hands+face" if parts else "body"
            fps = frames / (extract_seconds + draw_seconds)
            print(f"{backend:<10} {label:<16} {frames:>6} {extract_seconds:>9.2f} {draw_seconds:>7.2f} {fps:>6.1f}")


if __name__ == "__main__":
    main()
