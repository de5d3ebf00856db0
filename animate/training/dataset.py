"""Training samples for both stages, and the dataset builder: a folder of videos -> skeletons -> a dataset index.

The contract with the training loop: `samples[i]` is a pure function of (the samples' seed, i) for any
non-negative i, so a resumed run asks for the same indices and gets the same batches. Each sample is a dict of
float32 tensors:

- "reference" (3, H, W) in [-1, 1]: another frame of the same clip (of the same character, for puppets), as
  Animate Anyone trains;
- "frames" (F, 3, H, W) in [-1, 1]: the target frames, F = 1 for stage 1;
- "poses" (F, 3, H, W) in [0, 1]: their skeleton images, DWPose style;
- "masks" (F, 1, H, W) in {0, 1}: the character's pixels; only where known (puppets), absent for real videos.

`len()` is the number of clips of a video dataset (indices wrap around it, each index with its own frames) and a
very large number for puppets, which are unlimited.

Videos are scaled to cover the training size, keeping their aspect, and centre-cropped; the skeleton frames get the
same transform. We crop rather than pad so that the model never learns black bars (the reference implementation
crops too); a portrait dance video loses a little above the head and below the feet at 2:3.

The index (JSON, paths relative to it) lists each usable clip with its fps, frame count, size, detection rate (the
share of frames where the detector itself found the dancer, not counting short gaps filled in by interpolation),
the frames without anyone, and its video, skeleton video and keypoint files; and each rejected video with the
reason. Build one with `python -m animate.training.dataset build FOLDER` or `build_dataset()`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

import pose.__main__ as pose_cli
from pose.detect import BACKENDS, WEIGHT_FILES, WEIGHTS_DIR, MissingWeightsError, available_backends, default_backend
from pose.keypoints import PoseSequence
from pose.preview import skeleton_size
from pose.video import VideoError, probe_video, read_frames

from .puppets import PUPPET_FPS, puppet_seeds, render_clip

logger = logging.getLogger(__name__)

INDEX_FORMAT, INDEX_VERSION = "animate-anyone-dataset", 1
MIN_DETECTION_RATE = 0.9
MIN_FRAMES = 25  # the stage-2 clip length (24) and a reference frame outside it
PUPPET_SAMPLES = 2**31  # "unlimited": small enough for any sampler that asks for len()


class PuppetSamples:
    """Samples of procedurally generated puppets: index i renders a fresh character and dance, both drawn from
    `split`'s seeds ("train" or "heldout"). Frames are `frame_stride` / 24 s apart."""

    def __init__(
        self, num_frames: int, width: int, height: int, seed: int = 0, split: str = "train", frame_stride: int = 1
    ):
        self.num_frames, self.width, self.height = num_frames, width, height
        self.seed, self.frame_stride = seed, frame_stride
        self.seeds = puppet_seeds(split)

    def __len__(self) -> int:
        return PUPPET_SAMPLES

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        character_seed, motion_seed = self.clip_seeds(index)
        fps = PUPPET_FPS / self.frame_stride
        clip = render_clip(character_seed, motion_seed, self.num_frames, self.width, self.height, fps)
        return _sample(clip.reference, clip.frames, clip.skeletons, clip.masks)

    def clip_seeds(self, index: int) -> tuple[int, int]:
        """The (character, motion) seeds of sample `index`."""
        character, motion = np.random.SeedSequence([self.seed, _checked_index(index)]).generate_state(2, np.uint64)
        return self.seeds[int(character) % len(self.seeds)], self.seeds[int(motion) % len(self.seeds)]


