"""Results of a policy comparison: the results dict, ``results.json`` / ``results.md``, the plot, episode strips.

Built from :class:`sam_gym.evaluation.EpisodeRecord` lists (one per policy, all on the same
episodes). Conventions:

* NoC / FR / mIoU-per-click count **agent clicks only**: the initial prompts placed at reset (the
  env's ``gt_pair``, AlignSAM's recalibration-module pair) are not clicks; the IoU they give is
  reported separately as ``init_iou``. Metrics come from :func:`sam_gym.metrics.summarize_episodes`
  (RITM conventions: NoC = ``max_clicks`` on failure, strict failure rate).
* Points are ``(x, y)`` in image pixels (x right, y down); masks are ``(H, W)`` bool indexed
  ``[row, col]``.
* Every report names the backend that produced it (``backend_description``), so a table made with
  the weight-free classical backend can never be mistaken for SAM.

matplotlib (Agg) and OpenCV are imported inside the functions that draw.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_gym.atomic import atomic_write, atomic_write_bytes
from sam_gym.evaluation import EpisodeRecord, PolicyRun
from sam_gym.metrics import summarize_episodes
from sam_gym.protocol import PRIVILEGES

__all__ = [
    "TASK_METRICS",
    "build_results",
    "episode_strip",
    "markdown_table",
    "plot_iou_vs_clicks",
    "results_markdown",
    "save_episode_strips",
    "summarize_records",
    "write_results",
]

#: Binary-task metrics averaged over final masks, with the direction that is better.
TASK_METRICS: dict[str, str] = {"mae": "lower", "f_beta": "higher", "e_measure": "higher", "ber": "lower"}
_ORACLE_MARK = "†"  # a privileged row: its episodes read the ground truth (see sam_gym.protocol.PRIVILEGES)
_TRAIN_MARK = "‡"  # a row scored on (possibly) its own training samples
_SKIPPED_SHOWN = 10  # skipped files listed in results.md (results.json lists all)


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
        ms); and the mean of each :data:`TASK_METRICS` entry when every record has task metrics.

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
    if all(r.task_metrics for r in records):
        for key in TASK_METRICS:
            out[key] = float(np.mean([r.task_metrics[key] for r in records]))
    return out


def build_results(
    runs: Sequence[PolicyRun], *, backend: Any, dataset: str, max_clicks: int, command: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the results dict written to ``results.json``.

    Args:
        runs: One :class:`~sam_gym.evaluation.PolicyRun` per policy (same episodes).
        backend: The backend used (its ``name``, ``description`` and ``is_sam`` are recorded).
        dataset: The dataset's name.
        max_clicks: Click budget.
        command: The exact command line that produced the results.
        extra: More top-level entries (grid, seeds, encoder time, ...).

    Returns:
        ``{"backend", "backend_description", "is_sam", "dataset", "max_clicks", "command", ...extra,
        "policies": {name: summarize_records(...) + {"n_episodes", "peak_mem_mb", "peak_gpu_mem_mb",
        "memory_method", "oracle", "labels", "init_prompts", "action_mode", "privileged", "protocol_from",
        "description"}}}`` (the protocol keys: :func:`sam_gym.evaluation.policy_protocol`).
    """
    policies: dict[str, Any] = {}
    for run in runs:
        entry = summarize_records(run.records, max_clicks)
        entry.update({"peak_mem_mb": run.peak_mem_mb, "peak_gpu_mem_mb": run.peak_gpu_mem_mb,
                      "memory_method": run.memory_method, "description": run.description, **run.protocol})
        policies[run.name] = entry
    return {
        "backend": backend.name,
        "backend_description": backend.description,
        "is_sam": bool(backend.is_sam),
        "dataset": dataset,
        "max_clicks": int(max_clicks),
        "command": command,
        **dict(extra or {}),
        "policies": policies,
    }


