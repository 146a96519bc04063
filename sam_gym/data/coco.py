"""COCO-format instance datasets (one episode per annotated object), through pycocotools.

The annotation file is checked before pycocotools sees it, so that a malformed file gives a
``ValueError`` naming what is wrong (a top-level list, no ``images``/``annotations`` list, an
annotation whose ``image_id`` has no image, a segmentation that is neither polygons nor an RLE of the
image's size) instead of an ``AssertionError``/``KeyError``/``TypeError`` from inside pycocotools.
At construction the image headers are read (a missing file or a size that differs from the
annotation file is found there); the pixels are decoded at first use.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Sequence
from numbers import Real
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sam_gym.data.base import Sample
from sam_gym.data.io import image_size, read_image

__all__ = ["CocoDataset"]


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and bool(np.isfinite(float(value)))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _segmentation_problem(segm: Any, height: int, width: int) -> str | None:
    """Why ``segm`` is not a COCO segmentation of an ``height x width`` image, or ``None`` if it is one."""
    if isinstance(segm, list):
        for poly in segm or [None]:
            if not (isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0
                    and all(_is_number(v) for v in poly)):
                return (f"expected a segmentation of polygons [[x1, y1, x2, y2, x3, y3, ...], ...] (at least 3 "
                        f"points each), got {_short(segm)}")
        return None
    if isinstance(segm, dict):
        size, counts = segm.get("size"), segm.get("counts")
        if size != [height, width]:
            return f"expected an RLE of size [{height}, {width}] (the image's height, width), got {_short(size)}"
        if isinstance(counts, list):
            if not all(_is_count(v) for v in counts) or sum(counts) != height * width:
                return f"expected RLE counts (run lengths) summing to {height * width} pixels, got {_short(counts)}"
        elif not isinstance(counts, str):
            return f"expected RLE counts as a list of run lengths or a compressed string, got {_short(counts)}"
        return None
    return f"expected a segmentation as a list of polygons or an RLE dict, got {_short(segm)}"


def _read_annotations(path: Path) -> dict[str, Any]:
    """Read a COCO annotation file and check its top level and its ``images`` entries."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"Could not read {path} as COCO annotations: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"Expected {path} to hold a COCO object {{'images': [...], 'annotations': [...]}}, got a "
                         f"top-level {type(data).__name__}")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            got = "none" if key not in data else type(data[key]).__name__
            raise ValueError(f"Expected {path} to have a list '{key}' (COCO instances format), got {got}")
    bad = [img for img in data["images"]
           if not (isinstance(img, dict) and _is_count(img.get("id")) and isinstance(img.get("file_name"), str)
                   and _is_count(img.get("height")) and _is_count(img.get("width"))
                   and img["height"] > 0 and img["width"] > 0)]
    if bad:
        raise ValueError(f"Expected every entry of 'images' in {path} to have an integer 'id', a 'file_name' and "
                         f"positive 'height' and 'width', got {len(bad)} that do not, e.g. {_short(bad[0])}")
    return data


