"""Images with *all* their instance masks: what automatic segmentation is trained and scored on.

The env's datasets give one target per sample; AoP-SAM's predictor and its automatic evaluation, and
SAPNet's proposal selection, need every instance of an image. :func:`group_scenes` regroups a
dataset's samples by image, and :class:`MultiInstanceScenes` is a seeded synthetic dataset of several
same-class shapes per image (class = shape kind, with a class-specific colour).

Masks are ``(H, W)`` bool arrays indexed ``[row, col]``; images ``(H, W, 3)`` uint8 RGB.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sam_gym.data.base import Sample, SegmentationDataset
from sam_gym.data.synthetic import ELLIPSE, RECTANGLE, TRIANGLE, shape_mask

__all__ = ["MultiInstanceScenes", "Scene", "coco_mval_key", "group_scenes", "sample_key"]

#: Class names of :class:`MultiInstanceScenes`, by ``Sample.class_id``.
SHAPE_CLASSES = {1: "ellipse", 2: "rectangle", 3: "triangle"}
_CLASS_COLOURS = {1: (220, 60, 50), 2: (50, 90, 220), 3: (60, 200, 80)}


@dataclass
class Scene:
    """One image and all its annotated instances.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: Instance masks, ``(H, W)`` bool each.
        classes: Class label of each instance (a string: VOC id, COCO name or shape name), or ``None``.
        void: ``(H, W)`` bool pixels to ignore (union of the samples' void).
        image_id: The image's id.
    """

    image: np.ndarray
    masks: list[np.ndarray] = field(default_factory=list)
    classes: list[str | None] = field(default_factory=list)
    void: np.ndarray | None = None
    image_id: str = ""


def coco_mval_key(image_id: str) -> tuple[str, str]:
    """Split a COCO_MVal name ``"<class><nn>_<image>"`` (e.g. ``"baseball bat00_000000057232"``).

    Returns:
        ``(image, class_name)``: the image part (masks of one image share it) and the class name.
    """
    match = re.fullmatch(r"(.+?)(\d+)_(\d+)", image_id)
    if match is None:
        return image_id, ""
    return match.group(3), match.group(1)


def sample_key(dataset_name: str) -> Callable[[Sample], tuple[str, str | None]]:
    """Return ``sample -> (image key, class label)`` for a dataset (COCO_MVal names are parsed)."""
    if "COCO_MVal" in dataset_name:
        return lambda s: coco_mval_key(s.image_id)
    return lambda s: (s.image_id, None if s.class_id is None else str(s.class_id))


def group_scenes(dataset: SegmentationDataset, indices: list[int] | None = None) -> list[Scene]:
    """Group a dataset's samples into one :class:`Scene` per image (order of first appearance).

    Samples of one image are recognised by ``image_id`` (instance-mode folders, e.g. VOC-instances),
    or, for COCO_MVal, by the image number in the file name (the image is stored once per mask).

    Args:
        dataset: Any dataset of :class:`~sam_gym.data.Sample`.
        indices: Sample indices to use (default: all).
    """
    key_of = sample_key(dataset.name)
    scenes: dict[str, Scene] = {}
    for i in range(len(dataset)) if indices is None else indices:
        sample = dataset[int(i)]
        key, label = key_of(sample)
        scene = scenes.get(key)
        if scene is None or scene.image.shape != sample.image.shape:
            scene = scenes.setdefault(key, Scene(image=sample.image, void=sample.void.copy(), image_id=key))
        scene.masks.append(sample.target)
        scene.classes.append(label)
        scene.void = scene.void | sample.void if scene.void is not None else sample.void
    for scene in scenes.values():  # an instance is never void for another one
        union = np.any(scene.masks, axis=0)
        scene.void = scene.void & ~union if scene.void is not None else None
    return list(scenes.values())


class MultiInstanceScenes:
    """Seeded synthetic scenes with 2-5 non-overlapping shapes each, one :class:`Sample` per shape.

    ``Sample.class_id`` is the shape kind (1 ellipse, 2 rectangle, 3 triangle); each class has its own
    colour (jittered), so classes are recognisable from colour and shape. Samples of one scene share
    ``image_id``; :func:`group_scenes` regroups them.

    Args:
        n: Number of scenes.
        size: Image size ``(H, W)``.
        seed: Base seed; scene ``i`` depends only on ``(seed, i)``.
        min_shapes: Fewest shapes per scene.
        max_shapes: Most shapes per scene.
        name: Dataset name.
    """

    def __init__(self, n: int = 16, size: tuple[int, int] = (96, 128), seed: int = 0, min_shapes: int = 2,
                 max_shapes: int = 5, name: str = "multi-instance-scenes") -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"Expected n to be a positive integer, got {n!r}")
        if len(size) != 2 or min(size) < 32:
            raise ValueError(f"Expected size (H, W) with both at least 32, got {size!r}")
        if not 1 <= min_shapes <= max_shapes:
            raise ValueError(f"Expected 1 <= min_shapes <= max_shapes, got {min_shapes}, {max_shapes}")
        self.n, self.size, self.seed, self.name = n, (int(size[0]), int(size[1])), int(seed), name
        self.min_shapes, self.max_shapes = int(min_shapes), int(max_shapes)
        self._scenes = [self._make(i) for i in range(n)]
        self._index = [(s, k) for s, (_, masks, _) in enumerate(self._scenes) for k in range(len(masks))]

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> Sample:
        index = int(index)
        if not 0 <= index < len(self._index):
            raise IndexError(f"Expected an index in [0, {len(self._index)}), got {index}")
        s, k = self._index[index]
        image, masks, classes = self._scenes[s]
        return Sample(image=image, target=masks[k], void=np.zeros(self.size, dtype=bool),
                      image_id=f"{self.name}-{self.seed}-{s:05d}", instance_id=k + 1, class_id=classes[k])

    def scenes(self) -> list[Scene]:
        """All scenes with their instances (same as ``group_scenes(self)``, without the regrouping)."""
        return [Scene(image=img, masks=list(masks), classes=[SHAPE_CLASSES[c] for c in classes],
                      void=np.zeros(self.size, dtype=bool), image_id=f"{self.name}-{self.seed}-{s:05d}")
                for s, (img, masks, classes) in enumerate(self._scenes)]

    def _make(self, index: int) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
        rng = np.random.default_rng([self.seed, index])
        h, w = self.size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = rng.uniform(90, 170, size=3)
        image = base + rng.uniform(-30, 30, size=3) * (xx[..., None] / w - 0.5) + rng.normal(0, 4, (h, w, 3))
        occupied = np.zeros((h, w), dtype=bool)
        masks: list[np.ndarray] = []
        classes: list[int] = []
        want = int(rng.integers(self.min_shapes, self.max_shapes + 1))
        for _ in range(want * 10):
            if len(masks) == want:
                break
            kind = int(rng.integers(1, 4))
            shape = _shape(rng, kind, yy, xx, h, w)
            grown = np.zeros_like(shape)
            grown[1:-1, 1:-1] = (shape[1:-1, 1:-1] | shape[:-2, 1:-1] | shape[2:, 1:-1]
                                 | shape[1:-1, :-2] | shape[1:-1, 2:])
            if shape.sum() < 0.01 * h * w or (grown & occupied).any():
                continue
            colour = np.clip(np.array(_CLASS_COLOURS[kind]) + rng.normal(0, 15, 3), 0, 255)
            image[shape] = colour + rng.normal(0, 5, size=(int(shape.sum()), 3))
            occupied |= shape
            masks.append(shape)
            classes.append(kind)
        if not masks:  # unreachable in practice: a tiny disc keeps the scene valid
            masks.append(((yy - h / 2) ** 2 + (xx - w / 2) ** 2) <= (min(h, w) / 6) ** 2)
            classes.append(1)
            image[masks[0]] = _CLASS_COLOURS[1]
        return np.clip(image, 0, 255).astype(np.uint8), masks, classes


def _shape(rng: np.random.Generator, kind: int, yy: np.ndarray, xx: np.ndarray, h: int, w: int) -> np.ndarray:
    cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
    ry, rx = rng.uniform(0.07, 0.18) * h, rng.uniform(0.07, 0.18) * w
    shape = {1: ELLIPSE, 2: RECTANGLE}.get(kind, TRIANGLE)
    angle = rng.uniform(0, 2 * np.pi) if shape == TRIANGLE else 0.0
    return shape_mask(shape, (cy, cx), (ry, rx), yy, xx, angle, triangle_scale=1.3)