def markdown_table(rows: Sequence[Sequence[object]], columns: Sequence[str], right: Collection[str] = ()) -> str:
    """Render rows as a GitHub Markdown table (header, separator, one line per row; no final newline).

    Cells are written with ``str``, as they are (format numbers before).

    Args:
        rows: One sequence of ``len(columns)`` cells per row.
        columns: The header cells.
        right: Names of the columns to right-align (``---:``); the others get the default ``---``.

    Raises:
        ValueError: If a row has another number of cells than ``columns``, or ``right`` names an
            unknown column.

    >>> print(markdown_table([["random", 3.5], ["grid", 2.0]], ["policy", "NoC"], right={"NoC"}))
    | policy | NoC |
    |---|---:|
    | random | 3.5 |
    | grid | 2.0 |
    """
    unknown = sorted(set(right) - set(columns))
    if unknown:
        raise ValueError(f"Expected right-aligned columns among {list(columns)}, got {unknown}")
    for i, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f"Expected {len(columns)} cells in every row, got {len(row)} in row {i}: {list(row)!r}")
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---:" if c in right else "---" for c in columns) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _privileged(entry: Mapping[str, Any]) -> list[str]:
    """The row's privileges (results without the key: an oracle policy's one)."""
    return list(entry.get("privileged", ["episode_view"] if entry.get("oracle") else []))


def _on_training_samples(entry: Mapping[str, Any]) -> bool:
    """Whether the row scored some of its policy's training samples, or cannot tell (``None``)."""
    return "train_samples_scored" in entry and (entry["train_samples_scored"] is None
                                                or entry["train_samples_scored"] > 0)


def _row_label(name: str, entry: Mapping[str, Any]) -> str:
    """The policy name with its marks: ``†`` privileged, ``‡`` scored on its training samples."""
    return (f"{name}{_ORACLE_MARK if _privileged(entry) else ''}"
            f"{_TRAIN_MARK if _on_training_samples(entry) else ''}")


def _footing_notes(results: Mapping[str, Any]) -> list[str]:
    """The footnotes of the marks, the protocol and the held-out selection (Markdown lines)."""
    policies: Mapping[str, Any] = results["policies"]
    lines = []
    privileged = {name: _privileged(e) for name, e in policies.items() if _privileged(e)}
    if privileged:
        lines += ["", f"{_ORACLE_MARK} Privileged: the row's episodes read the ground truth, so it is not on the "
                  "footing of a deployable method and not comparable with the unmarked rows:", "",
                  *(f"- `{name}`: {'; '.join(PRIVILEGES.get(k, k) for k in keys)}"
                    for name, keys in privileged.items())]
    if results.get("protocol"):
        wrapped = [name for name, e in policies.items() if e.get("protocol_from")]
        lines += ["", f"Protocol: {', '.join(f'`{n}`' for n in wrapped)} clicked with the labels and initial prompts "
                  f"of `{results['protocol']}` (`--protocol`); the other rows used their own."]
    held_out = results.get("held_out") or {}
    for name, info in (held_out.get("policies") or {}).items():
        if not info["checked"]:
            lines += ["", f"{_TRAIN_MARK} `{name}`: its run records its split by index only ({info['split']}): "
                      "whether these samples include its training samples is unknown."]
        elif info["train_indices_scored"]:
            lines += ["", f"{_TRAIN_MARK} `{name}`: scored on {len(info['train_indices_scored'])} of its own training "
                      "samples (`--include-train`): not a held-out score."]
    excluded = held_out.get("excluded_indices") or []
    if excluded:
        owners = [f"`{n}`" for n, i in held_out["policies"].items() if i["train_indices_excluded"]]
        lines += ["", f"Held out: {len(excluded)} sample(s) of the dataset are training samples of {', '.join(owners)} "
                  "(matched by content) and were left out for every policy."]
    return lines


def _iou_at(entry: Mapping[str, Any], k: int) -> float:
    curve = entry["miou_per_click"]
    return float(curve[min(k, len(curve)) - 1])


