"""Aggregation of episode records into results, and the writers: JSON, Markdown, plot, episode strips."""

from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from sam_gym.evaluation import EpisodeRecord, PeakMemory, PolicyRun, run_episode
from sam_gym.reporting import (
    TASK_METRICS,
    build_results,
    episode_strip,
    plot_iou_vs_clicks,
    results_markdown,
    save_episode_strips,
    summarize_records,
    write_results,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BACKEND = SimpleNamespace(name="classical", description="classical (weight-free, not SAM)", is_sam=False)


def _records() -> list[EpisodeRecord]:
    """Two 4-click episodes whose metrics are easy to work out by hand (see test_summarize_by_hand)."""
    a = EpisodeRecord(index=0, image_id="a", seed=0, init_iou=0.2, ious=[0.5, 0.86, 0.91, 0.95],
                      rewards=[1, 1, -1, 1], on_target=[True, True, False, True],
                      points=[(1.5, 1.5)] * 4, labels=[1, 1, 0, 1], step_seconds=[0.01] * 4)
    b = EpisodeRecord(index=1, image_id="b", seed=3, init_iou=0.0, ious=[0.3, 0.4, 0.5, 0.88],
                      rewards=[-1, -1, -1, 1], on_target=[False, False, False, True],
                      points=[(2.5, 0.5)] * 4, labels=[0, 0, 0, 1], step_seconds=[0.03] * 4)
    return [a, b]


def _run(name: str, oracle: bool = False, records: list[EpisodeRecord] | None = None) -> PolicyRun:
    return PolicyRun(name=name, records=records or _records(),
                     protocol={"oracle": oracle, "labels": "oracle", "init_prompts": "gt_pair", "action_mode": "patch"},
                     peak_mem_mb=123.0, peak_gpu_mem_mb=None, memory_method="VmHWM", description=name)


def test_summarize_by_hand() -> None:
    # a: IoU >= .85 at click 2, >= .90 at click 3. b: reaches .85 only on click 4 = the budget, which
    # counts as NoC 4 and a failure (RITM), and never .90 (NoC 4, failure).
    out = summarize_records(_records(), max_clicks=4)
    assert out["noc@85"] == pytest.approx(3.0)
    assert out["noc@90"] == pytest.approx(3.5)
    assert out["fr@85"] == pytest.approx(0.5)
    assert out["fr@90"] == pytest.approx(0.5)
    assert out["miou_per_click"] == pytest.approx([0.4, 0.63, 0.705, 0.915])
    assert out["fg_hit_rate"] == pytest.approx(4 / 8)
    assert out["mean_return"] == pytest.approx(0.0)
    assert out["init_iou"] == pytest.approx(0.1)
    assert out["final_iou"] == pytest.approx(0.915)
    assert out["latency_ms_per_click"] == pytest.approx(20.0)
    assert out["seeds"] == [0, 3]
    assert out["n_episodes"] == 2
    assert not any(k in out for k in TASK_METRICS)


def test_summarize_task_metrics_and_errors() -> None:
    records = _records()
    records[0].task_metrics = {"mae": 0.1, "f_beta": 0.8, "e_measure": 0.9, "ber": 10.0}
    records[1].task_metrics = {"mae": 0.3, "f_beta": 0.6, "e_measure": 0.7, "ber": 30.0}
    out = summarize_records(records, max_clicks=4)
    assert (out["mae"], out["f_beta"], out["e_measure"], out["ber"]) == pytest.approx((0.2, 0.7, 0.8, 20.0))
    with pytest.raises(ValueError, match="at least one EpisodeRecord"):
        summarize_records([], max_clicks=4)
    with pytest.raises(ValueError, match="at least one click"):
        summarize_records([EpisodeRecord(index=0, image_id="x", seed=0)], max_clicks=4)


def test_results_json_and_markdown(tmp_path) -> None:
    command = "sam-gym eval --policy random --policy clicker"
    results = build_results([_run("random"), _run("clicker", oracle=True)], backend=BACKEND, dataset="toy",
                            max_clicks=4, command=command, extra={"grid": [10, 10]})
    json_path, md_path = write_results(results, tmp_path)
    loaded = json.loads(json_path.read_text())
    assert {"backend", "backend_description", "is_sam", "dataset", "max_clicks", "command", "grid",
            "policies"} <= set(loaded)
    assert loaded["backend_description"] == BACKEND.description
    entry = loaded["policies"]["clicker"]
    for key in ("noc@85", "noc@90", "fr@85", "fr@90", "miou_per_click", "fg_hit_rate", "mean_return", "n_episodes",
                "seeds", "latency_ms_per_click", "peak_mem_mb", "oracle", "labels", "init_prompts", "init_iou"):
        assert key in entry, key
    assert entry["oracle"] is True and loaded["policies"]["random"]["oracle"] is False
    md = md_path.read_text()
    assert md == results_markdown(loaded)
    assert "sam-gym eval --policy random --policy clicker" in md
    assert BACKEND.description in md and "NOT SAM" in md
    assert "| clicker† |" in md and "| random |" in md and "† Privileged" in md
    assert "| 3.00 | 3.50 | 50.0% | 50.0% |" in md  # NoC@85, NoC@90, FR@85, FR@90 of test_summarize_by_hand
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporary file


def test_markdown_task_metric_columns() -> None:
    records = _records()
    for r in records:
        r.task_metrics = {"mae": 0.25, "f_beta": 0.5, "e_measure": 0.75, "ber": 12.5}
    md = results_markdown(build_results([_run("random", records=records)], backend=BACKEND, dataset="toy",
                                        max_clicks=4, command="cmd"))
    assert "| MAE | F-beta | E-measure | BER % |" in md
    assert "| 0.250 | 0.500 | 0.750 | 12.50 |" in md


def test_plot_is_a_png(tmp_path) -> None:
    results = build_results([_run("random"), _run("clicker", oracle=True)], backend=BACKEND, dataset="toy",
                            max_clicks=4, command="cmd")
    path = plot_iou_vs_clicks(results, tmp_path / "plots" / "iou_vs_clicks.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 400


def _recorded_episode() -> tuple[np.ndarray, EpisodeRecord]:
    from agents.simple import GridPolicy
    from sam_gym.envs import SamPromptEnv

    env = SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs={"n": 2}, max_clicks=3)
    policy = GridPolicy()
    policy.bind(env)
    record = run_episode(policy, env, index=1, seed=0, record_masks=True, task_metrics=True)
    return env.dataset[1].image, record


def test_run_episode_records_masks_and_task_metrics() -> None:
    image, record = _recorded_episode()
    assert record.masks is not None and len(record.masks) == len(record.ious) + 1 == 4
    assert all(m.shape == image.shape[:2] and m.dtype == bool for m in record.masks)
    assert len(record.init_points) == len(record.init_labels) == 2  # the env's default gt_pair
    assert set(record.task_metrics) == set(TASK_METRICS)
    assert 0.0 <= record.task_metrics["mae"] <= 1.0


def test_run_episode_default_keeps_no_masks() -> None:
    from agents.simple import GridPolicy
    from sam_gym.envs import SamPromptEnv

    env = SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs={"n": 1}, max_clicks=2)
    policy = GridPolicy()
    policy.bind(env)
    record = run_episode(policy, env, index=0, seed=0)
    assert record.masks is None and record.task_metrics == {}


