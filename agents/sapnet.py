"""SAPNet proposal selection (Wei et al., "Semantic-aware SAM for Point-Prompted Instance Segmentation", CVPR 2024).

Given one annotated point with a class per instance, SAPNet picks, among SAM's mask proposals for that
point, the one that covers the instance. Re-implemented here (prior-work.md 1.4; the upstream
mmdetection code ``SAP_head.py`` / ``MIL_bbox_head.py`` was read for the Point Distance Guidance):

* **Proposal bag** (:func:`proposal_bag`): the backend's 3 multimask proposals at the point and at
  ``n_jitter`` jittered points (default 1: 6 proposals per point, as SAPNet's ``reshape(-1, 6, 4)``),
  with their boxes ``(x0, y0, x1, y1)`` in image pixels.
* **RoI features**: RoIAlign (``torchvision.ops.roi_align``, 7x7) of the backend's embedding, resampled
  onto the image frame (:func:`agents.aop.frame.frame_features`) and reduced to 32 channels by a 1x1
  convolution; two shared fully connected layers (``Shared2FC``).
* **Proposal selection module** (:class:`SAPHead`): a classification branch, softmax over classes,
  times an instance branch, softmax over the bag's proposals (MIL), times the Point Distance Guidance
  (:func:`point_distance_guidance`). Bag score ``S_c = sum_j cls_jc ins_jc pdg_j``; loss: the MIL
  binary cross-entropy of the paper's eq. 3, ``-sum_c y_c log S_c + (1 - y_c) log(1 - S_c)``, with the
  point's class as label (no mask supervision).
* Deviation: a *background* class (the last one) is trained on bags decoded at background points
  (SAPNet's negatives are random boxes with low IoU to the positives); it also gives an objectness
  ``1 - p_background`` that scores points of classes unseen in training (class-agnostic use).
* Deviation: no mask branch, no box mining or refinement stages (PNPG, PRM, BMS): only the selection.

Points are ``(x, y)`` image pixels (x right, y down; pixel ``(floor(y), floor(x))``); masks ``(H, W)``
bool indexed ``[row, col]``; labels 1 foreground / 0 background.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.aop.frame import FRAME_SIDE, frame_features
from agents.aop.predictor import object_points
from sam_gym.atomic import atomic_write, atomic_write_bytes, load_torch_checkpoint
from sam_gym.backends.base import Embedding, PromptableSegmenter
from sam_gym.data.scenes import Scene
from sam_gym.metrics import iou
from sam_gym.policy import PromptPolicy

__all__ = [
    "DEFAULT_SAPNET_DIR",
    "SAPHead",
    "SAPNet",
    "SAPNetConfig",
    "SAPNetPolicy",
    "fit",
    "load_sapnet",
    "mil_loss",
    "point_distance_guidance",
    "proposal_bag",
    "save_sapnet",
]

#: Where ``make_policy("sapnet")`` looks for a model when no path is given (``$SAM_GYM_SAPNET`` overrides).
DEFAULT_SAPNET_DIR = "runs/sapnet"
SAPNET_FILE = "sapnet.pt"
_FORMAT = "sam_gym.sapnet.v1"
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


def fit(
    backend: PromptableSegmenter,
    scenes: Sequence[Scene],
    epochs: int = 20,
    lr: float = 1e-3,
    seed: int = 0,
    class_mode: str = "dataset",
    n_negative: int = 2,
    embed: Callable[[np.ndarray], Embedding] | None = None,
    progress: Callable[[int, float], None] | None = None,
    **config_kwargs: Any,
) -> tuple[SAPNet, list[float]]:
    """Train the proposal selection module on a dataset split with the MIL loss.

    Each instance contributes one annotated point (the interior maximum of its mask's distance
    transform, :func:`agents.aop.predictor.object_points`) labelled with its class; ``n_negative``
    background points per image (drawn outside every mask and void) give background bags.

    Args:
        backend: The backend whose proposals and embedding are used (frozen).
        scenes: Training images with their instances and classes.
        epochs: Passes over the images (one optimiser step per image).
        lr: Adam learning rate.
        seed: Seeds the weights, the negatives and the order.
        class_mode: ``"dataset"`` (the scenes' classes) or ``"agnostic"`` (one "object" class).
        n_negative: Background bags per image.
        embed: ``image -> Embedding`` (default ``backend.encode``).
        progress: Called after each epoch with ``(epoch, mean loss)``.
        **config_kwargs: Other :class:`SAPNetConfig` fields (``n_jitter``, ``jitter``, ``pdg_power``).

    Returns:
        The model and each epoch's mean loss.
    """
    if class_mode not in ("dataset", "agnostic"):
        raise ValueError(f"Expected class_mode 'dataset' or 'agnostic', got {class_mode!r}")
    if not scenes:
        raise ValueError("Expected at least one training scene, got none")
    labels_of = [[("object" if class_mode == "agnostic" else str(c)) for c in s.classes] for s in scenes]
    names = tuple(sorted({c for labels in labels_of for c in labels})) + (BACKGROUND,)
    config = SAPNetConfig(classes=names, embed_channels=int(backend.embedding_shape[0]), backend_name=backend.name,
                          backend_model_id=backend.model_id, **config_kwargs)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SAPNet(config)
    encode = embed or backend.encode
    data = []
    for scene, labels in zip(scenes, labels_of, strict=True):
        embedding = encode(scene.image)
        points = object_points(scene.masks)
        bags = model.bags(backend, embedding, points, labels)
        free = ~np.any(scene.masks, axis=0) & (~scene.void if scene.void is not None else True)
        rows, cols = np.nonzero(free)
        targets = [names.index(c) for c in labels]
        for k in rng.choice(rows.size, size=min(n_negative, rows.size), replace=False) if rows.size else []:
            bags.append(proposal_bag(backend, embedding, (cols[k] + 0.5, rows[k] + 0.5), config.n_jitter,
                                     config.jitter))
            targets.append(len(names) - 1)
        data.append((frame_features(backend, embedding, FRAME_SIDE), bags, embedding.image_size,
                     torch.as_tensor(targets), torch.stack([torch.as_tensor(b.pdg) for b in bags])))
    optimizer = torch.optim.Adam(model.head.parameters(), lr=lr)
    losses: list[float] = []
    model.head.train()
    for epoch in range(epochs):
        total = 0.0
        for i in rng.permutation(len(data)):
            feats, bags, size, targets, pdg = data[i]
            cls_logits, ins_logits = model._logits(feats, bags, size)
            loss = mil_loss(proposal_scores(cls_logits, ins_logits, pdg), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        losses.append(total / len(data))
        if progress is not None:
            progress(epoch, losses[-1])
    model.head.eval()
    return model, losses


def save_sapnet(model: SAPNet, out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``out_dir/sapnet.pt`` and ``sapnet.json`` atomically (temp file + ``os.replace``)."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    config = asdict(model.config)
    blob = {"format": _FORMAT, "config": config,
            "state_dict": {k: v.detach().cpu() for k, v in model.head.state_dict().items()}}
    atomic_write(out / SAPNET_FILE, lambda fh: torch.save(blob, fh))
    text = json.dumps({"format": _FORMAT, "config": config, **(extra or {})}, indent=2)
    atomic_write_bytes(out / "sapnet.json", (text + "\n").encode())
    return out / SAPNET_FILE


def load_sapnet(path: str | Path, backend: PromptableSegmenter | None = None) -> SAPNet:
    """Load a model written by :func:`save_sapnet` (folder or ``.pt``); validate it (and its fit to ``backend``).

    Raises:
        FileNotFoundError: If there is no model file.
        ValueError: If the file is corrupt or not a SAPNet model, or does not fit ``backend``.
    """
    file, blob = load_torch_checkpoint(path, SAPNET_FILE, "a SAPNet model", "sam-gym train-sapnet", _FORMAT)
    try:
        raw = dict(blob["config"])
        raw["classes"] = tuple(str(c) for c in raw["classes"])
        model = SAPNet(SAPNetConfig(**raw))
        model.head.load_state_dict(blob["state_dict"])
    except (TypeError, KeyError, RuntimeError) as exc:
        raise ValueError(f"Expected {file} to hold a consistent SAPNet config and weights: {exc}") from exc
    model.head.eval()
    if backend is not None:
        model.check_backend(backend)
    return model


class SAPNetPolicy(PromptPolicy):
    """SAPNet in ``SamPrompt-v0``: click the annotated point, then steer the env to the selected proposal.

    Oracle: the "one annotated point" of the instance is taken from the ground truth (the interior
    maximum of the target's distance transform) with the target's class (``Sample.class_id``). Step 1
    clicks that point (positive); the policy also decodes the point's proposal bag and selects one
    proposal with SAPNet. If the env's mask (the backend's top-score proposal) differs from the
    selected one (IoU < ``match_iou``), each further click steers towards the selected proposal, never
    looking at the ground truth again: the centre (distance-transform maximum) of the largest region
    where the env mask and the selected proposal disagree, positive where the proposal is foreground,
    negative where it is not. Once they agree, the last click is repeated (a penalised no-op).

    Point Distance Guidance needs the other annotated points of the image; an env episode knows only
    its own target, so in the env the PDG factor is 1 (it is active in ``benchmarks/sapnet_vs_top1.py``).

    Args:
        arg: Path of a trained model (``sam-gym train-sapnet --out DIR``), as in ``make_policy("sapnet:DIR")``;
            ``None``: ``$SAM_GYM_SAPNET`` or ``runs/sapnet``, with a clear error if absent.
        model: An already-loaded :class:`SAPNet` (instead of ``arg``).
        match_iou: IoU at which the env's mask counts as the selected proposal.

    Attributes:
        selected_mask: The selected proposal of the current episode, ``(H, W)`` bool.
    """

    name: ClassVar[str] = "sapnet"
    oracle: ClassVar[bool] = True
    env_kwargs: ClassVar[dict[str, Any]] = {"action_mode": "point", "init_prompts": "none"}

    def __init__(self, arg: str | None = None, model: SAPNet | None = None, match_iou: float = 0.95) -> None:
        super().__init__()
        if model is not None and arg is not None:
            raise ValueError(f"Expected either a model path or a model object, got both ({arg!r})")
        if model is None:
            path = Path(arg or os.environ.get("SAM_GYM_SAPNET") or DEFAULT_SAPNET_DIR)
            if not path.exists():
                raise ValueError(f"Expected a trained SAPNet model at {path}; train one with "
                                 f"'sam-gym train-sapnet --dataset D --backend B --out {path}' and use 'sapnet:{path}'")
            model = load_sapnet(path)
        self.model = model
        self.match_iou = float(match_iou)
        self.selected_mask: np.ndarray | None = None
        self._last = np.array([0.5, 0.5, 1.0], dtype=np.float32)

    def bind(self, env: Any) -> None:
        """Bind to ``env`` and check that the model fits its backend's embedding."""
        super().bind(env)
        self.model.check_backend(self.env.backend)

    def reset(self) -> None:
        """Forget the previous episode's selection."""
        self.selected_mask = None

    def act(self, observation: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        """The next point action ``(x / W, y / H, label)``."""
        view = self.view()
        height, width = view.sample.target.shape
        if view.n_clicks == 0 or self.selected_mask is None:
            x, y = object_points([view.sample.target])[0]
            label = view.sample.class_id
            bag = self.model.bags(view.backend, view.embedding, np.array([[x, y]]), [label])[0]
            index = self.model.select(view.backend, view.embedding, [bag], [label])[0]
            self.selected_mask = bag.masks[index]
            self._last = np.array([x / width, y / height, 1.0], dtype=np.float32)
            return self._last
        selected, current = self.selected_mask, view.mask
        if not selected.any() or iou(current, selected) >= self.match_iou:
            return self._last
        error = (selected ^ current).astype(np.uint8)
        n, regions = cv2.connectedComponents(error, connectivity=8)
        sizes = np.bincount(regions.ravel(), minlength=n)[1:]
        largest = (regions == 1 + int(np.argmax(sizes))).astype(np.uint8)
        dist = cv2.distanceTransform(np.pad(largest, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
        self._last = np.array([(col + 0.5) / width, (row + 0.5) / height, float(selected[row, col])],
                              dtype=np.float32)
        return self._last
