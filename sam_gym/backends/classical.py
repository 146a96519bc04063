"""A weight-free classical interactive segmenter: graph cut with geodesic and star-convexity priors.

This is **not** Segment Anything. It is the offline default backend of ``sam_gym``: it needs no
weights, no GPU and no download, and it behaves like a promptable segmenter (clicks in, masks
and low-resolution logits out), so that environments, policies and benchmarks run anywhere.

Method (Boykov & Jolly 2001 graph cut; Rother et al. 2004 colour models; Bai & Sapiro 2007 and
Price et al. 2010 geodesic terms; Veksler 2008 star convexity), at a reduced working resolution.
Coordinates: clicks are ``(x, y)`` image pixels (x right, y down), pixel ``(row, col) =
(floor(y), floor(x))``; masks are ``(H, W)`` indexed ``[row, col]``.

* ``encode`` resizes the image so that its longer side is at most ``work_size`` pixels, quantises
  its colours into ``bins**3`` RGB histogram bins, precomputes the contrast-sensitive pairwise
  weights ``exp(-beta * |I_p - I_q|^2)`` of an 8-connected grid (CIELab colours, ``beta`` from the
  image's mean contrast) and a coarse geodesic step-cost map (longer side 96:
  ``(1 + geo_gamma * |grad Lab| / mean |grad Lab|) / side``). It also builds a small
  ``(C, 64, 64)`` feature map (CIELab colour, position, gradient, texture) used by
  :meth:`ClassicalBackend.observe`.
* ``decode`` turns clicks into hard seeds (disks of ``seed_radius`` *working* pixels, small so that
  a click near a thin part or an edge does not seed the wrong colour). Each colour model is an
  equal mixture (``context_mix``) of the smoothed histogram of its seeds and of a context: the
  previous mask (``mask_input``) for foreground / its complement for background or, before any mask
  exists, nothing for foreground and the whole image minus a disk around the positive clicks
  (frame pixels weighted ``1 + frame_weight``) for background. A geodesic term
  ``geo_weight * clip((D_b - D_f) / geo_reach, -1, 1)`` (``D_f`` / ``D_b``: geodesic distances to the
  positive / negative seeds on the coarse cost map, ``D_b = geo_reach`` without negative clicks)
  favours pixels that the positive clicks reach without crossing edges, and the previous mask's
  logits enter as a weak prior (``prior_weight``). Every pixel is tied to its nearest positive
  click by a Euclidean star-convexity constraint. The min cut is found with PyMaxflow; the binary
  result is smoothed and upsampled to the image.

The settings are one :class:`ClassicalConfig`, from which ``model_id`` (the cache key) is derived.
How well and how fast it segments (NoC on GrabCut / Berkeley, against published classical
methods), and why the method is as it is: ``docs/classical-backend.md``;
``benchmarks/classical_noc.py`` measures it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import cv2
import maxflow
import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.graph import MCP_Geometric

from sam_gym.backends.base import Embedding, Prediction, PromptableSegmenter, validate_image, validate_prompts

__all__ = ["ClassicalBackend", "ClassicalConfig"]

_VERSION = "v3"
_FEATURE_CHANNELS = 10
_FEATURE_SIDE = 64
_LOW_RES = 256
_GEO_SIDE = 96
# Fixed-point graph-cut capacities: units per 1.0, and the "infinite" capacity of hard constraints.
_FLOW_SCALE = 256.0
_FLOW_INF = 1 << 24
_LOGIT_CLIP = 8.0
# 8-connected grid: (row offset, col offset) of the forward neighbours, in the order of the
# ``edges`` array stored in the embedding.
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))
# Star-convexity steps: index k points at angle k * 45 degrees (x right, y down).
_STEPS = np.array([[0, 1], [1, 1], [1, 0], [1, -1], [0, -1], [-1, -1], [-1, 0], [-1, 1]])  # (drow, dcol)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function, float32."""
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))).astype(np.float32)


def _logit(p: np.ndarray) -> np.ndarray:
    """Clipped log-odds of probabilities, float32."""
    p = np.clip(p, 1e-4, 1.0 - 1e-4)
    return np.clip(np.log(p / (1.0 - p)), -_LOGIT_CLIP, _LOGIT_CLIP).astype(np.float32)


