"""Training and persistence of SAPNet: :func:`fit` (MIL loss), :func:`save_sapnet`, :func:`load_sapnet`."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.aop.frame import FRAME_SIDE, frame_features
from agents.aop.predictor import object_points
from agents.sapnet.labels import supercategory_scenes
from agents.sapnet.model import (
    BACKGROUND,
    Bag,
    SAPNet,
    SAPNetConfig,
    background_boxes,
    mil_loss,
    negative_loss,
    part_boxes,
    proposal_bag,
    proposal_scores,
)
from sam_gym.atomic import atomic_write, atomic_write_bytes, load_torch_checkpoint
from sam_gym.backends.base import Embedding, PromptableSegmenter
from sam_gym.data.scenes import Scene

__all__ = ["CLASS_MODES", "SAPNET_FILE", "fit", "load_sapnet", "save_sapnet"]

#: The weights file inside a model folder (beside ``sapnet.json``).
SAPNET_FILE = "sapnet.pt"
_FORMAT = "sam_gym.sapnet.v1"


#: ``class_mode`` values of :func:`fit`.
CLASS_MODES = ("dataset", "supercategory", "agnostic")


def fit(
    backend: PromptableSegmenter,
    scenes: Sequence[Scene],
    epochs: int = 20,
    lr: float = 1e-3,
    seed: int = 0,
    class_mode: str = "dataset",
    label_source: str | None = None,
    n_negative: int = 2,
    n_background_boxes: int = 64,
    n_part_boxes: int = 8,
    negative_weight: float = 1.0,
    embed: Callable[[np.ndarray], Embedding] | None = None,
    progress: Callable[[int, float], None] | None = None,
    **config_kwargs: Any,
) -> tuple[SAPNet, list[float]]:
    """Train the proposal selection module on a dataset split with the MIL loss and negative proposals.

    Each instance contributes one annotated point (the interior maximum of its mask's distance
    transform, :func:`agents.aop.predictor.object_points`) labelled with its class; ``n_negative``
    background points per image (drawn outside every mask and void) give background bags. Each step
    also draws SAPNet's negative proposals (its NPG), scored by the classification branch towards the
    background class with :func:`~agents.sapnet.model.negative_loss`: ``n_background_boxes`` random
    boxes with IoU < 0.3 to every proposal of the image, and per instance ``n_part_boxes`` parts of its
    currently selected proposal (inside its box, IoU < 0.5). Without negatives a bag's score can reach
    its label with the instance scores flat over the proposals (the MIL loss then says nothing about
    which proposal is right); part negatives make the classification scores, and through them the
    instance scores, rank a part below the whole.

    Args:
        backend: The backend whose proposals and embedding are used (frozen).
        scenes: Training images with their instances and classes.
        epochs: Passes over the images (one optimiser step per image).
        lr: Adam learning rate.
        seed: Seeds the weights, the negatives and the order.
        class_mode: ``"dataset"`` (the scenes' classes), ``"supercategory"`` (their COCO supercategories,
            :mod:`agents.sapnet.labels`; needs ``label_source``) or ``"agnostic"`` (one "object" class).
        label_source: ``"coco-names"`` or ``"voc-ids"`` with ``class_mode="supercategory"``.
        n_negative: Background bags per image.
        n_background_boxes: Random background negative boxes per image and step (0: none).
        n_part_boxes: Part negative boxes per instance and step (0: none).
        negative_weight: Weight of the negative loss beside the MIL loss.
        embed: ``image -> Embedding`` (default ``backend.encode``).
        progress: Called after each epoch with ``(epoch, mean loss)``.
        **config_kwargs: Other :class:`SAPNetConfig` fields (``n_jitter``, ``jitter``, ``pdg_power``).

    Returns:
        The model and each epoch's mean loss (MIL plus weighted negative loss).
    """
    if class_mode not in CLASS_MODES:
        raise ValueError(f"Expected class_mode in {CLASS_MODES}, got {class_mode!r}")
    if not scenes:
        raise ValueError("Expected at least one training scene, got none")
    if class_mode == "supercategory":
        if label_source is None:
            raise ValueError("Expected label_source ('coco-names' or 'voc-ids') with class_mode 'supercategory'")
        scenes = supercategory_scenes(scenes, label_source)
    labels_of = [[("object" if class_mode == "agnostic" else str(c)) for c in s.classes] for s in scenes]
    names = tuple(sorted({c for labels in labels_of for c in labels})) + (BACKGROUND,)
    config = SAPNetConfig(classes=names, embed_channels=int(backend.embedding_shape[0]), backend_name=backend.name,
                          backend_model_id=backend.model_id, label_space=class_mode, **config_kwargs)
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
            scores = proposal_scores(cls_logits, ins_logits, pdg)
            loss = mil_loss(scores, targets)
            negatives = _negatives(rng, bags, scores.detach(), targets, size, n_background_boxes, n_part_boxes)
            if len(negatives):
                neg_logits, _ = model.box_logits(feats, torch.as_tensor(negatives)[None], size)
                loss = loss + negative_weight * negative_loss(neg_logits[0])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        losses.append(total / len(data))
        if progress is not None:
            progress(epoch, losses[-1])
    model.head.eval()
    return model, losses


def _negatives(rng: np.random.Generator, bags: Sequence[Bag], scores: torch.Tensor, targets: torch.Tensor,
               size: tuple[int, int], n_background: int, n_part: int) -> np.ndarray:
    """One step's negative boxes: background boxes of the image and parts of each selected proposal."""
    background = int(scores.shape[-1]) - 1
    objects = [b for b, t in enumerate(targets.tolist()) if t != background]
    out = []
    if objects and n_background > 0:
        out.append(background_boxes(rng, np.concatenate([bags[b].boxes for b in objects]), size, n_background))
    for b in objects if n_part > 0 else []:
        chosen = int(torch.argmax(scores[b, :, int(targets[b])]))
        out.append(part_boxes(rng, bags[b].boxes[chosen], n_part))
    return np.concatenate(out) if out else np.zeros((0, 4), dtype=np.float32)


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

    Models saved before ``label_space`` existed load unchanged (their weights have the same shapes);
    their label space is ``"agnostic"`` for the single class ``"object"``, else ``"dataset"``.

    Raises:
        FileNotFoundError: If there is no model file.
        ValueError: If the file is corrupt or not a SAPNet model, or does not fit ``backend``.
    """
    file, blob = load_torch_checkpoint(path, SAPNET_FILE, "a SAPNet model", "sam-gym train-sapnet", _FORMAT)
    try:
        raw = dict(blob["config"])
        raw["classes"] = tuple(str(c) for c in raw["classes"])
        # models saved before the class-aware SAPNet have no label_space: the same weights, space inferred
        raw.setdefault("label_space", "agnostic" if raw["classes"] == ("object", BACKGROUND) else "dataset")
        model = SAPNet(SAPNetConfig(**raw))
        model.head.load_state_dict(blob["state_dict"])
    except (TypeError, KeyError, RuntimeError) as exc:
        raise ValueError(f"Expected {file} to hold a consistent SAPNet config and weights: {exc}") from exc
    model.head.eval()
    if backend is not None:
        model.check_backend(backend)
    return model