class VideoSamples:
    """Samples of the clips of a dataset index: index i takes clip i modulo their number, `num_frames` frames
    `frame_stride` apart from a random start, and a random reference frame outside them, preferring frames with a
    detected person. Decoding seeks to the first frame needed and stops after the last."""

    def __init__(
        self,
        index_path: str | os.PathLike,
        num_frames: int,
        width: int,
        height: int,
        seed: int = 0,
        frame_stride: int = 1,
    ):
        self.index_path = Path(index_path)
        self.num_frames, self.width, self.height = num_frames, width, height
        self.seed, self.frame_stride = seed, frame_stride
        self.span = (num_frames - 1) * frame_stride + 1  # frames a sample covers; one more is left for the reference
        clips = load_index(self.index_path)["clips"]
        self.clips = [clip for clip in clips if clip["num_frames"] > self.span]
        if len(self.clips) < len(clips):
            logger.warning(
                "%d clips of %s are too short for %d frames.",
                len(clips) - len(self.clips),
                self.index_path,
                self.span + 1,
            )
        if not self.clips:
            raise ValueError(
                f"No clip in {self.index_path} has more than {self.span} frames. Use fewer frames, a smaller frame "
                "stride, or longer videos."
            )

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip = self.clips[_checked_index(index) % len(self.clips)]
        targets, reference = self.frames_of(index)
        wanted = [*targets, reference]
        root, size = self.index_path.parent, (clip["width"], clip["height"])
        frames = self._read(root / clip["video"], wanted, size)
        skeletons = self._read(root / clip["skeleton_video"], wanted, skeleton_size(*size))
        return _sample(frames[-1], frames[:-1], skeletons[:-1])

    def frames_of(self, index: int) -> tuple[list[int], int]:
        """The target frames and the reference frame that sample `index` takes from its clip."""
        clip = self.clips[_checked_index(index) % len(self.clips)]
        rng = np.random.default_rng([self.seed, index])
        start = int(rng.integers(0, clip["num_frames"] - self.span + 1))
        targets = start + self.frame_stride * np.arange(self.num_frames)
        others = np.setdiff1d(np.arange(clip["num_frames"]), targets)
        with_person = np.setdiff1d(others, clip["missing_frames"])
        return targets.tolist(), int(rng.choice(with_person if len(with_person) else others))

    def _read(self, path: Path, indices: list[int], size: tuple[int, int]) -> np.ndarray:
        """Frames `indices` of a video, covering the training size: (len(indices), height, width, 3) uint8."""
        zoom = max(self.width / size[0], self.height / size[1])
        first, last = min(indices), max(indices)
        frames = read_frames(path, start=first, max_frames=last - first + 1, max_side=math.ceil(max(size) * zoom) + 2)
        found = {}
        for position, frame in enumerate(frames, start=first):
            if position in indices:
                found[position] = _cover(frame, self.width, self.height)
        missing = sorted(set(indices) - set(found))
        if missing:
            raise VideoError(f"{path.name} has no frame {missing[0]}; the dataset index is stale: build it again.")
        return np.stack([found[i] for i in indices])


def make_samples(
    source: str | os.PathLike, num_frames: int, width: int, height: int, seed: int = 0, frame_stride: int = 1
) -> PuppetSamples | VideoSamples:
    """The samples of `source`: "puppets" (the training split) or the path of a dataset index."""
    if str(source) == "puppets":
        return PuppetSamples(num_frames, width, height, seed, "train", frame_stride)
    if not Path(source).is_file():
        raise ValueError(f"Training data must be 'puppets' or a dataset index file; {source} is neither.")
    return VideoSamples(source, num_frames, width, height, seed, frame_stride)


def load_index(path: str | os.PathLike) -> dict:
    """Reads a dataset index written by `build_dataset`. Raises ValueError for any other file."""
    path = Path(path)
    try:
        index = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path.name} is not a dataset index ({error}).") from error
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise ValueError(f"{path.name} is not a dataset index; build one with `python -m animate.training.dataset`.")
    if index.get("version") != INDEX_VERSION:
        raise ValueError(f"{path.name} has dataset index version {index.get('version')}; expected {INDEX_VERSION}.")
    return index


def build_dataset(
    folder: str | os.PathLike,
    output: str | os.PathLike | None = None,
    backend: str = "auto",
    progress: Callable[[float, str], None] | None = None,
    *,
    min_detection_rate: float = MIN_DETECTION_RATE,
    min_frames: int = MIN_FRAMES,
    weights_dir: Path = WEIGHTS_DIR,
) -> dict:
    """Extracts the poses of every video in `folder` (the `python -m pose extract` job for each, which skips videos
    already done) into a folder next to the index, then writes the index (default FOLDER/dataset.json) and
    returns it. `progress(fraction, message)` is called before each video and at the end. Videos where extraction
    failed are remembered in the index and not tried again while the file and the backend stay the same."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder of videos.")
    output = Path(output) if output is not None else folder / "dataset.json"
    skeleton_dir = output.with_name(f"{output.stem}_kps")
    backend = default_backend(weights_dir) if backend == "auto" else backend
    if backend not in BACKENDS:
        raise ValueError(f"Unknown pose backend {backend!r}; choose one of {', '.join(BACKENDS)} or 'auto'.")
    if backend not in available_backends(weights_dir):
        raise MissingWeightsError(backend, Path(weights_dir) / WEIGHT_FILES[backend][0])
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in pose_cli.VIDEO_SUFFIXES and p.name[0] != ".")
    earlier_failures = {
        entry["video"]: entry for entry in _earlier_index(output).get("rejected", []) if "stamp" in entry
    }

    clips, rejected = [], []
    for number, video in enumerate(videos):
        if progress is not None:
            progress(number / len(videos), f"Extracting poses from {video.name} ({number + 1}/{len(videos)})")
        entry = {"name": video.name, "video": _relative(video, output)}
        skeleton = skeleton_dir / f"{video.stem}_kps.mp4"
        stamp = [video.stat().st_size, video.stat().st_mtime_ns, backend]  # a failure stands while these do
        failure = earlier_failures.get(entry["video"])
        if failure is not None and failure["stamp"] == stamp:
            rejected.append(failure)
            continue
        command = ["extract", str(video), "-o", str(skeleton), "--backend", backend, "--weights-dir", str(weights_dir)]
        if pose_cli.main(command) != 0:
            rejected.append(entry | {"reason": _failure(video, backend), "stamp": stamp})
            continue
        sequence = PoseSequence.load(skeleton.with_suffix(".json"))
        detected = len(sequence) - len(sequence.missing_frames) - len(sequence.interpolated)
        entry |= {
            "skeleton_video": _relative(skeleton, output),
            "keypoints": _relative(skeleton.with_suffix(".json"), output),
            "backend": sequence.backend,
            "fps": sequence.fps,
            "num_frames": len(sequence),
            "width": sequence.width,
            "height": sequence.height,
            "detection_rate": round(detected / len(sequence), 4),
            "missing_frames": sequence.missing_frames,
        }
        if len(sequence) < min_frames:
            rejected.append(entry | {"reason": f"too short: {len(sequence)} frames, fewer than {min_frames}"})
        elif entry["detection_rate"] < min_detection_rate:
            reason = f"person detected in {entry['detection_rate']:.0%} of frames, fewer than {min_detection_rate:.0%}"
            rejected.append(entry | {"reason": reason})
        else:
            clips.append(entry)

    index = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "source": _relative(folder, output),
        "min_detection_rate": min_detection_rate,
        "min_frames": min_frames,
        "clips": clips,
        "rejected": rejected,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")  # so a killed run never leaves a broken index
    partial.write_text(json.dumps(index, indent=1))
    os.replace(partial, output)
    if progress is not None:
        progress(1.0, f"{len(clips)} clips in the dataset, {len(rejected)} videos left out")
    return index


def _earlier_index(path: Path) -> dict:
    try:
        return load_index(path)
    except (OSError, ValueError):
        return {}


def _failure(video: Path, backend: str) -> str:
    """Why the pose job failed on `video`: it told the log; the index gets a short reason."""
    try:
        probe_video(video)
    except VideoError as error:
        return f"unreadable video: {error}"
    return f"no person found by the {backend} detector"


def _relative(path: Path, index: Path) -> str:
    return Path(os.path.relpath(path.resolve(), index.parent.resolve())).as_posix()


def _checked_index(index: int) -> int:
    if index < 0:
        raise IndexError(f"sample indices are non-negative, got {index}")
    return int(index)


def _cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` scaled to cover width x height, aspect kept, then centre-cropped to it."""
    zoom = max(width / image.shape[1], height / image.shape[0])
    size = max(width, round(image.shape[1] * zoom)), max(height, round(image.shape[0] * zoom))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return resized[top : top + height, left : left + width]


