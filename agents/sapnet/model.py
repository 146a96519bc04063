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
    "mil_loss",
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
    """

    classes: tuple[str, ...]
    embed_channels: int
    backend_name: str
    backend_model_id: str
    n_jitter: int = 1
    jitter: float = 0.03
    pdg_power: float = 1.0 / 64.0
    hidden: int = 256


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

    def _logits(self, features: torch.Tensor, bags: Sequence[Bag],
                image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image_size
        scale = torch.tensor([FRAME_SIDE / width, FRAME_SIDE / height] * 2, dtype=torch.float32)
        boxes = torch.stack([torch.as_tensor(b.boxes) * scale for b in bags])
        return self.head(features, boxes)

    @torch.no_grad()
    def select(self, backend: PromptableSegmenter, embedding: Embedding, bags: Sequence[Bag],
               classes: Sequence[Any]) -> list[int]:
        """Index of the selected proposal in each bag: argmax of ``cls_c x ins_c x pdg``.

        A class not seen in training is scored with objectness ``1 - p_background`` times the instance
        score averaged over the object classes.
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
                score = cls[b, :, c] * ins[b, :, c]
            else:
                score = (1 - cls[b, :, -1]) * ins[b, :, :-1].mean(-1)
            out.append(int(torch.argmax(score * torch.as_tensor(bag.pdg))))
        return out
