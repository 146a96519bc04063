"""A zero-cost stand-in for SAM that measures the env alone: **not a segmenter**.

:class:`NullBackend` has SAM's shapes (a ``(256, 64, 64)`` embedding, ``(256, 256)`` low-resolution
logits, 1 or 3 proposals) but computes nothing: every call returns the same precomputed arrays.
An env (or a vector env) driven by it spends its time only in its own machinery, the part that
``sam-gym bench --backend null`` reports as ``overhead_us_per_substep``. Its masks are always empty
and its observations constant; never report a segmentation figure from it (its ``description``
says so wherever results are reported, and ``is_sam`` is ``False``).

It does not validate prompts (a real backend does; the env validates actions before it decodes),
so that none of its time goes into checks.

By default its outputs are numpy arrays and nothing imports torch. With ``device=`` they are torch
tensors on that device, like :class:`~sam_gym.backends.sam.SamBackend`'s (features ``(1, C, h, w)``,
logits ``(K, h, w)``), so that an env's torch path on a GPU is what gets measured.

Coordinate conventions are those of :mod:`sam_gym.backends.base` (points ``(x, y)``, masks
``(H, W)`` indexed ``[row, col]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam_gym.backends.base import Embedding, Prediction, PromptableSegmenter, check_observe_batch, validate_image

__all__ = ["NULL_LOGIT", "NullBackend"]

#: The value of every low-resolution logit (negative: every mask is empty).
NULL_LOGIT = -4.0


@dataclass(frozen=True)
class _EmptyMask:
    """Proposal ``k``'s full-resolution mask: all ``False`` (a picklable ``Prediction.full_mask``)."""

    image_size: tuple[int, int]

    def __call__(self, k: int) -> np.ndarray:
        return _read_only(np.zeros(self.image_size, dtype=bool))


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


