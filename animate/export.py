"""Exporting a generated video: H.264 mp4 at the driving video's frame rate with its audio track, optionally side by
side with the character and the skeleton, carrying the settings that made it.

The settings travel twice: as JSON in the mp4's `comment` tag, so the file alone is enough to reproduce it, and in a
JSON sidecar (`OUT.json` next to `OUT.mp4`) that is easy to read and diff. Frames are written as they arrive, so
memory does not grow with the video's length. A failed or cancelled export leaves no partial file and leaves an
earlier result at the same path untouched: `VideoWriter` writes to a temporary name and moves it into place only
when the video is complete, and the sidecar follows it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
from PIL import Image

from pose.video import VideoError, VideoWriter, probe_video

logger = logging.getLogger(__name__)

# Hashing a 3.4 GB checkpoint takes several seconds, so hashes are remembered here between runs.
DEFAULT_HASH_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "animate-anyone" / "sha256.json"


def generation_settings(
    *,
    seed: int,
    steps: int,
    guidance: float,
    model_files: Sequence[str | os.PathLike],
    extra: dict[str, Any] | None = None,
    hash_cache: Path = DEFAULT_HASH_CACHE,
) -> dict[str, Any]:
    """The record an exported video carries: seed, steps, guidance, every model file (its name in the model's folder)
    with its size and sha256, the library versions, and the caller's `extra` settings (resolution, scheduler, pose
    backend, ...) at the top level."""
    # Files are named within their model's folder: the record says which weights made the video (name and hash),
    # not where a server keeps them.
    files = [Path(file).resolve() for file in model_files]
    root = Path(os.path.commonpath([file.parent for file in files])) if files else None
    settings = {
        "seed": seed,
        "steps": steps,
        "guidance": guidance,
        "models": [
            {
                "file": file.relative_to(root).as_posix(),
                "bytes": file.stat().st_size,
                "sha256": file_sha256(file, hash_cache),
            }
            for file in files
        ],
        "software": {name: metadata.version(name) for name in ("torch", "diffusers", "transformers")},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    clashes = settings.keys() & (extra or {}).keys()
    if clashes:
        raise ValueError(f"extra settings may not replace the standard ones: {', '.join(sorted(clashes))}")
    return settings | (extra or {})


def file_sha256(path: str | os.PathLike, hash_cache: Path = DEFAULT_HASH_CACHE) -> str:
    """sha256 of a file, remembered in a small JSON file keyed by the file's real path, size and mtime: a checkpoint
    is hashed once, and hashed again only when it changes (a new size or modification time)."""
    path = Path(path).resolve()
    stat = path.stat()
    entry = _read_json(hash_cache).get(str(path))
    if entry and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
        return entry["sha256"]
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(8 << 20):
            digest.update(chunk)
    # Read again: another job may have added entries while this file was being hashed.
    cache = _read_json(hash_cache)
    cache[str(path)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}
    try:
        hash_cache.parent.mkdir(parents=True, exist_ok=True)
        partial = hash_cache.with_name(f".{hash_cache.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(cache, indent=1))
        os.replace(partial, hash_cache)
    except OSError as error:  # a read-only cache folder only costs hashing again next time
        logger.warning("Could not update the hash cache %s: %s", hash_cache, error)
    return digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        logger.warning("Ignoring unreadable hash cache %s: %s", path, error)
        return {}


def side_by_side(
    character: np.ndarray, skeletons: Iterable[np.ndarray], results: Iterable[np.ndarray]
) -> Iterator[np.ndarray]:
    """Yields `character | skeleton | result` frames, one per result frame, as the results arrive.

    Every panel is scaled to the result's height with its aspect ratio kept. When the total width is odd, one black
    column is added on the right: H.264 in yuv420p needs even sides, and padding keeps the panels' pixels where the
    writer would otherwise rescale the whole frame.
    """
    if character.dtype != np.uint8 or character.ndim != 3 or character.shape[2] != 3:
        raise ValueError(
            f"The character image must be uint8 (height, width, 3), got {character.dtype} {character.shape}"
        )
    skeletons = iter(skeletons)
    character_panel = character
    for index, result in enumerate(results):
        skeleton = next(skeletons, None)
        if skeleton is None:
            raise ValueError(f"The skeleton frames ran out at frame {index}, before the generated frames did.")
        height = result.shape[0]
        if character_panel.shape[0] != height:
            character_panel = _fit_height(character, height)
        panels = [character_panel, _fit_height(skeleton, height), result]
        if sum(panel.shape[1] for panel in panels) % 2:
            panels.append(np.zeros((height, 1, 3), np.uint8))
        yield np.concatenate(panels, axis=1)


def _fit_height(image: np.ndarray, height: int) -> np.ndarray:
    if image.shape[0] == height:
        return image
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


def export_video(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike,
    *,
    settings: dict[str, Any],
    driving_video: str | os.PathLike | None = None,
    fps: float | None = None,
) -> Path:
    """Writes `frames` (uint8 (height, width, 3), consumed one at a time) to the mp4 `path` and the settings to the
    sidecar `path` with `.json`; returns `path`.

    The frame rate is the driving video's unless `fps` is given (say, poses were taken from every second frame), and
    the driving video's audio track, when it has one, is copied and cut or padded to the frames' length.
    """
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"Videos are exported as .mp4 files, got {path.name}.")
    try:
        comment = json.dumps(settings, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise ValueError(f"The settings must be JSON data (numbers, strings, lists, dicts): {error}") from error
    driving = probe_video(driving_video) if driving_video is not None else None
    fps = fps or (driving.fps if driving else None)
    if not fps:
        raise ValueError("Give the frame rate (fps) when there is no driving video to take it from.")
    audio_from = driving.path if driving and driving.has_audio else None

    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = path.with_suffix(".json")
    partial_sidecar = path.with_name(f".{path.stem}.partial.json")
    writer = VideoWriter(path, fps, audio_from=audio_from, metadata={"comment": comment})
    try:
        writer.write_all(frames)
        partial_sidecar.write_text(json.dumps(settings, indent=2) + "\n")
        writer.close()
    except BaseException:
        writer.abort()
        partial_sidecar.unlink(missing_ok=True)
        raise
    os.replace(partial_sidecar, sidecar)
    logger.info(
        "Exported %s: %d frames at %.3g fps, %s",
        path,
        writer.frames_written,
        fps,
        "with the driving video's audio" if audio_from else "no audio",
    )
    return path


def read_settings(path: str | os.PathLike) -> dict[str, Any] | None:
    """The settings embedded in an mp4 by `export_video`, or None for a video that carries none."""
    info = probe_video(path)  # clear errors for a missing or non-video file
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(info.path), "-f", "ffmetadata", "-"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise VideoError(f"Could not read the metadata of {info.path.name} (ffmpeg: {result.stderr.strip()}).")
    comment = _global_tags(result.stdout).get("comment")
    try:
        settings = json.loads(comment) if comment else None
    except ValueError:
        return None  # a comment someone else wrote
    return settings if isinstance(settings, dict) else None


def _global_tags(ffmetadata: str) -> dict[str, str]:
    """Parses the global section of ffmpeg's FFMETADATA text: `key=value` lines, `;`/`#` comment lines, and a
    backslash before `=`, `;`, `#`, `\\` or a newline that belongs to the value."""
    tags: dict[str, str] = {}
    key: list[str] = []
    value: list[str] | None = None  # None until the line's unescaped `=`
    chars = iter(ffmetadata)
    for char in chars:
        if char == "\\":
            (key if value is None else value).append(next(chars, ""))
        elif char == "=" and value is None:
            value = []
        elif char == "\n":
            name = "".join(key)
            if name.startswith("["):  # [STREAM] and [CHAPTER] sections follow the global tags
                break
            if value is not None and not name.startswith((";", "#")):
                tags[name] = "".join(value)
            key, value = [], None
        else:
            (key if value is None else value).append(char)
    return tags
