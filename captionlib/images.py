"""Loading user images safely: one clear error per bad file, every odd-but-valid mode accepted."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class ImageLoadError(ValueError):
    """A file that cannot be used as an image; str() is one line naming the file."""


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


def open_image(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Decode a path or in-memory bytes into an upright RGB image, or raise ImageLoadError."""
    label = name or (str(source) if not isinstance(source, bytes) else "<upload>")
    try:
        if isinstance(source, bytes):
            stream = io.BytesIO(source)  # uploads stay in memory, never on disk
        else:
            path = Path(source)
            if not path.exists():
                raise ImageLoadError(f"{label}: no such file")
            if path.is_dir():
                raise ImageLoadError(f"{label}: is a directory, not an image")
            stream = path.open("rb")
        with warnings.catch_warnings():
            # Pillow's UserWarnings ("Corrupt EXIF data", ...) accompany images it still decodes: not worth a line.
            warnings.simplefilter("ignore", UserWarning)
            # Pillow only warns between 1x and 2x its pixel limit; treat both as bombs.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with stream, Image.open(stream) as image:
                image.load()  # decode now, so a truncated file fails here
                upright = ImageOps.exif_transpose(image)
                return to_rgb(upright)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(f"{label}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(f"{label}: refused, larger than Pillow's decompression-bomb limit ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]  # some decoders raise with no message
        raise ImageLoadError(f"{label}: cannot decode image ({detail})") from None