def test_episode_strip_and_files(tmp_path) -> None:
    image, record = _recorded_episode()
    strip = episode_strip(image, record, columns=3, height=64)
    # 4 panels (init + 3 clicks) in rows of 3 -> 2 rows of (22-pixel caption + 64) pixels, 3 panels wide
    width = round(image.shape[1] * 64 / image.shape[0])
    assert strip.shape == (2 * (22 + 64), 3 * width, 3) and strip.dtype == np.uint8
    dataset = [SimpleNamespace(image=image)] * 2
    run = _run("grid:4", records=[record, EpisodeRecord(index=0, image_id="x", seed=0, ious=[0.5])])
    paths = save_episode_strips(run, dataset, tmp_path / "episodes")
    assert len(paths) == 1 and paths[0].name.startswith("grid_4_00_") and paths[0].read_bytes()[:8] == PNG_SIGNATURE
    record.masks = None
    with pytest.raises(ValueError, match="record_masks"):
        episode_strip(image, record)


def test_peak_memory_sees_an_allocation() -> None:
    with PeakMemory() as before:
        pass
    with PeakMemory() as memory:
        block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, touched
        assert block.sum() > 0
        del block
    assert memory.peak_mb > 0 and memory.method in ("VmHWM", "ru_maxrss")
    if memory.method == "VmHWM":
        assert memory.peak_mb >= before.peak_mb + 48


def test_markdown_table_aligns_and_checks_rows() -> None:
    from sam_gym.reporting import markdown_table

    table = markdown_table([["a", 1, 2.5]], ["name", "n", "x"], right=["n", "x"])
    assert table.splitlines() == ["| name | n | x |", "|---|---:|---:|", "| a | 1 | 2.5 |"]
    assert markdown_table([], ["name"]) == "| name |\n|---|"
    with pytest.raises(ValueError, match=r"Expected 2 cells in every row, got 1 in row 0"):
        markdown_table([["a"]], ["name", "n"])
    with pytest.raises(ValueError, match="Expected right-aligned columns among"):
        markdown_table([["a"]], ["name"], right=["nmae"])
