"""AoP-SAM's Prompt Predictor: image + backend embedding -> Prompt Confidence Map.

Architecture (paper Sec. 3.2, re-implemented; the official ``PromptFilter.py`` could not be read):
an image encoder (three 3x3 convolutions with ReLU, strides 2, 2, 1) and an embedding encoder (1x1
then 3x3 convolution with ReLU, down to 32 channels, on the backend's embedding resampled onto the
image frame, see :mod:`agents.aop.frame`) are concatenated and decoded by convolutions to a sigmoid
``(map_size, map_size)`` confidence map over the image frame (cell ``(i, j)`` covers image rows
``[i H / M, (i + 1) H / M)`` and columns ``[j W / M, (j + 1) W / M)``).

Targets (:func:`confidence_target`): one object point per instance, the interior maximum of its
distance transform, placed on the map and smoothed with a uniform then a Gaussian kernel, peak
normalised to 1 (per instance; instances combined by ``max``). Training: MSE weighted towards the
target blobs (:func:`weighted_mse`; the paper's is plain MSE, with which this small predictor
collapses to an all-zero map), Adam.

Points are ``(x, y)`` image pixels (x right, y down); masks ``(H, W)`` bool indexed ``[row, col]``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter, uniform_filter
from torch import nn

from agents.aop.frame import FRAME_SIDE, frame_features
from sam_gym.atomic import atomic_write, atomic_write_bytes, load_torch_checkpoint
from sam_gym.backends.base import Embedding, PromptableSegmenter
from sam_gym.data.scenes import Scene

__all__ = [
    "PREDICTOR_FILE",
    "PredictorConfig",
    "PromptPredictor",
    "confidence_target",
    "load_predictor",
    "object_points",
    "save_predictor",
    "train_predictor",
    "weighted_mse",
]

logger = logging.getLogger("sam_gym")

#: File names written by :func:`save_predictor` in the output folder.
PREDICTOR_FILE = "aop_predictor.pt"
CONFIG_FILE = "aop_predictor.json"
_FORMAT = "sam_gym.aop_predictor.v1"
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@dataclass(frozen=True)
class PredictorConfig:
    """Everything needed to rebuild a predictor and to check it fits a backend.

    Attributes:
        embed_channels: ``C`` of the backend's ``embedding_shape``.
        embedding_shape: The backend's full ``embedding_shape`` at training time.
        backend_name: Backend name (``"classical"``, ``"sam_vit_h"``, ...).
        backend_model_id: Backend ``model_id`` (weights and preprocessing) at training time.
        image_side: Side the image is resized to (the image encoder's input).
        map_size: Side of the output confidence map.
        width: Channels of the fused decoder.
        target_box: Uniform-kernel size (map cells) of the confidence targets.
        target_sigma: Gaussian sigma (map cells) of the confidence targets.
        pos_weight: Extra MSE weight on target cells, ``w = 1 + pos_weight * target`` (0: plain MSE).
    """

    embed_channels: int
    embedding_shape: tuple[int, int, int]
    backend_name: str
    backend_model_id: str
    image_side: int = 128
    map_size: int = 64
    width: int = 32
    target_box: int = 3
    target_sigma: float = 3.0
    pos_weight: float = 50.0

    @classmethod
    def for_backend(cls, backend: PromptableSegmenter, **kwargs: Any) -> PredictorConfig:
        """The config of a predictor for ``backend`` (``C`` from ``backend.embedding_shape``)."""
        shape = tuple(int(v) for v in backend.embedding_shape)
        return cls(embed_channels=shape[0], embedding_shape=shape, backend_name=backend.name,  # type: ignore[arg-type]
                   backend_model_id=backend.model_id, **kwargs)


class PromptPredictor(nn.Module):
    """The Prompt Predictor network (see the module docstring).

    Args:
        config: Its :class:`PredictorConfig`.
    """

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        if config.image_side % 4 or config.image_side < 16:
            raise ValueError(f"Expected image_side to be a multiple of 4, at least 16, got {config.image_side}")
        self.config = config
        self.image_encoder = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.embedding_encoder = nn.Sequential(
            nn.Conv2d(config.embed_channels, 64, 1), nn.ReLU(inplace=True),
            nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.fuse = nn.Sequential(nn.Conv2d(64, config.width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(config.width, config.width, 3, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Conv2d(config.width, 16, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(16, 1, 1))

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Confidence maps.

        Args:
            image: ``(B, 3, S, S)`` normalised image (:meth:`prepare`).
            features: ``(B, C, h, w)`` frame features (:func:`~agents.aop.frame.frame_features`).

        Returns:
            ``(B, 1, map_size, map_size)`` confidences in ``[0, 1]``.
        """
        img = self.image_encoder(image)
        scale = features.flatten(1).std(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
        emb = self.embedding_encoder(features / scale)
        emb = F.interpolate(emb, size=img.shape[-2:], mode="bilinear", align_corners=False)
        fused = self.fuse(torch.cat([img, emb], dim=1))
        fused = F.interpolate(fused, size=(self.config.map_size,) * 2, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.head(fused))

    def prepare(self, image: np.ndarray, backend: PromptableSegmenter,
                embedding: Embedding) -> tuple[torch.Tensor, torch.Tensor]:
        """The network inputs ``(image (1, 3, S, S), features (1, C, 64, 64))`` for one image.

        Raises:
            ValueError: If the backend's embedding channels differ from the predictor's.
        """
        self.check_backend(backend)
        side = self.config.image_side
        small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
        img = torch.as_tensor(small, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0
        return (img - _MEAN) / _STD, frame_features(backend, embedding, FRAME_SIDE)[None]

    @torch.no_grad()
    def confidence_map(self, image: np.ndarray, backend: PromptableSegmenter, embedding: Embedding) -> np.ndarray:
        """The ``(map_size, map_size)`` float32 Prompt Confidence Map of one image (over the image frame)."""
        self.eval()
        img, feats = self.prepare(image, backend, embedding)
        return self(img, feats)[0, 0].numpy().astype(np.float32)

    def check_backend(self, backend: PromptableSegmenter) -> None:
        """Raise ``ValueError`` if ``backend``'s embedding does not fit; warn if its weights differ."""
        shape = tuple(int(v) for v in backend.embedding_shape)
        if shape[0] != self.config.embed_channels:
            raise ValueError(
                f"Expected a backend with {self.config.embed_channels}-channel embeddings (the predictor was "
                f"trained on {self.config.backend_name}, embedding {tuple(self.config.embedding_shape)}), got "
                f"{backend.name} with embedding {shape}; train one with sam-gym train-aop --backend {backend.name}")
        if backend.model_id != self.config.backend_model_id:
            logger.warning("AoP predictor trained on backend %s (%s) used with %s (%s)", self.config.backend_name,
                           self.config.backend_model_id, backend.name, backend.model_id)


def object_points(masks: Sequence[np.ndarray]) -> np.ndarray:
    """One object point per mask: the interior maximum of its distance transform.

    Returns:
        ``(N, 2)`` float32 ``(x, y)`` pixel centres (``(col + 0.5, row + 0.5)``); first maximum in
        row-major order on ties. The mask is padded by one background pixel, so that the image border
        counts as boundary.
    """
    out = np.zeros((len(masks), 2), dtype=np.float32)
    for k, mask in enumerate(masks):
        padded = np.pad(np.asarray(mask, dtype=np.uint8), 1)
        dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
        row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
        out[k] = (col + 0.5, row + 0.5)
    return out


def confidence_target(masks: Sequence[np.ndarray], map_size: int, box: int = 3, sigma: float = 3.0) -> np.ndarray:
    """The ``(map_size, map_size)`` float32 confidence target of an image's instance masks.

    Each instance's object point (:func:`object_points`) is placed on the map cell holding it,
    smoothed with a ``box x box`` uniform kernel then a Gaussian of ``sigma`` cells, and scaled to a
    peak of 1; instances are combined with ``max``.
    """
    target = np.zeros((map_size, map_size), dtype=np.float32)
    if not masks:
        return target
    height, width = np.asarray(masks[0]).shape
    for x, y in object_points(masks):
        delta = np.zeros_like(target)
        delta[min(map_size - 1, int(y * map_size / height)), min(map_size - 1, int(x * map_size / width))] = 1.0
        blob = gaussian_filter(uniform_filter(delta, size=box, mode="constant"), sigma, mode="constant")
        target = np.maximum(target, blob / max(float(blob.max()), 1e-12))
    return target


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """MSE weighted by ``1 + pos_weight * target`` (plain MSE when ``pos_weight`` is 0).

    The targets are sparse (a few blobs per image); with plain MSE a small predictor collapses to an
    all-zero map, which has no local maximum above the threshold. The weight keeps the blobs.
    """
    weight = 1.0 + pos_weight * target
    return (weight * (pred - target) ** 2).sum() / weight.sum()


def train_predictor(
    backend: PromptableSegmenter,
    scenes: Sequence[Scene],
    epochs: int = 40,
    lr: float = 2e-3,
    batch_size: int = 4,
    seed: int = 0,
    config: PredictorConfig | None = None,
    embed: Callable[[np.ndarray], Embedding] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[PromptPredictor, list[float]]:
    """Train a predictor with (weighted, :func:`weighted_mse`) MSE against :func:`confidence_target` and Adam.

    Args:
        backend: The (frozen) backend whose embeddings the predictor reads.
        scenes: Training images with all their instance masks (never the test images).
        epochs: Passes over ``scenes``.
        lr: Adam learning rate.
        batch_size: Images per step.
        seed: Seeds the weights and the shuffling.
        config: Predictor config (default: :meth:`PredictorConfig.for_backend`).
        embed: ``image -> Embedding`` (e.g. an :class:`~sam_gym.cache.EmbeddingCache`'s ``get``);
            default ``backend.encode``.
        progress: Called after each epoch with ``(epoch, mean loss)``.

    Returns:
        The trained predictor (eval mode) and the mean loss of each epoch.
    """
    if not scenes:
        raise ValueError("Expected at least one training scene, got none")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"Expected epochs to be a positive integer, got {epochs!r}")
    torch.manual_seed(seed)
    config = config or PredictorConfig.for_backend(backend)
    model = PromptPredictor(config)
    encode = embed or backend.encode
    images, feats, targets = [], [], []
    for scene in scenes:
        img, f = model.prepare(scene.image, backend, encode(scene.image))
        images.append(img)
        feats.append(f)
        targets.append(torch.as_tensor(confidence_target(scene.masks, config.map_size, config.target_box,
                                                         config.target_sigma))[None, None])
    x_img, x_feat, y = torch.cat(images), torch.cat(feats), torch.cat(targets)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(scenes), generator=generator)
        total = 0.0
        for start in range(0, len(scenes), batch_size):
            idx = order[start : start + batch_size]
            loss = weighted_mse(model(x_img[idx], x_feat[idx]), y[idx], config.pos_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(scenes))
        if progress is not None:
            progress(epoch, losses[-1])
    return model.eval(), losses


def save_predictor(model: PromptPredictor, out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``out_dir/aop_predictor.pt`` (config + weights) and ``aop_predictor.json`` atomically.

    Args:
        model: The predictor.
        out_dir: Output folder (created).
        extra: Extra JSON-serialisable information for the ``.json`` (e.g. training losses, dataset).

    Returns:
        The path of the ``.pt`` file.
    """
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    config = asdict(model.config)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(out / PREDICTOR_FILE, lambda fh: torch.save({"format": _FORMAT, "config": config,
                                                              "state_dict": state}, fh))
    text = json.dumps({"format": _FORMAT, "config": config, **(extra or {})}, indent=2)
    atomic_write_bytes(out / CONFIG_FILE, (text + "\n").encode())
    return out / PREDICTOR_FILE


def load_predictor(path: str | Path, backend: PromptableSegmenter | None = None) -> PromptPredictor:
    """Load a predictor written by :func:`save_predictor` (a folder or the ``.pt`` file).

    Args:
        path: ``DIR`` or ``DIR/aop_predictor.pt``.
        backend: If given, checked with :meth:`PromptPredictor.check_backend`.

    Raises:
        FileNotFoundError: If there is no predictor file.
        ValueError: If the file is not a predictor (corrupt, wrong format, mismatching weights) or
            does not fit ``backend``.
    """
    file, blob = load_torch_checkpoint(path, PREDICTOR_FILE, "an AoP predictor", "sam-gym train-aop", _FORMAT)
    try:
        raw = dict(blob["config"])
        raw["embedding_shape"] = tuple(int(v) for v in raw["embedding_shape"])
        model = PromptPredictor(PredictorConfig(**raw))
        model.load_state_dict(blob["state_dict"])
    except (TypeError, KeyError, RuntimeError) as exc:
        raise ValueError(f"Expected {file} to hold a consistent AoP predictor config and weights: {exc}") from exc
    model.eval()
    if backend is not None:
        model.check_backend(backend)
    return model
