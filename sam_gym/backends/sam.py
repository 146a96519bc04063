"""Segment Anything (ViT-H/L/B) and MobileSAM (ViT-T) backends.

:class:`SamBackend` wraps a ``Sam`` model of the ``segment_anything`` or ``mobile_sam`` package and
drives its three parts directly (no ``SamPredictor`` state), so that one backend serves many
environments:

* ``encode``: ``ResizeLongestSide`` to the encoder's input size, normalise, pad to a square
  (bottom/right), image encoder. The padded square is the "padded frame"; the resized image
  occupies its top-left ``input_size`` corner.
* ``decode``: prompt encoder + mask decoder; full-resolution masks only when asked for.
* ``observe`` / ``observe_batch``: the AlignSAM state, computed on the backend's device (a batch in
  one pooling operation per image size and one host copy).

Coordinate conventions are those of :mod:`sam_gym.backends.base`: points are ``(x, y)`` in
original-image pixels (``x`` right, ``y`` down; the pixel is ``(floor(y), floor(x))``), masks
``(H, W)`` indexed ``[row, col]``, labels ``1`` foreground / ``0`` background.

This module imports torch at import time; the registry imports it only when a SAM backend is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from sam_gym.backends.base import (
    Embedding,
    Prediction,
    PromptableSegmenter,
    check_batch,
    check_observe_batch,
    validate_image,
    validate_prompts,
)
from sam_gym.backends.mask_iou import DeviceFullMask, DeviceMaskIoU
from sam_gym.backends.sam_build import PACKAGES, build_sam_model, import_sam_module, select_device

try:
    import torch
    import torch.nn.functional as F
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError('The SAM backends need torch: pip install "sam-gym[sam]"') from exc

__all__ = ["CPU_DECODER_BATCH", "SamBackend", "check_hw", "logits_tensor", "observe_batch_inputs", "observe_pooled",
           "resize_probabilities"]

_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16"}

#: Default ``decoder_batch`` on the CPU (prompts per mask-decoder call in ``decode_batch``).
CPU_DECODER_BATCH = 2


def resize_probabilities(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of a ``(B, C, h, w)`` map of values in ``[0, 1]``, clamped to it."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0.0, 1.0)


def logits_tensor(logits: Any, low_res_shape: tuple[int, int], device: Any, what: str) -> torch.Tensor:
    """``(1, low_h, low_w)`` logits (tensor or numpy) -> ``(1, 1, low_h, low_w)`` float32 on ``device``.

    Raises:
        ValueError: If the shape is not ``(1, *low_res_shape)`` (``what`` names the argument).
    """
    if not isinstance(logits, torch.Tensor):
        logits = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    if tuple(logits.shape) != (1, *low_res_shape):
        raise ValueError(f"Expected {what} of shape {(1, *low_res_shape)} (Prediction.logits()), "
                         f"got {tuple(logits.shape)}")
    return logits.to(device, torch.float32)[None]


def check_hw(value: Any, what: str) -> tuple[int, int]:
    """``value`` as a pair ``(rows, cols)`` of positive ints, or a ``ValueError`` naming ``what``."""
    message = f"Expected {what} to be a pair (rows, cols) of positive ints, got {value!r}"
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if h <= 0 or w <= 0:
        raise ValueError(message)
    return h, w


def observe_batch_inputs(
    embeddings: Sequence[Embedding],
    low_res_logits: Sequence[Any | None],
    grid_hw: tuple[int, int] | None,
    mask_hw: tuple[int, int],
    low_res_shape: tuple[int, int],
    device: Any,
) -> tuple[list[torch.Tensor | None], tuple[int, int] | None, tuple[int, int]]:
    """Check an ``observe_batch`` call's arguments; return the logits as device tensors, the grid and the mask size.

    Shared by the SAM and SAM 2 backends' ``observe_batch`` (their :func:`observe_pooled` inputs).

    Raises:
        ValueError: If the sequences are empty or of different lengths, or a size or logits map is invalid.
    """
    check_observe_batch(embeddings, low_res_logits)
    mask_size = check_hw(mask_hw, "mask_hw")
    grid = None if grid_hw is None else check_hw(grid_hw, "grid_hw")
    logits = [None if m is None else logits_tensor(m, low_res_shape, device, f"low_res_logits[{i}]")
              for i, m in enumerate(low_res_logits)]
    return logits, grid, mask_size


def observe_pooled(
    features: Sequence[torch.Tensor],
    logits: Sequence[torch.Tensor | None],
    regions: Sequence[tuple[tuple[int, int], tuple[int, int]]],
    grid: tuple[int, int] | None,
    mask_hw: tuple[int, int],
    stack: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The AlignSAM states and mask maps of ``B`` items, batched on the device, with one host copy.

    Items whose maps share their valid regions (images of one size) are computed together: one
    sigmoid and one resize of the probabilities per target size for all of them and, on CUDA, one
    multiply and one pool over the stacked embeddings. On the CPU the embeddings are not stacked
    (that copy of 4 MiB per SAM embedding costs more than the kernel calls it saves): each item's
    product and pool is written into the batch's buffer. Either way each item goes through the same
    operations as alone, so it equals its own computation exactly.

    Args:
        features: Per item ``(1, C, h, w)`` embeddings over the frame, on the device (any float dtype).
        logits: Per item ``(1, 1, low_h, low_w)`` float32 logits on the device, or ``None`` (no mask yet:
            probability 1, the state is the plain embedding, the mask map is 1).
        regions: Per item, the valid ``(rows, cols)`` of the embedding and of the logits
            (:meth:`PromptableSegmenter.image_region`), the top-left corner that covers the image.
        grid: ``(rows, cols)`` to average-pool the valid region to, or ``None``: the full frame map,
            times the probability over the valid region and 0 over the rest.
        mask_hw: ``(rows, cols)`` of the probability map over the image.
        stack: Stack the embeddings (``None``: on CUDA only).

    Returns:
        float32 host ``states`` ``(B, C, *grid)`` (or ``(B, C, h, w)``) and ``masks`` ``(B, *mask_hw)``,
        views of one host array.
    """
    b = len(features)
    _, c, emb_h, emb_w = features[0].shape
    device = features[0].device
    if stack is None:
        stack = device.type == "cuda"
    state_hw = (emb_h, emb_w) if grid is None else grid
    n_state, n_mask = c * state_hw[0] * state_hw[1], mask_hw[0] * mask_hw[1]
    out = torch.empty((b, n_state + n_mask), dtype=torch.float32, device=device)
    states = out[:, :n_state].view(b, c, *state_hw)
    masks = out[:, n_state:].view(b, *mask_hw)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, (region, item_logits) in enumerate(zip(regions, logits, strict=True)):
        groups.setdefault((*region, item_logits is None), []).append(i)
    for (valid, valid_low, no_mask), idx in groups.items():
        index = torch.tensor(idx, dtype=torch.long, device=device)
        if no_mask:
            prob_emb = None
            masks[index] = 1.0
        else:
            stacked = torch.cat([logits[i] for i in idx])  # type: ignore[misc]
            prob = torch.sigmoid(stacked[:, :, : valid_low[0], : valid_low[1]])
            masks[index] = resize_probabilities(prob, mask_hw)[:, 0]
            prob_emb = resize_probabilities(prob, valid)
        if stack:
            states[index] = _state(torch.cat([features[i] for i in idx]).float(), prob_emb, valid, grid)
        else:
            for k, i in enumerate(idx):
                weight = None if prob_emb is None else prob_emb[k : k + 1]
                states[i : i + 1] = _state(features[i].float(), weight, valid, grid)
    host = out.to("cpu").numpy()
    return host[:, :n_state].reshape(b, c, *state_hw), host[:, n_state:].reshape(b, *mask_hw)


