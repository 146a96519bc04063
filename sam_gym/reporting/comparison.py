"""Paired comparisons of policies on the same episodes, within one results file or across several.

Two policies are paired on the episodes they share (:func:`~sam_gym.reporting.episodes.episode_key`:
sample content hash and reset seed). Per image, each policy's episodes are averaged over the
shared seeds; the per-image differences get a paired bootstrap interval of their mean and a
Wilcoxon signed-rank test (:func:`sam_gym.stats.paired_comparison`). ``results.md`` compares every
policy with the first one; ``sam-gym compare`` joins the results of several runs
(:func:`join_runs`) and compares every row with a reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam_gym import stats
from sam_gym.reporting.episodes import episode_key, episode_value, per_unit
from sam_gym.reporting.tables import estimate_cell, markdown_table

__all__ = ["PAIRED_METRICS", "PairedRow", "join_runs", "paired_markdown", "paired_rows", "paired_values"]

#: Metrics compared by default: key -> (label, the better direction).
PAIRED_METRICS: dict[str, tuple[str, str]] = {
    "noc@85": ("NoC@85", "lower"),
    "noc@90": ("NoC@90", "lower"),
    "final_iou": ("final IoU", "higher"),
}


@dataclass(frozen=True)
class PairedRow:
    """One paired comparison: ``policy`` against ``reference`` on one metric.

    Attributes:
        policy: The compared row.
        reference: The reference row.
        metric: The metric's key (see :func:`~sam_gym.reporting.episodes.episode_value`).
        result: ``a`` = ``policy``, ``b`` = ``reference``; ``difference`` is ``policy - reference``.
    """

    policy: str
    reference: str
    metric: str
    result: stats.PairedComparison


def paired_values(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]],
                  metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-image values of ``metric`` for two policies, on the episodes both ran.

    Returns:
        Two aligned ``(n_images,)`` arrays (each image's mean over the seeds both policies ran).

    Raises:
        ValueError: When the two share no episode, or on an unknown metric.
    """
    by_key = {episode_key(e): e for e in b}
    shared = [e for e in a if episode_key(e) in by_key]
    if not shared:
        raise ValueError(f"Expected two policies with shared episodes (sample hash + seed), got none in common "
                         f"among {len(a)} and {len(b)}")
    values = np.array([[episode_value(e, metric), episode_value(by_key[episode_key(e)], metric)] for e in shared])
    _, units = per_unit(shared, values)
    return units[:, 0], units[:, 1]


def paired_rows(episodes: Mapping[str, Sequence[Mapping[str, Any]]], reference: str | None = None,
                metrics: Sequence[str] = tuple(PAIRED_METRICS), *, n_resamples: int = stats.N_RESAMPLES,
                seed: int = 0) -> list[PairedRow]:
    """Compare every row of ``episodes`` with ``reference`` (default: the first row) on each metric.

    Args:
        episodes: Row name -> its episode entries.
        reference: The row the others are compared with.
        metrics: Per-episode metric keys.
        n_resamples: Bootstrap resamples.
        seed: Seed of the resampling.

    Raises:
        ValueError: On an unknown reference or metric, or rows that share no episode.
    """
    names = list(episodes)
    reference = names[0] if reference is None else reference
    if reference not in episodes:
        raise ValueError(f"Expected the reference among {names}, got {reference!r}")
    rows = []
    for metric in metrics:
        for name in names:
            if name == reference:
                continue
            a, b = paired_values(episodes[name], episodes[reference], metric)
            rows.append(PairedRow(name, reference, metric,
                                  stats.paired_comparison(a, b, n_resamples=n_resamples, seed=seed)))
    return rows


def _p(value: float) -> str:
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _digits(metric: str) -> int:
    return 2 if metric.startswith(("noc@", "return")) else 3


