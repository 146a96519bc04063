"""Per-episode entries of ``results.json`` and the figures (means, bootstrap intervals) computed from them.

An entry is a JSON dict, one per episode (see :func:`episode_entry`). Summary figures are means over
episodes; their 95 % intervals are bootstrapped over **images** (:mod:`sam_gym.stats`): the episodes
of one sample under several reset seeds are averaged first, because they are not independent.
``results.json`` and ``sam-gym compare`` compute their figures from these entries alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sam_gym import stats
from sam_gym.evaluation import EpisodeRecord
from sam_gym.metrics import BerCounts, ber_from_totals, failure, noc

__all__ = ["BER_COUNT_KEYS", "TASK_METRICS", "TAUS", "episode_entry", "episode_key", "episode_value",
           "has_task_metrics", "per_unit", "summary_intervals"]

#: Binary-task metrics of the final masks in a summary, with the direction that is better: the mean over
#: episodes of each per-episode score, except ``ber``, the data-set BER pooled from every episode's
#: counts (the shadow-detection protocol), and ``ber_image_mean``, the mean of the per-episode BERs.
TASK_METRICS: dict[str, str] = {"mae": "lower", "f_beta": "higher", "e_measure": "higher", "s_measure": "higher",
                                "weighted_f": "higher", "ber": "lower", "ber_image_mean": "lower"}
#: The per-episode BER counts (``ber_tp``, ...) from which the pooled ``ber`` is computed.
BER_COUNT_KEYS: tuple[str, ...] = tuple(f"ber_{k}" for k in BerCounts._fields)
#: IoU thresholds of NoC and FR (keys ``noc@85``, ``failed@85``, ...).
TAUS: tuple[float, ...] = (0.85, 0.90)
_NOT_METRICS = ("index", "seed")  # numbers of an entry that identify the episode


def _pct(tau: float) -> int:
    return round(tau * 100)


def episode_entry(record: EpisodeRecord, max_clicks: int) -> dict[str, Any]:
    """The ``results.json`` entry of one episode.

    Returns:
        ``{"index", "image_id", "image_sha256", "sample_sha256", "seed", "init_iou", "ious" (after
        each agent click), "final_iou", "noc@85", "noc@90" (the budget when never reached),
        "failed@85", "failed@90" (RITM's strict rule: NoC >= budget), "is_success" (the env's, at
        episode end), "clicks", "fg_hits" (clicks on ground-truth foreground), "return",
        "task_metrics" (the final mask's scores, ``{}`` when not computed)}``.

    Raises:
        ValueError: On a record without clicks.
    """
    if not record.ious:
        raise ValueError(f"Expected every episode to have at least one click, got none in {record.image_id!r}")
    entry: dict[str, Any] = {
        "index": int(record.index), "image_id": record.image_id, "image_sha256": record.image_sha256,
        "sample_sha256": record.sample_sha256, "seed": int(record.seed), "init_iou": float(record.init_iou),
        "ious": [float(v) for v in record.ious], "final_iou": float(record.ious[-1]),
    }
    for tau in TAUS:
        entry[f"noc@{_pct(tau)}"] = noc(record.ious, tau, max_clicks)
    for tau in TAUS:
        entry[f"failed@{_pct(tau)}"] = failure(record.ious, tau, max_clicks)
    entry.update({"is_success": bool(record.is_success), "clicks": len(record.ious),
                  "fg_hits": int(sum(record.on_target)), "return": record.total_reward,
                  "task_metrics": {k: float(v) for k, v in record.task_metrics.items()}})
    return entry


def episode_key(entry: Mapping[str, Any]) -> tuple[str, int]:
    """What identifies an episode across runs: ``(sample_sha256, seed)`` (the index when no hash was recorded)."""
    return (str(entry.get("sample_sha256") or f"index:{entry['index']}"), int(entry["seed"]))


def episode_value(entry: Mapping[str, Any], metric: str) -> float:
    """One figure of one episode.

    Args:
        entry: An :func:`episode_entry`.
        metric: ``noc@85``, ``noc@90``, ``failed@85``, ``failed@90``, ``init_iou``, ``final_iou``,
            ``return``, ``iou@K`` (IoU after click K; an episode that stopped earlier keeps its last
            IoU) or a task metric (``mae``, ...).

    Raises:
        ValueError: On an unknown metric, or a task metric the episode was not scored with.
    """
    if metric.startswith("iou@") and metric[4:].isdigit() and int(metric[4:]) >= 1:
        ious = entry["ious"]
        return float(ious[min(int(metric[4:]), len(ious)) - 1])
    if metric in entry and metric not in _NOT_METRICS and isinstance(entry[metric], (int, float)):
        return float(entry[metric])
    if metric in entry.get("task_metrics", {}):
        return float(entry["task_metrics"][metric])
    known = [k for k, v in entry.items() if k not in _NOT_METRICS and isinstance(v, (int, float))]
    known += ["iou@K", *entry.get("task_metrics", {})]
    raise ValueError(f"Expected a per-episode metric among {known}, got {metric!r}")


def per_unit(entries: Sequence[Mapping[str, Any]], values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Average per-episode ``values`` (rows aligned with ``entries``) over the episodes of each sample.

    Returns:
        ``(units, means)``: the sample keys in first-seen order and one row of means per sample.
    """
    rows: dict[str, list[int]] = {}
    for i, entry in enumerate(entries):
        rows.setdefault(episode_key(entry)[0], []).append(i)
    return list(rows), np.stack([values[idx].mean(axis=0) for idx in rows.values()])


def summary_intervals(entries: Sequence[Mapping[str, Any]], max_clicks: int, *,
                      n_resamples: int = stats.N_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Means over episodes and 95 % bootstrap intervals over images of a policy's summary figures.

    Args:
        entries: The policy's :func:`episode_entry` dicts.
        max_clicks: Length of the IoU-per-click curve.
        n_resamples: Bootstrap resamples (:mod:`sam_gym.stats`).
        seed: Seed of the resampling.

    Returns:
        ``{"n_images", "mean": {...}, "ci95": {...}}`` with the keys of the summary:
        ``noc@85``, ``noc@90``, ``fr@85``, ``fr@90``, ``init_iou``, ``final_iou``, ``mean_return``,
        ``fg_hit_rate`` (clicks on the foreground over all clicks, a pooled ratio), the task metrics
        when every episode has them, and ``miou_per_click`` (one value / ``[low, high]`` per click).
        Intervals are ``[low, high]``.

    Raises:
        ValueError: On no entries.
    """
    if not entries:
        raise ValueError("Expected at least one episode entry, got none")
    columns: dict[str, list[float]] = {}
    for tau in TAUS:
        columns[f"noc@{_pct(tau)}"] = [e[f"noc@{_pct(tau)}"] for e in entries]
    for tau in TAUS:
        columns[f"fr@{_pct(tau)}"] = [float(e[f"failed@{_pct(tau)}"]) for e in entries]
    columns["init_iou"] = [e["init_iou"] for e in entries]
    columns["final_iou"] = [e["final_iou"] for e in entries]
    columns["mean_return"] = [e["return"] for e in entries]
    pooled = has_task_metrics(entries)
    if pooled:
        for key in TASK_METRICS:
            if key != "ber":  # pooled below; ber_image_mean is the mean of the per-episode "ber"
                columns[key] = [e["task_metrics"]["ber" if key == "ber_image_mean" else key] for e in entries]
    curve = np.array([[episode_value(e, f"iou@{k}") for k in range(1, max_clicks + 1)] for e in entries])
    values = np.column_stack([np.asarray(list(columns.values()), dtype=np.float64).T, curve])
    _, units = per_unit(entries, values)
    _, lows, highs = stats.bootstrap_columns(units, n_resamples=n_resamples, seed=seed)
    n_named = len(columns)
    episode_means = values.mean(axis=0)
    out: dict[str, Any] = {"n_images": int(units.shape[0]), "mean": {}, "ci95": {}}
    for j, key in enumerate(columns):
        out["mean"][key] = float(episode_means[j])
        out["ci95"][key] = [float(lows[j]), float(highs[j])]
    out["mean"]["miou_per_click"] = [float(v) for v in episode_means[n_named:]]
    out["ci95"]["miou_per_click"] = [[float(lo), float(hi)] for lo, hi in zip(lows[n_named:], highs[n_named:],
                                                                             strict=True)]
    hits = np.array([[e["fg_hits"], e["clicks"]] for e in entries], dtype=np.float64)
    _, unit_hits = per_unit(entries, hits)
    rate = stats.bootstrap_ratio_ci(unit_hits[:, 0], unit_hits[:, 1], n_resamples=n_resamples, seed=seed)
    out["mean"]["fg_hit_rate"] = float(hits[:, 0].sum() / hits[:, 1].sum())
    out["ci95"]["fg_hit_rate"] = rate.interval()
    if pooled:
        counts = np.array([[e["task_metrics"][k] for k in BER_COUNT_KEYS] for e in entries], dtype=np.float64)
        _, unit_counts = per_unit(entries, counts)
        ber = stats.bootstrap_statistic(unit_counts, lambda m: ber_from_totals(*m.T), n_resamples=n_resamples,
                                        seed=seed)
        out["mean"]["ber"] = float(ber_from_totals(*counts.sum(axis=0)))
        out["ci95"]["ber"] = ber.interval()
    return out


def has_task_metrics(entries: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every entry has every per-episode score behind :data:`TASK_METRICS` (and the BER counts)."""
    keys = (*(k for k in TASK_METRICS if k != "ber_image_mean"), *BER_COUNT_KEYS)
    return bool(entries) and all(all(k in e["task_metrics"] for k in keys) for e in entries)
