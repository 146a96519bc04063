"""SAPNet's model: proposal bags, Point Distance Guidance, the MIL selection head and :class:`SAPNet`.

See :mod:`agents.sapnet` for the method and its deviations. Points are ``(x, y)`` image pixels (x
right, y down); masks ``(H, W)`` bool indexed ``[row, col]``; boxes ``(x0, y0, x1, y1)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.aop.frame import FRAME_SIDE, frame_features
from sam_gym.backends.base import Embedding, PromptableSegmenter

__all__ = [
    "BACKGROUND",
    "Bag",
    "SAPHead",
    "SAPNet",
    "SAPNetConfig",
    "background_boxes",
    "box_iou",
    "mil_loss",
    "negative_loss",
    "part_boxes",
    "point_distance_guidance",
    "proposal_bag",
    "proposal_scores",
]

#: Label of the background class (the last class of every model).
BACKGROUND = "__background__"


@dataclass(frozen=True)
class SAPNetConfig:
    """What rebuilds a :class:`SAPNet` and checks it fits a backend.

    Attributes:
        classes: Class labels; the last is the background class.
        embed_channels: ``C`` of the backend's embedding.
        backend_name: Backend name at training time.
        backend_model_id: Backend ``model_id`` at training time.
        n_jitter: Jittered points per annotated point (3 proposals each, plus 3 at the point).
        jitter: Jitter distance as a fraction of ``min(H, W)``.
        pdg_power: Exponent of the Point Distance Guidance factor (SAPNet's code: 1/64).
        hidden: Width of the shared fully connected layers.
        label_space: What ``classes`` are: ``"dataset"`` (the training data's labels), ``"supercategory"``
            (COCO supercategories, :mod:`agents.sapnet.labels`) or ``"agnostic"`` (one ``"object"`` class).
    """

    classes: tuple[str, ...]
    embed_channels: int
    backend_name: str
    backend_model_id: str
    n_jitter: int = 1
    jitter: float = 0.03
    pdg_power: float = 1.0 / 64.0
    hidden: int = 256
    label_space: str = "dataset"


@dataclass
class Bag:
    """The proposals of one annotated point.

    Attributes:
        point: ``(x, y)`` of the annotated point.
        masks: ``(P, H, W)`` bool proposals.
        boxes: ``(P, 4)`` float32 ``(x0, y0, x1, y1)`` boxes in image pixels (pixel edges).
        scores: ``(P,)`` the backend's predicted IoUs.
        pdg: ``(P,)`` Point Distance Guidance factors (1 = no other same-class point inside).
    """

    point: tuple[float, float]
    masks: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    pdg: np.ndarray = field(default_factory=lambda: np.ones(0, dtype=np.float32))


def _box(mask: np.ndarray, point: tuple[float, float]) -> tuple[float, float, float, float]:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        x, y = point
        return x - 1.0, y - 1.0, x + 1.0, y + 1.0
    return float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)


def proposal_bag(backend: PromptableSegmenter, embedding: Embedding, point: tuple[float, float],
                 n_jitter: int = 1, jitter: float = 0.03) -> Bag:
    """Decode the proposals of one annotated point (``multimask=True`` at the point and its jitters).

    Jitter ``k`` (1-based) moves the point by ``jitter * min(H, W)`` at angle ``k * 2 pi / (n_jitter + 1)
    + pi / 4`` (deterministic), clipped to the image.
    """
    height, width = embedding.image_size
    r = jitter * min(height, width)
    pts = [point]
    for k in range(1, n_jitter + 1):
        angle = k * 2 * math.pi / (n_jitter + 1) + math.pi / 4
        pts.append((float(np.clip(point[0] + r * math.cos(angle), 0, width - 1e-3)),
                    float(np.clip(point[1] + r * math.sin(angle), 0, height - 1e-3))))
    masks, scores = [], []
    for p in pts:
        prediction = backend.decode(embedding, np.array([p], dtype=np.float32), np.array([1]), multimask=True)
        for k in range(len(prediction)):
            masks.append(prediction.mask(k))
            scores.append(float(prediction.scores[k]))
    boxes = np.array([_box(m, point) for m in masks], dtype=np.float32)
    return Bag(point=(float(point[0]), float(point[1])), masks=np.stack(masks), boxes=boxes,
               scores=np.asarray(scores, dtype=np.float32), pdg=np.ones(len(masks), dtype=np.float32))


def point_distance_guidance(boxes: np.ndarray, index: int, points: np.ndarray, classes: Sequence[Any],
                            power: float = 1.0 / 64.0) -> np.ndarray:
    """SAPNet's Point Distance Guidance factor of each proposal of point ``index``.

    As in SAPNet's ``SAP_head.py``: ``L_j = 1 + sum_k dist(p_index, p_k) ** 0.5`` over the other points
    ``k`` of the same class strictly inside proposal ``j``'s box; factor ``sigmoid(1 / (L_j - 1))``
    (1 when no such point), raised to ``power`` (SAPNet: 1/64). Proposals that swallow neighbouring
    instances of the same class (the "group" failure) get a factor below 1; points of other classes do
    not count.

    Args:
        boxes: ``(P, 4)`` ``(x0, y0, x1, y1)`` boxes in image pixels.
        index: The bag's own point.
        points: ``(N, 2)`` all annotated ``(x, y)`` points of the image.
        classes: ``N`` class labels.
        power: Exponent of the factor.

    Returns:
        ``(P,)`` float32 factors in ``(0, 1]``.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    own = pts[index]
    out = np.ones(len(boxes), dtype=np.float32)
    for j, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, dtype=np.float64)):
        extra = 0.0
        for k, (x, y) in enumerate(pts):
            if k != index and classes[k] == classes[index] and x0 < x < x1 and y0 < y < y1:
                extra += float(np.hypot(x - own[0], y - own[1])) ** 0.5
        if extra > 0:
            out[j] = float(1.0 / (1.0 + math.exp(-1.0 / extra))) ** power
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` IoU of ``(x0, y0, x1, y1)`` boxes."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a, area_b = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _random_boxes(rng: np.random.Generator, n: int, x0: float, y0: float, x1: float, y1: float,
                  min_side: float, max_side: float) -> np.ndarray:
    bw, bh = x1 - x0, y1 - y0
    w = rng.uniform(min_side, max_side, n) * bw
    h = rng.uniform(min_side, max_side, n) * bh
    left = x0 + rng.uniform(0, 1, n) * (bw - w)
    top = y0 + rng.uniform(0, 1, n) * (bh - h)
    return np.stack([left, top, left + w, top + h], axis=1).astype(np.float32)


def background_boxes(rng: np.random.Generator, positives: np.ndarray, image_size: tuple[int, int], n: int,
                     max_iou: float = 0.3, tries: int = 20) -> np.ndarray:
    """SAPNet's background negatives: random boxes whose IoU with every positive proposal is below ``max_iou``.

    Boxes of sides 5-60 % of the image's are drawn uniformly inside the image (``tries * n`` draws);
    the first ``n`` that pass are kept (fewer when few pass).

    Args:
        rng: The generator.
        positives: ``(M, 4)`` boxes of all the image's proposals ``(x0, y0, x1, y1)``.
        image_size: ``(H, W)``.
        n: Number of negatives wanted.
        max_iou: SAPNet's ``T_neg1`` (0.3).
        tries: Draws per wanted box.

    Returns:
        ``(k, 4)`` float32 boxes, ``k <= n``.
    """
    height, width = image_size
    if n <= 0:
        return np.zeros((0, 4), dtype=np.float32)
    boxes = _random_boxes(rng, n * tries, 0.0, 0.0, float(width), float(height), 0.05, 0.6)
    keep = box_iou(boxes, positives).max(axis=1, initial=0.0) < max_iou
    return boxes[keep][:n]


def part_boxes(rng: np.random.Generator, box: np.ndarray, n: int, max_iou: float = 0.5,
               tries: int = 20) -> np.ndarray:
    """SAPNet's part negatives of a selected proposal: boxes inside ``box`` with IoU below ``max_iou``.

    Boxes of sides 20-80 % of ``box``'s are drawn uniformly inside it; the first ``n`` with IoU below
    ``max_iou`` (SAPNet's ``T_neg2``, 0.5) are kept. They teach the classification branch that a part
    of an object is not the object (the "local" failure of MIL).

    Returns:
        ``(k, 4)`` float32 boxes, ``k <= n``.
    """
    if n <= 0:
        return np.zeros((0, 4), dtype=np.float32)
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box).reshape(4))
    boxes = _random_boxes(rng, n * tries, x0, y0, x1, y1, 0.2, 0.8)
    keep = box_iou(boxes, np.asarray(box).reshape(1, 4))[:, 0] < max_iou
    return boxes[keep][:n]


class SAPHead(nn.Module):
    """RoI feature extractor and the MIL proposal selection branches.

    Args:
        embed_channels: ``C`` of the frame features.
        n_classes: Number of classes, background included.
        hidden: Width of the shared fully connected layers.
        roi_size: RoIAlign output side.
    """

    def __init__(self, embed_channels: int, n_classes: int, hidden: int = 256, roi_size: int = 7) -> None:
        super().__init__()
        self.roi_size = roi_size
        self.reduce = nn.Sequential(nn.Conv2d(embed_channels, 32, 1), nn.ReLU(inplace=True))
        self.shared = nn.Sequential(nn.Linear(32 * roi_size * roi_size, hidden), nn.ReLU(inplace=True),
                                    nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        self.cls = nn.Linear(hidden, n_classes)
        self.ins = nn.Linear(hidden, n_classes)

    def forward(self, features: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class and instance logits of ``B`` bags of ``P`` proposals.

        Args:
            features: ``(C, S, S)`` frame features.
            boxes: ``(B, P, 4)`` boxes in frame cells ``(x0, y0, x1, y1)``.

        Returns:
            ``cls_logits`` and ``ins_logits``, each ``(B, P, K)``.
        """
        from torchvision.ops import roi_align

        b, p, _ = boxes.shape
        fmap = self.reduce(features.std().clamp_min(1e-6).reciprocal() * features[None])
        rois = roi_align(fmap, [boxes.reshape(-1, 4)], output_size=self.roi_size, spatial_scale=1.0,
                         sampling_ratio=2, aligned=True)
        hidden = self.shared(rois.flatten(1))
        return self.cls(hidden).view(b, p, -1), self.ins(hidden).view(b, p, -1)


def proposal_scores(cls_logits: torch.Tensor, ins_logits: torch.Tensor, pdg: torch.Tensor) -> torch.Tensor:
    """``cls softmax (over classes) x ins softmax (over proposals) x pdg``, ``(B, P, K)``."""
    return cls_logits.softmax(dim=-1) * ins_logits.softmax(dim=1) * pdg[..., None]


def mil_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The MIL binary cross-entropy (paper eq. 3) of bag scores ``S = sum_j scores_j``.

    Args:
        scores: ``(B, P, K)`` proposal scores (:func:`proposal_scores`).
        labels: ``(B,)`` class indices of the bags.
    """
    bag = scores.sum(dim=1).clamp(1e-6, 1 - 1e-6)
    target = F.one_hot(labels.long(), bag.shape[-1]).to(bag.dtype)
    return F.binary_cross_entropy(bag, target, reduction="sum") / bag.shape[0]


def negative_loss(cls_logits: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss of negative proposals towards the background class (the last), summed over object classes.

    ``-sum_c p_c ** gamma * log(1 - p_c)`` over the object classes ``c`` of each negative's class
    softmax ``p``, averaged over the negatives (0 when there are none).

    Args:
        cls_logits: ``(M, K)`` classification logits of ``M`` negative proposals.
        gamma: Focusing exponent.
    """
    if cls_logits.shape[0] == 0:
        return cls_logits.sum() * 0.0
    p = cls_logits.softmax(dim=-1)[:, :-1].clamp(0.0, 1 - 1e-6)
    return -(p.pow(gamma) * torch.log1p(-p)).sum(dim=-1).mean()


class SAPNet:
    """A trained proposal selector: :class:`SAPHead` plus its :class:`SAPNetConfig`."""

    def __init__(self, config: SAPNetConfig, head: SAPHead | None = None) -> None:
        self.config = config
        self.head = head or SAPHead(config.embed_channels, len(config.classes), config.hidden)

    def check_backend(self, backend: PromptableSegmenter) -> None:
        """Raise ``ValueError`` if ``backend``'s embedding channels differ from the model's."""
        if int(backend.embedding_shape[0]) != self.config.embed_channels:
            raise ValueError(f"Expected a backend with {self.config.embed_channels}-channel embeddings (trained on "
                             f"{self.config.backend_name}), got {backend.name} with {tuple(backend.embedding_shape)}")

    def bags(self, backend: PromptableSegmenter, embedding: Embedding, points: np.ndarray,
             classes: Sequence[Any]) -> list[Bag]:
        """Proposal bags of all annotated points of an image, with their PDG factors."""
        out = []
        for i, point in enumerate(np.asarray(points, dtype=np.float32).reshape(-1, 2)):
            bag = proposal_bag(backend, embedding, (float(point[0]), float(point[1])), self.config.n_jitter,
                               self.config.jitter)
            bag.pdg = point_distance_guidance(bag.boxes, i, points, classes, self.config.pdg_power)
            out.append(bag)
        return out

    def box_logits(self, features: torch.Tensor, boxes: torch.Tensor,
                   image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Class and instance logits ``(B, P, K)`` of ``(B, P, 4)`` boxes in image pixels."""
        height, width = image_size
        scale = torch.tensor([FRAME_SIDE / width, FRAME_SIDE / height] * 2, dtype=torch.float32)
        return self.head(features, boxes.to(torch.float32) * scale)

    def _logits(self, features: torch.Tensor, bags: Sequence[Bag],
                image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.box_logits(features, torch.stack([torch.as_tensor(b.boxes) for b in bags]), image_size)

    @torch.no_grad()
    def scores(self, backend: PromptableSegmenter, embedding: Embedding, bags: Sequence[Bag],
               classes: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Selection scores and instance scores of each bag's proposals, for the bag's class.

        For a class seen in training: ``(cls_c x ins_c x pdg, ins_c)``. A class not seen in training is
        scored with objectness ``1 - p_background`` times the instance score averaged over the object
        classes (and that average as its instance score).

        Returns:
            Per bag ``(score, instance)``, each ``(P,)`` float32; ``instance`` sums to 1 over the bag.
        """
        self.head.eval()
        feats = frame_features(backend, embedding, FRAME_SIDE)
        cls_logits, ins_logits = self._logits(feats, bags, embedding.image_size)
        cls, ins = cls_logits.softmax(-1), ins_logits.softmax(1)
        out = []
        for b, (bag, label) in enumerate(zip(bags, classes, strict=True)):
            name = str(label)
            if name in self.config.classes[:-1]:
                c = self.config.classes.index(name)
                instance, objectness = ins[b, :, c], cls[b, :, c]
            else:
                instance, objectness = ins[b, :, :-1].mean(-1), 1 - cls[b, :, -1]
            score = objectness * instance * torch.as_tensor(bag.pdg)
            out.append((score.numpy().astype(np.float32), instance.numpy().astype(np.float32)))
        return out

    def select(self, backend: PromptableSegmenter, embedding: Embedding, bags: Sequence[Bag],
               classes: Sequence[Any]) -> list[int]:
        """Index of the selected proposal in each bag: argmax of ``cls_c x ins_c x pdg`` (:meth:`scores`)."""
        return [int(np.argmax(score)) for score, _ in self.scores(backend, embedding, bags, classes)]
