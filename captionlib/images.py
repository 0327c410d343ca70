"""Loading user images safely: one clear error per bad file, every odd-but-valid mode accepted."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Why a file cannot be used as an image: ImageLoadError.reason, and the reason a data set's loader skips its caption rows.
MISSING_IMAGE, UNREADABLE_IMAGE, EMPTY_IMAGE = "missing image", "unreadable image", "empty image"
NOT_AN_IMAGE, UNDECODABLE_IMAGE, OVERSIZED_IMAGE = "not an image", "undecodable image", "oversized image"


class ImageLoadError(ValueError):
    """A file that cannot be used as an image; str() is one line naming the file, .reason one of the reasons above."""

    def __init__(self, message: str, reason: str = UNDECODABLE_IMAGE):
        super().__init__(message)
        self.reason = reason


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB: alpha composited on white, 16-bit and float scaled, palette expanded."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # one channel wider than 8 bits: scale, don't clip
        array = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or array.max() > 255:
            peak = 65535.0
        elif image.mode == "F" and array.max() <= 1.0:
            peak = 1.0  # float images in [0, 1]
        else:
            peak = 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def open_image(source: str | Path | bytes, name: str | None = None, draft: bool = False) -> Image.Image:
    """Decode a path or in-memory bytes into an upright RGB image, or raise ImageLoadError.

    draft=True decodes a JPEG at 1/8 of its size (check_image): every byte is still read and entropy-decoded, so a
    truncated file fails the same way, in about a third of the time on Flickr-sized photographs.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<upload>")
    try:
        if isinstance(source, bytes):
            stream = io.BytesIO(source)  # uploads stay in memory, never on disk
        else:
            path = Path(source)
            if not path.exists():
                raise ImageLoadError(f"{label}: no such file", MISSING_IMAGE)
            if path.is_dir():
                raise ImageLoadError(f"{label}: is a directory, not an image", NOT_AN_IMAGE)
            try:
                stream = path.open("rb")
            except OSError as e:  # no read permission, say
                raise ImageLoadError(f"{label}: cannot read the file ({e.strerror or type(e).__name__})", UNREADABLE_IMAGE) from None
        with stream, warnings.catch_warnings():
            if not stream.read(1):
                raise ImageLoadError(f"{label}: empty file (0 bytes)", EMPTY_IMAGE)
            stream.seek(0)
            # Pillow's UserWarnings ("Corrupt EXIF data", ...) accompany images it still decodes: not worth a line.
            warnings.simplefilter("ignore", UserWarning)
            # Pillow only warns between 1x and 2x its pixel limit; treat both as bombs.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                if draft:
                    image.draft(None, (1, 1))  # JPEG only: the smallest scale libjpeg decodes to
                image.load()  # decode now, so a truncated file fails here
                upright = ImageOps.exif_transpose(image)
                return to_rgb(upright)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(f"{label}: not an image Pillow can read", NOT_AN_IMAGE) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(f"{label}: refused, larger than Pillow's decompression-bomb limit ({e})", OVERSIZED_IMAGE) from None
    except (OSError, SyntaxError, ValueError) as e:
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]  # some decoders raise with no message
        raise ImageLoadError(f"{label}: cannot decode image ({detail})", UNDECODABLE_IMAGE) from None


def check_image(path: str | Path) -> ImageLoadError | None:
    """The ImageLoadError that open_image would raise for this file, or None; a JPEG is decoded at 1/8 size (draft)."""
    try:
        open_image(path, draft=True)
    except ImageLoadError as e:
        return e
    return None
