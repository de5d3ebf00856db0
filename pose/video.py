"""Reading and writing video files with the ffmpeg binary that ships inside imageio-ffmpeg.

Everything that touches a video file goes through here, so every backend, the pipeline's export and the app
see the same frames: RGB uint8 arrays of shape (height, width, 3), at a constant frame rate (variable-frame-rate
phone videos are resampled to their average rate, which keeps both the duration and the frame count), rotated
upright as the file's rotation flag asks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np


class _IntendedResize(logging.Filter):
    """imageio-ffmpeg warns whenever the frames it yields differ in size from the stream; `read_frames` scales
    them down on purpose (`max_side`), so that warning is noise in every log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is different from the source frame size" not in record.getMessage()


logging.getLogger("imageio_ffmpeg").addFilter(_IntendedResize())

# Longest side we decode at full size. Bigger videos (8K, or a corrupt header claiming a giant frame) are scaled
# down by ffmpeg while decoding, so one frame never needs more than about 50 MB of memory.
MAX_DECODE_SIDE = 4096


class VideoError(ValueError):
    """A video file that cannot be used; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # after rotation, as the frames come out
    height: int
    fps: float
    duration: float  # seconds
    has_audio: bool

    @property
    def num_frames(self) -> int:
        """Frame count estimated from duration and fps (exact for constant-rate files)."""
        return max(1, round(self.duration * self.fps))


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Reads a video's header. Raises `VideoError` for a missing, empty, non-video or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"Video file not found: {path}. Check the path.")
    if path.stat().st_size == 0:
        raise VideoError(f"Video file is empty: {path}. Upload the video again.")
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as error:
        raise VideoError(
            f"Could not read {path.name} as a video (ffmpeg: {_last_line(str(error)) or type(error).__name__}). "
            "Use an mp4, mov or webm file; if it plays elsewhere, re-export it with a standard codec (H.264)."
        ) from error
    finally:
        reader.close()
    width, height = meta.get("size") or (0, 0)
    fps = float(meta.get("fps") or 0)
    duration = float(meta.get("duration") or 0)
    if width <= 0 or height <= 0 or fps <= 0 or not np.isfinite(fps):
        raise VideoError(f"{path.name} has no readable video stream. Use an mp4, mov or webm video file.")
    if meta.get("codec") in _IMAGE_CODECS or duration <= 0:
        raise VideoError(f"{path.name} is a still image, not a video. Upload a video of the motion instead.")
    return VideoInfo(
        path=path,
        width=int(width),
        height=int(height),
        fps=fps,
        duration=duration,
        has_audio=bool(meta.get("audio_codec")),
    )


_IMAGE_CODECS = {"png", "bmp", "tiff", "webp_pipe", "gif_pipe", "jpeg_pipe", "png_pipe"}


def decode_size(info: VideoInfo, max_side: int | None = None) -> tuple[int, int]:
    """The (width, height) that `read_frames(..., max_side)` yields: scaled down to fit, even, aspect kept."""
    limit = min(max_side or MAX_DECODE_SIDE, MAX_DECODE_SIDE)
    scale = min(1.0, limit / max(info.width, info.height))
    if scale == 1.0:
        return info.width, info.height
    return max(2, round(info.width * scale / 2) * 2), max(2, round(info.height * scale / 2) * 2)


def read_frames(
    path: str | os.PathLike,
    *,
    start: int = 0,
    stride: int = 1,
    max_frames: int | None = None,
    max_side: int | None = None,
) -> Iterator[np.ndarray]:
    """Yields RGB uint8 frames (height, width, 3) at the file's constant (average) frame rate.

    `start` skips to that frame by seeking (training reads a few frames from the middle of long videos); `stride`
    keeps every n-th frame from there (the effective fps is then `fps / stride`); `max_frames` stops after that many
    yielded frames; `max_side` scales frames down (never up) so the longer side fits.
    """
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    if start < 0:
        raise ValueError(f"start must be a frame index >= 0, got {start}")
    info = probe_video(path)
    width, height = decode_size(info, max_side)
    filters = [f"fps={Fraction(info.fps).limit_denominator(1001)}"]
    if (width, height) != (info.width, info.height):
        filters.append(f"scale={width}:{height}:flags=area")
    # Seeking to just before frame `start`'s time: ffmpeg decodes from the key frame before it and drops the frames
    # earlier than that time, so the first frame through the fps filter is frame `start` (for constant-rate files).
    seek = ["-ss", f"{(start - 0.01) / info.fps:.6f}"] if start else []
    reader = imageio_ffmpeg.read_frames(
        str(info.path),
        pix_fmt="rgb24",
        input_params=seek,
        output_params=["-vf", ",".join(filters)],
        bits_per_pixel=24,
    )
    frame_bytes = width * height * 3
    yielded = 0
    try:
        next(reader)  # metadata, already read by probe_video
        for index, raw in enumerate(reader):
            if max_frames is not None and yielded >= max_frames:
                break
            if index % stride:
                continue
            if len(raw) != frame_bytes:  # a truncated last frame
                break
            yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
            yielded += 1
    except (OSError, RuntimeError) as error:
        if yielded == 0:
            raise VideoError(
                f"Could not decode {info.path.name} (ffmpeg: {_last_line(str(error)) or type(error).__name__}). "
                "The file may be truncated or corrupt; re-export it as H.264 mp4."
            ) from error
        # A file cut short mid-stream: keep the frames that decoded, as players do.
    finally:
        reader.close()


class VideoWriter:
    """Writes RGB uint8 frames to an H.264 mp4 (yuv420p, plays everywhere), optionally with an audio track.

    `audio_from` copies the first audio stream of another file, cut or padded to the video's length; `metadata` becomes
    the container's tags (mp4 keeps `title` and `comment`, which is where we put the generation settings).
    The file appears at `path` only when `close()` succeeds: it is written to a temporary name first, so a failed
    or cancelled job never leaves a half-written file over an earlier result.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        *,
        audio_from: str | os.PathLike | None = None,
        metadata: dict[str, str] | None = None,
        quality: float = 8.0,
    ):
        self.path = Path(path)
        self.fps = fps
        self.audio_from = audio_from
        self.metadata = metadata or {}
        self.quality = quality
        self.frames_written = 0
        self._partial_path = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._writer = None
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray) -> None:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames must be uint8 (height, width, 3), got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        if self._writer is None:
            self._open(width, height)
        elif (width, height) != self._size:
            raise ValueError(f"frame size changed from {self._size} to {(width, height)} within one video")
        self._writer.send(np.ascontiguousarray(frame))
        self.frames_written += 1

    def write_all(self, frames: Iterable[np.ndarray]) -> None:
        for frame in frames:
            self.write(frame)

    def _open(self, width: int, height: int) -> None:
        self._size = (width, height)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The index at the front, for playback while downloading; the audio pass writes the final file itself.
        output_params = ["-movflags", "+faststart"] if self.audio_from is None else []
        for key, value in self.metadata.items():
            output_params += ["-metadata", f"{key}={value}"]
        self._writer = imageio_ffmpeg.write_frames(
            str(self._partial_path),
            (width, height),
            fps=self.fps,
            codec="libx264",
            quality=self.quality,
            macro_block_size=2,  # yuv420p needs even sides; odd ones are scaled up by one pixel
            output_params=output_params,
            ffmpeg_log_level="error",
        )
        self._writer.send(None)

    def _add_audio(self) -> None:
        """Muxes `audio_from`'s first audio track into the finished video, padded with silence or cut to exactly
        the frames' duration. A second pass, because only now is that duration known: muxing while the frames still
        arrive (`-shortest`) lets the audio run ahead of a slowly fed video by a varying fraction of a second."""
        with_audio = self._partial_path.with_name(f".{self.path.stem}.audio.partial{self.path.suffix}")
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
            "-i", str(self._partial_path), "-i", str(self.audio_from),
            "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-af", "apad", "-c:a", "aac",
            "-t", f"{self.frames_written / self.fps:.6f}", "-movflags", "+faststart", str(with_audio),
        ]  # fmt: skip
        try:
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                reason = _last_line(result.stderr) or f"exit status {result.returncode}"
                raise VideoError(f"Could not add the audio of {Path(self.audio_from).name}: {reason}")
            os.replace(with_audio, self._partial_path)
        finally:  # interrupted or failed: no second partial file left behind
            with_audio.unlink(missing_ok=True)

    def close(self) -> Path:
        """Finishes the file and moves it into place. Raises `VideoError` if no frame was written."""
        if self._writer is None:
            raise VideoError(f"No frames were written to {self.path.name}.")
        writer, self._writer = self._writer, None
        try:
            writer.close()
            if self.audio_from is not None:
                self._add_audio()
        except BaseException:  # ffmpeg failed while finishing: nothing usable to keep
            self._partial_path.unlink(missing_ok=True)
            raise
        os.replace(self._partial_path, self.path)
        return self.path

    def abort(self) -> None:
        """Stops writing and removes the partial file; an earlier file at `path` is left untouched."""
        if self._writer is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self._writer.close()
            self._writer = None
        self._partial_path.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