def results_markdown(results: Mapping[str, Any]) -> str:
    """Render the results dict as Markdown: the backend, the command, one table row per policy, footnotes, skips."""
    policies: Mapping[str, Any] = results["policies"]
    n = int(results["max_clicks"])
    has_task = bool(policies) and all(all(k in e for k in TASK_METRICS) for e in policies.values())
    ks = sorted({1, min(5, n), n})
    header = ["policy", "NoC@85", "NoC@90", "FR@85", "FR@90", *(f"IoU@{k}" for k in ks), "init IoU", "fg hits",
              "return", "ms/click", "peak MB"]
    if has_task:
        header += ["MAE", "F-beta", "E-measure", "BER %"]
    header += ["labels", "init prompts"]
    rows = []
    for name, e in policies.items():
        row = [_row_label(name, e), f"{e['noc@85']:.2f}", f"{e['noc@90']:.2f}",
               f"{100 * e['fr@85']:.1f}%", f"{100 * e['fr@90']:.1f}%", *(f"{_iou_at(e, k):.3f}" for k in ks),
               f"{e['init_iou']:.3f}", f"{100 * e['fg_hit_rate']:.0f}%", f"{e['mean_return']:.2f}",
               f"{e['latency_ms_per_click']:.1f}", f"{e['peak_mem_mb']:.0f}"]
        if has_task:
            row += [f"{e['mae']:.3f}", f"{e['f_beta']:.3f}", f"{e['e_measure']:.3f}", f"{e['ber']:.2f}"]
        rows.append(row + [str(e["labels"]), str(e["init_prompts"])])
    first = next(iter(policies.values()), {})
    kind = "Segment Anything" if results.get("is_sam") else "NOT SAM"
    lines = [
        f"# Results: {results['dataset']}, {n} clicks",
        "",
        f"**Backend: {results['backend_description']}** (`{results['backend']}`, {kind})",
        "",
        "Command:",
        "",
        "```",
        str(results["command"]),
        "```",
        "",
        f"Episodes per policy: {first.get('n_episodes', 0)} (seeds {first.get('seeds', [])}); every policy ran "
        "the same (sample, seed) episodes with the same backend.",
        "",
        markdown_table(rows, header, right=header[1:-2]),
        *_footing_notes(results),
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
    if has_task:
        lines += ["", "Task metrics on the final masks: MAE and BER lower is better; F-beta (beta^2 = 0.3, adaptive "
                  "threshold) and E-measure higher is better."]
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


def plot_iou_vs_clicks(results: Mapping[str, Any], path: str | Path) -> Path:
    """Save the mean IoU after each click, one labelled line per policy, the backend in the title.

    Click 0 is the IoU after the initial prompts (0 without). Privileged rows (episodes that read the
    ground truth: oracle policies, oracle labels, ground-truth initial prompts) are dashed and marked ``†``.

    Returns:
        The PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8.5, 5.5), dpi=120)
    for name, e in results["policies"].items():
        curve = [e["init_iou"], *e["miou_per_click"]]
        label = f"{_row_label(name, e)}  (NoC@90 {e['noc@90']:.2f})"
        ax.plot(range(len(curve)), curve, marker="o", markersize=3.5, linewidth=1.8,
                linestyle="--" if _privileged(e) else "-", label=label)
    n = int(results["max_clicks"])
    ax.set_xlim(0, n)
    ax.set_ylim(0.0, 1.0)
    ax.set_xticks(range(0, n + 1, 1 if n <= 20 else max(1, n // 10)))
    ax.set_xlabel("clicks (0 = after the initial prompts)")
    ax.set_ylabel("mean IoU")
    ax.grid(True, alpha=0.3)
    entries = list(results["policies"].values())
    marks = []
    if any(_privileged(e) for e in entries):
        marks.append(f"{_ORACLE_MARK} privileged (reads ground truth)")
    if any(_on_training_samples(e) for e in entries):
        marks.append(f"{_TRAIN_MARK} scored on its training samples")
    ax.legend(loc="lower right", fontsize=9, title_fontsize=8, title="\n".join(marks) or None)
    kind = "" if results.get("is_sam") else " - NOT SAM"
    ax.set_title(f"Mean IoU vs clicks on {results['dataset']}\nbackend: {results['backend_description']}{kind}",
                 fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"))
    plt.close(fig)
    return path


def _panel(image: np.ndarray, caption: str, height: int) -> np.ndarray:
    """Resize an RGB panel to ``height`` rows and put a caption bar above it."""
    import cv2

    scale = height / image.shape[0]
    width = max(1, round(image.shape[1] * scale))
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    bar = np.full((22, width, 3), 255, dtype=np.uint8)
    cv2.putText(bar, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, resized], axis=0)


def episode_strip(image: np.ndarray, record: EpisodeRecord, columns: int = 6, height: int = 160) -> np.ndarray:
    """Draw an episode as a grid of panels: the mask after the initial prompts, then after each click.

    Like AlignSAM's Figure 5: each panel shows the image, the mask at that point (tinted blue) and
    every prompt so far (initial prompts as rings; green foreground, red background), with a
    caption giving the click number and IoU. Points are ``(x, y)`` in image pixels; masks ``(H, W)``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image of the episode.
        record: An episode recorded with ``record_masks`` (``record.masks`` set).
        columns: Panels per row.
        height: Height of each panel in pixels.

    Returns:
        The ``uint8`` RGB strip.

    Raises:
        ValueError: If the record has no masks, or ``columns`` / ``height`` are not positive.
    """
    from sam_gym.render import draw_episode

    if record.masks is None or len(record.masks) != len(record.ious) + 1:
        raise ValueError("Expected a record made with record_masks (one mask after the initial prompts and one "
                         f"per click), got {None if record.masks is None else len(record.masks)} masks")
    if columns < 1 or height < 8:
        raise ValueError(f"Expected columns >= 1 and height >= 8, got {columns} and {height}")
    points = np.asarray(record.init_points + record.points, dtype=np.float32).reshape(-1, 2)
    labels = np.asarray(record.init_labels + record.labels, dtype=np.int64)
    n_init = len(record.init_points)
    panels = []
    for k, mask in enumerate(record.masks):
        caption = f"init ({n_init} prompts) IoU {record.init_iou:.3f}" if k == 0 else \
            f"click {k}: IoU {record.ious[k - 1]:.3f}"
        drawn = draw_episode(image, mask, points[: n_init + k], labels[: n_init + k], n_init=n_init)
        panels.append(_panel(drawn, caption, height))
    blank = np.full_like(panels[0], 255)  # every panel has the same size (same image, same height)
    columns = min(columns, len(panels))
    panels += [blank] * (-len(panels) % columns)
    rows = [np.concatenate(panels[i:i + columns], axis=1) for i in range(0, len(panels), columns)]
    return np.concatenate(rows, axis=0)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def save_episode_strips(run: PolicyRun, dataset: Any, out_dir: str | Path, limit: int | None = None) -> list[Path]:
    """Write a PNG :func:`episode_strip` for each recorded episode of ``run`` into ``out_dir``.

    Files are named ``<policy>_<n>_<image id>_seed<seed>.png``.

    Args:
        run: A policy's episodes; those with ``masks`` recorded are drawn.
        dataset: The dataset the episodes ran on (images are read from it by index).
        out_dir: Output folder (created).
        limit: Draw at most this many episodes.

    Returns:
        The written paths.
    """
    import cv2

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recorded = [r for r in run.records if r.masks is not None][:limit]
    paths = []
    for n, record in enumerate(recorded):
        strip = episode_strip(dataset[record.index].image, record)
        path = out / f"{_slug(run.name)}_{n:02d}_{_slug(record.image_id)}_seed{record.seed}.png"
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError(f"OpenCV could not encode the episode strip {path}")
        atomic_write_bytes(path, encoded.tobytes())
        paths.append(path)
    return paths
