"""Command line: `python -m pose extract VIDEO_OR_FOLDER [-o OUT] [--backend NAME] [--align CHARACTER_IMAGE]`.

For a video, writes OUT (default VIDEO_kps.mp4 next to the video), the skeleton video, and OUT with a .json suffix,
the keypoints. For a folder, does the same for every video in it into an output folder (default FOLDER_kps),
skipping videos whose outputs are already there: each file appears only once complete, so a killed run resumes
where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from PIL import Image

from .align import ALIGN_MODES, align_poses
from .detect import BACKENDS, WEIGHTS_DIR, MissingWeightsError, detect_image
from .extract import extract_poses
from .image import read_image
from .preview import preview_on_character, write_skeleton_video

VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pose", description="Pose extraction for Animate Anyone.")
    commands = parser.add_subparsers(dest="command", required=True)
    extract = commands.add_parser("extract", help="video (or folder of videos) -> skeleton video + keypoint JSON")
    extract.add_argument("video", type=Path, help="a video file, or a folder of videos")
    extract.add_argument("-o", "--output", type=Path, help="the skeleton .mp4 (or, for a folder, the output folder)")
    extract.add_argument("--backend", default="auto", choices=["auto", *BACKENDS], help="pose detector (default: auto)")
    extract.add_argument("--align", type=Path, metavar="IMAGE", help="fit the skeleton to this character image")
    extract.add_argument("--align-mode", default="global", choices=ALIGN_MODES, help="how to fit (default: global)")
    extract.add_argument("--stride", type=int, default=1, help="keep every n-th frame (default: 1, all)")
    extract.add_argument("--max-frames", type=int, help="stop after this many kept frames")
    extract.add_argument("--no-hands", action="store_true", help="skip the hands")
    extract.add_argument("--no-face", action="store_true", help="skip the face")
    extract.add_argument("--no-smooth", action="store_true", help="keep the raw per-frame detections")
    extract.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR, help="where the detector weights are")
    args = parser.parse_args(argv)
    if args.align is not None and not args.align.is_file():
        parser.error(f"character image not found: {args.align}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")

    if args.video.is_dir():
        output_dir = args.output or args.video.with_name(f"{args.video.name}_kps")
        videos = sorted(p for p in args.video.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.name[0] != ".")
        jobs = [(video, output_dir / f"{video.stem}_kps.mp4") for video in videos]
        print(f"{len(jobs)} videos in {args.video} -> {output_dir}")
    else:
        jobs = [(args.video, args.output or args.video.with_name(f"{args.video.stem}_kps.mp4"))]

    failed = 0
    for video, output in jobs:
        if output.is_file() and output.with_suffix(".json").is_file():
            print(f"{video.name}: already done, skipped")
            continue
        try:
            _extract_one(video, output, args)
        except (ValueError, MissingWeightsError) as error:  # VideoError, NoPersonFoundError, a bad --align image
            print(f"{video.name}: {error}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _extract_one(video: Path, output: Path, args: argparse.Namespace) -> None:
    def progress(done: int, total: int) -> None:
        print(f"\r{video.name}: {done}/{total} frames", end="" if done < total else "\n", flush=True)

    sequence = extract_poses(
        video,
        backend=args.backend,
        stride=args.stride,
        max_frames=args.max_frames,
        hands=not args.no_hands,
        face=not args.no_face,
        smooth=not args.no_smooth,
        progress=progress,
        weights_dir=args.weights_dir,
    )
    if sequence.missing_frames:
        print(f"{video.name}: nobody found in {len(sequence.missing_frames)} frames: {sequence.missing_frames}")
    output.parent.mkdir(parents=True, exist_ok=True)
    if args.align is not None:
        character = read_image(args.align)
        reference = detect_image(
            character, sequence.backend, args.weights_dir, hands=not args.no_hands, face=not args.no_face
        )
        sequence, _ = align_poses(sequence, reference, args.align_mode)  # warnings are logged
        preview = output.with_name(f"{output.stem}_preview.png")
        Image.fromarray(preview_on_character(character, sequence)).save(preview)
        print(f"{video.name}: alignment preview in {preview}")

    # The video first and the JSON last: a folder run treats a video as done only once both exist.
    write_skeleton_video(sequence, output)
    sequence.save(output.with_suffix(".json"))
    print(f"{video.name}: {len(sequence)} frames at {sequence.fps:g} fps -> {output}, {output.with_suffix('.json')}")


if __name__ == "__main__":
    sys.exit(main())
