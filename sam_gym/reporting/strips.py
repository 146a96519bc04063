"""Episode strips: one PNG per recorded episode, a panel per click, with the ground truth and a legend.

Each panel shows the prediction against the ground truth: correct foreground (true positives)
tinted blue, predicted pixels outside the target (false positives) magenta, target pixels the
prediction misses (false negatives) hatched in yellow, the ground truth outlined in yellow and the
prediction in white; the clicks so far as dots (green foreground, red background) and the initial prompts as
rings. A header names the policy, the backend, the sample and the seed, and explains the colours.
Points are ``(x, y)`` in image pixels (x right, y down); masks are ``(H, W)`` bool indexed
``[row, col]``. OpenCV is imported when drawing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_gym.atomic import atomic_write_bytes
from sam_gym.evaluation import EpisodeRecord, PolicyRun

__all__ = ["FALSE_NEGATIVE_RGB", "FALSE_POSITIVE_RGB", "TRUE_POSITIVE_RGB", "episode_strip", "save_episode_strips"]

#: Tint of predicted pixels on the target.
TRUE_POSITIVE_RGB = (40, 120, 255)
#: Tint of predicted pixels off the target (void pixels excluded).
FALSE_POSITIVE_RGB = (230, 40, 230)
#: Hatching of target pixels the prediction misses; also the colour of the ground-truth outline.
FALSE_NEGATIVE_RGB = (255, 215, 0)
_HATCH = 6  # period of the false-negative hatching, in panel pixels (2 of every 6 diagonals drawn)
_PREDICTION_EDGE_RGB = (255, 255, 255)
_ALPHA = 0.5
_CAPTION = 22  # caption bar height above each panel, in pixels
_TEXT_SCALE, _LINE = 0.45, 18  # header font scale and line height


def _edges(mask: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0


def _overlay(image: np.ndarray, mask: np.ndarray, target: np.ndarray, void: np.ndarray) -> np.ndarray:
    """Tint TP / FP / FN pixels and outline the ground truth and the prediction (all at panel size)."""
    out = image.astype(np.float32)
    false_pos = mask & ~target & ~void
    for pixels, colour in ((mask & ~false_pos, TRUE_POSITIVE_RGB), (false_pos, FALSE_POSITIVE_RGB)):
        out[pixels] = (1 - _ALPHA) * out[pixels] + _ALPHA * np.asarray(colour, np.float32)
    out = np.clip(out, 0, 255).astype(np.uint8)
    rows, cols = np.indices(mask.shape)
    out[target & ~mask & ((rows + cols) % _HATCH < 2)] = FALSE_NEGATIVE_RGB
    out[_edges(mask)] = _PREDICTION_EDGE_RGB
    out[_edges(target)] = FALSE_NEGATIVE_RGB
    return out


def _wrap(text: str, width: int) -> list[str]:
    """Split ``text`` into lines that fit ``width`` pixels in the header font (words are not cut)."""
    import cv2

    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        fits = cv2.getTextSize(candidate, cv2.FONT_HERSHEY_SIMPLEX, _TEXT_SCALE, 1)[0][0] <= width
        if lines and fits:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def _header(width: int, titles: Sequence[str]) -> np.ndarray:
    """A white band: the title lines (wrapped), then the legend items (flowed, wrapped to ``width``)."""
    import cv2

    from sam_gym.render import NEGATIVE_RGB, POSITIVE_RGB

    font, black = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0)
    lines = [line for title in titles for line in _wrap(title, width - 8)]

    def dot(canvas: np.ndarray, x: int, y: int, colour: tuple[int, int, int], ring: bool = False) -> None:
        cv2.circle(canvas, (x + 6, y), 5, black, 3 if ring else -1, lineType=cv2.LINE_AA)
        cv2.circle(canvas, (x + 6, y), 4, colour, 2 if ring else -1, lineType=cv2.LINE_AA)

    def swatch(canvas: np.ndarray, x: int, y: int, colour: tuple[int, int, int], hatch: bool = False) -> None:
        if hatch:
            rows, cols = np.indices((11, 13))
            canvas[y - 5:y + 6, x:x + 13][(rows + cols) % _HATCH < 2] = colour
        else:
            cv2.rectangle(canvas, (x, y - 5), (x + 12, y + 5), colour, -1)
        cv2.rectangle(canvas, (x, y - 5), (x + 12, y + 5), (90, 90, 90), 1)

    def edge(canvas: np.ndarray, x: int, y: int, colour: tuple[int, int, int]) -> None:
        cv2.rectangle(canvas, (x, y - 5), (x + 12, y + 5), (60, 60, 60), -1)
        cv2.rectangle(canvas, (x + 2, y - 3), (x + 10, y + 3), colour, 1)

    items = [
        (lambda c, x, y: dot(c, x, y, POSITIVE_RGB), "positive click"),
        (lambda c, x, y: dot(c, x, y, NEGATIVE_RGB), "negative click"),
        (lambda c, x, y: dot(c, x, y, POSITIVE_RGB, ring=True), "ring: initial prompt"),
        (lambda c, x, y: swatch(c, x, y, TRUE_POSITIVE_RGB), "predicted, on target"),
        (lambda c, x, y: swatch(c, x, y, FALSE_POSITIVE_RGB), "predicted, off target (FP)"),
        (lambda c, x, y: swatch(c, x, y, FALSE_NEGATIVE_RGB, hatch=True), "target missed (FN)"),
        (lambda c, x, y: edge(c, x, y, FALSE_NEGATIVE_RGB), "ground-truth outline"),
        (lambda c, x, y: edge(c, x, y, _PREDICTION_EDGE_RGB), "prediction outline"),
    ]
    placed, x, row = [], 4, 0
    for draw, text in items:
        size = 16 + cv2.getTextSize(text, font, _TEXT_SCALE, 1)[0][0] + 14
        if x > 4 and x + size > width:
            x, row = 4, row + 1
        placed.append((draw, text, x, row))
        x += size
    height = _LINE * (len(lines) + row + 1) + 8
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(canvas, line, (4, _LINE * (i + 1)), font, _TEXT_SCALE, black, 1, cv2.LINE_AA)
    for draw, text, x, row in placed:
        y = _LINE * (len(lines) + row + 1) - 4
        draw(canvas, x, y)
        cv2.putText(canvas, text, (x + 16, y + 5), font, _TEXT_SCALE, black, 1, cv2.LINE_AA)
    return canvas


def episode_strip(sample: Any, record: EpisodeRecord, columns: int = 6, height: int = 160, *, policy: str = "",
                  backend: str = "") -> np.ndarray:
    """Draw an episode as a grid of panels under a header: the mask after the initial prompts, then after each click.

    Like AlignSAM's Figure 5, with the ground truth: each panel shows the image, the mask at that
    point against the ground truth (see the module docstring for the colours) and every prompt so
    far, with a caption giving the click number and IoU. The header names ``policy``, ``backend``,
    the sample and the seed, and holds the legend.

    Args:
        sample: The episode's sample: ``image`` (``(H, W, 3)`` uint8 RGB), ``target`` and ``void``
            (``(H, W)`` bool).
        record: An episode recorded with ``record_masks`` (``record.masks`` set).
        columns: Panels per row.
        height: Height of each panel in pixels.
        policy: The policy's name, for the header.
        backend: The backend's description, for the header.

    Returns:
        The ``uint8`` RGB strip.

    Raises:
        ValueError: If the record has no masks, or ``columns`` / ``height`` are not positive.
    """
    import cv2

    from sam_gym.render import draw_episode

    if record.masks is None or len(record.masks) != len(record.ious) + 1:
        raise ValueError("Expected a record made with record_masks (one mask after the initial prompts and one "
                         f"per click), got {None if record.masks is None else len(record.masks)} masks")
    if columns < 1 or height < 8:
        raise ValueError(f"Expected columns >= 1 and height >= 8, got {columns} and {height}")
    image = np.asarray(sample.image)
    scale = height / image.shape[0]
    size = (max(1, round(image.shape[1] * scale)), height)  # (width, height) for OpenCV

    def shrink(mask: np.ndarray) -> np.ndarray:
        return cv2.resize(np.asarray(mask, np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0

    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    target, void = shrink(sample.target), shrink(sample.void)
    points = scale * np.asarray(record.init_points + record.points, dtype=np.float32).reshape(-1, 2)
    labels = np.asarray(record.init_labels + record.labels, dtype=np.int64)
    n_init = len(record.init_points)
    nothing = np.zeros(small.shape[:2], dtype=bool)
    panels = []
    for k, mask in enumerate(record.masks):
        caption = f"init ({n_init} prompts) IoU {record.init_iou:.3f}" if k == 0 else \
            f"click {k}: IoU {record.ious[k - 1]:.3f}"
        drawn = draw_episode(_overlay(small, shrink(mask), target, void), nothing, points[: n_init + k],
                             labels[: n_init + k], n_init=n_init)
        bar = np.full((_CAPTION, size[0], 3), 255, dtype=np.uint8)
        cv2.putText(bar, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        panels.append(np.concatenate([bar, drawn], axis=0))
    blank = np.full_like(panels[0], 255)  # every panel has the same size (same image, same height)
    columns = min(columns, len(panels))
    panels += [blank] * (-len(panels) % columns)
    rows = [np.concatenate(panels[i:i + columns], axis=1) for i in range(0, len(panels), columns)]
    grid = np.concatenate(rows, axis=0)
    titles = [f"policy: {policy or '?'} | backend: {backend or '?'}",
              f"sample {record.image_id} (index {record.index}), seed {record.seed}, "
              f"final IoU {record.ious[-1]:.3f}, {len(record.ious)} click(s)"]
    return np.concatenate([_header(grid.shape[1], titles), grid], axis=0)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def save_episode_strips(run: PolicyRun, dataset: Any, out_dir: str | Path, limit: int | None = None, *,
                        backend: str) -> list[Path]:
    """Write a PNG :func:`episode_strip` for each recorded episode of ``run`` into ``out_dir``.

    Files are named ``<policy>_<n>_<image id>_seed<seed>.png``.

    Args:
        run: A policy's episodes; those with ``masks`` recorded are drawn.
        dataset: The dataset the episodes ran on (samples are read from it by index).
        out_dir: Output folder (created).
        limit: Draw at most this many episodes.
        backend: The backend's description, written in every strip's header.

    Returns:
        The written paths.
    """
    import cv2

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recorded = [r for r in run.records if r.masks is not None][:limit]
    paths = []
    for n, record in enumerate(recorded):
        strip = episode_strip(dataset[record.index], record, policy=run.name, backend=backend)
        path = out / f"{_slug(run.name)}_{n:02d}_{_slug(record.image_id)}_seed{record.seed}.png"
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError(f"OpenCV could not encode the episode strip {path}")
        atomic_write_bytes(path, encoded.tobytes())
        paths.append(path)
    return paths
