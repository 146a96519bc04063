"""Reading images and masks from files, with errors that name the file and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "read_image", "read_mask", "image_size"]

#: File extensions recognised as images or masks (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _open(path: Path):  # noqa: ANN202  (PIL.Image.Image, imported lazily)
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise ValueError(f"Expected an image file at {path}, but it does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"Expected a non-empty image file, got an empty file: {path}")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"Could not read {path} as an image ({exc}); expected png/jpg/bmp/tif") from exc
    return img


def image_size(path: str | Path) -> tuple[int, int]:
    """Return ``(H, W)`` of an image file by reading only its header."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"Could not read {path} as an image ({exc}); expected png/jpg/bmp/tif") from exc
    return h, w


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an ``(H, W, 3)`` uint8 RGB array (grey and RGBA are converted)."""
    img = _open(Path(path))
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_mask(path: str | Path) -> tuple[np.ndarray, str]:
    """Read a mask file without changing its values.

    Returns:
        ``(array, mode)``: the ``(H, W)`` array of raw values (palette indices for palette PNGs,
        channel 0 for colour masks, 0/1 for 1-bit masks) and the PIL mode it was stored in.
    """
    img = _open(Path(path))
    mode = img.mode
    if mode == "1":
        return np.asarray(img, dtype=bool).astype(np.uint8), mode
    if mode in ("P", "L", "I", "I;16", "F"):
        return np.asarray(img), mode
    return np.asarray(img.convert("RGB"))[..., 0], mode
