"""Adapting SAM's mask decoder at test time, through the SAM backend's differentiable decode (torch imported lazily)."""

from __future__ import annotations

import copy
from collections.abc import Hashable
from typing import Any, cast

import numpy as np

from agents.tta.config import DEFAULT_LR
from agents.tta.losses import balanced_bce
from sam_gym.backends.base import Embedding, PromptableSegmenter

__all__ = ["DecoderAdapter", "check_adaptable"]


def check_adaptable(backend: Any) -> None:
    """Check that test-time adaptation can adapt ``backend``'s mask decoder: a float32 SAM backend.

    Raises:
        ValueError: If ``backend`` is not a SAM backend with a torch ``model``, or runs in half
            precision (small Adam steps, the paper's ``lr = 1e-6``, vanish in bf16).
    """
    if not getattr(backend, "is_sam", False) or not hasattr(backend, "model"):
        description = getattr(backend, "description", type(backend).__name__)
        raise ValueError(f"Expected a SAM backend for test-time adaptation (clicker-tta adapts SAM's mask decoder, "
                         f"so it needs a SAM backend), got {description!r}; use --backend sam_vit_b or similar")
    dtype = getattr(backend, "dtype", None)
    if dtype is not None and str(dtype) != "torch.float32":
        raise ValueError(f"Expected a float32 SAM backend for test-time adaptation (small Adam steps, the paper's "
                         f"lr is 1e-6, vanish in half precision), got dtype {dtype}; drop --half")


