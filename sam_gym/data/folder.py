"""Folder datasets: ``images/`` and ``masks/`` paired by file stem.

Masks may be binary (0/255, 0/1, 1-bit), palette-index or instance-id maps, or class-id maps.
Void values (GrabCut's 128, VOC's 255) are read into ``Sample.void``. Every problem that can be
found without knowing the env (missing folder, image without a mask, unreadable, empty or truncated
file, size mismatch, mask without foreground or without background) is found at construction,
where every image and mask is decoded once (its cost is measured in ``docs/evaluation.md``):
it raises a ``ValueError`` listing the files, or, with ``on_error="skip"``, drops those files with
one warning and lists them in :attr:`FolderDataset.skipped`. Two files with the same stem in one
folder (``a.png``, ``a.jpg``) are always an error. What depends on the env (an image smaller than
the patch grid) is found at first use: :func:`sam_gym.evaluation.prepare_episodes` skips such
samples.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict

import numpy as np

from sam_gym.data.base import Sample
from sam_gym.data.io import IMAGE_EXTENSIONS, check_image, read_image, read_mask

__all__ = ["FolderDataset", "PRESETS"]

MaskMode = Literal["binary", "instances", "classes"]


class Preset(TypedDict, total=False):
    """The layout of a benchmark folder: the :class:`FolderDataset` arguments it fixes."""

    mode: MaskMode
    void_values: tuple[int, ...]
    masks: str
    class_masks: str


#: Layouts of the benchmark folders in ``../shared/data``, applied by folder name when the caller
#: does not say otherwise (``FolderDataset(path, preset=None)`` disables this).
PRESETS: dict[str, Preset] = {
    "GrabCut": {"mode": "binary", "void_values": (128,)},
    "Berkeley": {"mode": "binary"},
    "SOD": {"mode": "binary"},
    "CAMO": {"mode": "binary"},
    "Kvasir-SEG": {"mode": "binary"},  # JPEG masks: thresholded at 128
    "COCO_MVal": {"mode": "binary"},
    "VOC-instances": {"mode": "instances", "masks": "masks_object", "void_values": (255,),
                      "class_masks": "masks_class"},
    "VOC-semantic": {"mode": "classes", "void_values": (255,)},
}


@dataclass(frozen=True)
class _Entry:
    image: Path
    mask: Path
    object_value: int | None  # instance id / class id in instances / classes mode


class FolderDataset:
    """A dataset of ``root/images/X.*`` with ``root/masks/X.*``.

    Args:
        root: The dataset folder.
        images: Name of the image sub-folder.
        masks: Name of the mask sub-folder.
        mode: ``"binary"``: one episode per image, foreground = mask value above ``threshold``
            (any non-zero index for palette and 1-bit masks). ``"instances"``: one episode per
            non-zero, non-void value (instance id). ``"classes"``: one episode per class id present.
        void_values: Raw mask values that are void (ignored by rewards and IoU).
        threshold: Foreground threshold for 8-bit binary masks (``value > threshold``).
        class_masks: Optional sub-folder of class-id maps (same stems) giving ``Sample.class_id``
            in instance mode.
        min_pixels: Objects with fewer foreground pixels are skipped (with a warning).
        on_error: ``"raise"`` (default) or ``"skip"`` for unusable files.
        preset: ``"auto"`` applies :data:`PRESETS` by folder name for arguments left at their
            default; ``None`` disables presets; or a key of :data:`PRESETS`.
        name: Dataset name used in reports (default: the folder name).

    Attributes:
        skipped: ``(file, reason)`` of every file dropped with ``on_error="skip"`` (empty otherwise).

    Raises:
        ValueError: On a missing folder or two files with the same stem; on unmatched, unreadable or
            truncated files, size mismatches, masks without foreground or without background (unless
            ``on_error="skip"``).
    """

    def __init__(
        self,
        root: str | Path,
        images: str = "images",
        masks: str | None = None,
        mode: MaskMode | None = None,
        void_values: Sequence[int] | None = None,
        threshold: int = 128,
        class_masks: str | None = None,
        min_pixels: int = 1,
        on_error: Literal["raise", "skip"] = "raise",
        preset: str | None = "auto",
        name: str | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise ValueError(f"Expected a dataset folder with images/ and masks/, but {self.root} is not a directory")
        settings: Preset = {}
        if preset == "auto":
            settings = PRESETS.get(self.root.name, {})
        elif preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"Expected preset to be 'auto', None or one of {sorted(PRESETS)}, got {preset!r}")
            settings = PRESETS[preset]
        self.mode: MaskMode = mode or settings.get("mode", "binary")
        if self.mode not in ("binary", "instances", "classes"):
            raise ValueError(f"Expected mode 'binary', 'instances' or 'classes', got {self.mode!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"Expected on_error 'raise' or 'skip', got {on_error!r}")
        self.void_values = tuple(int(v) for v in (void_values if void_values is not None
                                                   else settings.get("void_values", ())))
        self.threshold = int(threshold)
        self.min_pixels = int(min_pixels)
        self.name = name or self.root.name
        image_dir = self.root / images
        mask_dir = self.root / (masks or settings.get("masks", "masks"))
        cls_name = class_masks or settings.get("class_masks")
        self.class_dir = self.root / str(cls_name) if cls_name else None
        for folder in (image_dir, mask_dir):
            if not folder.is_dir():
                raise ValueError(f"Expected the folder {folder} (images, masks paired by file stem), but it is missing")
        self._entries, problems = self._index(image_dir, mask_dir)
        self.skipped: list[tuple[str, str]] = [(str(path), reason) for path, reason in problems]
        reasons = [reason for _, reason in problems]
        listing = "; ".join(reasons[:5]) + (f"; ... ({len(reasons)} in all)" if len(reasons) > 5 else "")
        if problems:
            if on_error == "raise":
                raise ValueError(f"Dataset {self.root}: {listing}. Fix the files, or pass on_error='skip' "
                                 f"(sam-gym eval: --on-error skip) to drop them")
            warnings.warn(f"Dataset {self.root}: skipped {len(problems)} item(s): {listing}", stacklevel=2)
        if not self._entries:
            why = f" (skipped {len(problems)}: {listing})" if problems else ""
            raise ValueError(f"Dataset {self.root}: no usable image/mask pair found in {image_dir} and {mask_dir}{why}")

    @staticmethod
    def _files(folder: Path) -> dict[str, Path]:
        files: dict[str, Path] = {}
        clashes: list[str] = []
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if path.stem in files:
                clashes.append(f"{files[path.stem].name} and {path.name}")
            files[path.stem] = path
        if clashes:
            raise ValueError(f"Expected one file per stem in {folder} (images and masks are paired by stem), got "
                             f"{'; '.join(clashes[:5])}. Rename or remove one of each")
        return files

    def _index(self, image_dir: Path, mask_dir: Path) -> tuple[list[_Entry], list[tuple[Path, str]]]:
        images, masks = self._files(image_dir), self._files(mask_dir)
        entries: list[_Entry] = []
        problems: list[tuple[Path, str]] = []
        for stem, img_path in images.items():
            mask_path = masks.get(stem)
            if mask_path is None:
                problems.append((img_path, f"no mask for {img_path.name} in {mask_dir}"))
                continue
            try:
                raw, pil_mode = read_mask(mask_path)
            except ValueError as exc:
                problems.append((mask_path, str(exc)))
                continue
            try:
                size = check_image(img_path)
            except ValueError as exc:
                problems.append((img_path, str(exc)))
                continue
            if raw.shape != size:
                message = f"size mismatch: {img_path.name} is {size}, {mask_path.name} is {raw.shape}"
                problems.append((img_path, message))
                continue
            values, problem = self._object_values(raw, pil_mode)
            if problem is not None:
                problems.append((mask_path, f"{mask_path.name} {problem}"))
                continue
            entries.extend(_Entry(img_path, mask_path, v) for v in values)
        for stem in sorted(set(masks) - set(images)):
            problems.append((masks[stem], f"no image for mask {masks[stem].name}"))
        return entries, problems

    def _void(self, raw: np.ndarray) -> np.ndarray:
        return np.isin(raw, self.void_values) if self.void_values else np.zeros(raw.shape, dtype=bool)

    def _binary(self, raw: np.ndarray, pil_mode: str) -> np.ndarray:
        if pil_mode in ("1", "P") or raw.max() <= 1:
            return raw > 0
        return raw > self.threshold

    def _object_values(self, raw: np.ndarray, pil_mode: str) -> tuple[list[int | None], str | None]:
        """The mask's objects (``None`` for the binary foreground), or a problem that leaves none usable."""
        void = self._void(raw)
        n_valid = int((~void).sum())
        if self.mode == "binary":
            n_fg = int((self._binary(raw, pil_mode) & ~void).sum())
            objects: list[tuple[int | None, int]] = [(None, n_fg)] if n_fg >= self.min_pixels else []
        else:
            values, counts = np.unique(raw[~void], return_counts=True)
            objects = [(int(v), int(c)) for v, c in zip(values, counts, strict=True)
                       if v != 0 and c >= self.min_pixels]
        if not objects:
            return [], f"has no foreground object (of at least {self.min_pixels} pixels)"
        if objects[0][1] == n_valid:  # one object covering every non-void pixel
            return [], "covers the whole image (no background pixel)"
        return [value for value, _ in objects], None

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> Sample:
        index = int(index)
        if not 0 <= index < len(self._entries):
            raise IndexError(f"Expected an index in [0, {len(self._entries)}), got {index}")
        entry = self._entries[index]
        raw, pil_mode = read_mask(entry.mask)
        void = self._void(raw)
        class_id = None
        if self.mode == "binary":
            target = self._binary(raw, pil_mode) & ~void
        else:
            target = (raw == entry.object_value) & ~void
            class_id = entry.object_value if self.mode == "classes" else None
        if self.mode == "instances" and self.class_dir is not None:
            class_path = next(iter(self._files_matching(self.class_dir, entry.mask.stem)), None)
            if class_path is not None:
                cls_raw, _ = read_mask(class_path)
                ids, counts = np.unique(cls_raw[target], return_counts=True)
                class_id = int(ids[np.argmax(counts)]) if ids.size else None
        return Sample(
            image=read_image(entry.image),
            target=target,
            void=void & ~target,
            image_id=entry.image.stem,
            instance_id=entry.object_value if self.mode != "binary" else None,
            class_id=class_id,
        )

    def source(self, index: int) -> str:
        """The image file of sample ``index`` (for messages and skipped-sample lists)."""
        return str(self._entries[int(index)].image)

    @staticmethod
    def _files_matching(folder: Path, stem: str) -> list[Path]:
        return [p for p in sorted(folder.glob(f"{stem}.*")) if p.suffix.lower() in IMAGE_EXTENSIONS]

    def __repr__(self) -> str:
        return f"FolderDataset({str(self.root)!r}, mode={self.mode!r}, void_values={self.void_values}, n={len(self)})"
