"""Reading images and masks from files, with errors that name the file and the fix.

Pillow refuses to open images with more than twice ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (89,478,485
by default, so 178,956,970 pixels: a guard against decompression bombs). Set the environment variable
``SAM_GYM_MAX_IMAGE_PIXELS`` to raise (or lower) that limit for the images sam_gym reads: it is applied
as ``MAX_IMAGE_PIXELS`` whenever sam_gym opens an image, so images of up to twice its value open
(``0`` or ``none``: no limit; only for files you trust).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS_ENV", "check_image", "image_size", "read_image", "read_mask"]

#: File extensions recognised as images or masks (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

#: Environment variable holding the ``PIL.Image.MAX_IMAGE_PIXELS`` applied when sam_gym opens an image.
MAX_PIXELS_ENV = "SAM_GYM_MAX_IMAGE_PIXELS"


def _apply_pixel_limit() -> None:
    """Set ``PIL.Image.MAX_IMAGE_PIXELS`` from :data:`MAX_PIXELS_ENV` when it is set."""
    text = os.environ.get(MAX_PIXELS_ENV)
    if text is None:
        return
    from PIL import Image

    value = text.strip().lower()
    if value in ("0", "none"):
        Image.MAX_IMAGE_PIXELS = None
        return
    if not value.isdigit():
        raise ValueError(f"Expected {MAX_PIXELS_ENV} to be a positive number of pixels, 0 or 'none', got {text!r}")
    Image.MAX_IMAGE_PIXELS = int(value)


def _bomb_error(path: Path, exc: Exception) -> ValueError:
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS or 0
    return ValueError(
        f"Expected an image of at most {2 * limit:,} pixels (Pillow's decompression-bomb guard: twice its "
        f"MAX_IMAGE_PIXELS = {limit:,}), got {path} ({exc}). If you trust the file, set the environment variable "
        f"{MAX_PIXELS_ENV} to a larger MAX_IMAGE_PIXELS, or to 0 for no limit"
    )


def _open(path: Path):  # noqa: ANN202  (PIL.Image.Image, imported lazily)
    """Open ``path`` with Pillow (header only), converting its errors into ``ValueError``."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ValueError(f"Expected an image file at {path}, but it {what}")
    if path.stat().st_size == 0:
        raise ValueError(f"Expected a non-empty image file, got an empty file: {path}")
    _apply_pixel_limit()
    try:
        return Image.open(path)  # Pillow closes the file itself when opening fails
    except Image.DecompressionBombError as exc:
        raise _bomb_error(path, exc) from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"Could not read {path} as an image ({exc}); expected png/jpg/bmp/tif") from exc


def _load(path: Path):  # noqa: ANN202  (PIL.Image.Image, imported lazily)
    """Open and fully decode ``path``; the file is closed whether or not decoding succeeds."""
    from PIL import Image

    img = _open(path)
    try:
        img.load()
    except Image.DecompressionBombError as exc:
        img.close()
        raise _bomb_error(path, exc) from exc
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        img.close()
        raise ValueError(f"Could not read {path} as an image ({exc}); expected png/jpg/bmp/tif") from exc
    return img


def image_size(path: str | Path) -> tuple[int, int]:
    """Return ``(H, W)`` of an image file by reading only its header."""
    with _open(Path(path)) as img:
        w, h = img.size
    return h, w


def check_image(path: str | Path) -> tuple[int, int]:
    """Decode an image file completely (finding truncated or corrupt data) and return its ``(H, W)``.

    Raises:
        ValueError: If the file cannot be decoded, naming the file and the reason.
    """
    with _load(Path(path)) as img:
        w, h = img.size
    return h, w


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an ``(H, W, 3)`` uint8 RGB array (grey and RGBA are converted)."""
    with _load(Path(path)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_mask(path: str | Path) -> tuple[np.ndarray, str]:
    """Read a mask file without changing its values.

    Returns:
        ``(array, mode)``: the ``(H, W)`` array of raw values (palette indices for palette PNGs,
        channel 0 for colour masks, 0/1 for 1-bit masks) and the PIL mode it was stored in.
    """
    with _load(Path(path)) as img:
        mode = img.mode
        if mode == "1":
            return np.asarray(img, dtype=bool).astype(np.uint8), mode
        if mode in ("P", "L", "I", "I;16", "F"):
            return np.asarray(img), mode
        return np.asarray(img.convert("RGB"))[..., 0], mode
