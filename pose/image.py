"""Reading a picture as the user saw it: RGB uint8, upright, with transparency laid over a stated background.

Pillow's plain `convert("RGB")` is not enough: it clips 16-bit greyscale to white (a 16-bit PNG looks right in a
browser and reaches the model as a white image), drops an alpha channel onto black, and ignores EXIF rotation and a
CMYK image's colour profile.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageCms
import PIL.ImageOps

BACKGROUND = (255, 255, 255)  # what transparent parts of a character image become: white, as on most product shots


def read_image(path: str | os.PathLike, background: tuple[int, int, int] = BACKGROUND) -> np.ndarray:
    """The image at `path` as (height, width, 3) uint8 RGB. Raises ValueError if it is no image that can be read."""
    try:
        with PIL.Image.open(path) as image:
            image.load()
            return np.asarray(_to_rgb(PIL.ImageOps.exif_transpose(image), background))
    except (OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError) as error:
        raise ValueError(f"{Path(path).name} is not an image that can be read ({error}).") from error


def _to_rgb(image: PIL.Image.Image, background: tuple[int, int, int]) -> PIL.Image.Image:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):  # 16-bit (or 32-bit integer) greyscale
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max() > 255 or image.mode.startswith("I;16") else 255.0
        image = PIL.Image.fromarray((values * (255.0 / top)).round().clip(0, 255).astype(np.uint8), "L")
    elif image.mode == "F":  # float greyscale (TIFF): 0..1 as most tools write it, else 0..255
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if values.max() <= 1.0 else 1.0
        image = PIL.Image.fromarray((values * scale).round().clip(0, 255).astype(np.uint8), "L")
    elif image.mode == "CMYK" and image.info.get("icc_profile"):
        profile = PIL.ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        return PIL.ImageCms.profileToProfile(image, profile, PIL.ImageCms.createProfile("sRGB"), outputMode="RGB")
    if image.mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
        canvas = PIL.Image.new("RGBA", image.size, (*background, 255))
        return PIL.Image.alpha_composite(canvas, image).convert("RGB")
    return image.convert("RGB")
