"""Video -> pose sequence: decode, detect every kept frame, follow the main dancer, fill short gaps, smooth."""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .detect import WEIGHTS_DIR, get_detector
from .keypoints import PoseFrame, PoseSequence
from .tracking import fill_gaps, follow_main_person, smooth_sequence
from .video import VideoError, probe_video, read_frames

logger = logging.getLogger(__name__)

# Gaps up to this long (a blink of the detector: motion blur, a turn) are filled by interpolation; longer ones are
# left empty and reported, because inventing a quarter second of dance would show.
MAX_GAP_SECONDS = 0.25


class NoPersonFoundError(ValueError):
    """Nobody was found in any frame of the video."""


def extract_poses(
    video_path: str | os.PathLike,
    *,
    backend: str = "auto",
    stride: int = 1,
    max_frames: int | None = None,
    hands: bool = True,
    face: bool = True,
    smooth: bool = True,
    progress: Callable[[int, int], None] | None = None,
    weights_dir: Path = WEIGHTS_DIR,
) -> PoseSequence:
    """The main dancer's pose in every `stride`-th frame of a video, at the video's frame rate divided by `stride`.

    `progress(done, total)` is called after each frame (`total` is estimated from the header until the end).
    Frames where nobody is found stay empty (`sequence.missing_frames`) unless the gap is short enough to fill.
    Raises `VideoError` for a file that is not a readable video and `NoPersonFoundError` if nobody is in it.
    """
    info = probe_video(video_path)
    detector = get_detector(backend, weights_dir, hands=hands, face=face, video=True)
    total = math.ceil(info.num_frames / stride)
    if max_frames is not None:
        total = min(total, max_frames)
    frames: list[PoseFrame] = []
    try:
        decoded = read_frames(video_path, stride=stride, max_frames=max_frames, max_side=detector.detect_side)
        for image in _read_ahead(decoded):
            detected = detector.detect(image)
            # Coordinates are normalised, so the frames can carry the source size rather than the decoding size.
            frames.append(PoseFrame(people=detected.people, width=info.width, height=info.height))
            if progress is not None:
                progress(len(frames), max(total, len(frames)))
    finally:
        detector.close()
    if not frames:
        raise VideoError(f"No frame could be decoded from {info.path.name}. Re-export it as an H.264 mp4.")
    if progress is not None and len(frames) != total:
        progress(len(frames), len(frames))

    fps = info.fps / stride
    max_gap = max(1, round(MAX_GAP_SECONDS * fps))
    sequence = PoseSequence(
        frames=follow_main_person(frames, max_gap),
        fps=fps,
        width=info.width,
        height=info.height,
        backend=detector.name,
    )
    if len(sequence.missing_frames) == len(sequence):
        raise NoPersonFoundError(
            f"No person was found in {info.path.name} ({len(frames)} frames checked with the {detector.name} "
            "detector). Use a video in which one person is clearly visible, ideally full body and facing the camera."
        )
    sequence = fill_gaps(sequence, max_gap)
    if smooth:
        sequence = smooth_sequence(sequence)
    if sequence.missing_frames:
        logger.warning(
            "No person in %d of %d frames of %s (first at frame %d); those skeleton frames stay empty.",
            len(sequence.missing_frames),
            len(sequence),
            info.path.name,
            sequence.missing_frames[0],
        )
    return sequence


def _read_ahead(frames: Iterator[np.ndarray], depth: int = 8) -> Iterator[np.ndarray]:
    """Yields `frames`, decoded by a background thread up to `depth` frames ahead.

    ffmpeg decodes only as fast as its pipe is read, so without this, decoding and detection take turns instead
    of running on two cores at once. Errors from decoding are raised here, in the caller's thread.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def decode() -> None:
        try:
            for frame in frames:
                if not put(frame):
                    break
            else:
                put(end)
        except Exception as error:  # handed to the caller's thread, which raises it
            put(error)
        finally:
            frames.close()

    worker = threading.Thread(target=decode, name="pose-decode", daemon=True)
    worker.start()
    try:
        while (item := buffer.get()) is not end:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()