class DecoderAdapter:
    """Adapts a SAM backend's mask decoder in place, with exact snapshots and restoration.

    The backend's own ``decode`` (which the env calls) therefore uses the adapted weights. At
    construction the decoder's state dict is deep-copied; :meth:`restore_original` loads it back
    (in place, bit for bit) and clears Adam's state and the per-class copies.

    Args:
        backend: A SAM backend (``backend.is_sam``) in float32 exposing ``model``.
        lr: Adam learning rate.
        per_class: Keep one decoder state (weights and Adam moments) per ``class_id`` (see
            :meth:`select`); otherwise one shared state.

    Raises:
        ValueError: If the backend is not a float32 SAM backend with a torch model, or ``lr <= 0``.
    """

    def __init__(self, backend: PromptableSegmenter, lr: float = DEFAULT_LR, per_class: bool = False) -> None:
        check_adaptable(backend)
        if not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"Expected lr to be a positive number, got {lr!r}")
        import torch

        self.backend: Any = backend
        self.lr = float(lr)
        self.per_class = bool(per_class)
        self.decoder = cast(Any, backend).model.mask_decoder  # check_adaptable: a SAM backend
        self.optimizer = torch.optim.Adam(self.decoder.parameters(), lr=self.lr)
        self._original = self.snapshot()
        self._slots: dict[Hashable, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._slot_key: Hashable = None

    # ------------------------------------------------------------------ state
    def snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return deep copies of the decoder's state dict and of Adam's state."""
        weights = {k: v.detach().clone() for k, v in self.decoder.state_dict().items()}
        return weights, copy.deepcopy(self.optimizer.state_dict())

    def load(self, state: tuple[dict[str, Any], dict[str, Any]]) -> None:
        """Load a :meth:`snapshot` in place (the decoder's tensors keep their identity)."""
        weights, optim_state = state
        self.decoder.load_state_dict(weights)
        self.optimizer.load_state_dict(copy.deepcopy(optim_state))

    def select(self, key: Hashable) -> None:
        """Switch to the decoder state of class ``key`` (per-class mode only; a no-op otherwise).

        The current state is stored under the current key; an unseen key starts from the original
        weights with an empty Adam state.
        """
        if not self.per_class or key == self._slot_key:
            return
        self._slots[self._slot_key] = self.snapshot()
        self.load(self._slots.pop(key, self._original))
        self._slot_key = key

    def restore_original(self) -> None:
        """Put the original decoder weights back (bit for bit), clear Adam's and per-class states."""
        self.load(self._original)
        self._slots.clear()
        self._slot_key = None

    def is_original(self) -> bool:
        """Whether the decoder's weights equal the originals bit for bit."""
        import torch

        current = self.decoder.state_dict()
        return all(torch.equal(current[k], v) for k, v in self._original[0].items())

    # ------------------------------------------------------------------ differentiable decode
    def logits(
        self, embedding: Embedding, points: np.ndarray, labels: np.ndarray, mask_input: Any | None,
        multimask: bool | None = None,
    ) -> Any:
        """Decode with gradients on the decoder: the chosen proposal's ``(h, w)`` low-res logits.

        As the env's decode: with ``multimask`` three proposals are decoded and the best-scored one
        is kept; ``mask_input`` is the previous ``(1, h, w)`` low-res logits or ``None``. The prompt
        encoder and the image embedding stay frozen (the backend's ``decoder_logits``).

        Args:
            embedding: The image's embedding (``backend.encode``).
            points: ``(N, 2)`` ``(x, y)`` clicks in image pixels.
            labels: ``(N,)`` labels, 1 foreground / 0 background.
            mask_input: Previous low-res logits (tensor or array) or ``None``.
            multimask: Three proposals or one; ``None``: three for a single point (the env's
                ``multimask="auto"``).
        """
        import torch

        if multimask is None:
            multimask = len(np.asarray(points).reshape(-1, 2)) == 1
        low_res, iou = self.backend.decoder_logits(embedding, points, labels, mask_input, bool(multimask))
        return low_res[int(torch.argmax(iou))]

    def click_loss(
        self, embedding: Embedding, points: np.ndarray, labels: np.ndarray, mask_input: Any | None,
        multimask: bool | None = None,
    ) -> Any:
        """The sparse click loss (paper eq. 2): balanced BCE of the logits sampled at the clicks.

        Each click ``(x, y)`` (image pixels) goes to the padded input frame (the backend's
        ``frame_prompts``: ``ResizeLongestSide``) and the low-res logits (which span that whole
        frame) are sampled there bilinearly (``grid_sample``, ``align_corners=False``). Arguments as
        :meth:`logits`.
        """
        import torch
        import torch.nn.functional as F

        backend = self.backend
        logits = self.logits(embedding, points, labels, mask_input, multimask)
        coords, lab = backend.frame_prompts(embedding, points, labels)
        grid = torch.as_tensor(2.0 * coords / backend.img_size - 1.0, dtype=torch.float32, device=backend.device)
        values = F.grid_sample(logits[None, None], grid[None, None], mode="bilinear", align_corners=False)
        target = torch.as_tensor(lab, dtype=torch.float32, device=backend.device)
        return balanced_bce(values.reshape(-1), target)

    def image_loss(
        self, embedding: Embedding, points: np.ndarray, labels: np.ndarray, mask_input: Any | None,
        target: np.ndarray, multimask: bool | None = None,
    ) -> Any:
        """Balanced BCE of the full-resolution logits against an ``(H, W)`` pseudo-label (1/0/-1).

        Arguments as :meth:`logits`; ``target`` is indexed ``[row, col]`` like the image.
        """
        import torch

        backend = self.backend
        logits = self.logits(embedding, points, labels, mask_input, multimask)
        full = backend.full_logits(embedding, logits[None])[0]
        return balanced_bce(full, torch.as_tensor(np.asarray(target), device=backend.device))

    def step(self, loss_fn: Any) -> float:
        """One Adam step on the decoder for the loss returned by ``loss_fn()``; returns the loss value.

        Gradients are switched on for the decoder's parameters only during the step.
        """
        params = list(self.decoder.parameters())
        try:
            for p in params:
                p.requires_grad_(True)
            self.optimizer.zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward()
            self.optimizer.step()
        finally:
            self.optimizer.zero_grad(set_to_none=True)
            for p in params:
                p.requires_grad_(False)
        return float(loss.detach())
