"""Character images decode as the user saw them: 16-bit PNG, greyscale with alpha, palette, CMYK, EXIF rotation and
transparency laid over white, each written as a real file from the same real photo (skimage's astronaut)."""

import numpy as np
import PIL.Image
import pytest
import skimage.data

from pose import read_image

PHOTO = skimage.data.astronaut()[::4, ::4]  # (128, 128, 3) uint8: a real photo


def test_a_16_bit_greyscale_png_reads_like_its_8_bit_copy(tmp_path):
    grey = np.asarray(PIL.Image.fromarray(PHOTO).convert("L"))
    PIL.Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 0..65535
    PIL.Image.fromarray(grey).save(tmp_path / "flat.png")
    assert PIL.Image.open(tmp_path / "deep.png").mode == "I;16"
    assert np.array_equal(read_image(tmp_path / "deep.png"), read_image(tmp_path / "flat.png"))
    assert read_image(tmp_path / "deep.png").mean() < 200  # not the white image a plain convert("RGB") gives


def test_a_16_bit_rgb_png_keeps_its_colours(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "deep.png"), PHOTO[..., ::-1].astype(np.uint16) * 257)
    assert np.abs(read_image(tmp_path / "deep.png").astype(int) - PHOTO).max() <= 1


def test_transparency_is_laid_over_white(tmp_path):
    alpha = np.zeros(PHOTO.shape[:2], np.uint8)
    alpha[:, 64:] = 255  # left half transparent
    PIL.Image.fromarray(np.dstack([PHOTO, alpha])).save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    assert (image[:, :64] == 255).all() and np.array_equal(image[:, 64:], PHOTO[:, 64:])

    grey = np.asarray(PIL.Image.fromarray(PHOTO).convert("L"))
    PIL.Image.fromarray(np.dstack([grey, alpha]), "LA").save(tmp_path / "la.png")
    image = read_image(tmp_path / "la.png")
    assert (image[:, :64] == 255).all() and np.array_equal(image[:, 64:, 0], grey[:, 64:])


def test_a_palette_image_with_a_transparent_colour(tmp_path):
    palette = PIL.Image.fromarray(PHOTO).quantize(16)
    index = np.asarray(palette).copy()
    index[:32] = 0
    image = PIL.Image.fromarray(index, "P")
    image.putpalette(palette.getpalette())
    image.save(tmp_path / "palette.png", transparency=0)
    decoded = read_image(tmp_path / "palette.png")
    assert (decoded[:32] == 255).all()
    assert np.abs(decoded[40:].astype(int) - PHOTO[40:]).mean() < 20  # 16 colours of the same photo


def test_cmyk_jpeg_reads_in_the_right_colours(tmp_path):
    PIL.Image.fromarray(PHOTO).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert PIL.Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    assert np.abs(read_image(tmp_path / "cmyk.jpg").astype(int) - PHOTO).mean() < 6


def test_exif_rotation_is_applied(tmp_path):
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    wide = PHOTO[:64]  # (64, 128, 3)
    PIL.Image.fromarray(wide).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "rotated.jpg")
    assert image.shape == (128, 64, 3)
    assert np.abs(image.astype(int) - np.rot90(wide, -1)).mean() < 6


def test_what_is_no_image_is_refused_with_its_name(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="notes.png is not an image that can be read"):
        read_image(tmp_path / "notes.png")
