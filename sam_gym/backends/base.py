"""The promptable-segmenter interface that every backend implements.

This module owns the backend contract. Everything the environment, the cache and the policies
need from a segmenter goes through :class:`PromptableSegmenter`:

* ``encode(image)`` runs the (expensive) image encoder once per image and returns an
  :class:`Embedding`;
* ``decode(embedding, points, labels, mask_input, multimask)`` runs the (cheap) prompt decoder
  and returns a :class:`Prediction`; ``decode_batch`` decodes one prompt set per image for a
  vector env (by default a loop over ``decode``; SAM overrides it with one batched decoder call);
* ``observe(embedding, low_res_logits, grid_hw, mask_hw)`` builds the AlignSAM state (image
  embedding times the previous mask, paper eq. 4) without leaving the backend's device;
  ``observe_batch`` builds it for a batch (by default a loop over ``observe``; SAM pools the whole
  batch in one operation);
* ``best_mask_ious(predictions, references)`` scores the chosen masks against the ground truth at
  full resolution (the env's ``info["iou"]``; on the host by default, batched on the device for SAM
  on CUDA).

Coordinate conventions (the same everywhere in ``sam_gym``):

* images are ``uint8`` arrays of shape ``(H, W, 3)`` in RGB order;
* points are ``(x, y)`` pairs in original-image pixels, ``x`` to the right, ``y`` down; the pixel
  that a point falls on is ``(row, col) = (floor(y), floor(x))``;
* masks are ``(H, W)`` arrays indexed ``[row, col]``;
* point labels are ``1`` (foreground, positive) and ``0`` (background, negative).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam_gym.backends.mask_iou import MaskReference, host_ious, host_reference

__all__ = ["Embedding", "Prediction", "PromptableSegmenter", "check_batch", "check_observe_batch", "validate_image",
           "validate_prompts"]


@dataclass(frozen=True)
class Embedding:
    """An image encoded once by a backend.

    Attributes:
        features: Backend-native feature map: an ``np.ndarray`` of shape ``(C, h, w)`` for the
            classical backend, a ``torch.Tensor`` of shape ``(1, C, h, w)`` on the backend's device
            for SAM backends.
        image_size: Original image size ``(H, W)``.
        extras: Backend-specific extra arrays needed by ``decode`` (e.g. the classical backend's
            working-resolution image). Values must be ``np.ndarray`` so that the cache can store them.
    """

    features: Any
    image_size: tuple[int, int]
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)

    def arrays(self) -> tuple[Any, ...]:
        """Every array or tensor the embedding holds (what its memory is): ``features`` and the extras.

        A subclass that holds more (SAM 2's high-resolution feature levels) adds them.
        """
        return (self.features, *self.extras.values())


class Prediction:
    """Masks proposed by one ``decode`` call.

    Full-resolution masks are produced lazily (and memoised) so that a caller that only needs the
    low-resolution logits or the scores pays nothing at full resolution. ``full_mask`` should be a
    picklable callable (a module-level class, not a closure), so that an env holding a prediction
    can be pickled.

    Attributes:
        scores: ``(K,)`` float32 predicted quality (IoU) of each proposal (fixed at construction:
            :attr:`best` is computed once).
        low_res_logits: ``(K, h, w)`` backend-native logits, fed back as ``mask_input``.
    """

    def __init__(
        self,
        scores: np.ndarray,
        low_res_logits: Any,
        full_mask: Callable[[int], np.ndarray],
    ) -> None:
        self.scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        self.low_res_logits = low_res_logits
        self._full_mask = full_mask
        self._masks: dict[int, np.ndarray] = {}
        self._best: int | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def best(self) -> int:
        """Index of the proposal with the highest predicted quality (the first of equals; memoised)."""
        if self._best is None:
            self._best = int(np.argmax(self.scores))
        return self._best

    def mask(self, k: int | None = None) -> np.ndarray:
        """Return proposal ``k`` (default: ``best``) as an ``(H, W)`` bool mask in image pixels."""
        k = self.best if k is None else int(k)
        if not 0 <= k < len(self):
            raise ValueError(f"Expected a proposal index in [0, {len(self)}), got {k}")
        if k not in self._masks:
            self._masks[k] = np.asarray(self._full_mask(k), dtype=bool)
        return self._masks[k]

    def logits(self, k: int | None = None) -> Any:
        """Return proposal ``k``'s low-resolution logits with a leading axis, ``(1, h, w)``."""
        k = self.best if k is None else int(k)
        return self.low_res_logits[k : k + 1]

    @property
    def full_mask(self) -> Callable[[int], np.ndarray]:
        """The callable that computes proposal ``k``'s full-resolution mask (what :meth:`mask` memoises)."""
        return self._full_mask


class PromptableSegmenter(abc.ABC):
    """A segmenter that encodes an image once and decodes many point prompts.

    Subclasses set the class attributes and implement the abstract methods. Instances must be
    cheap to share between environments (one backend, many envs).

    Attributes:
        name: Registry name, e.g. ``"classical"`` or ``"sam_vit_b"``.
        model_id: Identity of the weights and preprocessing; part of every cache key. Two backends
            with the same ``model_id`` must produce the same embedding for the same image.
        description: Human-readable label used wherever results are reported, e.g.
            ``"classical (weight-free random walker, not SAM)"``.
        is_sam: Whether this is a real Segment Anything model (with whatever weights).
        embedding_shape: ``(C, h, w)`` of the feature map in ``Embedding.features``.
        low_res_shape: ``(h, w)`` of ``Prediction.low_res_logits``.
    """

    name: str = "abstract"
    model_id: str = "abstract"
    description: str = "abstract backend"
    is_sam: bool = False
    embedding_shape: tuple[int, int, int] = (0, 0, 0)
    low_res_shape: tuple[int, int] = (256, 256)

    @abc.abstractmethod
    def encode(self, image: np.ndarray) -> Embedding:
        """Encode an image.

        Args:
            image: ``(H, W, 3)`` uint8 RGB image.

        Returns:
            The embedding; ``image_size == (H, W)``.
        """

    @abc.abstractmethod
    def decode(
        self,
        embedding: Embedding,
        points: np.ndarray,
        labels: np.ndarray,
        mask_input: Any | None = None,
        multimask: bool = False,
    ) -> Prediction:
        """Decode point prompts into masks.

        Args:
            embedding: The image's embedding from :meth:`encode`.
            points: ``(N, 2)`` float array of ``(x, y)`` points in original-image pixels.
            labels: ``(N,)`` int array, 1 foreground / 0 background.
            mask_input: ``(1, h, w)`` low-resolution logits of a previous prediction
                (``Prediction.logits()``), or ``None``.
            multimask: Return 3 proposals instead of 1 (useful for a single ambiguous click).

        Returns:
            The proposals: 3 when ``multimask`` else 1.
        """

    def decode_batch(
        self,
        embeddings: Sequence[Embedding],
        points: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        mask_inputs: Sequence[Any | None] | None = None,
        multimask: bool = False,
    ) -> list[Prediction]:
        """Decode one prompt set per embedding (the vector env's one call per step).

        The default loops over :meth:`decode`, so every backend supports the vector env; backends
        that can batch their decoder (SAM) override it. Item ``i`` equals ``decode(embeddings[i],
        points[i], labels[i], mask_inputs[i], multimask)``.

        Args:
            embeddings: ``B`` embeddings from :meth:`encode`.
            points: ``B`` arrays of ``(N_i, 2)`` ``(x, y)`` points in original-image pixels.
            labels: ``B`` arrays of ``(N_i,)`` labels, 1 foreground / 0 background.
            mask_inputs: ``None`` or ``B`` entries, each ``None`` or ``(1, h, w)`` logits.
            multimask: Return 3 proposals per item instead of 1.

        Returns:
            ``B`` predictions, in order.

        Raises:
            ValueError: If the sequences are empty or of different lengths.
        """
        masks_in = check_batch(embeddings, points, labels, mask_inputs)
        items = zip(embeddings, points, labels, masks_in, strict=True)
        return [self.decode(e, p, lab, m, multimask) for e, p, lab, m in items]

    @abc.abstractmethod
    def observe(
        self,
        embedding: Embedding,
        low_res_logits: Any | None,
        grid_hw: tuple[int, int] | None,
        mask_hw: tuple[int, int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Build the AlignSAM state for an observation.

        Args:
            embedding: The image's embedding.
            low_res_logits: ``(1, h, w)`` logits of the previous mask, or ``None`` for "no mask
                yet", in which case the mask is taken as all ones (state = plain embedding).
            grid_hw: ``(rows, cols)`` to average-pool the state to, cell ``(r, c)`` covering the same
                image patch as action cell ``(r, c)``; ``None`` keeps the full ``(h, w)`` map.
            mask_hw: Size ``(h, w)`` of the returned previous-mask probability map.

        Returns:
            ``state``: float32 ``(C, rows, cols)`` (or ``(C, h, w)``), features times mask
            probability; ``mask``: float32 ``mask_hw`` probabilities in ``[0, 1]`` over the image
            frame (row 0 is the top of the image).
        """

    def observe_batch(
        self,
        embeddings: Sequence[Embedding],
        low_res_logits: Sequence[Any | None],
        grid_hw: tuple[int, int] | None,
        mask_hw: tuple[int, int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`observe` of ``B`` items at once (the batched env's one call per step).

        The default loops over :meth:`observe`, so every backend supports the batched env; a
        backend that can pool all items in one operation on its device (SAM) overrides it. Item
        ``i`` equals ``observe(embeddings[i], low_res_logits[i], grid_hw, mask_hw)``.

        Returns:
            float32 ``states`` ``(B, C, rows, cols)`` (or ``(B, C, h, w)``) and ``masks`` ``(B, *mask_hw)``.
            They may be read-only or views of the backend's memory (the null backend's are): the
            caller copies what it keeps.

        Raises:
            ValueError: If the sequences are empty or of different lengths.
        """
        check_observe_batch(embeddings, low_res_logits)
        pairs = [self.observe(e, m, grid_hw, mask_hw) for e, m in zip(embeddings, low_res_logits, strict=True)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def iou_reference(self, target: np.ndarray, void: np.ndarray) -> MaskReference:
        """An episode's ground truth in the form :meth:`best_mask_ious` reads (built once per episode).

        The default keeps host arrays; a backend that counts on its device (SAM) moves them there.

        Args:
            target: ``(H, W)`` bool ground truth, indexed ``[row, col]``.
            void: ``(H, W)`` bool pixels to ignore.
        """
        return host_reference(target, void)

    def best_mask_ious(self, predictions: Sequence[Prediction], references: Sequence[MaskReference]) -> np.ndarray:
        """``(B,)`` float64 IoU of each prediction's best proposal at full resolution with its reference, void excluded.

        Item ``k`` equals :func:`sam_gym.metrics.iou` ``(predictions[k].mask(), target, void)`` of the
        masks that ``references[k]`` was built from (:mod:`sam_gym.backends.mask_iou`). The default
        reads each ``mask()`` on the host; on CUDA, SAM and SAM 2 upsample and count a batch on the device.
        """
        return host_ious(predictions, references)

    def image_region(self, embedding: Embedding, shape: tuple[int, int]) -> tuple[int, int]:
        """The top-left ``(rows, cols)`` of an ``(h, w)`` map of this backend that cover the image.

        Maps of a backend that stretches the image over its frame (the default) cover it whole:
        ``(h, w)``. A backend that pads the image into its frame (SAM) returns the unpadded corner.
        """
        return int(shape[0]), int(shape[1])

    def embedding_to_arrays(self, embedding: Embedding) -> dict[str, np.ndarray]:
        """Convert an embedding to host numpy arrays for the on-disk cache."""
        out = {"features": np.asarray(embedding.features), "image_size": np.asarray(embedding.image_size)}
        out.update({f"extra_{k}": np.asarray(v) for k, v in embedding.extras.items()})
        return out

    def embedding_from_arrays(self, arrays: Mapping[str, np.ndarray]) -> Embedding:
        """Inverse of :meth:`embedding_to_arrays` (moves data to the backend's device)."""
        extras = {k[len("extra_") :]: v for k, v in arrays.items() if k.startswith("extra_")}
        h, w = (int(v) for v in arrays["image_size"])
        return Embedding(features=np.asarray(arrays["features"]), image_size=(h, w), extras=extras)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model_id={self.model_id!r})"


def check_batch(
    embeddings: Sequence[Embedding],
    points: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    mask_inputs: Sequence[Any | None] | None,
) -> list[Any | None]:
    """Check the arguments of :meth:`PromptableSegmenter.decode_batch`; return ``mask_inputs`` as a list.

    Raises:
        ValueError: If the sequences are empty or of different lengths.
    """
    n = len(embeddings)
    masks_in = [None] * n if mask_inputs is None else list(mask_inputs)
    if n == 0 or len(points) != n or len(labels) != n or len(masks_in) != n:
        raise ValueError(
            f"Expected non-empty embeddings, points, labels (and mask_inputs) of one length, got "
            f"{n}, {len(points)}, {len(labels)}, {len(masks_in)}"
        )
    return masks_in


def check_observe_batch(embeddings: Sequence[Embedding], low_res_logits: Sequence[Any | None]) -> None:
    """Check the arguments of :meth:`PromptableSegmenter.observe_batch`.

    Raises:
        ValueError: If the sequences are empty or of different lengths.
    """
    if len(embeddings) == 0 or len(low_res_logits) != len(embeddings):
        raise ValueError(f"Expected non-empty embeddings and low_res_logits of one length, got "
                         f"{len(embeddings)} and {len(low_res_logits)}")


def validate_image(image: Any) -> np.ndarray:
    """Check that ``image`` is an ``(H, W, 3)`` uint8 RGB array and return it.

    Raises:
        ValueError: With what was expected and what was received.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"Expected image to be a numpy array of shape (H, W, 3), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected image to have shape (H, W, 3) (RGB), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"Expected image dtype uint8, got {image.dtype}; convert with (img * 255).astype(np.uint8)")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ValueError(f"Expected an image of at least 8x8 pixels, got {image.shape[:2]}")
    return image


def validate_prompts(
    points: Any, labels: Any, image_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Check point prompts and return them as ``(N, 2)`` float32 and ``(N,)`` int64 arrays.

    Args:
        points: ``(N, 2)`` ``(x, y)`` points in original-image pixels.
        labels: ``(N,)`` labels, 1 foreground / 0 background.
        image_size: ``(H, W)`` of the image; points must lie in ``[0, W] x [0, H]``.

    Raises:
        ValueError: If shapes, values or ranges are wrong.
    """
    pts = np.asarray(points, dtype=np.float32)
    lab = np.asarray(labels)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
        raise ValueError(f"Expected points of shape (N, 2) with N >= 1, (x, y) pairs, got shape {pts.shape}")
    if lab.shape != (pts.shape[0],):
        raise ValueError(f"Expected labels of shape ({pts.shape[0]},) to match the points, got {lab.shape}")
    if not np.isin(lab, (0, 1)).all():
        raise ValueError(f"Expected labels in {{0, 1}} (0 background, 1 foreground), got {np.unique(lab).tolist()}")
    h, w = image_size
    if not np.isfinite(pts).all() or (pts[:, 0] < 0).any() or (pts[:, 0] > w).any() or (pts[:, 1] < 0).any() or (
        pts[:, 1] > h
    ).any():
        raise ValueError(
            f"Expected (x, y) points inside the image, x in [0, {w}] and y in [0, {h}], got {pts.tolist()}"
        )
    return pts, lab.astype(np.int64)
