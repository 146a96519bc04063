"""Reports of a policy comparison, by consumer.

* :mod:`~sam_gym.reporting.results`: the results dict, ``results.json`` and ``results.md``;
* :mod:`~sam_gym.reporting.episodes`: the per-episode entries and the figures with their bootstrap
  intervals (:mod:`sam_gym.stats`);
* :mod:`~sam_gym.reporting.comparison`: paired comparisons of policies on shared episodes
  (``results.md`` and ``sam-gym compare``);
* :mod:`~sam_gym.reporting.marks`: the marks of privileged rows and rows scored on training samples;
* :mod:`~sam_gym.reporting.tables`: Markdown tables;
* :mod:`~sam_gym.reporting.plots`: the IoU-vs-clicks plot;
* :mod:`~sam_gym.reporting.strips`: episode strips.

Every public name is importable from ``sam_gym.reporting``. matplotlib (Agg) and OpenCV are
imported inside the functions that draw.
"""

from sam_gym.reporting.comparison import PAIRED_METRICS, PairedRow, join_runs, paired_markdown, paired_rows
from sam_gym.reporting.episodes import TASK_METRICS, episode_entry, episode_key, episode_value, summary_intervals
from sam_gym.reporting.marks import ORACLE_MARK, TRAIN_MARK, footing_notes, row_label
from sam_gym.reporting.plots import plot_iou_vs_clicks
from sam_gym.reporting.results import (
    BOOTSTRAP,
    SCHEMA_VERSION,
    build_results,
    provenance,
    results_markdown,
    summarize_records,
    write_results,
)
from sam_gym.reporting.strips import episode_strip, save_episode_strips
from sam_gym.reporting.tables import estimate_cell, markdown_table

__all__ = [
    "BOOTSTRAP",
    "ORACLE_MARK",
    "PAIRED_METRICS",
    "SCHEMA_VERSION",
    "TASK_METRICS",
    "TRAIN_MARK",
    "PairedRow",
    "build_results",
    "episode_entry",
    "episode_key",
    "episode_strip",
    "episode_value",
    "estimate_cell",
    "footing_notes",
    "join_runs",
    "markdown_table",
    "paired_markdown",
    "paired_rows",
    "plot_iou_vs_clicks",
    "provenance",
    "results_markdown",
    "row_label",
    "save_episode_strips",
    "summarize_records",
    "summary_intervals",
    "write_results",
]
