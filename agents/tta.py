"""Test-time adaptation (TTA) of SAM's mask decoder during interactive segmentation.

Re-implements Schön, Prenkaj, Kasneci and Amini, "Adapting the Segment Anything Model during usage
in novel situations" (CVPR Workshops 2024), following the authors' code in ``Schorob/wseseg``
(``evaluator.py``, ``run_experiment_series_sam.py``). Only the mask decoder's parameters are
adapted, with Adam (default learning rate ``1e-6``, the paper's):

* **click level** (after every click): the sparse binary cross-entropy of the paper's eq. 2 on the
  clicked pixels, positive clicks with target 1 and negative clicks with target 0, for the
  decoder's low-resolution logits of the current prompts. The logits are *sampled at the clicks*:
  each click ``(x, y)`` (image pixels) is mapped into SAM's padded input frame with the model's
  ``ResizeLongestSide`` transform and the ``(256, 256)`` low-resolution logits are read there by
  bilinear interpolation (``grid_sample``, ``align_corners=False``: the same interpolation SAM uses
  to upsample its masks). Positive and negative clicks are averaged separately and the two means
  averaged ("balanced", as ``wseseg``'s ``balanced_ce``).
* **image level** (after an image whose target IoU was reached): balanced BCE on a pseudo-label:
  the final result mask, ``untreated`` (``U``) or ``eroded`` (``E``: foreground and background
  each eroded ``k = 5`` times with a 3x3 cross, so that a band around the mask boundary is not
  used), with the clicked pixels written over it (click mask, ``CM``). This loss is taken on the
  full-resolution logits (SAM's differentiable ``postprocess_masks``), so that no click vanishes
  by down-sampling. Two steps are made, as ``wseseg`` (image step plus its "additional" step).
* **reset** (``R``): the click-level changes are discarded after each image: the decoder's weights
  (and Adam's moments) are restored bit for bit to their state at the image's start *before* the
  image-level step, which persists (``wseseg``'s ``reset_decoder_after_each_image``);
  **continual** (``C``): click-level changes are kept from image to image.

Named configurations (:data:`CONFIGS`, the paper's table rows; ``clicker-tta:NAME``):

==========  ===========  =======  ===========================================================
name        click level  reset    image level
==========  ===========  =======  ===========================================================
``none``    no           --       no (the plain click simulator on SAM)
``R``       yes          yes      no (weights back to the originals after every image)
``C``       yes          no       no (adaptation accumulates over the image stream)
``R+E+CM``  yes          yes      eroded result mask + click mask (the paper's full model)
``R+U+CM``  yes          yes      untreated result mask + click mask
==========  ===========  =======  ===========================================================

Deviations from ``wseseg`` (all documented in ``docs/baselines-clicker.md``): the previous
low-resolution *logits* are the decoder's mask input (the env's convention; ``wseseg`` feeds the
binarised mask); the first click asks for three proposals and keeps the best-scored one (the env's
``multimask="auto"``; ``wseseg`` always uses one); the click loss samples the logits at the clicks
instead of down-sampling a click mask (which can drop single-pixel clicks); the image loss
averages the foreground and background terms over their own pixels (``wseseg`` averages masked
losses over all pixels); no replay memory; the reset snapshot is a deep copy (``wseseg`` keeps
``state_dict()`` references, which alias the live parameters, so its reset restores nothing).

Coordinate convention: points are ``(x, y)`` in original-image pixels, x right, y down, the pixel
is ``(row, col) = (floor(y), floor(x))``; masks are ``(H, W)`` indexed ``[row, col]``; labels are
1 foreground / 0 background.

This module imports torch lazily (inside :class:`DecoderAdapter`), so importing it is cheap.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from sam_gym.backends.base import Embedding, PromptableSegmenter, validate_prompts

__all__ = [
    "CONFIGS",
    "DEFAULT_LR",
    "EROSION_ITERATIONS",
    "IMAGE_STEPS",
    "DecoderAdapter",
    "TTAConfig",
    "balanced_bce",
    "click_label_map",
    "erode_cross",
    "pseudo_label",
    "tta_config",
]

#: Adam learning rate of the paper (``wseseg`` ``config.py``).
DEFAULT_LR = 1e-6
#: Erosion iterations of the ``E`` pseudo-label (paper; ``wseseg``'s series script uses 4).
EROSION_ITERATIONS = 5
#: Optimisation steps on the pseudo-label after an image (``wseseg``: the image step + the "additional" step).
IMAGE_STEPS = 2


@dataclass(frozen=True)
class TTAConfig:
    """What is adapted and when (see the module docstring for the named rows).

    Attributes:
        name: Name used in reports.
        click_level: One Adam step on the click loss after every click.
        reset: Restore the decoder (and Adam's state) to the image's start after each image,
            before the image-level step.
        result_mask: Image-level pseudo-label from the result mask: ``"eroded"``, ``"untreated"``,
            or ``None`` for no image-level step.
        click_mask: Write the clicks over the image-level pseudo-label.
    """

    name: str
    click_level: bool
    reset: bool
    result_mask: Literal["eroded", "untreated"] | None
    click_mask: bool

    @property
    def adapts(self) -> bool:
        """Whether the configuration changes the decoder at all."""
        return self.click_level or self.result_mask is not None

    @property
    def image_level(self) -> bool:
        """Whether an image-level step follows each successful image."""
        return self.result_mask is not None


#: The named configurations (rows of the paper's table, ``wseseg`` ``RUNS``).
CONFIGS: dict[str, TTAConfig] = {
    "none": TTAConfig("none", click_level=False, reset=False, result_mask=None, click_mask=False),
    "R": TTAConfig("R", click_level=True, reset=True, result_mask=None, click_mask=False),
    "C": TTAConfig("C", click_level=True, reset=False, result_mask=None, click_mask=False),
    "R+E+CM": TTAConfig("R+E+CM", click_level=True, reset=True, result_mask="eroded", click_mask=True),
    "R+U+CM": TTAConfig("R+U+CM", click_level=True, reset=True, result_mask="untreated", click_mask=True),
}


def tta_config(name: str | None) -> TTAConfig:
    """Return the named configuration (``None`` means the paper's full model ``R+E+CM``).

    Raises:
        ValueError: For an unknown name.
    """
    key = "R+E+CM" if name is None else name
    if key not in CONFIGS:
        raise ValueError(f"Expected a TTA configuration among {list(CONFIGS)}, got {name!r}")
    return CONFIGS[key]


def erode_cross(mask: np.ndarray, iterations: int = EROSION_ITERATIONS) -> np.ndarray:
    """Erode a ``(H, W)`` bool mask ``iterations`` times with the 3x3 cross (4-connected) kernel.

    Outside the image counts as background, so a mask touching the border is eroded from it too
    (``scipy.ndimage.binary_erosion`` with ``border_value=0``, as ``wseseg``). Each iteration
    removes one pixel from every side of a square: a ``s x s`` square becomes
    ``(s - 2k) x (s - 2k)``.
    """
    arr = np.asarray(mask, dtype=bool)
    if arr.ndim != 2:
        raise ValueError(f"Expected a 2-D (H, W) mask, got shape {arr.shape}")
    if not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"Expected iterations to be a positive integer, got {iterations!r}")
    return ndimage.binary_erosion(arr, structure=ndimage.generate_binary_structure(2, 1),
                                  iterations=int(iterations), border_value=0)


def click_label_map(shape: tuple[int, int], points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return an ``(H, W)`` int8 map: each click's label at its pixel ``[floor(y), floor(x)]``, -1 elsewhere.

    Points are ``(x, y)`` in image pixels; later clicks win on a shared pixel.
    """
    out = np.full(shape, -1, dtype=np.int8)
    for (x, y), label in zip(np.asarray(points).reshape(-1, 2), np.asarray(labels).reshape(-1), strict=True):
        row = min(max(int(np.floor(y)), 0), shape[0] - 1)
        col = min(max(int(np.floor(x)), 0), shape[1] - 1)
        out[row, col] = int(label)
    return out


def pseudo_label(
    result_mask: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    treatment: Literal["eroded", "untreated"],
    click_mask: bool = True,
    erosion_iterations: int = EROSION_ITERATIONS,
) -> np.ndarray:
    """Build the image-level pseudo-label from a result mask and the clicks.

    Args:
        result_mask: ``(H, W)`` bool final mask of the image, indexed ``[row, col]``.
        points: ``(N, 2)`` clicks ``(x, y)`` in image pixels.
        labels: ``(N,)`` click labels, 1 foreground / 0 background.
        treatment: ``"untreated"``: every pixel labelled by the mask; ``"eroded"``: foreground and
            background each eroded (:func:`erode_cross`), the band between them unlabelled.
        click_mask: Write each click's label at its pixel over the mask-derived label.
        erosion_iterations: ``k`` of the erosion.

    Returns:
        ``(H, W)`` int8: 1 foreground, 0 background, -1 unlabelled.
    """
    mask = np.asarray(result_mask, dtype=bool)
    if treatment == "untreated":
        dense = mask.astype(np.int8)
    elif treatment == "eroded":
        dense = np.full(mask.shape, -1, dtype=np.int8)
        dense[erode_cross(mask, erosion_iterations)] = 1
        dense[erode_cross(~mask, erosion_iterations)] = 0
    else:
        raise ValueError(f"Expected treatment 'eroded' or 'untreated', got {treatment!r}")
    if click_mask:
        clicks = click_label_map(mask.shape, points, labels)
        dense = np.where(clicks >= 0, clicks, dense).astype(np.int8)
    return dense


def balanced_bce(logits: Any, target: Any) -> Any:
    """Balanced binary cross-entropy with logits over the labelled entries (torch tensors).

    ``target`` holds 1 (foreground), 0 (background) or -1 (unlabelled, ignored). The mean BCE of the
    foreground entries and that of the background entries are averaged; when only one class is
    labelled its mean is returned.

    Raises:
        ValueError: If nothing is labelled.
    """
    import torch
    import torch.nn.functional as F

    losses = []
    for cls in (1, 0):
        sel = target == cls
        if bool(sel.any()):
            values = logits[sel]
            losses.append(F.binary_cross_entropy_with_logits(values, torch.full_like(values, float(cls))))
    if not losses:
        raise ValueError("Expected at least one labelled entry (0 or 1) in the target, got none")
    return torch.stack(losses).mean()


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
        if not getattr(backend, "is_sam", False) or not hasattr(backend, "model"):
            raise ValueError(
                f"Expected a SAM backend for test-time adaptation (it adapts SAM's mask decoder), got "
                f"{getattr(backend, 'description', type(backend).__name__)!r}; use --backend sam_vit_b or similar"
            )
        import torch

        if getattr(backend, "dtype", torch.float32) != torch.float32:
            raise ValueError(f"Expected a float32 SAM backend for test-time adaptation (steps of lr={lr} vanish "
                             f"in half precision), got dtype {backend.dtype}")
        if not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"Expected lr to be a positive number, got {lr!r}")
        self.backend: Any = backend
        self.lr = float(lr)
        self.per_class = bool(per_class)
        self.decoder = backend.model.mask_decoder
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
        encoder and the image embedding stay frozen.

        Args:
            embedding: The image's embedding (``backend.encode``).
            points: ``(N, 2)`` ``(x, y)`` clicks in image pixels.
            labels: ``(N,)`` labels, 1 foreground / 0 background.
            mask_input: Previous low-res logits (tensor or array) or ``None``.
            multimask: Three proposals or one; ``None``: three for a single point (the env's
                ``multimask="auto"``).
        """
        import torch

        backend = self.backend
        model = backend.model
        pts, lab = validate_prompts(points, labels, embedding.image_size)
        coords = backend.transform.apply_coords(pts, embedding.image_size)
        coords_t = torch.as_tensor(coords, dtype=torch.float32, device=backend.device)[None]
        labels_t = torch.as_tensor(lab, dtype=torch.int64, device=backend.device)[None]
        with torch.no_grad():
            features = torch.as_tensor(embedding.features).to(backend.device, torch.float32).clone()
            mask = None
            if mask_input is not None:
                mask = torch.as_tensor(mask_input).to(backend.device, torch.float32).reshape(
                    1, 1, *backend.low_res_shape).clone()
            sparse, dense = model.prompt_encoder(points=(coords_t, labels_t), boxes=None, masks=mask)
            image_pe = model.prompt_encoder.get_dense_pe()
            sparse, dense, image_pe = sparse.clone(), dense.clone(), image_pe.clone()
        low_res, iou = self.decoder(
            image_embeddings=features,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=len(pts) == 1 if multimask is None else bool(multimask),
        )
        return low_res[0, int(torch.argmax(iou[0]))]

    def click_loss(
        self, embedding: Embedding, points: np.ndarray, labels: np.ndarray, mask_input: Any | None,
        multimask: bool | None = None,
    ) -> Any:
        """The sparse click loss (paper eq. 2): balanced BCE of the logits sampled at the clicks.

        Each click ``(x, y)`` (image pixels) goes to the padded input frame through
        ``ResizeLongestSide`` and the low-res logits (which span that whole frame) are sampled there
        bilinearly (``grid_sample``, ``align_corners=False``). Arguments as :meth:`logits`.
        """
        import torch
        import torch.nn.functional as F

        backend = self.backend
        logits = self.logits(embedding, points, labels, mask_input, multimask)
        pts, lab = validate_prompts(points, labels, embedding.image_size)
        coords = backend.transform.apply_coords(pts, embedding.image_size)
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
        input_size = tuple(int(v) for v in embedding.extras["input_size"])
        full = backend.model.postprocess_masks(logits[None, None], input_size, embedding.image_size)[0, 0]
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
