"""SAM 2 / SAM 2.1 image backends (Hiera tiny, small, base+, large), built with Meta's ``sam2`` code.

:class:`Sam2Backend` wraps a ``SAM2Base`` model and drives its parts the way
``sam2.sam2_image_predictor.SAM2ImagePredictor`` does, without the predictor's per-image state, so
that one backend serves many environments; on the same module its outputs are the predictor's, bit
for bit (``tests/test_sam2_backend.py``):

* ``encode``: ``SAM2Transforms`` (the image is *stretched* to the ``image_size`` square, no
  padding), the Hiera image encoder, the mask decoder's ``conv_s0``/``conv_s1`` projections of the
  two high-resolution levels, and ``no_mem_embed`` added to the lowest-resolution map. The
  embedding holds all three levels: ``features`` ``(1, 256, 64, 64)`` and
  ``high_res_features`` ``(1, 32, 256, 256)``, ``(1, 64, 128, 128)`` (for a 1024-pixel model).
* ``decode``: prompt encoder + mask decoder (with the high-resolution levels);
  ``low_res_logits`` are clamped to ``[-32, 32]`` as the predictor returns them, full-resolution
  masks (from the unclamped logits, as the predictor's) only when asked for.
* ``observe``: the AlignSAM state, computed on the backend's device. The frame has no padding, so
  every map covers the whole image (the default :meth:`image_region`).

Coordinate conventions are those of :mod:`sam_gym.backends.base`: points are ``(x, y)`` in
original-image pixels (``x`` right, ``y`` down), masks ``(H, W)`` indexed ``[row, col]``, labels
``1`` foreground / ``0`` background.

This module imports torch at import time; the registry imports it only when a SAM 2 backend is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from sam_gym.backends.base import (
    Embedding,
    Prediction,
    PromptableSegmenter,
    check_batch,
    validate_image,
    validate_prompts,
)
from sam_gym.backends.mask_iou import DeviceFullMask, DeviceMaskIoU
from sam_gym.backends.sam import check_hw, logits_tensor, observe_batch_inputs, observe_pooled, resize_probabilities
from sam_gym.backends.sam2_build import CONFIGS, build_sam2_model, import_sam2_module
from sam_gym.backends.sam_build import select_device

try:
    import torch
    import torch.nn.functional as F
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError('The SAM 2 backends need torch: pip install "sam-gym[sam]"') from exc

__all__ = ["LOGIT_CLAMP", "Sam2Backend", "Sam2Embedding"]

#: ``SAM2ImagePredictor`` clamps the low-resolution logits it returns to ``[-LOGIT_CLAMP, LOGIT_CLAMP]``.
LOGIT_CLAMP = 32.0


@dataclass(frozen=True)
class Sam2Embedding(Embedding):
    """A SAM 2 embedding: the image embedding plus the decoder's high-resolution feature levels.

    Attributes:
        high_res_features: The ``conv_s0`` and ``conv_s1`` projections of the encoder's two finest
            levels, tensors on the backend's device: ``(1, C/8, 4h, 4w)`` and ``(1, C/4, 2h, 2w)``
            for ``features`` of ``(1, C, h, w)``.
    """

    high_res_features: tuple[Any, ...] = field(default_factory=tuple)

    def arrays(self) -> tuple[Any, ...]:
        """``features``, the extras and the two high-resolution levels."""
        return (*super().arrays(), *self.high_res_features)


class Sam2Backend(DeviceMaskIoU, PromptableSegmenter):
    """A SAM 2 / SAM 2.1 image model as a :class:`PromptableSegmenter`.

    Shapes are read from the model (a 1024-pixel model has a ``(256, 64, 64)`` embedding, high-resolution
    levels of ``(32, 256, 256)`` and ``(64, 128, 128)``, and ``(256, 256)`` low-resolution logits).

    Attributes:
        model: The wrapped ``SAM2Base`` module (eval mode, gradients off) on ``device``.
        model_type: The registry name, e.g. ``"sam2.1_hiera_t"`` (a key of
            :data:`sam_gym.backends.sam2_build.CONFIGS`).
        device: The torch device everything runs on.
        img_size: Side of the square encoder input, in pixels.
        high_res_shapes: ``(C, h, w)`` of each high-resolution level, finest first.
        checkpoint_path: The weights file loaded, or ``None`` (random init or injected model).
        weights_sha256: SHA-256 of that file, or of the initial state dict when there is no file.
    """

    is_sam = True

    def __init__(
        self,
        model_type: str = "sam2.1_hiera_t",
        checkpoint: str | PathLike[str] = "auto",
        device: str | None = None,
        half: bool = False,
        model: torch.nn.Module | None = None,
    ) -> None:
        """Build the model, load its weights and move it to the device.

        Args:
            model_type: ``"sam2.1_hiera_t"``, ``"sam2.1_hiera_s"``, ``"sam2.1_hiera_b+"``,
                ``"sam2.1_hiera_l"``, or the SAM 2.0 ``"sam2_hiera_t"`` ... ``"sam2_hiera_l"``.
            checkpoint: ``"auto"`` (official weights, downloaded once and SHA-256-verified),
                ``"random"`` (untrained weights, for tests: warns) or a path to a checkpoint file;
                see :func:`sam_gym.backends.weights.resolve_checkpoint`. Must stay ``"auto"`` when
                ``model`` is given.
            device: Torch device; default CUDA when available, else CPU.
            half: Not offered for SAM 2 (the backend runs in float32); ``True`` is refused.
            model: An already-built ``SAM2Base`` (e.g. a small one from
                :func:`sam_gym.backends.sam2_build.compose_sam2` in tests) used with its current
                weights instead of building ``model_type``.

        Raises:
            ValueError: For an unknown ``model_type``, a bad ``device``, ``half=True``, a checkpoint
                with ``model``, or a missing, unreadable or unfitting checkpoint file.
            ImportError: If the ``sam2`` module (or torch) is not installed.
            sam_gym.backends.weights.WeightsUnavailableError: If ``"auto"`` cannot get the weights.
        """
        if model_type not in CONFIGS:
            raise ValueError(f"Expected model_type to be one of {sorted(CONFIGS)}, got {model_type!r}")
        if half:
            raise ValueError(f"Expected half=False with {model_type} (the SAM 2 backends run in float32), got "
                             f"half=True")
        self.model_type = model_type
        self.name = model_type
        self.device = select_device(device)
        built = build_sam2_model(model_type, checkpoint, model)
        self.checkpoint_path: Path | None = built.checkpoint_path
        self.weights_sha256 = built.weights_sha256
        family = "SAM 2.1" if model_type.startswith("sam2.1") else "SAM 2"
        self.description = f"{family} {model_type.split('_', 1)[1]} ({built.source})"
        sam2: Any = built.model.eval().requires_grad_(False).to(self.device)  # sam2's SAM2Base, reached by attribute
        self.model: Any = sam2
        self.img_size = int(sam2.image_size)
        # The predictor's own transforms (ToTensor, Resize to the square, Normalize), without TorchScript.
        self.transforms = import_sam2_module("sam2.utils.transforms").SAM2Transforms(
            resolution=self.img_size, mask_threshold=0.0, disable_torch_jit=True)
        prompt_encoder = sam2.sam_prompt_encoder
        emb_h, emb_w = (int(v) for v in prompt_encoder.image_embedding_size)
        channels = int(prompt_encoder.embed_dim)
        self.embedding_shape = (channels, emb_h, emb_w)
        self.high_res_shapes: tuple[tuple[int, int, int], ...] = (
            ((channels // 8, 4 * emb_h, 4 * emb_w), (channels // 4, 2 * emb_h, 2 * emb_w))
            if sam2.use_high_res_features_in_sam else ()
        )
        low_h, low_w = (int(v) for v in prompt_encoder.mask_input_size)
        self.low_res_shape = (low_h, low_w)
        self.model_id = f"{model_type}-{self.weights_sha256[:16]}-sq{self.img_size}-fp32"
        with torch.inference_mode():
            self._dense_pe = prompt_encoder.get_dense_pe()

    # ------------------------------------------------------------------ encode / decode

    def encode(self, image: np.ndarray) -> Sam2Embedding:
        """Encode an ``(H, W, 3)`` uint8 RGB image (``SAM2ImagePredictor.set_image``).

        Returns:
            ``features``: ``(1, C, h, w)`` tensor on the device; ``high_res_features``: the
            finer levels (see :class:`Sam2Embedding`); no extras.
        """
        image = validate_image(image)
        with torch.inference_mode():
            x = self.transforms(image)[None].to(self.device)
            backbone_out = self.model.forward_image(x)
            _, feats, _, sizes = self.model._prepare_backbone_features(backbone_out)
            if self.model.directly_add_no_mem_embed:
                feats[-1] = feats[-1] + self.model.no_mem_embed
            maps = [f.permute(1, 2, 0).view(1, -1, *size) for f, size in zip(feats, sizes, strict=True)]
        return Sam2Embedding(
            features=maps[-1],
            image_size=(int(image.shape[0]), int(image.shape[1])),
            high_res_features=tuple(maps[:-1]),
        )

    def decode(
        self,
        embedding: Embedding,
        points: np.ndarray,
        labels: np.ndarray,
        mask_input: Any | None = None,
        multimask: bool = False,
    ) -> Prediction:
        """Decode point prompts into masks (``SAM2ImagePredictor.predict``).

        Args:
            embedding: From :meth:`encode`.
            points: ``(N, 2)`` ``(x, y)`` points in original-image pixels.
            labels: ``(N,)`` labels, 1 foreground / 0 background.
            mask_input: ``(1, *low_res_shape)`` logits (tensor or numpy) of a previous prediction,
                ``Prediction.logits()``, or ``None``.
            multimask: Return SAM 2's 3 ambiguity proposals instead of its single-mask output (which
                falls back to the best proposal when it is not stable, as with ``build_sam2``).

        Returns:
            ``scores``: ``(K,)`` predicted IoUs; ``low_res_logits``: ``(K, *low_res_shape)`` float32
            tensor on the device, clamped to ``[-32, 32]``; ``mask(k)``: ``(H, W)`` bool, on demand.
        """
        features, high_res = self._levels(embedding)
        coords, point_labels = self._prepare_points(embedding, points, labels)
        mask = None if mask_input is None else self._logits_tensor(mask_input, "mask_input")
        with torch.inference_mode():
            sparse, dense = self.model.sam_prompt_encoder(points=(coords[None], point_labels[None]), boxes=None,
                                                          masks=mask)
            low_res, iou, _, _ = self.model.sam_mask_decoder(
                image_embeddings=features, image_pe=self._dense_pe, sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense, multimask_output=multimask, repeat_image=False,
                high_res_features=list(high_res),
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
        """Decode one prompt set per embedding, one mask-decoder call per prompt count.

        Item ``i`` gives the same result as ``decode(embeddings[i], points[i], labels[i],
        mask_inputs[i], multimask)`` (up to float rounding). Items with the same number of points
        share one prompt-encoder and one mask-decoder call, each with its own image embedding and
        high-resolution levels (SAM 2's decoder takes a batch of them); items are not padded to a
        common ``N`` ("not a point" tokens would change the masks).

        Raises:
            ValueError: If the sequences are empty or of different lengths, or an item is invalid.
        """
        masks_in = check_batch(embeddings, points, labels, mask_inputs)
        n = len(embeddings)
        levels = [self._levels(e) for e in embeddings]
        prompts = [self._prepare_points(embeddings[i], points[i], labels[i]) for i in range(n)]
        masks = [None if m is None else self._logits_tensor(m, f"mask_inputs[{i}]") for i, m in enumerate(masks_in)]
        groups: dict[int, list[int]] = {}
        for i, (coords, _) in enumerate(prompts):
            groups.setdefault(int(coords.shape[0]), []).append(i)
        prompt_encoder = self.model.sam_prompt_encoder
        results: dict[int, Prediction] = {}
        with torch.inference_mode():
            no_mask = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *self.embedding_shape[1:])
            for idx in groups.values():
                coords = torch.stack([prompts[i][0] for i in idx])
                point_labels = torch.stack([prompts[i][1] for i in idx])
                sparse, _ = prompt_encoder(points=(coords, point_labels), boxes=None, masks=None)
                dense = torch.cat([
                    no_mask if masks[i] is None else prompt_encoder(points=None, boxes=None, masks=masks[i])[1]
                    for i in idx
                ])
                high_res = [torch.cat([levels[i][1][k] for i in idx]) for k in range(len(self.high_res_shapes))]
                low_res, iou, _, _ = self.model.sam_mask_decoder(
                    image_embeddings=torch.cat([levels[i][0] for i in idx]), image_pe=self._dense_pe,
                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
                    repeat_image=False, high_res_features=high_res,
                )
                scores = iou.float().cpu().numpy()  # one device-to-host copy per decoder call
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
        """Build the AlignSAM state (image embedding times previous-mask probability) on the device.

        The frame is the whole image stretched to a square, so cell ``(r, c)`` of a ``rows x cols``
        grid over the embedding covers image patch ``(r, c)``.

        Args:
            embedding: From :meth:`encode`.
            low_res_logits: ``(1, *low_res_shape)`` logits (tensor or numpy), or ``None`` for "no
                mask yet" (probability 1 everywhere: the state is the plain embedding).
            grid_hw: ``(rows, cols)`` to average-pool the state to; ``None`` keeps ``(C, h, w)``.
            mask_hw: ``(rows, cols)`` of the returned probability map over the image.

        Returns:
            ``state``: float32 ``(C, rows, cols)`` (or ``(C, h, w)``); ``mask``: float32 ``mask_hw``
            probabilities in ``[0, 1]``, row 0 at the top of the image.
        """
        features = self._levels(embedding)[0].float()
        mask_rows, mask_cols = check_hw(mask_hw, "mask_hw")
        grid = None if grid_hw is None else check_hw(grid_hw, "grid_hw")
        with torch.inference_mode():
            if low_res_logits is None:
                mask = torch.ones((mask_rows, mask_cols), dtype=torch.float32)
                state = features
            else:
                prob = torch.sigmoid(self._logits_tensor(low_res_logits, "low_res_logits"))
                mask = resize_probabilities(prob, (mask_rows, mask_cols))[0, 0]
                state = features * resize_probabilities(prob, self.embedding_shape[1:])
            if grid is not None:
                state = F.adaptive_avg_pool2d(state, grid)
            return state[0].to("cpu", torch.float32).numpy().copy(), mask.to("cpu", torch.float32).numpy().copy()

    def observe_batch(
        self,
        embeddings: Sequence[Embedding],
        low_res_logits: Sequence[Any | None],
        grid_hw: tuple[int, int] | None,
        mask_hw: tuple[int, int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`observe` of ``B`` items in one batched operation on the device and one host copy.

        Every map covers the whole image (no padding), so all items share one sigmoid and resize and,
        on CUDA, one multiply and pool (:func:`sam_gym.backends.sam.observe_pooled`). Item ``i`` equals
        ``observe(embeddings[i], low_res_logits[i], grid_hw, mask_hw)`` exactly.

        Raises:
            ValueError: If the sequences are empty or of different lengths, or an item is invalid.
        """
        logits, grid, mask_hw = observe_batch_inputs(embeddings, low_res_logits, grid_hw, mask_hw,
                                                     self.low_res_shape, self.device)
        whole = (self.embedding_shape[1:], self.low_res_shape)
        with torch.inference_mode():
            features = [self._levels(e)[0] for e in embeddings]
            return observe_pooled(features, logits, [whole] * len(embeddings), grid, mask_hw)

    # ------------------------------------------------------------------ cache

    def _array_names(self) -> list[tuple[str, tuple[int, ...]]]:
        names: list[tuple[str, tuple[int, ...]]] = [("features", (1, *self.embedding_shape))]
        return names + [
            (f"high_res_{k}", (1, *shape)) for k, shape in enumerate(self.high_res_shapes)
        ]

    def embedding_to_arrays(self, embedding: Embedding) -> dict[str, np.ndarray]:
        """Convert an embedding to host arrays for the cache: every feature level, float32.

        ``features`` ``(1, C, h, w)``, ``high_res_0`` and ``high_res_1`` (the finer levels, finest
        first) and ``image_size``.
        """
        features, high_res = self._levels(embedding)
        out = {name: t.detach().to("cpu", torch.float32).numpy().copy()
               for (name, _), t in zip(self._array_names(), (features, *high_res), strict=True)}
        out["image_size"] = np.asarray(embedding.image_size, dtype=np.int64)
        return out

    def embedding_from_arrays(self, arrays: Mapping[str, np.ndarray]) -> Sam2Embedding:
        """Inverse of :meth:`embedding_to_arrays`: the stored levels go straight to the device.

        Raises:
            ValueError: If a level is missing or has the wrong shape or dtype for this model.
        """
        tensors = []
        for name, shape in self._array_names():
            value = arrays.get(name)
            got = "missing" if value is None else f"{np.asarray(value).shape} {np.asarray(value).dtype}"
            if value is None or np.asarray(value).shape != shape or np.asarray(value).dtype != np.float32:
                raise ValueError(f"Expected cached {name} of shape {shape} and dtype float32 for {self.model_id}, "
                                 f"got {got}")
            tensors.append(torch.from_numpy(np.ascontiguousarray(value)).to(self.device))
        if self.model.directly_add_no_mem_embed:
            # encode's map is a view of a (h*w, 1, C) sum: channels-last in memory. The same layout makes the
            # decoder's kernels, and so the decoded logits, bit-identical to those of the encoded embedding.
            tensors[0] = tensors[0].contiguous(memory_format=torch.channels_last)
        h, w = (int(v) for v in arrays["image_size"])
        return Sam2Embedding(features=tensors[0], image_size=(h, w), high_res_features=tuple(tensors[1:]))

    # ------------------------------------------------------------------ helpers

    def _levels(self, embedding: Embedding) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The embedding's ``(1, C, h, w)`` map and high-resolution levels, checked, on the device."""
        features = embedding.features
        high_res = getattr(embedding, "high_res_features", None)
        if (
            not isinstance(features, torch.Tensor)
            or tuple(features.shape) != (1, *self.embedding_shape)
            or high_res is None
            or [tuple(t.shape) for t in high_res] != [(1, *s) for s in self.high_res_shapes]
        ):
            got = tuple(features.shape) if hasattr(features, "shape") else type(features).__name__
            raise ValueError(
                f"Expected a Sam2Embedding from {self.name}.encode (features: tensor of shape "
                f"{(1, *self.embedding_shape)}, high_res_features of shapes "
                f"{[(1, *s) for s in self.high_res_shapes]}), got features {got}"
            )
        return features.to(self.device), tuple(t.to(self.device) for t in high_res)

    def _prepare_points(self, embedding: Embedding, points: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate prompts; ``(x, y)`` image pixels to the square frame, as the predictor's ``_prep_prompts``.

        Returns:
            ``(N, 2)`` float32 ``(x, y)`` points in the ``img_size`` square and ``(N,)`` int32 labels,
            on the device.
        """
        pts, lab = validate_prompts(points, labels, embedding.image_size)
        coords = torch.as_tensor(pts, dtype=torch.float, device=self.device)
        coords = self.transforms.transform_coords(coords, normalize=True, orig_hw=embedding.image_size)
        return coords, torch.as_tensor(lab, dtype=torch.int, device=self.device)

    def _logits_tensor(self, logits: Any, what: str) -> torch.Tensor:
        return logits_tensor(logits, self.low_res_shape, self.device, what)

    def _prediction(self, low_res: torch.Tensor, scores: np.ndarray, embedding: Embedding) -> Prediction:
        """Wrap ``(K, low_h, low_w)`` device logits and ``(K,)`` host IoU scores; full masks on demand."""
        logits = low_res.float()
        return Prediction(scores=scores, low_res_logits=logits.clamp(-LOGIT_CLAMP, LOGIT_CLAMP),
                          full_mask=_FullMask(self, embedding, logits))


@dataclass(frozen=True)
class _FullMask(DeviceFullMask):
    """Proposal ``k``'s full-resolution mask from the unclamped logits (a picklable ``Prediction.full_mask``).

    ``SAM2Transforms.postprocess_masks`` without hole filling: a bilinear resize of the
    low-resolution logits to ``(H, W)``, then ``> 0``.
    """

    backend: Sam2Backend
    embedding: Embedding
    logits: torch.Tensor

    def group_key(self) -> tuple[Any, ...]:
        """Items of one image size share one resize."""
        return id(self.backend), self.embedding.image_size

    def masks(self, logits: torch.Tensor) -> torch.Tensor:
        """``(G, low_h, low_w)`` logits of one group -> ``(G, H, W)`` bool masks on the device."""
        return self.backend.transforms.postprocess_masks(logits[:, None], self.embedding.image_size)[:, 0] > 0.0
