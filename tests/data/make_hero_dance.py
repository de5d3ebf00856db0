"""Makes media/hero_dance.mp4: the Apache-2.0 character ref_hero.png swaying, bobbing and stepping for 4 s, with a
beat of our own as its AAC sound (540x960, 24 fps). A raw "dance" video we may ship, so that the tests of raw video,
pose extraction, audio and the app run in a public clone. Run it from the repository root:

    python tests/data/make_hero_dance.py
"""

import io
import math
import subprocess
import wave
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image

WIDTH, HEIGHT, FPS, SECONDS, SAMPLE_RATE = 540, 960, 24, 4, 44100
MEDIA = Path(__file__).resolve().parent / "media"


def beat() -> bytes:
    """A low thump every half second under a slowly pulsing 440 Hz tone, as a mono 16-bit WAV file."""
    t = np.arange(SAMPLE_RATE * SECONDS) / SAMPLE_RATE
    thump = np.sin(2 * np.pi * 60 * t) * np.exp(-12 * (t % 0.5))
    tone = 0.2 * np.sin(2 * np.pi * 440 * t) * (0.5 + 0.5 * np.sin(np.pi * t))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(SAMPLE_RATE)
        file.writeframes((0.5 * (thump + tone) * 32767).astype(np.int16).tobytes())
    return buffer.getvalue()


def frame(figure: Image.Image, index: int) -> np.ndarray:
    """The figure rotated about its feet (one sway a second), breathing in size and drifting sideways."""
    phase = 2 * math.pi * index / FPS
    zoom = 1 + 0.06 * math.sin(phase / 4)
    moved = figure.resize((round(figure.width * zoom), round(figure.height * zoom)), Image.BICUBIC)
    moved = moved.rotate(7 * math.sin(phase), Image.BICUBIC, expand=True, center=(moved.width / 2, moved.height))
    canvas = Image.new("RGBA", (WIDTH, HEIGHT), (236, 234, 228, 255))
    x = WIDTH // 2 - moved.width // 2 + round(60 * math.sin(phase / 4))
    y = HEIGHT - moved.height - 40 - round(25 * abs(math.sin(phase)))
    canvas.alpha_composite(moved, (x, y))
    return np.asarray(canvas.convert("RGB"))


def main() -> None:
    character = Image.open(MEDIA / "ref_hero.png").convert("RGBA")
    scale = 0.8 * HEIGHT / character.height
    figure = character.resize((round(character.width * scale), round(character.height * scale)), Image.LANCZOS)
    sound = MEDIA / ".beat.wav"
    sound.write_bytes(beat())
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-", "-i", str(sound),
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "26", "-preset", "slow", "-c:a", "aac", "-b:a", "64k",
        "-shortest", "-movflags", "+faststart", str(MEDIA / "hero_dance.mp4"),
    ]  # fmt: skip
    try:
        with subprocess.Popen(command, stdin=subprocess.PIPE) as encoder:
            for index in range(FPS * SECONDS):
                encoder.stdin.write(frame(figure, index).tobytes())
            encoder.stdin.close()
    finally:
        sound.unlink()


if __name__ == "__main__":
    main()
