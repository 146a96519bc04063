"""``sam-gym compare``: paired comparison of the policies of several ``sam-gym eval`` runs on their shared episodes.

Reads ``RUN/results.json`` of each folder (schema version 2 or later: per-episode entries), checks
that every run used the same click budget and backend, joins the policies on their episodes
(sample content hash + reset seed; see :func:`sam_gym.reporting.join_runs`), and prints and
writes a Markdown report: each row's figures with 95 % bootstrap intervals over images, then
every row against the reference (the first row unless ``--reference``): the difference of
means with a paired bootstrap interval and a Wilcoxon signed-rank test. Runs whose episodes
differ are refused with one line (exit status 2) unless ``--shared-only``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sam_gym.commands.common import check_out

__all__ = ["compare_markdown", "load_runs"]

HELP = "compare the policies of several eval runs on their shared episodes (paired bootstrap + Wilcoxon)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    parser.add_argument("runs", nargs="+", metavar="RUN", help="two or more sam-gym eval output folders (or their "
                                                               "results.json files)")
    parser.add_argument("--reference", default=None, metavar="ROW",
                        help="row the others are compared with: RUN_LABEL/POLICY, or a policy name found in one run "
                             "only (default: the first policy of the first run)")
    parser.add_argument("--metric", action="append", default=None, metavar="KEY",
                        help="per-episode metric to compare (repeatable): noc@85, noc@90, final_iou, init_iou, "
                             "iou@K, failed@90, return, or a task metric such as mae (default: noc@85, noc@90, "
                             "final_iou)")
    parser.add_argument("--shared-only", action="store_true",
                        help="compare on the episodes every run shares instead of refusing runs whose episodes differ")
    parser.add_argument("--out", default="runs/compare.md", help="Markdown file to write (default: %(default)s)")


def _results_file(path: str) -> Path:
    given = Path(path).expanduser()
    file = given / "results.json" if given.is_dir() else given
    if not file.is_file():
        raise ValueError(f"Expected a sam-gym eval output folder with results.json (or the file itself), got {path}")
    return file


def load_runs(paths: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Read each run's ``results.json``, labelled by its folder name (the path as given when two names collide).

    Raises:
        ValueError: On fewer than two runs, a path without ``results.json``, a file that is not a
            results dict, or the same run given twice.
    """
    if len(paths) < 2:
        raise ValueError(f"Expected two or more runs to compare, got {len(paths)}")
    files = [_results_file(p) for p in paths]
    if len({f.resolve() for f in files}) != len(files):
        raise ValueError(f"Expected different runs, got the same results.json twice among {list(paths)}")
    names = [f.parent.name for f in files]
    runs: dict[str, dict[str, Any]] = {}
    for path, file, name in zip(paths, files, names, strict=True):
        try:
            results = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"Expected a results.json written by sam-gym eval, could not read {file} ({exc})") from exc
        if not isinstance(results, dict) or not isinstance(results.get("policies"), dict):
            raise ValueError(f"Expected a results.json written by sam-gym eval (with 'policies'), got {file}")
        runs[name if names.count(name) == 1 else path] = results
    return runs


def _reference(rows: Sequence[str], given: str | None) -> str | None:
    if given is None or given in rows:
        return given
    matches = [row for row in rows if row.endswith(f"/{given}")]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"Expected --reference as one of {list(rows)} (or a policy name found in one run only), got "
                     f"{given!r}" + (f", which matches {matches}" if matches else ""))


def compare_markdown(runs: Mapping[str, Mapping[str, Any]], rows: Mapping[str, Sequence[Mapping[str, Any]]],
                     reference: str | None, metrics: Sequence[str]) -> str:
    """The comparison report: the runs, each row's figures with intervals, the paired differences."""
    from sam_gym import stats
    from sam_gym.reporting import estimate_cell, markdown_table, paired_markdown, paired_rows, summary_intervals

    first = next(iter(runs.values()))
    max_clicks = int(first["max_clicks"])
    n_episodes = len(next(iter(rows.values())))
    lines = [f"# Comparison: {len(runs)} runs, {len(rows)} policies, {n_episodes} shared episodes, {max_clicks} clicks",
             "", f"**Backend: {first.get('backend_description')}** (`{first.get('backend')}`"
             + ("" if first.get("is_sam") else ", NOT SAM") + ")", "", "Runs:", ""]
    for label, results in runs.items():
        commit = results.get("git_commit")
        git = f", git {commit[:12]}" if commit else ""
        lines.append(f"- `{label}`: {results.get('dataset')}, sam_gym {results.get('sam_gym_version')}{git}, "
                     f"{results.get('created')}; `{results.get('command')}`")
    columns = ["row", "episodes", "images", "NoC@85", "NoC@90", "FR@90", "final IoU"]
    table = []
    for name, entries in rows.items():
        figures = summary_intervals(entries, max_clicks)
        mean, ci = figures["mean"], figures["ci95"]
        table.append([name, str(len(entries)), str(figures["n_images"]),
                      estimate_cell(mean["noc@85"], ci["noc@85"], 2), estimate_cell(mean["noc@90"], ci["noc@90"], 2),
                      estimate_cell(mean["fr@90"], ci["fr@90"], 1, 100, "%"),
                      estimate_cell(mean["final_iou"], ci["final_iou"], 3)])
    reference = reference or next(iter(rows))
    lines += ["", markdown_table(table, columns, right=columns[1:]), "",
              f"[low, high]: 95% percentile bootstrap interval over images ({stats.N_RESAMPLES} resamples, seed 0).",
              "", f"## Paired differences with `{reference}`", "",
              paired_markdown(paired_rows(rows, reference, metrics))]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Load, join, compare, print and write the report."""
    from sam_gym.atomic import atomic_write_bytes
    from sam_gym.reporting import PAIRED_METRICS, episode_value, join_runs

    out = check_out(args.out, file=True)
    runs = load_runs(args.runs)
    rows = join_runs(runs, shared_only=args.shared_only)
    reference = _reference(list(rows), args.reference)
    metrics = args.metric or list(PAIRED_METRICS)
    sample = next(iter(rows.values()))[0]
    for metric in metrics:
        episode_value(sample, metric)  # an unknown metric fails here, with the known ones
    report = compare_markdown(runs, rows, reference, metrics)
    print(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, report.encode())
    print(f"wrote {out}")
    return 0
