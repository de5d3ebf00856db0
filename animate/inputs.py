"""One boundary for every value a user sends, from the app's API and from the CLI: types and ranges checked, and the
limits a host sets refused before any work starts.

On a public Space the API is public, so the UI's slider limits protect nobody: each named endpoint and the CLI pass
their values through `check_number` / `check_choice` / `check_flag` (the same ranges as the UI's controls), and a job
through `Limits.check_job` once the character and the video's header are known. Each refusal is a ValueError whose
sentence names the value and what is allowed.

    limits = Limits.from_environment()
    steps = check_number("steps", request_steps)              # 1..100, a whole number
    limits.check_job(width, height, frames, video_seconds)    # or ValueError, before pose extraction
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Number:
    label: str  # what the UI calls it
    low: float
    high: float
    integer: bool = False


# The UI's controls have exactly these ranges (the app builds its sliders from this table).
NUMBERS = {
    "steps": Number("Sampling steps", 1, 100, integer=True),
    "guidance": Number("Guidance scale", 1, 10),
    "clip_length": Number("Clip length", 0, 3600),
    "seed": Number("Seed", -1, 2**32 - 1, integer=True),  # -1: random; torch seeds are 64-bit, records keep 32
    "resolution": Number("Output size (short side, px)", 64, 1024, integer=True),
    "frame_stride": Number("Frame stride", 1, 8, integer=True),
    "window_size": Number("Window size (frames)", 2, 64, integer=True),
    "window_overlap": Number("Window overlap (frames)", 0, 16, integer=True),
    "segment_frames": Number("Segment length (frames, 4n+1)", 5, 121, integer=True),  # Wan-Animate: 77 by default
    "output_fps": Number("Output fps (0: the driving video's)", 0, 60),
}


def check_number(name: str, value: object) -> int | float:
    """`value` as the int or float the parameter `name` of NUMBERS takes, or ValueError naming it and its range."""
    spec = NUMBERS[name]
    kind = "a whole number" if spec.integer else "a number"
    allowed = f"{kind} from {_plain(spec.low)} to {_plain(spec.high)}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{spec.label} must be {allowed}; got {_shown(value)}.")
    if not math.isfinite(value) or not spec.low <= value <= spec.high:
        raise ValueError(f"{spec.label} must be {allowed}; got {_shown(value)}.")
    if spec.integer:
        if value != int(value):
            raise ValueError(f"{spec.label} must be {allowed}; got {_shown(value)}.")
        return int(value)
    return float(value)


def check_choice(label: str, value: object, choices: Iterable[str]) -> str:
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{label} must be one of {', '.join(choices)}; got {_shown(value)}.")
    return value


def check_text(label: str, value: object, max_length: int) -> str:
    if not isinstance(value, str) or len(value) > max_length:
        raise ValueError(f"{label} must be text of at most {max_length} characters; got {_shown(value)}.")
    return value.strip()


def check_flag(label: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{label} must be true or false; got {_shown(value)}.")
    return value


def _plain(number: float) -> str:
    return str(int(number)) if number == int(number) else f"{number:g}"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Limits:
    """What one job may ask for; a host sets them from the environment (see `from_environment`)."""

    max_pixels: int = 1024 * 1536  # output pixels per frame: a 2:3 portrait at the largest output size
    max_frames: int = 900  # generated frames per job: 30 s at 30 fps
    max_video_seconds: float = 300  # length of a driving video
    max_upload_mb: float = 500  # size of one uploaded file
    max_job_seconds: float = 1800  # a job still running after this long is stopped, and the next one starts

    VARIABLES = {
        "max_pixels": "ANIMATE_MAX_PIXELS",
        "max_frames": "ANIMATE_MAX_FRAMES",
        "max_video_seconds": "ANIMATE_MAX_VIDEO_SECONDS",
        "max_upload_mb": "ANIMATE_MAX_UPLOAD_MB",
        "max_job_seconds": "ANIMATE_MAX_JOB_SECONDS",
    }

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Limits:
        values = {}
        for field, variable in cls.VARIABLES.items():
            if variable not in environ:
                continue
            try:
                value = float(environ[variable])
            except ValueError:
                raise ValueError(f"{variable} must be a number; it is {environ[variable]!r}.") from None
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{variable} must be a positive number; it is {environ[variable]!r}.")
            values[field] = int(value) if isinstance(getattr(cls, field), int) else value
        return cls(**values)

    def check_upload(self, size_bytes: int, what: str) -> None:
        size_mb = size_bytes / 1e6
        if size_mb > self.max_upload_mb:
            raise ValueError(
                f"The {what} is {size_mb:.0f} MB; this app takes files up to {self.max_upload_mb:g} MB. Trim or "
                "compress it (a few seconds at 720p is plenty) and upload it again."
            )

    def check_video(self, seconds: float) -> None:
        if seconds > self.max_video_seconds:
            raise ValueError(
                f"The driving video is {seconds:.0f} s long; this app takes videos of up to "
                f"{self.max_video_seconds:g} s. Trim it to the part you want to animate and upload it again."
            )

    def check_job(self, width: int, height: int, frames: int, short_side: int, fps: float) -> None:
        """Refuses an output larger than max_pixels per frame or longer than max_frames, saying what fits."""
        if width * height > self.max_pixels:
            fitting = int(short_side * math.sqrt(self.max_pixels / (width * height))) // 8 * 8
            raise ValueError(
                f"An output of {width}×{height} px is over this app's limit of {self.max_pixels / 1e6:.2f} "
                f"megapixels per frame: choose an output size of at most {fitting} px for this character."
            )
        if frames > self.max_frames:
            raise ValueError(
                f"That is {frames} frames to generate; this app makes at most {self.max_frames} per job "
                f"({self.max_frames / fps:.1f} s at {fps:g} fps): shorten the clip or raise the frame stride."
            )
