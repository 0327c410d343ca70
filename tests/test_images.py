"""open_image on bad and odd input: one-line errors for what cannot be used, upright RGB for the rest; check_image."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import photo, write_bad_image
from PIL import Image

from captionlib import Captioner, ImageLoadError, open_image
from captionlib.images import EMPTY_IMAGE, NOT_AN_IMAGE, UNDECODABLE_IMAGE, UNREADABLE_IMAGE, check_image

EXIF_ORIENTATION = 0x0112
RED, GREEN, BLUE, YELLOW = (220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 220, 40)


def quadrants(width: int, height: int) -> Image.Image:
    """An image whose four quadrants have four colours, so any rotation or flip is visible."""
    array = np.zeros((height, width, 3), np.uint8)  # (H, W, 3)
    array[: height // 2, : width // 2] = RED
    array[: height // 2, width // 2 :] = GREEN
    array[height // 2 :, : width // 2] = BLUE
    array[height // 2 :, width // 2 :] = YELLOW
    return Image.fromarray(array)


def save_with_orientation(upright: Image.Image, orientation: int, path) -> None:
    """Store the pixels rotated, with the EXIF tag that tells a viewer how to turn them back."""
    # EXIF 6: "rotate 90° clockwise to display", so the sensor wrote the upright scene turned 90° anticlockwise;
    # EXIF 8 is the mirror case. Pillow's ROTATE_90 is anticlockwise.
    stored = upright.transpose(Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    stored.save(path, quality=95, exif=exif.tobytes())


def sixteen_bit_gradient() -> np.ndarray:
    """A (4, 256) uint16 ramp over the full 0..65535 range."""
    return np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (4, 1))  # (4, 256)


def assert_one_line_naming(error: ImageLoadError, path) -> None:
    text = str(error)
    assert "\n" not in text and str(path) in text, text


# ---------- files that cannot be used: ImageLoadError, one line, naming the file ----------


def test_missing_file(tmp_path):
    path = tmp_path / "missing.png"
    with pytest.raises(ImageLoadError, match="no such file") as info:
        open_image(path)
    assert_one_line_naming(info.value, path)


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_text("this is not a JPEG\n")
    with pytest.raises(ImageLoadError, match="not an image") as info:
        open_image(path)
    assert_one_line_naming(info.value, path)


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.1])
def test_truncated_jpeg(tmp_path, keep):
    whole = io.BytesIO()
    quadrants(64, 48).save(whole, "JPEG")
    path = tmp_path / "truncated.jpg"
    path.write_bytes(whole.getvalue()[: int(len(whole.getvalue()) * keep)])
    with pytest.raises(ImageLoadError) as info:
        open_image(path)
    assert_one_line_naming(info.value, path)


def test_empty_file_and_directory(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path in (empty, tmp_path):
        with pytest.raises(ImageLoadError) as info:
            open_image(path)
        assert_one_line_naming(info.value, path)


@pytest.mark.parametrize("pixels_over_limit", [1.5, 3.0])  # Pillow only warns below 2x its limit, raises above
def test_decompression_bomb_is_refused(tmp_path, monkeypatch, pixels_over_limit):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    side = int((1000 * pixels_over_limit) ** 0.5) + 1
    path = tmp_path / "bomb.png"
    Image.new("L", (side, side)).save(path)
    with pytest.raises(ImageLoadError, match="decompression-bomb") as info:
        open_image(path)
    assert_one_line_naming(info.value, path)
    small = tmp_path / "small.png"
    Image.new("L", (30, 30)).save(small)  # 900 pixels: under the same limit, accepted
    assert open_image(small).size == (30, 30)


def test_error_without_a_message_still_gives_one_line(tmp_path, monkeypatch):
    path = tmp_path / "odd.png"
    Image.new("RGB", (4, 4)).save(path)

    def raise_bare_oserror(*args, **kwargs):
        raise OSError()

    monkeypatch.setattr(Image, "open", raise_bare_oserror)
    with pytest.raises(ImageLoadError, match=r"\(OSError\)") as info:
        open_image(path)
    assert_one_line_naming(info.value, path)


# ---------- check_image: what a data set's loader asks of every image file, before training ----------


@pytest.mark.parametrize("progressive", [False, True])
def test_check_image_fails_exactly_where_open_image_does_on_truncated_photographs(tmp_path, progressive):
    """check_image decodes a JPEG at 1/8 size; every cut of a real photograph that open_image refuses, it refuses too."""
    whole = io.BytesIO()
    photo(0, size=(200, 150)).save(whole, "JPEG", quality=90, progressive=progressive)
    data = whole.getvalue()
    path = tmp_path / "photo.jpg"
    cuts = [*range(1, len(data), len(data) // 40), len(data) - 2, len(data) - 1, len(data)]
    for cut in cuts:
        path.write_bytes(data[:cut])
        error = check_image(path)
        try:
            open_image(path)
        except ImageLoadError as expected:
            assert error is not None and str(error) == str(expected) and error.reason == expected.reason, cut
        else:
            assert error is None, cut
    assert error is None  # the whole file, last


@pytest.mark.parametrize(("kind", "reason"), [("truncated", UNDECODABLE_IMAGE), ("empty", EMPTY_IMAGE), ("text", NOT_AN_IMAGE)])
def test_check_image_gives_the_reason_and_one_line_naming_the_file(tmp_path, kind, reason):
    path = write_bad_image(tmp_path / "bad.jpg", kind)
    error = check_image(path)
    assert error.reason == reason
    assert_one_line_naming(error, path)
    with pytest.raises(ImageLoadError) as raised:
        open_image(path)
    assert str(raised.value) == str(error)  # the line `caption` prints for the same file


def test_unreadable_file_is_one_line_naming_it(tmp_path, monkeypatch):
    path = write_bad_image(tmp_path / "locked.jpg", "unreadable")
    if os.name != "posix" or os.geteuid() == 0:  # root reads any file: opening it is refused here as it is for anyone else
        real_open = Path.open

        def refuse(self, *args, **kwargs):
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refuse)
    error = check_image(path)
    assert error.reason == UNREADABLE_IMAGE and str(error) == f"{path}: cannot read the file (Permission denied)"


# ---------- odd but valid images: upright 8-bit RGB ----------


def test_rgba_is_composited_on_white(tmp_path):
    array = np.zeros((8, 8, 4), np.uint8)  # (H, W, RGBA)
    array[:, 4:] = (200, 0, 0, 255)  # opaque red on the right
    array[:4, :4] = (0, 0, 255, 128)  # half-transparent blue, top left; bottom left fully transparent black
    path = tmp_path / "rgba.png"
    Image.fromarray(array, "RGBA").save(path)
    rgb = np.asarray(open_image(path)).astype(int)  # (H, W, 3)
    assert open_image(path).mode == "RGB"
    assert (rgb[:, 4:] == (200, 0, 0)).all()
    assert (rgb[4:, :4] == 255).all()  # transparent -> the white background, not the hidden black
    half = 255 - 128 / 255 * 255  # white showing through half of the blue
    assert np.abs(rgb[:4, :4] - (half, half, 255)).max() <= 1


def test_greyscale_becomes_three_equal_channels(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4  # (H, W)
    path = tmp_path / "grey.png"
    Image.fromarray(grey, "L").save(path)
    rgb = np.asarray(open_image(path))  # (H, W, 3)
    for channel in range(3):
        assert (rgb[..., channel] == grey).all()


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = sixteen_bit_gradient()
    path = tmp_path / "sixteen.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I;16"  # the case Pillow's own convert("RGB") clips to white
    rgb = np.asarray(open_image(path)).astype(float)  # (4, 256, 3)
    expected = ramp / 65535 * 255  # full 16-bit range onto full 8-bit range
    assert np.abs(rgb[..., 0] - expected).max() <= 1
    assert (rgb[..., 0] == rgb[..., 2]).all()
    assert (rgb == 255).mean() < 0.01 and rgb.mean() == pytest.approx(127.5, abs=1)


def test_float_image_in_unit_range_is_scaled_not_black(tmp_path):
    ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32)[None].repeat(4, axis=0)  # (4, 256) in [0, 1]
    path = tmp_path / "float.tif"
    Image.fromarray(ramp, mode="F").save(path)
    assert Image.open(path).mode == "F"  # the case Pillow's own convert("RGB") turns almost black
    rgb = np.asarray(open_image(path)).astype(float)  # (4, 256, 3)
    assert np.abs(rgb[..., 1] - ramp * 255).max() <= 1


def test_one_pixel_image(tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), GREEN).save(path)
    image = open_image(path)
    assert image.size == (1, 1) and image.getpixel((0, 0)) == GREEN


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_jpeg_comes_back_upright(tmp_path, orientation):
    upright = quadrants(48, 32)
    path = tmp_path / f"exif{orientation}.jpg"
    save_with_orientation(upright, orientation, path)
    assert Image.open(path).size == (32, 48)  # the pixels on disk are sideways
    image = open_image(path)
    assert image.size == (48, 32)
    difference = np.abs(np.asarray(image).astype(int) - np.asarray(upright).astype(int))  # (H, W, 3)
    assert difference.mean() < 4, f"mean |difference| {difference.mean():.1f}: not the upright image"


def test_bytes_are_decoded_like_files():
    buffer = io.BytesIO()
    Image.new("LA", (5, 3), (0, 0)).save(buffer, "PNG")
    image = open_image(buffer.getvalue(), name="upload.png")
    assert image.size == (5, 3) and image.getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ImageLoadError, match="upload.png"):
        open_image(b"not an image", name="upload.png")


def test_odd_but_valid_images_are_captioned(tmp_path, tiny_checkpoint):
    """RGBA, greyscale, 16-bit, 1x1 and EXIF-rotated files all reach the model and get a caption."""
    rgba, grey, sixteen, dot, rotated = (tmp_path / n for n in ("rgba.png", "grey.png", "16.png", "dot.png", "exif.jpg"))
    Image.new("RGBA", (20, 10), (0, 0, 255, 100)).save(rgba)
    Image.new("L", (20, 20), 90).save(grey)
    Image.fromarray(sixteen_bit_gradient()).save(sixteen)
    Image.new("RGB", (1, 1), RED).save(dot)
    save_with_orientation(quadrants(48, 32), 6, rotated)
    captioner = Captioner.from_checkpoint(tiny_checkpoint)
    captions = captioner.caption([open_image(p) for p in (rgba, grey, sixteen, dot, rotated)], beam_size=2)
    assert len(captions) == 5
    for caption in captions:
        assert caption.alphas.shape == (len(caption.tokens), captioner.grid_size**2)  # (T, P)
        assert torch.isfinite(torch.tensor(caption.score))
