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
from agents.sapnet.model import BACKGROUND, SAPNet, SAPNetConfig, mil_loss, proposal_bag, proposal_scores
from sam_gym.atomic import atomic_write, atomic_write_bytes, load_torch_checkpoint
from sam_gym.backends.base import Embedding, PromptableSegmenter
from sam_gym.data.scenes import Scene

__all__ = ["SAPNET_FILE", "fit", "load_sapnet", "save_sapnet"]

#: The weights file inside a model folder (beside ``sapnet.json``).
SAPNET_FILE = "sapnet.pt"
_FORMAT = "sam_gym.sapnet.v1"


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