def _resize(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D (or HWC) float array to ``hw``: area averaging down, bilinear up."""
    h, w = hw
    shrink = h <= arr.shape[0] and w <= arr.shape[1]
    return cv2.resize(arr, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _shift_diff(lab: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """Squared colour difference between each pixel and its ``(dr, dc)`` neighbour (0 off-grid)."""
    h, w = lab.shape[:2]
    out = np.zeros((h, w), dtype=np.float32)
    r0, r1 = 0, h - dr
    c0, c1 = max(0, -dc), w - max(0, dc)
    diff = lab[r0:r1, c0:c1] - lab[r0 + dr : r1 + dr, c0 + dc : c1 + dc]
    out[r0:r1, c0:c1] = np.einsum("ijk,ijk->ij", diff, diff)
    return out


def _feature_map(lab: np.ndarray) -> np.ndarray:
    """Return the ``(C, 64, 64)`` float32 feature map of a working-resolution image.

    Channels: CIELab (3), CIELab minus the image mean (3), x and y position in [-1, 1] (2), the
    gradient magnitude of L and the local standard deviation of L (2), roughly standardised.
    """
    side = _FEATURE_SIDE
    lab_small = cv2.resize(lab, (side, side), interpolation=cv2.INTER_AREA)
    lab_n = (lab_small - np.array([50.0, 0.0, 0.0], np.float32)) / np.array([25.0, 20.0, 20.0], np.float32)
    centred = lab_n - lab_n.reshape(-1, 3).mean(axis=0)
    ys, xs = np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side), indexing="ij")
    lum = lab[..., 0]
    grad = np.hypot(cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3))
    grad_small = cv2.resize(grad, (side, side), interpolation=cv2.INTER_AREA) / 20.0
    mean = cv2.resize(lum, (side, side), interpolation=cv2.INTER_AREA)
    mean_sq = cv2.resize(lum * lum, (side, side), interpolation=cv2.INTER_AREA)
    texture = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0)) / 10.0
    feats = [*np.moveaxis(lab_n, -1, 0), *np.moveaxis(centred, -1, 0), xs, ys, grad_small - 1.0, texture - 1.0]
    return np.stack(feats).astype(np.float32)


@dataclass(frozen=True)
class ClassicalConfig:
    """Every setting of the classical backend; :attr:`model_id` (the cache key) is derived from all of them.

    Field values are written in order into the id, each after its ``key`` tag (``f"{tag}{value:g}"``
    for numbers, ``0``/``1`` for flags); a field added without a tag enters the id as
    ``-name=value``, so a new setting can never reuse the cache entries of another.

    Attributes:
        work_size: Longer side, in pixels, of the working resolution of the graph cut.
        bins: Histogram bins per RGB channel of the colour models.
        smoothness: Weight ``lambda`` of the contrast-sensitive pairwise term.
        colour_weight: Weight of the colour log-likelihood ratio in the unary term.
        prior_weight: Weight of the previous mask's logits (``mask_input``) in the unary term.
        seed_radius: Radius, in working-resolution pixels, of the hard-seed disk around each click.
        star: Enforce star convexity around the positive clicks.
        context_mix: Weight of the context histogram (previous mask, or the image before any mask)
            in each colour model; the seeds' histogram gets ``1 - context_mix``.
        geo_weight: Weight of the geodesic term (in ``[-1, 1]`` before weighting) in the unary term.
        geo_reach: Geodesic distance (in image widths of flat travel) at which the term saturates.
        geo_gamma: Weight of the colour gradient in the geodesic step cost.
        frame_weight: Extra weight of the image frame in the first background colour model.
    """

    work_size: int = field(default=256, metadata={"key": "ws"})
    bins: int = field(default=16, metadata={"key": "b"})
    smoothness: float = field(default=3.0, metadata={"key": "s"})
    colour_weight: float = field(default=1.0, metadata={"key": "c"})
    prior_weight: float = field(default=0.25, metadata={"key": "p"})
    seed_radius: float = field(default=2.0, metadata={"key": "r"})
    star: bool = field(default=True, metadata={"key": "star"})
    context_mix: float = field(default=0.5, metadata={"key": "m"})
    geo_weight: float = field(default=3.0, metadata={"key": "g"})
    geo_reach: float = field(default=1.0, metadata={"key": ""})
    geo_gamma: float = field(default=3.0, metadata={"key": ""})
    frame_weight: float = field(default=5.0, metadata={"key": "f"})

    def __post_init__(self) -> None:
        for f in fields(self):
            if str(f.type) in _TYPES:
                object.__setattr__(self, f.name, _TYPES[str(f.type)](getattr(self, f.name)))
        if self.work_size < 16:
            raise ValueError(f"Expected work_size >= 16, got {self.work_size}")
        if not 2 <= self.bins <= 64:
            raise ValueError(f"Expected bins in [2, 64], got {self.bins}")
        if min(self.smoothness, self.colour_weight, self.prior_weight, self.seed_radius) < 0:
            raise ValueError(
                "Expected non-negative smoothness, colour_weight, prior_weight and seed_radius, got "
                f"{(self.smoothness, self.colour_weight, self.prior_weight, self.seed_radius)}"
            )
        if not 0.0 <= self.context_mix <= 1.0:
            raise ValueError(f"Expected context_mix in [0, 1], got {self.context_mix}")
        if min(self.geo_weight, self.geo_gamma, self.frame_weight) < 0 or self.geo_reach <= 0:
            raise ValueError(
                "Expected non-negative geo_weight, geo_gamma, frame_weight and a positive geo_reach, got "
                f"{(self.geo_weight, self.geo_gamma, self.frame_weight, self.geo_reach)}"
            )

    @property
    def model_id(self) -> str:
        """``classical-v3-ws256-b16-s3-c1-p0.25-r2-star1-m0.5-g3-1-3-f5`` for the defaults."""
        parts = []
        for f in fields(self):
            text = _id_text(getattr(self, f.name))
            parts.append(f"{f.metadata['key']}{text}" if "key" in f.metadata else f"{f.name}={text}")
        return "-".join(["classical", _VERSION, *parts])


#: How :class:`ClassicalConfig` coerces each field (so ``work_size=256.0`` and ``256`` are one setting).
_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool}


def _id_text(value: Any) -> str:
    """A setting as written in ``model_id``: ``0``/``1`` for flags, ``:g`` for floats."""
    if isinstance(value, (bool, int)):
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


class ClassicalBackend(PromptableSegmenter):
    """Weight-free graph-cut segmenter with colour models and a star-convexity prior (not SAM).

    Args:
        config: The settings (default: :class:`ClassicalConfig`'s defaults).
        **overrides: Fields of :class:`ClassicalConfig` replaced on ``config``, e.g.
            ``ClassicalBackend(work_size=128)``.

    Attributes:
        config: The settings; ``model_id`` is ``config.model_id``.
    """

    name = "classical"
    is_sam = False
    description = "classical (weight-free graph cut with geodesic and star-convexity priors, not SAM)"
    embedding_shape = (_FEATURE_CHANNELS, _FEATURE_SIDE, _FEATURE_SIDE)
    low_res_shape = (_LOW_RES, _LOW_RES)

    def __init__(self, config: ClassicalConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or ClassicalConfig(), **overrides)
        self.model_id = self.config.model_id

    # ------------------------------------------------------------------ encode

    def encode(self, image: np.ndarray) -> Embedding:
        """Precompute the working image, colour bins, pairwise weights and the feature map.

        Args:
            image: ``(H, W, 3)`` uint8 RGB image.

        Returns:
            The embedding: ``features`` float32 ``(10, 64, 64)``; ``extras`` holds ``bins``
            (uint16 colour-bin index per working pixel), ``edges`` (float16 ``(4, h, w)`` pairwise
            weights towards the right, down, down-right and down-left neighbours) and ``lab``
            (uint8 working-resolution CIELab image).
        """
        image = validate_image(image)
        big_h, big_w = image.shape[:2]
        h, w = _fit(big_h, big_w, self.config.work_size)
        rgb = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA) if (h, w) != (big_h, big_w) else image
        lab8 = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
        lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)

        q = (rgb.astype(np.uint16) * self.config.bins) >> 8
        bins = ((q[..., 0] * self.config.bins + q[..., 1]) * self.config.bins + q[..., 2]).astype(np.uint16)

        diffs = [_shift_diff(lab, dr, dc) for dr, dc in _OFFSETS]
        beta = 1.0 / (2.0 * max(float(np.mean([d[: h - 1, 1 : w - 1].mean() for d in diffs])), 1e-6))
        edges = np.stack([np.exp(-beta * d) for d in diffs]).astype(np.float16)

        features = _feature_map(lab)
        extras = {"bins": bins, "edges": edges, "lab": lab8, "geo_cost": self._geo_cost(lab)}
        return Embedding(features=features, image_size=(big_h, big_w), extras=extras)

    def _geo_cost(self, lab: np.ndarray) -> np.ndarray:
        """Per-pixel step cost ``(1 + gamma * |grad Lab| / mean) / side`` of the coarse geodesic grid."""
        h, w = lab.shape[:2]
        ch, cw = _fit(h, w, _GEO_SIDE)
        small = cv2.resize(lab, (cw, ch), interpolation=cv2.INTER_AREA) if (ch, cw) != (h, w) else lab
        squared = [cv2.Sobel(small, cv2.CV_32F, dx, dy, ksize=3) ** 2 for dx, dy in ((1, 0), (0, 1))]
        grad = np.sqrt((squared[0] + squared[1]).sum(-1))
        grad = grad / max(float(grad.mean()), 1e-6)
        return ((1.0 + self.config.geo_gamma * grad) / max(ch, cw)).astype(np.float16)

    def embedding_from_arrays(self, arrays: Mapping[str, np.ndarray]) -> Embedding:
        """Inverse of :meth:`embedding_to_arrays`, checking each array's shape and dtype as :meth:`encode` makes them.

        Raises:
            ValueError: On a missing array or a wrong shape or dtype (a foreign or forged cache entry,
                which the cache then recomputes).
        """
        embedding = super().embedding_from_arrays(arrays)
        big_h, big_w = embedding.image_size
        if big_h < 1 or big_w < 1:
            raise ValueError(f"Expected a cached image_size of positive integers, got {embedding.image_size}")
        h, w = _fit(big_h, big_w, self.config.work_size)
        expected = {"features": (self.embedding_shape, np.float32), "bins": ((h, w), np.uint16),
                    "edges": ((len(_OFFSETS), h, w), np.float16), "lab": ((h, w, 3), np.uint8),
                    "geo_cost": (_fit(h, w, _GEO_SIDE), np.float16)}
        got = {"features": embedding.features, **embedding.extras}
        for name, (shape, dtype) in expected.items():
            arr = got.get(name)
            if not isinstance(arr, np.ndarray) or arr.shape != shape or arr.dtype != dtype:
                found = (getattr(arr, "shape", None), getattr(arr, "dtype", None))
                raise ValueError(f"Expected cached {name} of shape {shape} and dtype {np.dtype(dtype)} for "
                                 f"{self.model_id}, got {found}")
        return embedding

    # ------------------------------------------------------------------ decode

    def decode(
        self,
        embedding: Embedding,
        points: np.ndarray,
        labels: np.ndarray,
        mask_input: Any | None = None,
        multimask: bool = False,
    ) -> Prediction:
        """Segment from clicks with a graph cut.

        Args:
            embedding: From :meth:`encode`.
            points: ``(N, 2)`` ``(x, y)`` clicks in image pixels.
            labels: ``(N,)`` labels, 1 foreground / 0 background.
            mask_input: ``(1, 256, 256)`` logits of a previous prediction (``Prediction.logits()``),
                used for the colour models and as a weak unary prior; or ``None``.
            multimask: Return three proposals (smoothness ``0.5x``, ``1x`` and ``2x`` the default,
                the middle one being the single-mask answer) instead of one.

        Returns:
            The proposals. ``low_res_logits`` are float32 ``(K, 256, 256)`` log-odds of the
            foreground over the image frame (stretched). ``scores`` estimate the quality of each
            mask as the mean edge contrast along its boundary, ``1 - exp(-beta |I_p - I_q|^2)``
            averaged over the cut grid edges, in ``[0, 1]`` (0 for an empty or full mask): a cut
            that follows strong image edges scores high.
        """
        pts, lab = validate_prompts(points, labels, embedding.image_size)
        bins = np.asarray(embedding.extras["bins"])
        edges = np.asarray(embedding.extras["edges"], dtype=np.float32)
        prior = self._prior(mask_input, bins.shape)
        unary, seeds_fg, seeds_bg, centres = self._unary(embedding, bins, pts, lab, prior)
        factors = (0.5, 1.0, 2.0) if multimask else (1.0,)
        masks = [self._cut(unary, edges * (self.config.smoothness * f), seeds_fg, seeds_bg, centres) for f in factors]
        probs = [cv2.GaussianBlur(m.astype(np.float32), (0, 0), 0.7) for m in masks]
        scores = np.array([_boundary_score(m, edges) for m in masks], dtype=np.float32)
        low = np.stack([_logit(_resize(p, (_LOW_RES, _LOW_RES))) for p in probs])
        return Prediction(scores=scores, low_res_logits=low, full_mask=_FullMask(probs, embedding.image_size))

    def _prior(self, mask_input: Any | None, hw: tuple[int, ...]) -> np.ndarray | None:
        """Return the previous mask's foreground probability at the working resolution, or None."""
        if mask_input is None:
            return None
        arr = np.asarray(mask_input, dtype=np.float32)
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2:
            raise ValueError(
                f"Expected mask_input of shape (1, h, w) (Prediction.logits()), got {np.shape(mask_input)}"
            )
        return _sigmoid(_resize(arr, (int(hw[0]), int(hw[1]))))

    def _unary(
        self,
        embedding: Embedding,
        bins: np.ndarray,
        pts: np.ndarray,
        lab: np.ndarray,
        prior: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return the unary log-odds of foreground, the hard seeds and the working-res positive clicks.

        Points are ``(x, y)`` image pixels; the returned masks are ``(h, w)`` working-resolution
        arrays indexed ``[row, col]`` and ``centres`` holds ``(row, col)`` working pixels.
        """
        h, w = bins.shape
        big_h, big_w = embedding.image_size
        sx, sy = w / big_w, h / big_h
        # A point selects the image pixel [floor(y), floor(x)]; that pixel's centre picks the working pixel,
        # so a click anywhere inside one image pixel gives the same seed (no float rounding at x * sx).
        cols = np.clip(((np.floor(pts[:, 0]) + 0.5) * sx).astype(np.int64), 0, w - 1)
        rows = np.clip(((np.floor(pts[:, 1]) + 0.5) * sy).astype(np.int64), 0, h - 1)
        radius = max(1, round(self.config.seed_radius))
        seeds_fg = _disks((h, w), rows[lab == 1], cols[lab == 1], radius)
        seeds_bg = _disks((h, w), rows[lab == 0], cols[lab == 0], radius) & ~seeds_fg

        context_fg: np.ndarray
        context_bg: np.ndarray
        if prior is None:
            near = _disks((h, w), rows[lab == 1], cols[lab == 1], 3 * radius)
            context_fg = np.zeros((h, w), np.float32)
            context_bg = np.ones((h, w), np.float32)
            border = max(1, round(0.03 * max(h, w)))
            context_bg[:border] = context_bg[-border:] = 1.0 + self.config.frame_weight
            context_bg[:, :border] = context_bg[:, -border:] = 1.0 + self.config.frame_weight
            context_bg[near] = 0.0
        else:
            context_fg, context_bg = prior, 1.0 - prior
        n, mix = self.config.bins, self.config.context_mix
        fg_hist = _mix(_hist(bins, seeds_fg, n), _hist(bins, context_fg, n), mix, n)
        bg_hist = _mix(_hist(bins, seeds_bg, n), _hist(bins, context_bg, n), mix, n)
        llr = self.config.colour_weight * (np.log(fg_hist) - np.log(bg_hist))[bins]
        if self.config.geo_weight > 0 and seeds_fg.any():
            llr = llr + self.config.geo_weight * _geodesic_llr(
                np.asarray(embedding.extras["geo_cost"], np.float32), seeds_fg, seeds_bg, self.config.geo_reach
            )
        if prior is not None:
            llr = llr + self.config.prior_weight * _logit(prior)
        centres = np.stack([rows[lab == 1], cols[lab == 1]], axis=1)
        return llr.astype(np.float32), seeds_fg, seeds_bg, centres

    def _cut(
        self,
        unary: np.ndarray,
        edges: np.ndarray,
        seeds_fg: np.ndarray,
        seeds_bg: np.ndarray,
        centres: np.ndarray,
    ) -> np.ndarray:
        """Solve the graph cut and return the working-resolution foreground mask.

        Capacities are fixed-point integers (``_FLOW_SCALE`` units per 1.0): PyMaxflow's integer
        graph solves these grid problems several times faster than its float graph.
        """
        h, w = unary.shape
        g = maxflow.GraphInt()
        nodes = g.add_grid_nodes((h, w))
        for k, (dr, dc) in enumerate(_OFFSETS):
            structure = np.zeros((3, 3))
            structure[1 + dr, 1 + dc] = 1.0
            weights = np.rint(edges[k] * (_FLOW_SCALE / np.hypot(dr, dc))).astype(np.int32)
            g.add_grid_edges(nodes, weights=weights, structure=structure, symmetric=True)
        inf = _FLOW_INF
        scaled = np.rint(unary * _FLOW_SCALE).astype(np.int32)
        source = np.where(seeds_fg, inf, np.maximum(scaled, 0)).astype(np.int32)
        sink = np.where(seeds_bg, inf, np.maximum(-scaled, 0)).astype(np.int32)
        g.add_grid_tedges(nodes, source, sink)
        if self.config.star and len(centres):
            src, dst = _star_edges(nodes, centres)
            g.add_edges(src, dst, np.full(src.shape, inf, np.int32), np.zeros(src.shape, np.int32))
        g.maxflow()
        return ~g.get_grid_segments(nodes)

    # ----------------------------------------------------------------- observe

    def observe(
        self,
        embedding: Embedding,
        low_res_logits: Any | None,
        grid_hw: tuple[int, int] | None,
        mask_hw: tuple[int, int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the AlignSAM state (features times mask probability) and the mask probabilities.

        Args:
            embedding: From :meth:`encode`.
            low_res_logits: ``(1, 256, 256)`` logits of the previous mask, or ``None`` (all ones).
            grid_hw: ``(rows, cols)`` to area-average the ``(C, 64, 64)`` state to (cell ``(r, c)``
                covers the same fraction of the image frame as action cell ``(r, c)``), or ``None``.
            mask_hw: ``(h, w)`` of the returned probability map.

        Returns:
            float32 ``state`` ``(C, rows, cols)`` (or ``(C, 64, 64)``) and ``mask`` ``mask_hw``.
        """
        feats = np.asarray(embedding.features, dtype=np.float32)
        if low_res_logits is None:
            state = feats
            mask = np.ones(tuple(mask_hw), dtype=np.float32)
        else:
            logits = np.asarray(low_res_logits, dtype=np.float32).reshape(np.shape(low_res_logits)[-2:])
            state = feats * _sigmoid(_resize(logits, (feats.shape[1], feats.shape[2])))[None]
            mask = _sigmoid(_resize(logits, (int(mask_hw[0]), int(mask_hw[1]))))
        if grid_hw is not None:
            rows, cols = int(grid_hw[0]), int(grid_hw[1])
            # cv2's area resize takes at most 4 channels: pool each channel separately.
            pooled = np.stack([cv2.resize(ch, (cols, rows), interpolation=cv2.INTER_AREA) for ch in state], axis=-1)
            state = pooled.reshape(rows, cols, -1).transpose(2, 0, 1)
        return np.ascontiguousarray(state, dtype=np.float32), mask


def _fit(height: int, width: int, side: int) -> tuple[int, int]:
    """``(h, w)`` of an ``height x width`` image shrunk (never enlarged) to fit ``side`` pixels, at least 2x2."""
    scale = min(1.0, side / max(height, width))
    return max(2, round(height * scale)), max(2, round(width * scale))


@dataclass(frozen=True)
class _FullMask:
    """Proposal ``k``'s ``(H, W)`` mask: its working-resolution probability upsampled, ``> 0.5`` (picklable)."""

    probs: list[np.ndarray]
    image_size: tuple[int, int]

    def __call__(self, k: int) -> np.ndarray:
        big_h, big_w = self.image_size
        return cv2.resize(self.probs[k], (big_w, big_h), interpolation=cv2.INTER_LINEAR) > 0.5


def _disks(hw: tuple[int, int], rows: np.ndarray, cols: np.ndarray, radius: int) -> np.ndarray:
    """Return a bool mask with filled disks of ``radius`` at the given pixels."""
    out = np.zeros(hw, dtype=np.uint8)
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        cv2.circle(out, (int(c), int(r)), int(radius), 1, thickness=-1)
    return out.astype(bool)


def _hist(bins: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray | None:
    """Normalised, smoothed colour histogram of the pixels weighted by ``weight`` (None if empty)."""
    hist = np.bincount(bins.ravel(), weights=np.asarray(weight, dtype=np.float64).ravel(), minlength=n**3)
    total = hist.sum()
    if total <= 0:
        return None
    hist = gaussian_filter(hist.reshape(n, n, n), sigma=1.0, mode="constant").ravel()
    return hist / hist.sum()


def _mix(seeds: np.ndarray | None, context: np.ndarray | None, context_mix: float, n: int) -> np.ndarray:
    """Mixture of the seed and context histograms (either may be missing), floored to stay positive."""
    if seeds is None and context is None:
        return np.full(n**3, 1.0 / n**3)
    if seeds is None:
        mixed = context
    elif context is None:
        mixed = seeds
    else:
        mixed = (1.0 - context_mix) * seeds + context_mix * context
    return np.asarray(mixed, dtype=np.float64) + 1e-5


def _geodesic_llr(cost: np.ndarray, seeds_fg: np.ndarray, seeds_bg: np.ndarray, reach: float) -> np.ndarray:
    """Geodesic log-odds term in ``[-1, 1]`` at the working resolution (Bai & Sapiro 2007 style).

    ``cost`` is the per-pixel step cost of a coarse grid (spatial step plus colour gradient). With
    ``D_f`` / ``D_b`` the geodesic distances to the foreground / background seeds (``D_b = reach``
    without background seeds, capped at ``reach``), the term is ``clip((D_b - D_f) / reach, -1, 1)``:
    pixels that a seed of either kind reaches much more cheaply lean towards that label.
    """
    h, w = seeds_fg.shape
    ch, cw = cost.shape
    dist_fg = _geodesic(cost, _resize(seeds_fg.astype(np.float32), (ch, cw)) > 0.25)
    if seeds_bg.any():
        dist_bg = np.minimum(_geodesic(cost, _resize(seeds_bg.astype(np.float32), (ch, cw)) > 0.25), reach)
    else:
        dist_bg = np.full((ch, cw), reach, np.float32)
    term = np.clip((dist_bg - dist_fg) / reach, -1.0, 1.0).astype(np.float32)
    return cv2.resize(term, (w, h), interpolation=cv2.INTER_LINEAR)


def _geodesic(cost: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Minimum accumulated ``cost`` from the ``sources`` pixels (8-connected, skimage MCP)."""
    starts = np.argwhere(sources)
    if len(starts) == 0:
        starts = np.argwhere(cost == cost.min())[:1]
    dist, _ = MCP_Geometric(cost.astype(np.float64), fully_connected=True).find_costs(starts)
    return dist.astype(np.float32)


def _star_edges(nodes: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return directed edges ``p -> q`` (q: p's neighbour towards its nearest positive click)."""
    h, w = nodes.shape
    rr, cc = np.mgrid[0:h, 0:w]
    d2 = (rr[None] - centres[:, 0, None, None]) ** 2 + (cc[None] - centres[:, 1, None, None]) ** 2
    nearest = np.argmin(d2, axis=0)
    dy = centres[nearest, 0] - rr
    dx = centres[nearest, 1] - cc
    moving = (dx != 0) | (dy != 0)
    k = np.round(np.arctan2(dy, dx) / (np.pi / 4)).astype(np.int64) % 8
    step = _STEPS[k]
    qr, qc = rr + step[..., 0], cc + step[..., 1]
    return nodes[moving], nodes[qr[moving], qc[moving]]


def _boundary_score(mask: np.ndarray, edges: np.ndarray) -> float:
    """Mean contrast ``1 - w_pq`` over the grid edges that the mask boundary cuts (0 if none)."""
    total, count = 0.0, 0
    for k, (dr, dc) in enumerate(_OFFSETS[:2]):
        h, w = mask.shape
        cut = mask[: h - dr, : w - dc] != mask[dr:, dc:]
        total += float((1.0 - edges[k, : h - dr, : w - dc][cut]).sum())
        count += int(cut.sum())
    return total / count if count else 0.0
