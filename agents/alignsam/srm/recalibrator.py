"""The SRM learner: :class:`SRMConfig`, and :class:`Recalibrator` (inputs, replay, optimiser, save/load).

See :mod:`agents.alignsam.srm` for the method. Maps live on the image-aligned ``S x S`` grid of
:class:`sam_gym.grid.PatchGrid` (``rows = cols = S`` over the image): a point ``(x, y)`` (x right,
y down, image pixels) reads cell ``(row, col) = (floor(y S / H), floor(x S / W))``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import cv2
import numpy as np
import torch

from agents.alignsam.srm.module import CONTEXT_CHANNELS, SemanticRecalibrationModule, srm_loss
from sam_gym.atomic import atomic_write, atomic_write_bytes
from sam_gym.data.hashing import image_hash
from sam_gym.grid import PatchGrid

if TYPE_CHECKING:
    from sam_gym.envs import EpisodeView

__all__ = ["SRM_CONFIG", "SRM_WEIGHTS", "Recalibrator", "SRMConfig", "SRMSample"]

_FORMAT = "alignsam-srm"
_VERSION = 1
SRM_WEIGHTS = "srm.pt"
SRM_CONFIG = "srm.json"
#: Images whose pooled embedding and CLIP-Surgery map :class:`Recalibrator` keeps (least recently used out).
_IMAGE_CACHE_SIZE = 256


class SRMSample(NamedTuple):
    """One SRM training sample of a view (see :meth:`Recalibrator.inputs` and :meth:`Recalibrator.target`).

    Attributes:
        implicit: ``(C + 1 [+ 4], S, S)`` float32 implicit input.
        explicit: ``(C + 1, S, S)`` float32 explicit input, or ``None`` for an implicit SRM.
        target: ``(1, S, S)`` float32 ground-truth foreground fraction of each cell.
        weight: ``(1, S, S)`` float32: 1 for valid cells, 0 for void ones.
    """

    implicit: np.ndarray
    explicit: np.ndarray | None
    target: np.ndarray
    weight: np.ndarray


@dataclass(frozen=True)
class SRMConfig:
    """Architecture and data settings of a :class:`Recalibrator` (saved as ``srm.json``).

    Attributes:
        mode: ``"implicit"`` or ``"explicit"``.
        in_channels: Channels of the backend's embedding.
        size: Side ``S`` of the image-aligned map.
        hidden: Channels of the network's blocks.
        text: Text prompt of the explicit branch (``""`` for implicit).
        clip_model: open_clip architecture of CLIP-Surgery (explicit only).
        clip_pretrained: open_clip weights: a tag, a local path or ``"random"`` (explicit only).
        lr: Adam learning rate.
        batch_size: Samples per update (newest first, then replayed ones).
        buffer_size: Capacity of the replay buffer of recent samples.
        context: Add four context input channels (not in the paper): each cell's feature distance to
            the mean feature inside the previous mask, outside it, at the positive prompts and at
            the negative prompts. The paper's two 3 x 3 blocks see only 5 x 5 cells, too little to
            compare a cell with the object, and its input has no prompt positions;
            ``False`` (the default, for runs saved before this option) is the paper's input.
        fusion: Explicit branch: ``"early"`` (the paper's aggregation of both states, see
            :class:`~agents.alignsam.srm.module.SemanticRecalibrationModule`) or ``"late"`` (the
            default here, how ``srm.json`` files saved before this option were built;
            ``TrainConfig.srm_fusion`` gives new runs ``"early"``).
    """

    mode: str = "implicit"
    in_channels: int = 10
    size: int = 32
    hidden: int = 32
    text: str = ""
    clip_model: str = "ViT-B-16"
    clip_pretrained: str = "openai"
    lr: float = 1e-3
    batch_size: int = 8
    buffer_size: int = 256
    context: bool = False
    fusion: str = "late"

    def __post_init__(self) -> None:
        if self.mode not in ("implicit", "explicit"):
            raise ValueError(f"Expected mode 'implicit' or 'explicit', got {self.mode!r}")
        if self.mode == "explicit" and not self.text.strip():
            raise ValueError("Expected a text prompt for the explicit SRM, got an empty one")
        if self.fusion not in ("early", "late"):
            raise ValueError(f"Expected fusion 'early' or 'late', got {self.fusion!r}")
        for name in ("in_channels", "size", "hidden", "batch_size", "buffer_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Expected {name} to be a positive integer, got {value!r}")


class Recalibrator:
    """An SRM with its optimiser, its replay buffer and the glue to the env's :class:`EpisodeView`.

    Args:
        config: Architecture and data settings.
        device: Torch device.
        seed: Seed of the network initialisation and of the replay sampling.
        clip: A :class:`~agents.alignsam.clip_surgery.ClipSurgery` for the explicit branch (loaded
            from ``config.clip_model`` / ``clip_pretrained`` when ``None``).

    Attributes:
        labeller: ``label_mode`` callable for the env: ``(view, (x, y)) -> 1 if the map >= 0.5 at the point``.
        initial_prompts: ``init_prompts`` callable for the env: the map's highest cell as a positive
            prompt and its lowest as a negative one, at cell centres ``(x, y)`` in image pixels.
    """

    def __init__(self, config: SRMConfig, device: str | torch.device = "cpu", seed: int = 0,
                 clip: Any | None = None) -> None:
        self.config = config
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module = SemanticRecalibrationModule(config.in_channels, config.mode == "explicit", config.hidden,
                                                      CONTEXT_CHANNELS if config.context else 0,
                                                      config.fusion).to(self.device)
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=config.lr)
        self._rng = np.random.default_rng(seed)
        self._buffer: list[SRMSample] = []
        self._next_slot = 0
        self._image_cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.clip = clip
        if config.mode == "explicit" and clip is None:
            from agents.alignsam.clip_surgery import load_clip

            self.clip = load_clip(config.clip_model, config.clip_pretrained, str(self.device))
        self.labeller = _Labeller(self)
        self.initial_prompts = _InitialPrompts(self)

    # ------------------------------------------------------------------ inputs and targets
    def map_grid(self, view: EpisodeView) -> PatchGrid:
        """The ``S x S`` map grid over the view's image (what maps a point ``(x, y)`` to a map cell)."""
        height, width = view.sample.target.shape
        return PatchGrid(self.config.size, self.config.size, height, width)

    def _image_inputs(self, view: EpisodeView) -> tuple[np.ndarray, np.ndarray]:
        """Plain embedding pooled to ``S x S`` and the CLIP-Surgery map, cached per image."""
        key = image_hash(view.sample.image)
        hit = self._image_cache.get(key)
        if hit is None:
            size = self.config.size
            plain, _ = view.backend.observe(view.embedding, None, (size, size), (size, size))
            clip_map = (self.clip.similarity_map(view.sample.image, self.config.text, (size, size))
                        if self.clip is not None else np.zeros((size, size), dtype=np.float32))
            hit = (np.asarray(plain, dtype=np.float32), clip_map)
            self._image_cache[key] = hit
            while len(self._image_cache) > _IMAGE_CACHE_SIZE:
                self._image_cache.popitem(last=False)
        self._image_cache.move_to_end(key)
        return hit

    def inputs(self, view: EpisodeView, with_mask: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the implicit input ``(C + 1 [+ 4], S, S)`` and the explicit one (or ``None``) for a view.

        With ``config.context`` the implicit input also holds the four channels of :func:`_context`
        (feature distances to the mask's inside / outside means and to the positive / negative
        prompts' features; prompts at ``(x, y)`` read cell ``(floor(y S / H), floor(x S / W))``).
        The mask-free state has no prompts.

        Args:
            view: The episode's view (its current mask is the previous mask ``M``).
            with_mask: Use the current mask; ``False`` gives the mask-free state (``M = 1``).
        """
        size = self.config.size
        plain, clip_map = self._image_inputs(view)
        if with_mask and view.mask_logits is not None:
            state, mask = view.backend.observe(view.embedding, view.mask_logits, (size, size), (size, size))
        else:
            state, mask = plain, np.ones((size, size), dtype=np.float32)
        mask = np.asarray(mask, np.float32)
        channels = [np.asarray(state, np.float32), mask[None]]
        if self.config.context:
            points = np.asarray(view.points, dtype=np.float64).reshape(-1, 2) if with_mask else np.zeros((0, 2))
            labels = np.asarray(view.labels, dtype=np.int64)[: len(points)]
            channels.append(_context(plain, mask, self.map_grid(view).points_to_row_col(points), labels))
        implicit = np.concatenate(channels)
        if self.config.mode != "explicit":
            return implicit, None
        return implicit, np.concatenate([plain * clip_map[None], clip_map[None]]).astype(np.float32)

    def target(self, view: EpisodeView) -> tuple[np.ndarray, np.ndarray]:
        """Return the ground truth on the map grid: foreground fraction per cell and validity (1 - void)."""
        size = self.config.size
        target = cv2.resize(view.sample.target.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        void = cv2.resize(view.sample.void.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        return target[None].astype(np.float32), (void < 0.5).astype(np.float32)[None]

    # ------------------------------------------------------------------ training
    def add(self, view: EpisodeView) -> int:
        """Add the view's current and mask-free samples to the replay buffer; return how many were added."""
        target, weight = self.target(view)
        added = 0
        for with_mask in (True, False):
            implicit, explicit = self.inputs(view, with_mask)
            item = SRMSample(implicit, explicit, target, weight)
            if len(self._buffer) < self.config.buffer_size:
                self._buffer.append(item)
            else:
                self._buffer[self._next_slot] = item
            self._next_slot = (self._next_slot + 1) % self.config.buffer_size
            added += 1
        return added

    def sample(self, view: EpisodeView, with_mask: bool = True) -> SRMSample:
        """One training sample of a view (see :meth:`inputs` and :meth:`target`)."""
        return SRMSample(*self.inputs(view, with_mask), *self.target(view))

    def collect(self, env: Any, indices: Sequence[int], episodes: int, clicks: int,
                seed: int = 0) -> list[SRMSample]:
        """Run short episodes on labelled images and return the SRM samples of every state visited.

        The warm-up data of :meth:`pretrain` and the held-out data of :meth:`map_metrics`. Each
        image gives its mask-free sample once, then ``episodes`` episodes of ``clicks`` clicks, each
        on a not-yet-clicked patch centre: with probability 1/2 one on the ground-truth foreground
        (the trained agent's clicks land there often), otherwise a uniformly random one. Labels and
        initial prompts are whatever ``env`` was built with (training: ``label_mode="oracle"``,
        ``init_prompts="gt_pair"``).

        Args:
            env: A :class:`~sam_gym.envs.SamPromptEnv` (unwrapped) in ``action_mode="patch"``.
            indices: Dataset indices of ``env`` to visit (they must be labelled training images,
                or held-out images used only for measuring).
            episodes: Episodes per image.
            clicks: Clicks per episode (at most the env's budget).
            seed: Seeds the ``reset`` calls and the click choice.
        """
        rng = np.random.default_rng(seed)
        samples = []
        for index in indices:
            for episode in range(episodes):
                env.reset(seed=int(rng.integers(2**31 - 1)), options={"index": int(index)})
                view = env.episode_view()
                if episode == 0:
                    samples.append(self.sample(view, with_mask=False))
                samples.append(self.sample(view))
                centres = view.grid.centers()
                on_target = np.array([view.sample.target[view.grid.pixel(x, y)] for x, y in centres], dtype=bool)
                for _ in range(min(clicks, env.max_clicks)):
                    valid = np.asarray(env.action_masks(), dtype=bool)
                    preferred = valid & on_target if rng.random() < 0.5 else valid
                    choices = np.flatnonzero(preferred if preferred.any() else valid)
                    _, _, terminated, truncated, _ = env.step(int(rng.choice(choices)))
                    samples.append(self.sample(env.episode_view()))
                    if terminated or truncated:
                        break
        return samples

    def pretrain(self, samples: Sequence[SRMSample],
                 steps: int, batch_size: int = 16, seed: int = 0) -> list[float]:
        """Supervised warm-up (not in the paper): ``steps`` Dice + BCE steps on random minibatches of ``samples``.

        Returns:
            The loss of every step.
        """
        if not samples:
            raise ValueError("Expected at least one warm-up sample, got none")
        rng = np.random.default_rng(seed)
        self.module.train()
        size = min(batch_size, len(samples))
        return [self.step([samples[i] for i in rng.choice(len(samples), size=size, replace=False)])
                for _ in range(steps)]

    @torch.no_grad()
    def map_metrics(self, samples: Sequence[SRMSample]
                    ) -> dict[str, float]:
        """Cell accuracy of the thresholded map (>= 0.5) on ``samples`` (e.g. collected on held-out images).

        Returns:
            ``accuracy`` (valid cells), ``fg_accuracy`` (cells at least half foreground), ``bg_accuracy``
            (the other valid cells) and ``balanced_accuracy`` (the mean of the last two).
        """
        self.module.eval()
        counts = np.zeros(4)  # correct fg, fg, correct bg, bg
        for implicit, explicit, target, weight in samples:
            logits = self.module(torch.from_numpy(implicit[None]).to(self.device),
                                 None if explicit is None else torch.from_numpy(explicit[None]).to(self.device))
            pred = (torch.sigmoid(logits)[0].cpu().numpy() >= 0.5)
            fg, valid = target >= 0.5, weight > 0
            counts += [(pred & fg & valid).sum(), (fg & valid).sum(), (~pred & ~fg & valid).sum(), (~fg & valid).sum()]
        fg_acc = counts[0] / max(counts[1], 1)
        bg_acc = counts[2] / max(counts[3], 1)
        return {"accuracy": float((counts[0] + counts[2]) / max(counts[1] + counts[3], 1)),
                "fg_accuracy": float(fg_acc), "bg_accuracy": float(bg_acc),
                "balanced_accuracy": float((fg_acc + bg_acc) / 2)}

    def update(self, views: Sequence[EpisodeView], q: int) -> float:
        """Add the views' samples and take ``q`` optimiser steps; return the mean loss."""
        newest = [self._slot_before(k) for k in range(sum(self.add(v) for v in views))]
        newest = newest[: self.config.batch_size]
        losses = []
        self.module.train()
        for _ in range(q):
            others = np.setdiff1d(np.arange(len(self._buffer)), newest)
            n_old = min(self.config.batch_size - len(newest), others.size)
            old = self._rng.choice(others, size=n_old, replace=False).tolist() if n_old > 0 else []
            losses.append(self.step([self._buffer[i] for i in newest + old]))
        return float(np.mean(losses)) if losses else 0.0

    def _slot_before(self, k: int) -> int:
        """Buffer index of the ``k``-th most recently added sample (0 = newest)."""
        return (self._next_slot - 1 - k) % len(self._buffer)

    def step(self, batch: Sequence[SRMSample]) -> float:
        """One Dice + BCE optimiser step on a batch of samples; return the loss."""
        implicit = torch.from_numpy(np.stack([b.implicit for b in batch])).to(self.device)
        explicit = (torch.from_numpy(np.stack([_explicit(b) for b in batch])).to(self.device)
                    if self.config.mode == "explicit" else None)
        target = torch.from_numpy(np.stack([b.target for b in batch])).to(self.device)
        weight = torch.from_numpy(np.stack([b.weight for b in batch])).to(self.device)
        loss = srm_loss(self.module(implicit, explicit), target, weight)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.item())

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def prob_map(self, view: EpisodeView, with_mask: bool = True) -> np.ndarray:
        """Return the ``(S, S)`` foreground probability map of a view (image-aligned, row 0 at the top)."""
        implicit, explicit = self.inputs(view, with_mask)
        self.module.eval()
        logits = self.module(torch.from_numpy(implicit[None]).to(self.device),
                             None if explicit is None else torch.from_numpy(explicit[None]).to(self.device))
        return torch.sigmoid(logits)[0, 0].cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> None:
        """Write ``srm.json`` (config) and ``srm.pt`` (weights and optimiser), each atomically."""
        directory = Path(directory)
        state = {"format": _FORMAT, "version": _VERSION, "module": self.module.state_dict(),
                 "optimizer": self.optimizer.state_dict()}
        atomic_write(directory / SRM_WEIGHTS, lambda fh: torch.save(state, fh))
        meta = json.dumps({"format": _FORMAT, "version": _VERSION, "config": asdict(self.config)}, indent=2)
        atomic_write_bytes(directory / SRM_CONFIG, meta.encode())

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu", clip: Any | None = None) -> Recalibrator:
        """Load a saved SRM, validating both files.

        Raises:
            ValueError: If a file is missing, unreadable or of another format or version.
        """
        directory = Path(directory)
        config_path, weights_path = directory / SRM_CONFIG, directory / SRM_WEIGHTS
        for path in (config_path, weights_path):
            if not path.is_file():
                raise ValueError(f"Expected the SRM file {path} in the run folder, got no such file")
        try:
            meta = json.loads(config_path.read_text())
            config = SRMConfig(**meta["config"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"Expected a valid {SRM_CONFIG} in {directory}, could not read it: {exc}") from exc
        if meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
            raise ValueError(f"Expected {config_path} of format {_FORMAT} v{_VERSION}, got "
                             f"{meta.get('format')} v{meta.get('version')}")
        try:
            state = torch.load(weights_path, map_location=device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a corrupt file of any kind gets one clear message
            raise ValueError(f"Expected a readable SRM checkpoint at {weights_path}, "
                             f"got {type(exc).__name__}: {exc}") from exc
        if not isinstance(state, dict) or state.get("format") != _FORMAT or state.get("version") != _VERSION:
            raise ValueError(f"Expected {weights_path} to be an {_FORMAT} v{_VERSION} checkpoint")
        srm = cls(config, device=device, clip=clip)
        try:
            srm.module.load_state_dict(state["module"])
            srm.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ValueError(f"Expected {weights_path} to match {config_path}: {exc}") from exc
        return srm


class _Labeller:
    """``label_mode`` callable: 1 where the SRM's map at the clicked point is at least 0.5."""

    #: How reports name this label source (``sam_gym.evaluation.policy_protocol``).
    name: ClassVar[str] = "srm.Labeller"

    def __init__(self, srm: Recalibrator) -> None:
        self.srm = srm

    def __call__(self, view: EpisodeView, point: tuple[float, float]) -> int:
        prob = self.srm.prob_map(view)
        return int(prob.flat[self.srm.map_grid(view).point_to_cell(point[0], point[1])] >= 0.5)

    def __repr__(self) -> str:
        return "SRM labeller"


class _InitialPrompts:
    """``init_prompts`` callable: the SRM map's highest cell (positive) and lowest cell (negative)."""

    #: How reports name this prompt source (``sam_gym.evaluation.policy_protocol``).
    name: ClassVar[str] = "srm.InitialPrompts"

    def __init__(self, srm: Recalibrator) -> None:
        self.srm = srm

    def __call__(self, view: EpisodeView) -> list[tuple[float, float, int]]:
        prob = self.srm.prob_map(view, with_mask=False)
        grid = self.srm.map_grid(view)
        return [(*grid.cell_to_point(int(cell)), label) for cell, label in ((np.argmax(prob), 1), (np.argmin(prob), 0))]

    def __repr__(self) -> str:
        return "SRM initial prompts"


def _explicit(sample: SRMSample) -> np.ndarray:
    """The explicit-branch input of a sample of an explicit SRM (which always records one)."""
    if sample.explicit is None:
        raise ValueError("Expected an explicit input in every sample of an explicit SRM, got None")
    return sample.explicit


def _context(plain: np.ndarray, mask: np.ndarray, cells: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(4, S, S)`` mask-context channels of :meth:`Recalibrator.inputs`.

    RMS distance of each cell's feature to: the mask-weighted mean inside the mask, the mean outside
    it (the inside mean when the mask covers everything), the mean at the positive prompts' cells
    and the mean at the negative prompts' cells (the inside / outside means when there is none).

    Args:
        plain: ``(C, S, S)`` embedding on the map grid.
        mask: ``(S, S)`` previous-mask probability.
        cells: ``(N, 2)`` ``(row, col)`` map cells of the prompts.
        labels: ``(N,)`` prompt labels (1 foreground, 0 background).
    """
    inside = np.clip(mask, 0.0, 1.0)[None]
    outside = 1.0 - inside
    mean_in = (plain * inside).sum(axis=(1, 2)) / max(float(inside.sum()), 1e-6)
    mean_out = ((plain * outside).sum(axis=(1, 2)) / float(outside.sum())
                if float(outside.sum()) > 1e-3 else mean_in)
    means = [mean_in, mean_out]
    for label, fallback in ((1, mean_in), (0, mean_out)):
        chosen = cells[labels == label]
        means.append(plain[:, chosen[:, 0], chosen[:, 1]].mean(axis=1) if len(chosen) else fallback)
    dist = [np.sqrt(np.mean((plain - m[:, None, None]) ** 2, axis=0)) for m in means]
    return np.stack(dist).astype(np.float32)