def _state(features: torch.Tensor, prob_emb: torch.Tensor | None, valid: tuple[int, int],
           grid: tuple[int, int] | None) -> torch.Tensor:
    """Eq. 4 for ``(G, C, h, w)`` float32 ``features``: times ``(G, 1, *valid)`` probabilities, pooled to ``grid``."""
    if grid is not None:
        region = features[:, :, : valid[0], : valid[1]]
        if prob_emb is not None:
            region = region * prob_emb
        return F.adaptive_avg_pool2d(region, grid)
    if prob_emb is None:
        return features
    frame = torch.zeros((features.shape[0], 1, *features.shape[2:]), dtype=torch.float32, device=features.device)
    frame[:, :, : valid[0], : valid[1]] = prob_emb
    return features * frame


class SamBackend(DeviceMaskIoU, PromptableSegmenter):
    """A Segment Anything / MobileSAM model as a :class:`PromptableSegmenter`.

    Shapes are read from the model (a full-size model has a 1024-pixel input, a ``(256, 64, 64)``
    embedding and ``(256, 256)`` low-resolution logits; one embedding cell covers a 16x16 patch of the
    padded frame, one low-resolution logit a 4x4 patch).

    Attributes:
        model: The wrapped ``Sam`` module (eval mode, gradients off) on ``device``.
        model_type: ``"vit_h"``, ``"vit_l"``, ``"vit_b"`` or ``"vit_t"``.
        device: The torch device everything runs on.
        dtype: Dtype of the image encoder and mask decoder, and of the embeddings (float32, or bf16
            with ``half``; never fp16, whose range SAM's ViT LayerNorms overflow).
        img_size: Side of the square encoder input (the padded frame), in pixels.
        checkpoint_path: The weights file loaded, or ``None`` (random init or injected model).
        weights_sha256: SHA-256 of that file, or of the initial state dict when there is no file.
    """

    is_sam = True

    def __init__(
        self,
        model_type: str = "vit_b",
        checkpoint: str | PathLike[str] = "auto",
        device: str | None = None,
        half: bool = False,
        model: torch.nn.Module | None = None,
        decoder_batch: int | None = None,
    ) -> None:
        """Build the model, load its weights and move it to the device.

        Args:
            model_type: ``"vit_h"``, ``"vit_l"``, ``"vit_b"`` (segment-anything) or ``"vit_t"``
                (MobileSAM).
            checkpoint: ``"auto"`` (official weights, downloaded once and SHA-256-verified),
                ``"random"`` (untrained weights, for tests: warns) or a path to a state-dict file;
                see :func:`sam_gym.backends.weights.resolve_checkpoint`. Must stay ``"auto"`` when
                ``model`` is given.
            device: Torch device; default CUDA when available, else CPU.
            half: Run the image encoder and mask decoder in bf16, CUDA only; the embeddings (and the
                cache entries) are bf16 too, half of float32's size. The prompt encoder and all other
                outputs stay float32. A GPU without bf16 is refused rather than run in fp16: SAM's
                ViT encoder overflows in fp16 (its LayerNorms; segment-anything issue 540).
            model: An already-built ``Sam`` module (e.g. a tiny one in tests) used with its current
                weights instead of building ``model_type``.
            decoder_batch: Most prompts per mask-decoder call in :meth:`decode_batch`. ``None``: all
                of them on CUDA; :data:`CPU_DECODER_BATCH` on the CPU, where large calls do not pay
                (measured in ``docs/benchmarks.md``).

        Raises:
            ValueError: For an unknown ``model_type``, a bad ``device``, ``half`` without CUDA or bf16, a
                checkpoint with ``model``, a missing, unreadable or unfitting checkpoint file
                (:func:`sam_gym.backends.sam_build.build_sam_model`), or ``decoder_batch`` below 1.
            ImportError: If segment-anything / mobile_sam (or torch) is not installed.
            sam_gym.backends.weights.WeightsUnavailableError: If ``"auto"`` cannot get the weights.
        """
        if model_type not in PACKAGES:
            raise ValueError(f"Expected model_type to be one of {sorted(PACKAGES)}, got {model_type!r}")
        if decoder_batch is not None and (not isinstance(decoder_batch, int) or decoder_batch < 1):
            raise ValueError(f"Expected decoder_batch to be None or an integer >= 1, got {decoder_batch!r}")
        self.model_type = model_type
        self.name = "mobilesam_vit_t" if model_type == "vit_t" else f"sam_{model_type}"
        self.device = select_device(device)
        if half and self.device.type != "cuda":
            raise ValueError(
                f"Expected half=True only on a CUDA device (bf16 inference), "
                f"got device {str(self.device)!r}; use half=False on CPU"
            )
        if half and not torch.cuda.is_bf16_supported():
            raise ValueError(
                f"Expected a GPU with bf16 for half=True, got device {str(self.device)!r} without bf16; use "
                f"half=False (fp16 is not offered: SAM's ViT encoder overflows in fp16)"
            )
        self.dtype = torch.bfloat16 if half else torch.float32
        if decoder_batch is None and self.device.type == "cpu":
            decoder_batch = CPU_DECODER_BATCH
        self.decoder_batch = decoder_batch

        built = build_sam_model(model_type, checkpoint, model)
        self.checkpoint_path: Path | None = built.checkpoint_path
        self.weights_sha256 = built.weights_sha256
        family = "MobileSAM" if model_type == "vit_t" else "SAM"
        source = built.source + (f", {_DTYPE_NAMES[self.dtype]}" if half else "")
        self.description = f"{family} {model_type} ({source})"
        sam: Any = built.model  # segment-anything's (or MobileSAM's) Sam, whose parts are reached by attribute

        # eval() after loading: MobileSAM's TinyViT caches its attention biases in a buffer at eval().
        sam.eval().requires_grad_(False)
        sam.to(self.device)
        if half:
            sam.image_encoder.to(self.dtype)
            sam.mask_decoder.to(self.dtype)
        self.model: Any = sam
        self.img_size = int(sam.image_encoder.img_size)
        self.transform = import_sam_module(f"{built.package}.utils.transforms", model_type).ResizeLongestSide(
            self.img_size)
        prompt_encoder = sam.prompt_encoder
        emb_h, emb_w = (int(v) for v in prompt_encoder.image_embedding_size)
        self.embedding_shape = (int(prompt_encoder.embed_dim), emb_h, emb_w)
        low_h, low_w = (int(v) for v in prompt_encoder.mask_input_size)
        self.low_res_shape = (low_h, low_w)
        self.model_id = (
            f"{model_type}-{self.weights_sha256[:16]}-rls{self.img_size}-{_DTYPE_NAMES[self.dtype]}"
        )
        with torch.inference_mode():
            self._dense_pe = prompt_encoder.get_dense_pe().to(self.dtype)

    # ------------------------------------------------------------------ encode / decode

    def encode(self, image: np.ndarray) -> Embedding:
        """Encode an ``(H, W, 3)`` uint8 RGB image.

        Returns:
            ``features``: ``(1, C, h, w)`` tensor on the device (padded frame);
            ``extras["input_size"]``: ``(2,)`` int64, the resized image's ``(rows, cols)`` inside
            the padded frame (before padding).
        """
        image = validate_image(image)
        resized = self.transform.apply_image(image)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        with torch.inference_mode():
            features = self.model.image_encoder(self.model.preprocess(x).to(self.dtype))
        return Embedding(
            features=features,
            image_size=(int(image.shape[0]), int(image.shape[1])),
            extras={"input_size": np.array(resized.shape[:2], dtype=np.int64)},
        )

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
            embedding: From :meth:`encode`.
            points: ``(N, 2)`` ``(x, y)`` points in original-image pixels.
            labels: ``(N,)`` labels, 1 foreground / 0 background.
            mask_input: ``(1, *low_res_shape)`` logits (tensor or numpy) of a previous prediction,
                ``Prediction.logits()``, or ``None``.
            multimask: Return SAM's 3 ambiguity proposals instead of its single-mask output.

        Returns:
            ``scores``: ``(K,)`` predicted IoUs; ``low_res_logits``: ``(K, *low_res_shape)`` float32
            tensor on the device (padded frame); ``mask(k)``: ``(H, W)`` bool, computed on demand.
        """
        features = self._features(embedding)
        coords, point_labels = self._prepare_points(embedding, points, labels)
        mask = None if mask_input is None else self._logits_tensor(mask_input, "mask_input")
        with torch.inference_mode():
            sparse, dense = self.model.prompt_encoder(
                points=(coords[None], point_labels[None]), boxes=None, masks=mask
            )
            low_res, iou = self.model.mask_decoder(
                image_embeddings=features,
                image_pe=self._dense_pe,
                sparse_prompt_embeddings=sparse.to(self.dtype),
                dense_prompt_embeddings=dense.to(self.dtype),
                multimask_output=multimask,
            )
        return self._prediction(low_res[0], iou[0].float().cpu().numpy(), embedding)

    def decode_batch(
        self,
        embeddings: Sequence[Embedding],
        points: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        mask_inputs: Sequence[Any | None] | None = None,
        multimask: bool = False,
    ) -> list[Prediction]:
        """Decode one prompt set per embedding with batched mask-decoder calls.

        Item ``i`` gives the same result as ``decode(embeddings[i], points[i], labels[i],
        mask_inputs[i], multimask)`` (up to float rounding). Items with the same number of points
        share one prompt-encoder and one mask-decoder call (at most ``decoder_batch`` items per
        call), so on CUDA a batch whose items all have ``N`` points costs a single decoder call.
        Items are not padded to a common ``N`` with
        "not a point" tokens: those tokens take part in SAM's attention and change the masks.

        The stock ``MaskDecoder.predict_masks`` repeats one image embedding for all prompts; here each
        prompt brings its own image embedding (:func:`_predict_masks`), so nothing is repeated or
        copied per item beyond stacking the embeddings once per call.

        Args:
            embeddings: ``B`` embeddings from :meth:`encode`.
            points: ``B`` arrays of ``(N_i, 2)`` ``(x, y)`` points in original-image pixels.
            labels: ``B`` arrays of ``(N_i,)`` labels, 1 foreground / 0 background.
            mask_inputs: ``None`` or ``B`` entries, each ``None`` or ``(1, *low_res_shape)`` logits.
            multimask: Return 3 proposals per item instead of 1.

        Returns:
            ``B`` predictions, in order.

        Raises:
            ValueError: If the sequences are empty or of different lengths, or an item is invalid.
        """
        masks_in = check_batch(embeddings, points, labels, mask_inputs)
        n = len(embeddings)
        features = [self._features(e) for e in embeddings]
        prompts = [self._prepare_points(embeddings[i], points[i], labels[i]) for i in range(n)]
        masks = [
            None if m is None else self._logits_tensor(m, f"mask_inputs[{i}]") for i, m in enumerate(masks_in)
        ]
        groups: dict[int, list[int]] = {}
        for i, (coords, _) in enumerate(prompts):
            groups.setdefault(int(coords.shape[0]), []).append(i)
        size = self.decoder_batch or n
        calls = [idx[k : k + size] for idx in groups.values() for k in range(0, len(idx), size)]

        results: dict[int, Prediction] = {}
        with torch.inference_mode():
            for idx in calls:
                coords = torch.stack([prompts[i][0] for i in idx])
                point_labels = torch.stack([prompts[i][1] for i in idx])
                sparse, _ = self.model.prompt_encoder(points=(coords, point_labels), boxes=None, masks=None)
                src = torch.cat([features[i] for i in idx])
                self._add_dense_embeddings(src, [masks[i] for i in idx])
                low_res, iou = _predict_masks(self.model.mask_decoder, src, self._dense_pe, sparse.to(self.dtype),
                                              multimask)
                scores = iou.float().cpu().numpy()  # one device-to-host copy per decoder call, not per item
                for j, i in enumerate(idx):
                    results[i] = self._prediction(low_res[j], scores[j], embeddings[i])
        return [results[i] for i in range(n)]

    # ------------------------------------------------------------------ observation

    def observe(
        self,
        embedding: Embedding,
        low_res_logits: Any | None,
        grid_hw: tuple[int, int] | None,
        mask_hw: tuple[int, int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Build the AlignSAM state (embedding times previous-mask probability) on the device.

        Only the image part of the padded frame is used: the valid regions of the embedding and of
        the logits are their :meth:`image_region`.

        Args:
            embedding: From :meth:`encode`.
            low_res_logits: ``(1, *low_res_shape)`` logits (tensor or numpy), or ``None`` for "no
                mask yet" (probability 1 everywhere: the state is the plain embedding).
            grid_hw: ``(rows, cols)``: the valid region is average-pooled so that cell ``(r, c)``
                covers image patch ``(r, c)`` of a ``rows x cols`` grid over the image. ``None``:
                the full ``(C, h, w)`` padded-frame map, times the probability resized to the valid
                region and 0 over the padding (times 1 everywhere when ``low_res_logits`` is None).
            mask_hw: ``(rows, cols)`` of the returned probability map over the image.

        Returns:
            ``state``: float32 ``(C, rows, cols)`` (or ``(C, h, w)``); ``mask``: float32 ``mask_hw``
            probabilities in ``[0, 1]``, row 0 at the top of the image.
        """
        features = self._features(embedding).float()
        mask_rows, mask_cols = check_hw(mask_hw, "mask_hw")
        grid = None if grid_hw is None else check_hw(grid_hw, "grid_hw")
        _, emb_h, emb_w = self.embedding_shape
        valid_h, valid_w = self.image_region(embedding, (emb_h, emb_w))
        with torch.inference_mode():
            if low_res_logits is None:
                prob_emb = None
                mask = torch.ones((mask_rows, mask_cols), dtype=torch.float32)
            else:
                logits = self._logits_tensor(low_res_logits, "low_res_logits")
                valid_low_h, valid_low_w = self.image_region(embedding, self.low_res_shape)
                prob = torch.sigmoid(logits[:, :, :valid_low_h, :valid_low_w])
                mask = resize_probabilities(prob, (mask_rows, mask_cols))[0, 0]
                prob_emb = resize_probabilities(prob, (valid_h, valid_w))
            if grid is not None:
                valid = features[:, :, :valid_h, :valid_w]
                if prob_emb is not None:
                    valid = valid * prob_emb
                state = F.adaptive_avg_pool2d(valid, grid)
            elif prob_emb is None:
                state = features
            else:
                frame = torch.zeros((1, 1, emb_h, emb_w), dtype=torch.float32, device=self.device)
                frame[:, :, :valid_h, :valid_w] = prob_emb
                state = features * frame
            return (
                state[0].to("cpu", torch.float32).numpy().copy(),
                mask.to("cpu", torch.float32).numpy().copy(),
            )

    def observe_batch(
        self,
        embeddings: Sequence[Embedding],
        low_res_logits: Sequence[Any | None],
        grid_hw: tuple[int, int] | None,
        mask_hw: tuple[int, int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`observe` of ``B`` items in one batched operation on the device and one host copy.

        Items from images of one size (one valid region) share one sigmoid and resize and, on
        CUDA, one multiply and pool over the stacked embeddings (:func:`observe_pooled`). Item ``i`` equals
        ``observe(embeddings[i], low_res_logits[i], grid_hw, mask_hw)`` exactly.

        Raises:
            ValueError: If the sequences are empty or of different lengths, or an item is invalid.
        """
        logits, grid, mask_hw = observe_batch_inputs(embeddings, low_res_logits, grid_hw, mask_hw,
                                                     self.low_res_shape, self.device)
        emb_hw = self.embedding_shape[1:]
        with torch.inference_mode():
            features = [self._features(e) for e in embeddings]
            regions = [(self.image_region(e, emb_hw), self.image_region(e, self.low_res_shape)) for e in embeddings]
            return observe_pooled(features, logits, regions, grid, mask_hw)

    # ------------------------------------------------------------------ cache

    def embedding_to_arrays(self, embedding: Embedding) -> dict[str, np.ndarray]:
        """Convert an embedding to host arrays for the cache, in the backend's dtype.

        Float32 features are stored as ``features``, float32 ``(1, C, h, w)``; bf16 features
        (``half=True``) as ``features_bf16``, their raw bits as uint16 (half the bytes, exact).
        With them ``image_size`` and ``extra_input_size``.
        """
        features = self._features(embedding).detach()
        if features.dtype == torch.bfloat16:
            out = {"features_bf16": features.to("cpu").view(torch.int16).numpy().view(np.uint16).copy()}
        else:
            out = {"features": features.to("cpu", torch.float32).numpy().copy()}
        out["image_size"] = np.asarray(embedding.image_size, dtype=np.int64)
        out.update({f"extra_{k}": np.asarray(v) for k, v in embedding.extras.items()})
        return out

    def embedding_from_arrays(self, arrays: Mapping[str, np.ndarray]) -> Embedding:
        """Inverse of :meth:`embedding_to_arrays`: the stored bytes go straight to the device, in its dtype.

        Entries of either form are read (float32 ones written before bf16 storage existed, too).
        """
        name = "features_bf16" if "features_bf16" in arrays else "features"
        features = np.asarray(arrays[name])
        expected_dtype = np.uint16 if name == "features_bf16" else np.float32
        if features.shape != (1, *self.embedding_shape) or features.dtype != expected_dtype:
            raise ValueError(
                f"Expected cached {name} of shape {(1, *self.embedding_shape)} and dtype "
                f"{np.dtype(expected_dtype).name} for {self.model_id}, got {features.shape} {features.dtype}"
            )
        extras = {k[len("extra_") :]: np.asarray(v) for k, v in arrays.items() if k.startswith("extra_")}
        h, w = (int(v) for v in arrays["image_size"])
        host = np.ascontiguousarray(features)
        stored = torch.from_numpy(host.view(np.int16)).view(torch.bfloat16) if name == "features_bf16" else (
            torch.from_numpy(host))
        tensor = stored.to(self.device).to(self.dtype)  # the stored bytes cross once; any cast runs on the device
        return Embedding(features=tensor, image_size=(h, w), extras=extras)

    # ------------------------------------------------------------------ helpers

    def _features(self, embedding: Embedding) -> torch.Tensor:
        features = embedding.features
        if (
            not isinstance(features, torch.Tensor)
            or tuple(features.shape) != (1, *self.embedding_shape)
            or "input_size" not in embedding.extras
        ):
            got = tuple(features.shape) if hasattr(features, "shape") else type(features).__name__
            raise ValueError(
                f"Expected an Embedding from {self.name}.encode (features: tensor of shape "
                f"{(1, *self.embedding_shape)}, extras['input_size']), got features {got}"
            )
        return features.to(self.device, self.dtype)

    def _prepare_points(
        self, embedding: Embedding, points: Any, labels: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`frame_prompts` as tensors on the device: ``(N, 2)`` float32, ``(N,)`` int64."""
        coords, lab = self.frame_prompts(embedding, points, labels)
        return (
            torch.as_tensor(coords, dtype=torch.float32, device=self.device),
            torch.as_tensor(lab, dtype=torch.int64, device=self.device),
        )

    def _logits_tensor(self, logits: Any, what: str) -> torch.Tensor:
        return logits_tensor(logits, self.low_res_shape, self.device, what)

    def _add_dense_embeddings(self, src: torch.Tensor, masks: list[torch.Tensor | None]) -> None:
        """Add each item's dense prompt embedding (its encoded mask input, or "no mask") to ``src`` in place."""
        prompt_encoder = self.model.prompt_encoder
        given = [j for j, m in enumerate(masks) if m is not None]
        missing = [j for j, m in enumerate(masks) if m is None]
        if given:
            given_masks = [m for m in masks if m is not None]
            _, encoded = prompt_encoder(points=None, boxes=None, masks=torch.cat(given_masks))
            encoded = encoded.to(self.dtype)
            if len(given) == len(masks):
                src += encoded
            else:
                src[given] += encoded
        if missing:
            no_mask = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).to(self.dtype)
            if len(missing) == len(masks):
                src += no_mask
            else:
                src[missing] += no_mask

    def _prediction(self, low_res: torch.Tensor, scores: np.ndarray, embedding: Embedding) -> Prediction:
        """Wrap ``(K, low_h, low_w)`` device logits and ``(K,)`` host IoU scores; full masks are upsampled on demand."""
        logits = low_res.float()
        return Prediction(scores=scores, low_res_logits=logits, full_mask=_FullMask(self, embedding, logits))

    # ------------------------------------------------------------------ padded frame and gradients

    def image_region(self, embedding: Embedding, shape: tuple[int, int]) -> tuple[int, int]:
        """The top-left ``(rows, cols)`` of an ``(h, w)`` map over the padded frame that cover the image.

        The resized image fills the top-left ``input_size`` corner of the ``img_size`` square, so
        ``rows = ceil(input_rows * h / img_size)`` (at most ``h``), likewise for the columns.
        """
        input_h, input_w = (int(v) for v in np.asarray(embedding.extras["input_size"]).reshape(-1)[:2])
        h, w = (int(v) for v in shape)
        return min(h, math.ceil(input_h * h / self.img_size)), min(w, math.ceil(input_w * w / self.img_size))

    def frame_prompts(self, embedding: Embedding, points: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
        """Validate prompts and map ``(x, y)`` image pixels to ``(x, y)`` pixels of the padded frame.

        Returns:
            ``(N, 2)`` float64 points in the ``img_size`` square (``ResizeLongestSide.apply_coords``)
            and the ``(N,)`` int64 labels.
        """
        pts, lab = validate_prompts(points, labels, embedding.image_size)
        return self.transform.apply_coords(pts, embedding.image_size), lab

    def decoder_logits(
        self,
        embedding: Embedding,
        points: np.ndarray,
        labels: np.ndarray,
        mask_input: Any | None = None,
        multimask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`decode` with autograd through the mask decoder (for adapting it, e.g. test-time adaptation).

        The image embedding, the prompt encoder's outputs and the positional encoding are constants
        (computed without gradients, as plain tensors that autograd may keep); the mask decoder's
        parameters get gradients where they require them. Arguments as :meth:`decode`.

        Returns:
            ``(K, low_h, low_w)`` low-resolution logits over the padded frame and ``(K,)`` predicted
            IoUs, as tensors on the device (``K`` = 3 with ``multimask`` else 1).
        """
        coords, point_labels = self._prepare_points(embedding, points, labels)
        with torch.no_grad():
            features = self._features(embedding).clone()
            mask = None if mask_input is None else self._logits_tensor(mask_input, "mask_input").clone()
            sparse, dense = self.model.prompt_encoder(points=(coords[None], point_labels[None]), boxes=None, masks=mask)
            image_pe = self.model.prompt_encoder.get_dense_pe()
            sparse, dense, image_pe = sparse.clone(), dense.clone(), image_pe.clone()
        low_res, iou = self.model.mask_decoder(
            image_embeddings=features,
            image_pe=image_pe.to(self.dtype),
            sparse_prompt_embeddings=sparse.to(self.dtype),
            dense_prompt_embeddings=dense.to(self.dtype),
            multimask_output=multimask,
        )
        return low_res[0], iou[0]

    def full_logits(self, embedding: Embedding, low_res: torch.Tensor) -> torch.Tensor:
        """Upsample ``(K, low_h, low_w)`` padded-frame logits to ``(K, H, W)`` image logits (differentiable).

        SAM's ``postprocess_masks``: the frame is resized to ``img_size``, cropped to the image's
        ``input_size`` and resized to the original ``(H, W)``; ``> model.mask_threshold`` is the mask.
        """
        input_size = tuple(int(v) for v in embedding.extras["input_size"])
        return self.model.postprocess_masks(low_res[:, None], input_size, embedding.image_size)[:, 0]


@dataclass(frozen=True)
class _FullMask(DeviceFullMask):
    """Proposal ``k``'s full-resolution mask, computed on demand (a picklable ``Prediction.full_mask``)."""

    backend: SamBackend
    embedding: Embedding
    logits: torch.Tensor

    def group_key(self) -> tuple[Any, ...]:
        """Items of one image size and frame share one upsampling (``postprocess_masks``)."""
        return id(self.backend), self.embedding.image_size, tuple(int(v) for v in self.embedding.extras["input_size"])

    def masks(self, logits: torch.Tensor) -> torch.Tensor:
        """``(G, low_h, low_w)`` logits of one group -> ``(G, H, W)`` bool masks on the device."""
        return self.backend.full_logits(self.embedding, logits) > self.backend.model.mask_threshold


def _predict_masks(
    decoder: Any, src: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor, multimask: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's ``MaskDecoder.forward`` with one image embedding per prompt.

    ``decoder`` is segment-anything's ``MaskDecoder`` (its parts are reached by attribute). The
    same computation as segment-anything's ``MaskDecoder.predict_masks`` (MobileSAM's is the
    same code), except that ``src`` already holds each prompt's image embedding plus its dense
    prompt embedding, ``(B, C, h, w)``, instead of one image embedding repeated ``B`` times; the
    positional encoding is expanded (a view), not repeated.

    Returns:
        ``(B, K, low_h, low_w)`` mask logits and ``(B, K)`` predicted IoUs, ``K`` = 3 with
        ``multimask`` else 1.
    """
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    output_tokens = output_tokens.unsqueeze(0).expand(sparse.size(0), -1, -1)
    tokens = torch.cat((output_tokens, sparse), dim=1)
    b, c, h, w = src.shape
    hs, src = decoder.transformer(src, image_pe.expand(b, -1, -1, -1), tokens)
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1 : (1 + decoder.num_mask_tokens), :]
    upscaled = decoder.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper_in = torch.stack(
        [decoder.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in range(decoder.num_mask_tokens)], dim=1
    )
    b, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
    iou_pred = decoder.iou_prediction_head(iou_token_out)
    keep = slice(1, None) if multimask else slice(0, 1)
    return masks[:, keep], iou_pred[:, keep]
