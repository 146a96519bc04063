"""Class labels SAPNet can learn from the data at hand: COCO's 12 supercategories.

SAPNet's MIL is over classes (paper eq. 1-3). COCO_MVal carries each instance's COCO category in its
file name, but holds one instance per category, so a model trained on part of it never sees the
categories of the rest. Grouping the 80 categories into COCO's own 12 supercategories (the
``supercategory`` field of COCO's ``instances_*.json``) gives classes with several instances each;
VOC's 20 classes fall into the same groups, so one label space covers COCO_MVal and VOC-instances.

Labels are strings, as in :class:`sam_gym.data.scenes.Scene`: COCO category names (COCO_MVal) or
VOC class ids ``"1"`` .. ``"20"`` (VOC-instances' class maps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sam_gym.data.scenes import Scene

__all__ = ["COCO_SUPERCATEGORY", "LABEL_SOURCES", "VOC_CLASSES", "label_source", "supercategory",
           "supercategory_scenes"]

_GROUPS = {
    "person": ("person",),
    "vehicle": ("bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat"),
    "outdoor": ("traffic light", "fire hydrant", "stop sign", "parking meter", "bench"),
    "animal": ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"),
    "accessory": ("backpack", "umbrella", "handbag", "tie", "suitcase"),
    "sports": ("frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
               "skateboard", "surfboard", "tennis racket"),
    "kitchen": ("bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl"),
    "food": ("banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake"),
    "furniture": ("chair", "couch", "potted plant", "bed", "dining table", "toilet"),
    "electronic": ("tv", "laptop", "mouse", "remote", "keyboard", "cell phone"),
    "appliance": ("microwave", "oven", "toaster", "sink", "refrigerator"),
    "indoor": ("book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush"),
}

#: COCO category name -> supercategory (COCO 2017's 80 categories).
COCO_SUPERCATEGORY: dict[str, str] = {name: group for group, names in _GROUPS.items() for name in names}

#: VOC class names by id (1-based; 0 is background, 255 void).
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")

_VOC_TO_COCO = {"aeroplane": "airplane", "diningtable": "dining table", "motorbike": "motorcycle",
                "pottedplant": "potted plant", "sofa": "couch", "tvmonitor": "tv"}

#: How a dataset's labels are read: ``"coco-names"`` (COCO_MVal) or ``"voc-ids"`` (VOC class maps).
LABEL_SOURCES = ("coco-names", "voc-ids")


def supercategory(label: str | None, source: str) -> str:
    """COCO supercategory of one label.

    Args:
        label: A COCO category name (``source="coco-names"``) or a VOC class id ``"1"`` .. ``"20"``
            (``source="voc-ids"``).
        source: One of :data:`LABEL_SOURCES`.

    Raises:
        ValueError: On an unknown source or a label it does not know.
    """
    if source not in LABEL_SOURCES:
        raise ValueError(f"Expected a label source in {LABEL_SOURCES}, got {source!r}")
    name = None if label is None else str(label)
    if source == "voc-ids":
        if name is None or not name.isdigit() or not 1 <= int(name) <= len(VOC_CLASSES):
            raise ValueError(f"Expected a VOC class id 1..{len(VOC_CLASSES)}, got {label!r}")
        voc = VOC_CLASSES[int(name) - 1]
        name = _VOC_TO_COCO.get(voc, voc)
    if name not in COCO_SUPERCATEGORY:
        raise ValueError(f"Expected a COCO category name (e.g. 'baseball bat'), got {label!r}")
    return COCO_SUPERCATEGORY[name]


def label_source(dataset_name: str) -> str:
    """The label source of a dataset by its name: COCO_MVal -> ``"coco-names"``, VOC -> ``"voc-ids"``.

    Raises:
        ValueError: For a dataset whose labels are neither.
    """
    if "COCO_MVal" in dataset_name:
        return "coco-names"
    if "VOC" in dataset_name:
        return "voc-ids"
    raise ValueError(f"Expected COCO_MVal (category names) or a VOC instance folder (class ids) for "
                     f"supercategory labels, got dataset {dataset_name!r}")


def supercategory_scenes(scenes: Sequence[Scene], source: str) -> list[Scene]:
    """Copies of ``scenes`` whose instance labels are COCO supercategories (see :func:`supercategory`)."""
    return [replace(s, classes=[supercategory(c, source) for c in s.classes]) for s in scenes]
