"""The app's examples for the built-in model: puppet characters and skeleton videos of a real dance's motion.

    python -m animate.examples DANCE_VIDEO [--frames 48]

Writes `weights/tiny/examples/`: the skeleton video of the first frames of DANCE_VIDEO (poses extracted with
MediaPipe, body only, drawn as the built-in model was trained) and its poses as JSON, and a few held-out puppet
characters (never trained on) standing at rest at the dancer's scale. Everything written is ours: rendered puppets
and skeletons, not the video's pixels, so the examples can ship with the repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

import pose
from animate.training.dataset import PuppetSamples
from animate.training.puppets import render_with_poses
from animate.weights import WEIGHTS_DIR

EXAMPLES_DIR = WEIGHTS_DIR / "tiny" / "examples"
WIDTH, HEIGHT = 256, 384  # twice the built-in model's 128x192: sharper to look at, resized for generation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m animate.examples", description=__doc__.split("\n\n")[0])
    parser.add_argument("video", type=Path, help="a dance video to take the motion from")
    parser.add_argument("--frames", type=int, default=48, help="frames of motion (default: 48, 2 s at 24 fps)")
    parser.add_argument("--characters", type=int, default=3, help="how many puppet characters (default: 3)")
    parser.add_argument("--output", type=Path, default=EXAMPLES_DIR)
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    poses = pose.extract_poses(args.video, backend="mediapipe", max_frames=args.frames, hands=False, face=False)
    poses.save(args.output / "dance_poses.json")
    samples = PuppetSamples(1, WIDTH, HEIGHT, split="heldout")  # characters the model never saw
    for index in range(args.characters):
        character_seed, _ = samples.clip_seeds(index)
        # The puppet follows the dancer's joints, so every character gives the same skeletons: keep the first's.
        clip = render_with_poses(character_seed, poses, WIDTH, HEIGHT)
        Image.fromarray(clip.reference).save(args.output / f"puppet{index + 1}.png")
        if index == 0:
            with pose.VideoWriter(args.output / "dance_kps.mp4", poses.fps) as writer:
                writer.write_all(clip.skeletons)
    print(f"Wrote {args.characters} characters and a {len(poses)}-frame skeleton video to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