def paired_markdown(rows: Sequence[PairedRow]) -> str:
    """The paired comparisons as a Markdown table, with a footnote on how they were computed."""
    columns = ["metric", "policy", "reference", "policy mean", "reference mean", "difference [95% CI]",
               "Wilcoxon p", "images (differing)"]
    cells = []
    for row in rows:
        label, better = PAIRED_METRICS.get(row.metric, (row.metric, ""))
        d, r = _digits(row.metric), row.result
        cells.append([f"{label} ({better} is better)" if better else label, row.policy, row.reference,
                      f"{r.mean_a:.{d}f}", f"{r.mean_b:.{d}f}",
                      estimate_cell(r.difference.mean, r.difference.interval(), d), _p(r.p_value),
                      f"{r.n} ({r.n_nonzero})"])
    note = ("Paired on the shared episodes (same sample and seed); per image, episodes are averaged over the "
            "seeds first. difference = policy - reference, with a percentile bootstrap 95% CI over images "
            f"({stats.N_RESAMPLES} resamples, seed 0); Wilcoxon: two-sided signed-rank test of the per-image "
            "differences (zero differences dropped; p = 1 when every difference is zero). p-values are not "
            "corrected for multiple comparisons.")
    return markdown_table(cells, columns, right=columns[3:]) + "\n\n" + note


def _backend_id(results: Mapping[str, Any]) -> tuple[str, str]:
    return str(results.get("backend")), str(results.get("backend_model_id") or results.get("backend_description"))


def join_runs(runs: Mapping[str, Mapping[str, Any]], shared_only: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Join the policies of several results dicts on their episodes.

    Args:
        runs: Run label -> its ``results.json`` dict.
        shared_only: Keep only the episodes every row ran, instead of refusing different episode sets.

    Returns:
        ``"label/policy"`` -> its episode entries (restricted to the shared ones with ``shared_only``).

    Raises:
        ValueError: On results without per-episode data (``schema_version`` < 2), runs with another
            click budget or backend, or rows whose episodes differ (without ``shared_only``, or when
            they share none).
    """
    if not runs:
        raise ValueError("Expected at least one results dict, got none")
    first_label, first = next(iter(runs.items()))
    rows: dict[str, list[dict[str, Any]]] = {}
    for label, results in runs.items():
        missing = [name for name, e in results.get("policies", {}).items() if "episodes" not in e]
        if missing or not results.get("policies"):
            raise ValueError(f"Expected results with per-episode data (results.json schema_version >= 2), got "
                             f"{label} (schema_version {results.get('schema_version', 1)}) without it; run its "
                             "sam-gym eval command again with this version")
        if results.get("max_clicks") != first.get("max_clicks"):
            raise ValueError(f"Expected runs with the same click budget, got {first.get('max_clicks')} in "
                             f"{first_label} and {results.get('max_clicks')} in {label}")
        if _backend_id(results) != _backend_id(first):
            raise ValueError(f"Expected runs with the same backend, got {'/'.join(_backend_id(first))} in "
                             f"{first_label} and {'/'.join(_backend_id(results))} in {label}")
        for name, entry in results["policies"].items():
            rows[f"{label}/{name}"] = list(entry["episodes"])
    keys = {name: {episode_key(e) for e in entries} for name, entries in rows.items()}
    shared = set.intersection(*keys.values())
    differing = [name for name in rows if keys[name] != shared]
    if differing:
        first_row, other = next(iter(rows)), differing[0]
        if other == first_row:
            other = next(name for name in rows if keys[name] != keys[first_row])
        if not shared or not shared_only:
            hint = "; pass --shared-only to compare on the shared ones" if shared else ""
            raise ValueError(f"Expected the same episodes (sample hash + seed) in every run, got "
                             f"{len(keys[first_row])} in {first_row} and {len(keys[other])} in {other}, "
                             f"{len(shared)} shared by all{hint}")
        rows = {name: [e for e in entries if episode_key(e) in shared] for name, entries in rows.items()}
    return rows