class NullBackend(PromptableSegmenter):
    """Fixed embeddings, logits and observations of SAM's shapes, at no cost (a measuring stub).

    Every embedding is zero, every logit is :data:`NULL_LOGIT` (so every mask is empty and the mask
    probability is ``sigmoid(NULL_LOGIT)``), every predicted IoU is 0. The arrays are built once and
    shared read-only by all calls.

    Args:
        device: ``None`` (default): numpy outputs, no torch. A torch device (``"cpu"``, ``"cuda"``):
            features and logits are float32 torch tensors on it, as a SAM backend's are.
        embedding_shape: ``(C, h, w)`` of the embedding (SAM's ``(256, 64, 64)``).
        low_res_shape: ``(h, w)`` of the logits (SAM's ``(256, 256)``).

    Example:
        >>> import numpy as np
        >>> backend = NullBackend()
        >>> emb = backend.encode(np.zeros((32, 48, 3), np.uint8))
        >>> pred = backend.decode(emb, np.array([[3.0, 4.0]]), np.array([1]), multimask=True)
        >>> len(pred), pred.low_res_logits.shape, pred.mask().shape, bool(pred.mask().any())
        (3, (3, 256, 256), (32, 48), False)
    """

    name = "null"
    description = "null (measuring stub: fixed outputs at no cost, NOT a segmenter, not SAM)"
    is_sam = False

    def __init__(
        self,
        device: str | None = None,
        embedding_shape: tuple[int, int, int] = (256, 64, 64),
        low_res_shape: tuple[int, int] = (256, 256),
    ) -> None:
        shapes = (*embedding_shape, *low_res_shape)
        if len(embedding_shape) != 3 or len(low_res_shape) != 2 or not all(
            isinstance(v, int) and v > 0 for v in shapes
        ):
            raise ValueError(f"Expected embedding_shape (C, h, w) and low_res_shape (h, w) of positive ints, got "
                             f"{embedding_shape!r} and {low_res_shape!r}")
        self.embedding_shape = (int(embedding_shape[0]), int(embedding_shape[1]), int(embedding_shape[2]))
        self.low_res_shape = (int(low_res_shape[0]), int(low_res_shape[1]))
        self.model_id = f"null-{'x'.join(str(v) for v in shapes)}"
        self._features: Any = _read_only(np.zeros(self.embedding_shape, dtype=np.float32))
        self._logits: Any = _read_only(np.full((3, *self.low_res_shape), NULL_LOGIT, dtype=np.float32))
        self.device: Any = None
        if device is not None:
            import torch

            from sam_gym.backends.sam_build import select_device

            self.device = select_device(device)
            self._features = torch.zeros((1, *self.embedding_shape), dtype=torch.float32, device=self.device)
            self._logits = torch.full((3, *self.low_res_shape), NULL_LOGIT, dtype=torch.float32, device=self.device)
        self._scores = {k: _read_only(np.zeros(k, dtype=np.float32)) for k in (1, 3)}
        self._observations: dict[tuple[Any, Any], tuple[np.ndarray, np.ndarray]] = {}
        #: One shared prediction per (proposals, image size): every call's output is the same.
        self._predictions: dict[tuple[int, tuple[int, int]], Prediction] = {}

    def encode(self, image: np.ndarray) -> Embedding:
        """Return the shared zero embedding with the image's size (only the image's shape is read)."""
        image = validate_image(image)
        return Embedding(features=self._features, image_size=(int(image.shape[0]), int(image.shape[1])))

    def decode(
        self,
        embedding: Embedding,
        points: np.ndarray,
        labels: np.ndarray,
        mask_input: Any | None = None,
        multimask: bool = False,
    ) -> Prediction:
        """Return 3 (``multimask``) or 1 fixed proposals: logits :data:`NULL_LOGIT`, IoU 0, empty masks.

        The prompts and ``mask_input`` are not read (nor validated). Calls for images of one size
        return the same (shared, read-only) prediction.
        """
        return self._prediction(3 if multimask else 1, embedding.image_size)

    def decode_batch(
        self,
        embeddings: Sequence[Embedding],
        points: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        mask_inputs: Sequence[Any | None] | None = None,
        multimask: bool = False,
    ) -> list[Prediction]:
        """:meth:`decode` of every item, with no per-item work but a dictionary look-up (nothing is validated)."""
        k = 3 if multimask else 1
        return [self._prediction(k, e.image_size) for e in embeddings]

    def observe(
        self,
        embedding: Embedding,
        low_res_logits: Any | None,
        grid_hw: tuple[int, int] | None,
        mask_hw: tuple[int, int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return a fixed zero state and a fixed mask-probability map (built once per shape, read-only).

        Returns:
            ``state``: float32 zeros of ``(C, rows, cols)`` (or ``(C, h, w)`` when ``grid_hw`` is
            ``None``); ``mask``: float32 ``mask_hw`` filled with 1 when ``low_res_logits`` is
            ``None`` (no mask yet), else with ``sigmoid(NULL_LOGIT)``.
        """
        state, masks = self._observation(grid_hw, mask_hw)
        return state, masks[0 if low_res_logits is None else 1]

    def observe_batch(
        self,
        embeddings: Sequence[Embedding],
        low_res_logits: Sequence[Any | None],
        grid_hw: tuple[int, int] | None,
        mask_hw: tuple[int, int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`observe` of ``B`` items as read-only broadcast views of the fixed arrays (no copy).

        The masks are a view too when every item has logits, or none has; else one ``(B, *mask_hw)``
        array picked from the two fixed maps.

        Raises:
            ValueError: If the sequences are empty or of different lengths.
        """
        check_observe_batch(embeddings, low_res_logits)
        state, masks = self._observation(grid_hw, mask_hw)
        b = len(embeddings)
        given = np.fromiter((m is not None for m in low_res_logits), dtype=bool, count=b)
        if given.all() or not given.any():
            batch_masks = np.broadcast_to(masks[int(given[0])], (b, *masks.shape[1:]))
        else:
            batch_masks = masks[given.astype(np.intp)]
        return np.broadcast_to(state, (b, *state.shape)), batch_masks

    def _observation(self, grid_hw: tuple[int, int] | None, mask_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The fixed state and the ``(2, *mask_hw)`` masks (no mask yet: 1; a mask: ``sigmoid(NULL_LOGIT)``)."""
        key = (None if grid_hw is None else tuple(grid_hw), tuple(mask_hw))
        if key not in self._observations:
            state_hw = self.embedding_shape[1:] if grid_hw is None else tuple(int(v) for v in grid_hw)
            state = _read_only(np.zeros((self.embedding_shape[0], *state_hw), dtype=np.float32))
            masks = np.ones((2, *(int(v) for v in mask_hw)), dtype=np.float32)
            masks[1] = 1.0 / (1.0 + np.exp(-NULL_LOGIT))
            self._observations[key] = (state, _read_only(masks))
        return self._observations[key]

    def _prediction(self, k: int, image_size: tuple[int, int]) -> Prediction:
        key = (k, image_size)
        prediction = self._predictions.get(key)
        if prediction is None:
            prediction = self._predictions[key] = Prediction(
                scores=self._scores[k], low_res_logits=self._logits[:k], full_mask=_EmptyMask(image_size))
        return prediction

    def embedding_to_arrays(self, embedding: Embedding) -> dict[str, np.ndarray]:
        """Host arrays for the on-disk cache: the image size only (the features are always zero)."""
        return {"image_size": np.asarray(embedding.image_size, dtype=np.int64)}

    def embedding_from_arrays(self, arrays: Mapping[str, np.ndarray]) -> Embedding:
        """Inverse of :meth:`embedding_to_arrays`: the shared features (on the device) with the stored size."""
        h, w = (int(v) for v in arrays["image_size"])
        return Embedding(features=self._features, image_size=(h, w))
