"""Datasets: folders of images and masks, COCO annotations, and the built-in synthetic ones by name.

>>> from sam_gym.data import make_dataset
>>> ds = make_dataset("synthetic-shapes", n=4)
>>> len(ds), ds[0].image.shape
(4, (128, 160, 3))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sam_gym.data.base import Sample, SegmentationDataset, check_sample
from sam_gym.data.folder import PRESETS, FolderDataset
from sam_gym.data.synthetic import SyntheticShapes, synthetic_clutter, synthetic_multi
from sam_gym.registry import Entry, lookup

__all__ = [
    "DATASETS",
    "PRESETS",
    "FolderDataset",
    "Sample",
    "SegmentationDataset",
    "SyntheticShapes",
    "synthetic_clutter",
    "synthetic_multi",
    "check_sample",
    "make_dataset",
    "shared_data_dir",
]

#: Built-in datasets by name (a folder or a COCO ``.json`` path is the other way to name one).
DATASETS: dict[str, Entry] = {
    "synthetic-shapes": Entry("sam_gym.data.synthetic:SyntheticShapes",
                              "seeded synthetic shapes on textured backgrounds, one target shape per image"),
    "synthetic-multi": Entry("sam_gym.data.synthetic:synthetic_multi",
                             "seeded synthetic images whose target is every red shape (two or three)"),
    "synthetic-clutter": Entry("sam_gym.data.synthetic:synthetic_clutter",
                                "seeded cluttered scenes whose target is every small red shape (3-5); "
                                "the default of SamPrompt-v0"),
    "multi-instance-scenes": Entry("sam_gym.data.scenes:MultiInstanceScenes",
                                   "seeded synthetic scenes of 2-5 shapes, one sample per instance"),
}


def shared_data_dir() -> Path | None:
    """Return ``../shared/data`` beside the project checkout (or ``$SAM_GYM_DATA``) if it exists."""
    import os

    env = os.environ.get("SAM_GYM_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    candidates.append(Path.cwd().parent / "shared" / "data")
    return next((c for c in candidates if c.is_dir()), None)


def make_dataset(dataset: str | Path | SegmentationDataset = "synthetic-shapes", **kwargs: Any) -> SegmentationDataset:
    """Build a dataset from a name, a path or an existing dataset object.

    Args:
        dataset: A name of :data:`DATASETS` (``"synthetic-shapes"``, ``"synthetic-multi"``,
            ``"multi-instance-scenes"``); a folder with ``images/`` and ``masks/`` (see
            :class:`FolderDataset`; the benchmark folders of ``../shared/data`` get their preset by
            name); a COCO ``.json`` annotation file (pass
            ``image_dir=``); or any object with ``__len__``, ``__getitem__`` returning :class:`Sample`,
            and ``name``. Also ``"synthetic-clutter"``, the default data of ``SamPrompt-v0``.
        **kwargs: Passed to the dataset class.

    Raises:
        ValueError: If the name or path is not a dataset.
    """
    if isinstance(dataset, (str, Path)):
        text = str(dataset)
        if text not in DATASETS:
            path = Path(text).expanduser()
            if path.suffix.lower() == ".json":
                from sam_gym.data.coco import CocoDataset

                if "image_dir" not in kwargs:
                    raise ValueError(f"Expected image_dir=... with the COCO annotation file {path}")
                return CocoDataset(path, **kwargs)
            if path.is_dir():
                return FolderDataset(path, **kwargs)
        entry = lookup(DATASETS, text, kind="dataset", also=", a folder with images/ and masks/, or a COCO .json file",
                       why=" (no such directory)")
        return entry.resolve()(**kwargs)
    if isinstance(dataset, SegmentationDataset):
        if kwargs:
            raise ValueError(f"Expected no dataset keyword arguments with a dataset object, got {sorted(kwargs)}")
        return dataset
    raise ValueError(f"Expected dataset to be a name, a path or a dataset object, got {type(dataset).__name__}")
