"""The results of a policy comparison: the results dict, ``results.json`` and ``results.md``.

Built from :class:`sam_gym.evaluation.EpisodeRecord` lists (one per policy, all on the same
episodes). Conventions:

* NoC / FR / mIoU-per-click count **agent clicks only**: the initial prompts placed at reset (the
  env's ``gt_pair``, AlignSAM's recalibration-module pair) are not clicks; the IoU they give is
  reported separately as ``init_iou``. Metrics come from :func:`sam_gym.metrics.summarize_episodes`
  (RITM conventions: NoC = ``max_clicks`` on failure, strict failure rate).
* Every summary figure has a 95 % percentile bootstrap interval over images (``ci95``; see
  :mod:`sam_gym.stats` and :data:`BOOTSTRAP`), and every episode is kept (``episodes``, see
  :func:`~sam_gym.reporting.episodes.episode_entry`), so runs can be compared pairwise later.
* Points are ``(x, y)`` in image pixels (x right, y down); masks are ``(H, W)`` bool indexed
  ``[row, col]``.
* Every report names the backend that produced it (``backend_description``), so a table made with
  the weight-free classical backend can never be mistaken for SAM.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sam_gym import stats
from sam_gym.atomic import atomic_write_bytes
from sam_gym.evaluation import EpisodeRecord, PolicyRun
from sam_gym.metrics import summarize_episodes
from sam_gym.reporting.comparison import paired_markdown, paired_rows
from sam_gym.reporting.episodes import TASK_METRICS, episode_entry, has_task_metrics, summary_intervals
from sam_gym.reporting.marks import footing_notes, row_label
from sam_gym.reporting.tables import estimate_cell, markdown_table

__all__ = [
    "BOOTSTRAP",
    "SCHEMA_VERSION",
    "build_results",
    "provenance",
    "results_markdown",
    "summarize_records",
    "write_results",
]

#: Version of the ``results.json`` layout. 1: the unversioned summaries of sam_gym <= 0.2.0 (no
#: ``schema_version`` key). 2: adds per-episode entries, ``ci95`` intervals, provenance and the
#: dataset's path and content hash; every key of version 1 is kept with its meaning.
SCHEMA_VERSION = 2
#: How the ``ci95`` intervals are computed (recorded in ``results.json``).
BOOTSTRAP: dict[str, Any] = {"confidence": stats.CONFIDENCE, "n_resamples": stats.N_RESAMPLES, "seed": 0,
                             "unit": "image", "method": "percentile"}
_SKIPPED_SHOWN = 10  # skipped files listed in results.md (results.json lists all)


def _git(root: Path, *args: str) -> str | None:
    """Output of ``git -C root ARGS`` (stripped), or ``None`` when git is missing or fails."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance() -> dict[str, Any]:
    """What produced a result: the package version, its git commit and the date.

    ``git_commit`` is the commit checked out where the imported ``sam_gym`` lives, when that folder
    is tracked by git (a source checkout; ``None`` for an installed wheel or without git), and
    ``git_dirty`` says whether tracked files differ from it (``None`` without a commit).

    Returns:
        ``{"sam_gym_version", "git_commit", "git_dirty", "created"}`` (``created``: ISO 8601 UTC).
    """
    from sam_gym import __version__

    package = Path(__file__).resolve().parent.parent
    tracked = _git(package, "ls-files", "--", "__init__.py")
    commit = _git(package, "rev-parse", "HEAD") if tracked else None
    status = _git(package, "status", "--porcelain", "--untracked-files=no") if commit else None
    return {"sam_gym_version": __version__, "git_commit": commit, "git_dirty": None if status is None else bool(status),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def summarize_records(records: Sequence[EpisodeRecord], max_clicks: int) -> dict[str, Any]:
    """Aggregate one policy's episodes.

    Args:
        records: The policy's episodes (each with one IoU per agent click).
        max_clicks: Click budget (the NoC cap and the length of the mIoU curve).

    Returns:
        ``noc@85``, ``noc@90``, ``fr@85``, ``fr@90`` (fractions), ``miou_per_click`` (``max_clicks``
        floats), ``n_episodes`` (from :func:`~sam_gym.metrics.summarize_episodes`); ``init_iou``
        (mean IoU after the initial prompts, 0 without); ``final_iou`` (mean IoU after the last
        click); ``fg_hit_rate`` (fraction of all clicks, repeats included, whose pixel is ground
        truth foreground); ``mean_return`` (mean episode return); ``seeds`` (sorted distinct reset
        seeds); ``latency_ms_per_click`` (mean wall time of ``predict`` + ``step`` per click, in
        ms); when every record has task metrics, each :data:`~sam_gym.reporting.episodes.TASK_METRICS`
        entry (the mean over episodes; ``ber`` pooled from the episodes' BER counts, ``ber_image_mean``
        the mean BER); ``n_images`` (distinct samples); ``ci95`` (``[low, high]`` of every
        figure above but the seeds and the latency, a list of them for ``miou_per_click``; see
        :data:`BOOTSTRAP`); and ``episodes`` (one :func:`~sam_gym.reporting.episodes.episode_entry`
        per record, in order).

    Raises:
        ValueError: On no records, or a record without clicks.
    """
    if not records:
        raise ValueError("Expected at least one EpisodeRecord, got none")
    empty = [r.image_id for r in records if not r.ious]
    if empty:
        raise ValueError(f"Expected every episode to have at least one click, got none in {empty[:3]}")
    out = summarize_episodes([r.ious for r in records], max_clicks)
    clicks = [hit for r in records for hit in r.on_target]
    seconds = [s for r in records for s in r.step_seconds]
    out.update({
        "init_iou": float(np.mean([r.init_iou for r in records])),
        "final_iou": float(np.mean([r.ious[-1] for r in records])),
        "fg_hit_rate": float(np.mean(clicks)),
        "mean_return": float(np.mean([r.total_reward for r in records])),
        "seeds": sorted({int(r.seed) for r in records}),
        "latency_ms_per_click": 1000.0 * float(np.mean(seconds)) if seconds else 0.0,
    })
    episodes = [episode_entry(r, max_clicks) for r in records]
    intervals = summary_intervals(episodes, max_clicks, n_resamples=BOOTSTRAP["n_resamples"], seed=BOOTSTRAP["seed"])
    if has_task_metrics(episodes):
        out.update({key: intervals["mean"][key] for key in TASK_METRICS})
    out.update({"n_images": intervals["n_images"], "ci95": intervals["ci95"], "episodes": episodes})
    return out


def _dataset_sha256(runs: Sequence[PolicyRun]) -> str | None:
    """sha256 over the content hashes of the samples used, in dataset order (``None`` if one is not recorded)."""
    samples = {r.index: r.sample_sha256 for run in runs for r in run.records}
    if not samples or not all(samples.values()):
        return None
    digest = hashlib.sha256()
    for index in sorted(samples):
        digest.update(f"{samples[index]}\n".encode())
    return digest.hexdigest()


def build_results(
    runs: Sequence[PolicyRun], *, backend: Any, dataset: str, max_clicks: int, command: str,
    dataset_path: str | None = None, extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the results dict written to ``results.json``.

    Args:
        runs: One :class:`~sam_gym.evaluation.PolicyRun` per policy (same episodes).
        backend: The backend used (its ``name``, ``description``, ``is_sam`` and ``model_id`` are recorded).
        dataset: The dataset's name.
        max_clicks: Click budget.
        command: The exact command line that produced the results.
        dataset_path: Where the dataset was read from (a folder or annotation file), ``None`` for a
            built-in one.
        extra: More top-level entries (grid, seeds, encoder time, ...).

    Returns:
        ``{"schema_version", "sam_gym_version", "git_commit", "git_dirty", "created" (see
        :func:`provenance`), "backend", "backend_description", "backend_model_id", "is_sam",
        "dataset", "dataset_path", "dataset_sha256" (sha256 over the content hashes of the samples
        used, in index order; ``None`` when they were not recorded), "max_clicks", "command",
        "bootstrap" (:data:`BOOTSTRAP`), ...extra, "policies": {name: summarize_records(...) +
        {"peak_mem_mb", "peak_gpu_mem_mb", "memory_method", "oracle", "labels", "init_prompts",
        "action_mode", "privileged", "protocol_from", "description"}}}`` (the protocol keys:
        :func:`sam_gym.evaluation.policy_protocol`).
    """
    policies: dict[str, Any] = {}
    for run in runs:
        entry = summarize_records(run.records, max_clicks)
        entry.update({"peak_mem_mb": run.peak_mem_mb, "peak_gpu_mem_mb": run.peak_gpu_mem_mb,
                      "memory_method": run.memory_method, "description": run.description, **run.protocol})
        entry["episodes"] = entry.pop("episodes")  # last: the summary figures come first in the file
        policies[run.name] = entry
    return {
        "schema_version": SCHEMA_VERSION,
        **provenance(),
        "backend": backend.name,
        "backend_description": backend.description,
        "backend_model_id": getattr(backend, "model_id", None),
        "is_sam": bool(backend.is_sam),
        "dataset": dataset,
        "dataset_path": dataset_path,
        "dataset_sha256": _dataset_sha256(runs),
        "max_clicks": int(max_clicks),
        "command": command,
        "bootstrap": dict(BOOTSTRAP),
        **dict(extra or {}),
        "policies": policies,
    }


def _iou_at(entry: Mapping[str, Any], k: int) -> tuple[float, list[float] | None]:
    curve = entry["miou_per_click"]
    i = min(k, len(curve)) - 1
    intervals = entry.get("ci95", {}).get("miou_per_click")
    return float(curve[i]), (intervals[i] if intervals else None)


def _cell(entry: Mapping[str, Any], key: str, digits: int, scale: float = 1.0, suffix: str = "") -> str:
    """``entry[key]`` with its ``ci95`` interval when the entry has one (results of schema version 1 have none)."""
    return estimate_cell(entry[key], entry.get("ci95", {}).get(key), digits, scale, suffix)


def _provenance_line(results: Mapping[str, Any]) -> list[str]:
    if "schema_version" not in results:
        return []
    commit = results.get("git_commit")
    git = "no git commit" if not commit else f"git {commit[:12]}" + (" + uncommitted changes"
                                                                      if results.get("git_dirty") else "")
    return [f"sam_gym {results.get('sam_gym_version')}, {git}, {results.get('created')} "
            f"(results.json schema {results['schema_version']})", ""]


def _dataset_line(results: Mapping[str, Any]) -> list[str]:
    if "dataset_sha256" not in results:
        return []
    where = f"`{results['dataset_path']}`" if results.get("dataset_path") else "built in"
    digest = results.get("dataset_sha256")
    return [f"Dataset: {results['dataset']} ({where}; content sha256 of the samples used: "
            f"{digest[:16] + '...' if digest else 'not recorded'})", ""]


def results_markdown(results: Mapping[str, Any]) -> str:
    """Render the results dict as Markdown.

    The backend, provenance, the dataset and the command; one table row per policy, each figure
    with its 95 % interval when recorded; footnotes; the paired differences of every policy with
    the first one (when the episodes were recorded); the skipped files.
    """
    policies: Mapping[str, Any] = results["policies"]
    n = int(results["max_clicks"])
    has_task = bool(policies) and all(all(k in e for k in TASK_METRICS) for e in policies.values())
    ks = sorted({1, min(5, n), n})
    header = ["policy", "NoC@85", "NoC@90", "FR@85", "FR@90", *(f"IoU@{k}" for k in ks), "init IoU", "fg hits",
              "return", "ms/click", "peak MB"]
    if has_task:
        header += ["MAE", "F-beta", "E-measure", "S-measure", "wF", "BER %", "img BER %"]
    header += ["labels", "init prompts"]
    rows = []
    for name, e in policies.items():
        row = [row_label(name, e), _cell(e, "noc@85", 2), _cell(e, "noc@90", 2),
               _cell(e, "fr@85", 1, 100, "%"), _cell(e, "fr@90", 1, 100, "%"),
               *(estimate_cell(*_iou_at(e, k), 3) for k in ks),
               _cell(e, "init_iou", 3), _cell(e, "fg_hit_rate", 0, 100, "%"), _cell(e, "mean_return", 2),
               f"{e['latency_ms_per_click']:.1f}", f"{e['peak_mem_mb']:.0f}"]
        if has_task:
            row += [*(_cell(e, k, 3) for k in ("mae", "f_beta", "e_measure", "s_measure", "weighted_f")),
                    _cell(e, "ber", 2), _cell(e, "ber_image_mean", 2)]
        rows.append(row + [str(e["labels"]), str(e["init_prompts"])])
    first: Mapping[str, Any] = next(iter(policies.values()), {})
    kind = "Segment Anything" if results.get("is_sam") else "NOT SAM"
    n_samples = results.get("n_samples", first.get("n_images"))
    seeds = first.get("seeds", [])
    samples = f" = {n_samples} samples x {len(seeds)} seed(s)" if n_samples is not None else ""
    lines = [
        f"# Results: {results['dataset']}, {n} clicks",
        "",
        f"**Backend: {results['backend_description']}** (`{results['backend']}`, {kind})",
        "",
        *_provenance_line(results),
        *_dataset_line(results),
        "Command:",
        "",
        "```",
        str(results["command"]),
        "```",
        "",
        f"Episodes per policy: {first.get('n_episodes', 0)}{samples} (seeds {seeds}); every policy ran "
        "the same (sample, seed) episodes with the same backend.",
        "",
        markdown_table(rows, header, right=header[1:-2]),
        *footing_notes(results),
        "",
        "NoC@t: mean number of clicks to reach IoU >= t (the budget when never reached); FR@t: share of "
        "episodes that fail (NoC@t >= budget, RITM convention); IoU@k: mean IoU after k clicks. Initial "
        "prompts are not clicks: `init IoU` is the IoU they give. `fg hits`: clicks on ground-truth "
        "foreground. `labels`: where click labels come from (`oracle` = read from the ground truth at the "
        "clicked pixel, `policy` = chosen by the policy). `init prompts`: `gt_pair` = one random "
        "ground-truth foreground and one background pixel given at reset; `none` = no prompt. "
        "`ms/click`: policy + segmenter decode (image encoding excluded, done once up front); `peak MB`: "
        f"peak resident memory of the process during the policy's episodes ({first.get('memory_method', '?')}).",
    ]
    if "ci95" in first:
        lines += ["", f"[low, high]: 95% percentile bootstrap interval over the {first.get('n_images')} images "
                  f"({BOOTSTRAP['n_resamples']} resamples, seed {BOOTSTRAP['seed']}; an image's episodes are "
                  "averaged over its seeds first). `ms/click` and `peak MB` are single measurements of this "
                  "machine, without an interval."]
    if has_task:
        lines += ["", "Task metrics on the final (binary) masks, used as they are: MAE and BER lower is better; F-beta "
                  "(beta^2 = 0.3), E-measure, S-measure (alpha = 0.5) and wF (weighted F-measure, beta^2 = 1) "
                  "higher is better; means over episodes, except `BER %`, the data-set BER from the TP/TN/Np/Nn "
                  "counts summed over episodes (the shadow-detection protocol). `img BER %` is the mean of the "
                  "per-episode BERs."]
    episodes = {name: e["episodes"] for name, e in policies.items() if "episodes" in e}
    if len(episodes) >= 2 and len(episodes) == len(policies):
        lines += ["", f"## Paired differences with `{next(iter(episodes))}`", ""]
        try:
            lines.append(paired_markdown(paired_rows(episodes, n_resamples=BOOTSTRAP["n_resamples"],
                                                     seed=BOOTSTRAP["seed"])))
        except ValueError as exc:  # policies scored on disjoint samples (e.g. a run's held-out split)
            lines.append(f"No paired comparison: {exc}.")
    skipped = results.get("skipped") or []
    if skipped:
        lines += ["", f"Skipped {len(skipped)} unusable file(s) (no policy ran on them):", "",
                  *(f"- `{s['file']}`: {s['reason']}" for s in skipped[:_SKIPPED_SHOWN])]
        if len(skipped) > _SKIPPED_SHOWN:
            lines.append(f"- ... ({len(skipped)} in all, listed under `skipped` in results.json)")
    return "\n".join(lines) + "\n"


def write_results(results: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``out_dir/results.json`` and ``out_dir/results.md`` atomically.

    Returns:
        The two paths.
    """
    out = Path(out_dir)
    json_path, md_path = out / "results.json", out / "results.md"
    atomic_write_bytes(json_path, (json.dumps(results, indent=2) + "\n").encode())
    atomic_write_bytes(md_path, results_markdown(results).encode())
    return json_path, md_path
