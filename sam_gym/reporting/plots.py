"""The IoU-vs-clicks plot of a results dict (matplotlib, Agg, imported when drawing)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sam_gym.atomic import atomic_write
from sam_gym.reporting.marks import ORACLE_MARK, TRAIN_MARK, on_training_samples, privileged, row_label
from sam_gym.reporting.results import BOOTSTRAP

__all__ = ["plot_iou_vs_clicks"]


def plot_iou_vs_clicks(results: Mapping[str, Any], path: str | Path) -> Path:
    """Save the mean IoU after each click, one labelled line per policy, the backend in the title.

    Click 0 is the IoU after the initial prompts (0 without). Privileged rows (episodes that read the
    ground truth: oracle policies, oracle labels, ground-truth initial prompts) are dashed and marked ``†``.
    Each line has a shaded band: its 95 % bootstrap interval over images at every click (results
    of schema version 1, without ``ci95``, get no band). The title gives the number of images and
    episodes.

    Returns:
        The PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8.5, 5.5), dpi=120)
    banded = False
    for name, e in results["policies"].items():
        curve = [e["init_iou"], *e["miou_per_click"]]
        label = f"{row_label(name, e)}  (NoC@90 {e['noc@90']:.2f})"
        (line,) = ax.plot(range(len(curve)), curve, marker="o", markersize=3.5, linewidth=1.8,
                          linestyle="--" if privileged(e) else "-", label=label)
        ci = e.get("ci95")
        if ci and "miou_per_click" in ci and "init_iou" in ci:
            band = [ci["init_iou"], *ci["miou_per_click"]]
            ax.fill_between(range(len(band)), [b[0] for b in band], [b[1] for b in band], color=line.get_color(),
                            alpha=0.15, linewidth=0)
            banded = True
    n = int(results["max_clicks"])
    ax.set_xlim(0, n)
    ax.set_ylim(0.0, 1.0)
    ax.set_xticks(range(0, n + 1, 1 if n <= 20 else max(1, n // 10)))
    ax.set_xlabel("clicks (0 = after the initial prompts)")
    ax.set_ylabel("mean IoU" + (f" (bands: {100 * BOOTSTRAP['confidence']:.0f}% bootstrap CI over images)"
                                if banded else ""))
    ax.grid(True, alpha=0.3)
    entries = list(results["policies"].values())
    marks = []
    if any(privileged(e) for e in entries):
        marks.append(f"{ORACLE_MARK} privileged (reads ground truth)")
    if any(on_training_samples(e) for e in entries):
        marks.append(f"{TRAIN_MARK} scored on its training samples")
    ax.legend(loc="lower right", fontsize=9, title_fontsize=8, title="\n".join(marks) or None)
    kind = "" if results.get("is_sam") else " - NOT SAM"
    first: Mapping[str, Any] = next(iter(results["policies"].values()), {})
    counts = (f" ({first['n_images']} images, {first['n_episodes']} episodes per policy)"
              if "n_images" in first else "")
    ax.set_title(f"Mean IoU vs clicks on {results['dataset']}{counts}\n"
                 f"backend: {results['backend_description']}{kind}", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"))
    plt.close(fig)
    return path