def _sample(
    reference: np.ndarray, frames: np.ndarray, skeletons: np.ndarray, masks: np.ndarray | None = None
) -> dict[str, torch.Tensor]:
    """The tensors of one sample from uint8 images (..., H, W, 3) and bool masks (F, H, W)."""
    sample = {
        "reference": _images(reference, low=-1.0),
        "frames": _images(frames, low=-1.0),
        "poses": _images(skeletons, low=0.0),
    }
    if masks is not None:
        sample["masks"] = torch.from_numpy(masks[:, None].astype(np.float32))
    return sample


def _images(images: np.ndarray, low: float) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) from `low` to 1. In numpy: torch's kernels would start
    threads for these small tensors, which costs more than the work in a data-loading process."""
    channels_first = np.ascontiguousarray(np.moveaxis(images, -1, -3), dtype=np.float32)
    return torch.from_numpy(channels_first * np.float32((1 - low) / 255) + np.float32(low))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m animate.training.dataset", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="folder of videos -> skeleton videos, keypoints and a dataset index")
    build.add_argument("folder", type=Path, help="a folder of videos, one dancer each")
    build.add_argument("-o", "--output", type=Path, help="the index (default: FOLDER/dataset.json)")
    build.add_argument("--backend", default="auto", choices=["auto", *BACKENDS], help="pose detector (default: auto)")
    build.add_argument(
        "--min-detection-rate",
        type=float,
        default=MIN_DETECTION_RATE,
        help=f"leave out videos with a person in fewer frames (default: {MIN_DETECTION_RATE})",
    )
    build.add_argument(
        "--min-frames",
        type=int,
        default=MIN_FRAMES,
        help=f"leave out shorter videos (default: {MIN_FRAMES}, the stage-2 clip length)",
    )
    args = parser.parse_args(argv)
    try:
        index = build_dataset(
            args.folder,
            args.output,
            args.backend,
            min_detection_rate=args.min_detection_rate,
            min_frames=args.min_frames,
        )
    except (OSError, ValueError) as error:
        print(error, file=sys.stderr)
        return 1
    print(f"\n{'video':<32} {'frames':>7} {'fps':>6} {'size':>11} {'detected':>9}  status")
    for entry in index["clips"] + index["rejected"]:
        size = f"{entry['width']}x{entry['height']}" if "width" in entry else "-"
        frames, fps = entry.get("num_frames", "-"), f"{entry['fps']:g}" if "fps" in entry else "-"
        rate = f"{entry['detection_rate']:.0%}" if "detection_rate" in entry else "-"
        print(f"{entry['name']:<32} {frames:>7} {fps:>6} {size:>11} {rate:>9}  {entry.get('reason', 'ok')}")
    print(f"\n{len(index['clips'])} clips in {args.output or args.folder / 'dataset.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