class CocoDataset:
    """Instances of a COCO-format annotation file.

    Args:
        annotation_file: The COCO ``instances_*.json`` file.
        image_dir: Folder holding the images named in the annotation file.
        category_ids: Keep only these category ids (default: all).
        min_area: Skip objects smaller than this many pixels.
        include_crowd: Keep ``iscrowd`` annotations (default: no).
        on_error: ``"raise"`` (default) or ``"skip"`` for unusable annotations (a missing or
            mis-sized image, an unknown ``image_id``, a malformed segmentation): skipped ones are
            dropped with one warning and listed in :attr:`skipped`.
        name: Dataset name used in reports.

    Attributes:
        skipped: ``(file, reason)`` of every annotation dropped with ``on_error="skip"``.

    Raises:
        ValueError: If a file is missing or the annotation file is not valid COCO.
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_dir: str | Path,
        category_ids: Sequence[int] | None = None,
        min_area: float = 16.0,
        include_crowd: bool = False,
        on_error: Literal["raise", "skip"] = "raise",
        name: str | None = None,
    ) -> None:
        try:
            from pycocotools.coco import COCO
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError('COCO datasets need pycocotools: pip install "sam-gym[coco]"') from exc
        annotation_file, self.image_dir = Path(annotation_file), Path(image_dir)
        if on_error not in ("raise", "skip"):
            raise ValueError(f"Expected on_error 'raise' or 'skip', got {on_error!r}")
        if not annotation_file.is_file():
            raise ValueError(f"Expected a COCO annotation file, but {annotation_file} does not exist")
        if not self.image_dir.is_dir():
            raise ValueError(f"Expected an image folder, but {self.image_dir} is not a directory")
        data = _read_annotations(annotation_file)
        images = {img["id"]: img for img in data["images"]}
        anns, problems = self._select(annotation_file, data["annotations"], images, category_ids, min_area,
                                      include_crowd)
        self.skipped = [(str(file), reason) for file, reason in problems]
        listing = "; ".join(f"{file}: {reason}" for file, reason in problems[:3])
        listing += f"; ... ({len(problems)} in all)" if len(problems) > 3 else ""
        if problems:
            if on_error == "raise":
                raise ValueError(f"Dataset {annotation_file}: {listing}. Fix the files, or pass on_error='skip' "
                                 f"(sam-gym eval: --on-error skip) to drop them")
            warnings.warn(f"Dataset {annotation_file}: skipped {len(problems)} annotation(s): {listing}", stacklevel=2)
        if not anns:
            why = f"; skipped {len(problems)}: {listing}" if problems else ""
            raise ValueError(f"No annotation in {annotation_file} passes the filters (category_ids, min_area){why}")
        self.coco = COCO()
        self.coco.dataset = {"images": list(images.values()), "annotations": anns}
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()
        self._anns = anns
        self.name = name or annotation_file.stem

    def _select(
        self, annotation_file: Path, annotations: list[Any], images: dict[int, dict[str, Any]],
        category_ids: Sequence[int] | None, min_area: float, include_crowd: bool,
    ) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
        """The annotations that pass the filters and the checks, and ``(file, reason)`` for those that fail.

        The file is the image for a problem with the image or the segmentation, else the annotation file.
        """
        kept: list[dict[str, Any]] = []
        problems: list[tuple[Path, str]] = []
        sizes: dict[int, tuple[int, int] | str] = {}  # image id -> header (H, W) or why it cannot be read
        wanted = set(category_ids) if category_ids else None
        for position, ann in enumerate(annotations):
            ident = ann.get("id") if isinstance(ann, dict) else None
            where = f"annotation {ident}" if ident is not None else f"annotation #{position} of 'annotations'"
            if not (isinstance(ann, dict) and _is_count(ann.get("id")) and _is_count(ann.get("image_id"))
                    and _is_count(ann.get("category_id")) and _is_number(ann.get("area", 0))):
                problems.append((annotation_file, f"{where}: expected integer 'id', 'image_id', 'category_id' and a "
                                                   f"numeric 'area', got {_short(ann)}"))
                continue
            if wanted is not None and ann["category_id"] not in wanted:
                continue
            if ann.get("area", 0) < min_area or (ann.get("iscrowd", 0) and not include_crowd):
                continue
            info = images.get(ann["image_id"])
            if info is None:
                problems.append((annotation_file, f"{where}: image_id {ann['image_id']} is not in 'images'"))
                continue
            file = self.image_dir / info["file_name"]
            if ann["image_id"] not in sizes:
                try:
                    sizes[ann["image_id"]] = image_size(file) if file.is_file() else f"missing from {self.image_dir}"
                except ValueError as exc:
                    sizes[ann["image_id"]] = str(exc)
            size, expected = sizes[ann["image_id"]], (info["height"], info["width"])
            if isinstance(size, str):
                problem: str | None = size
            elif size != expected:
                problem = f"the image is {size} (H, W) but 'images' says {expected}"
            else:
                problem = _segmentation_problem(ann.get("segmentation"), *expected)
            if problem is not None:
                problems.append((file, f"{where}: {problem}"))
                continue
            kept.append(ann)
        return kept, problems

    def __len__(self) -> int:
        return len(self._anns)

    def source(self, index: int) -> str:
        """The image file of sample ``index`` (for messages and skipped-sample lists)."""
        return str(self.image_dir / self.coco.imgs[self._anns[int(index)]["image_id"]]["file_name"])

    def __getitem__(self, index: int) -> Sample:
        index = int(index)
        if not 0 <= index < len(self._anns):
            raise IndexError(f"Expected an index in [0, {len(self._anns)}), got {index}")
        ann = self._anns[index]
        info = self.coco.imgs[ann["image_id"]]
        image = read_image(self.image_dir / info["file_name"])
        try:
            target = self.coco.annToMask(ann).astype(bool)
        except Exception as exc:  # noqa: BLE001 - pycocotools raises bare Exception on bad input
            raise ValueError(f"Could not decode the segmentation of annotation {ann['id']} of "
                             f"{info['file_name']}: {exc}") from exc
        if target.shape != image.shape[:2]:
            raise ValueError(f"Annotation {ann['id']}: mask size {target.shape} differs from image {image.shape[:2]}")
        return Sample(
            image=image,
            target=target,
            void=np.zeros(target.shape, dtype=bool),
            image_id=Path(info["file_name"]).stem,
            instance_id=int(ann["id"]),
            class_id=int(ann["category_id"]),
        )
