"""COCO-format instance datasets (one episode per annotated object), through pycocotools."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sam_gym.data.base import Sample
from sam_gym.data.io import read_image

__all__ = ["CocoDataset"]


class CocoDataset:
    """Instances of a COCO-format annotation file.

    Args:
        annotation_file: The COCO ``instances_*.json`` file.
        image_dir: Folder holding the images named in the annotation file.
        category_ids: Keep only these category ids (default: all).
        min_area: Skip objects smaller than this many pixels.
        include_crowd: Keep ``iscrowd`` annotations (default: no).
        name: Dataset name used in reports.

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
        name: str | None = None,
    ) -> None:
        try:
            from pycocotools.coco import COCO
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError('COCO datasets need pycocotools: pip install "sam-gym[coco]"') from exc
        annotation_file, self.image_dir = Path(annotation_file), Path(image_dir)
        if not annotation_file.is_file():
            raise ValueError(f"Expected a COCO annotation file, but {annotation_file} does not exist")
        if not self.image_dir.is_dir():
            raise ValueError(f"Expected an image folder, but {self.image_dir} is not a directory")
        import contextlib
        import io

        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.coco = COCO(str(annotation_file))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"Could not read {annotation_file} as COCO annotations: {exc}") from exc
        ann_ids = self.coco.getAnnIds(catIds=list(category_ids) if category_ids else [], iscrowd=None)
        anns = self.coco.loadAnns(ann_ids)
        self._anns = [a for a in anns if a.get("area", 0) >= min_area and (include_crowd or not a.get("iscrowd", 0))]
        missing = sorted({self.coco.imgs[a["image_id"]]["file_name"] for a in self._anns
                          if not (self.image_dir / self.coco.imgs[a["image_id"]]["file_name"]).is_file()})
        if missing:
            raise ValueError(f"{len(missing)} image(s) named in {annotation_file} are missing from {self.image_dir}, "
                             f"e.g. {missing[:3]}")
        if not self._anns:
            raise ValueError(f"No annotation in {annotation_file} passes the filters (category_ids, min_area)")
        self.name = name or annotation_file.stem

    def __len__(self) -> int:
        return len(self._anns)

    def __getitem__(self, index: int) -> Sample:
        index = int(index)
        if not 0 <= index < len(self._anns):
            raise IndexError(f"Expected an index in [0, {len(self._anns)}), got {index}")
        ann = self._anns[index]
        info = self.coco.imgs[ann["image_id"]]
        image = read_image(self.image_dir / info["file_name"])
        target = self.coco.annToMask(ann).astype(bool)
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
