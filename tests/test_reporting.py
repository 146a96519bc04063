"""Aggregation of episode records into results, and the writers: JSON, Markdown, plot, episode strips."""

from __future__ import annotations

import dataclasses
import json
import mmap
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from sam_gym.evaluation import EpisodeRecord, PeakMemory, PolicyRun, run_episode
from sam_gym.reporting import (
    SCHEMA_VERSION,
    TASK_METRICS,
    build_results,
    episode_strip,
    plot_iou_vs_clicks,
    provenance,
    results_markdown,
    save_episode_strips,
    summarize_records,
    write_results,
)
from sam_gym.reporting.strips import FALSE_NEGATIVE_RGB, FALSE_POSITIVE_RGB, TRUE_POSITIVE_RGB

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
    # two images: each figure's resample means take 3 values (both images, or one twice), so the 95 %
    # interval runs from the smaller image's value to the larger's
    assert out["n_images"] == 2
    assert out["ci95"]["noc@85"] == [2.0, 4.0] and out["ci95"]["noc@90"] == [3.0, 4.0]
    assert out["ci95"]["fr@85"] == [0.0, 1.0] and out["ci95"]["init_iou"] == [0.0, 0.2]
    assert out["ci95"]["miou_per_click"][3] == pytest.approx([0.88, 0.95])
    assert out["ci95"]["fg_hit_rate"] == [0.25, 0.75]


def test_per_episode_entries_by_hand() -> None:
    a, b = summarize_records(_records(), max_clicks=4)["episodes"]
    assert a == {"index": 0, "image_id": "a", "image_sha256": "", "sample_sha256": "", "seed": 0, "init_iou": 0.2,
                 "ious": [0.5, 0.86, 0.91, 0.95], "final_iou": 0.95, "noc@85": 2, "noc@90": 3, "failed@85": False,
                 "failed@90": False, "is_success": False, "clicks": 4, "fg_hits": 3, "return": 2.0, "task_metrics": {}}
    # reaching .85 on the last allowed click is a failure (RITM's strict rule)
    assert (b["noc@85"], b["failed@85"], b["noc@90"], b["failed@90"]) == (4, True, 4, True)


def test_summarize_task_metrics_and_errors() -> None:
    records = _records()
    # BER counts (tp, tn, n_pos, n_neg): image 0 (9, 90, 10, 90) -> 100 * (1 - (0.9 + 1) / 2) = 5;
    # image 1 (0, 10, 90, 10) -> 50. Pooled: (9 + 0) / 100 = 0.09, (90 + 10) / 100 = 1 -> 45.5; mean 27.5.
    records[0].task_metrics = {"mae": 0.1, "f_beta": 0.8, "e_measure": 0.9, "s_measure": 0.6, "weighted_f": 0.5,
                               "ber": 5.0, "ber_tp": 9, "ber_tn": 90, "ber_n_pos": 10, "ber_n_neg": 90}
    records[1].task_metrics = {"mae": 0.3, "f_beta": 0.6, "e_measure": 0.7, "s_measure": 0.4, "weighted_f": 0.3,
                               "ber": 50.0, "ber_tp": 0, "ber_tn": 10, "ber_n_pos": 90, "ber_n_neg": 10}
    out = summarize_records(records, max_clicks=4)
    assert [out[k] for k in TASK_METRICS] == pytest.approx([0.2, 0.7, 0.8, 0.5, 0.4, 45.5, 27.5])
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
    assert loaded["schema_version"] == SCHEMA_VERSION == 2
    assert {"sam_gym_version", "git_commit", "git_dirty", "created", "dataset_path", "dataset_sha256",
            "backend_model_id", "bootstrap"} <= set(loaded)
    assert loaded["bootstrap"] == {"confidence": 0.95, "n_resamples": 10000, "seed": 0, "unit": "image",
                                   "method": "percentile"}
    assert loaded["dataset_sha256"] is None  # these hand-made records carry no sample hashes
    assert len(loaded["policies"]["random"]["episodes"]) == 2
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
    # NoC@85, NoC@90, FR@85, FR@90 of test_summarize_by_hand, with their intervals
    assert "| 3.00 [2.00, 4.00] | 3.50 [3.00, 4.00] | 50.0% [0.0, 100.0] | 50.0% [0.0, 100.0] |" in md
    assert "95% percentile bootstrap interval over the 2 images" in md
    # the same episodes under two names: a paired difference of exactly zero
    assert "## Paired differences with `random`" in md
    assert "| NoC@90 (lower is better) | clicker | random | 3.50 | 3.50 | 0.00 [0.00, 0.00] | 1.0000 | 2 (0) |" in md
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporary file


def test_schema_1_results_still_render() -> None:
    # a results.json of sam_gym <= 0.2.0: no ci95, no episodes, no provenance
    results = build_results([_run("random"), _run("grid")], backend=BACKEND, dataset="toy", max_clicks=4,
                            command="cmd")
    for key in ("schema_version", "sam_gym_version", "git_commit", "git_dirty", "created", "dataset_sha256"):
        del results[key]
    for entry in results["policies"].values():
        del entry["ci95"], entry["episodes"], entry["n_images"]
    md = results_markdown(results)
    assert "| 3.00 | 3.50 | 50.0% | 50.0% |" in md and "Paired" not in md and "bootstrap" not in md


def test_dataset_hash_covers_the_samples_used() -> None:
    def digest(hashes: list[str]) -> str | None:
        records = _records()
        for record, value in zip(records, hashes, strict=True):
            record.sample_sha256 = value
        return build_results([_run("random", records=records)], backend=BACKEND, dataset="toy", max_clicks=4,
                             command="cmd")["dataset_sha256"]

    first = digest(["a" * 64, "b" * 64])
    assert first is not None and len(first) == 64
    assert digest(["a" * 64, "b" * 64]) == first and digest(["a" * 64, "c" * 64]) != first


def test_provenance_without_git(monkeypatch) -> None:
    import subprocess

    info = provenance()
    assert info["sam_gym_version"] and info["created"].endswith("+00:00")
    assert info["git_commit"] is None or len(info["git_commit"]) == 40

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    info = provenance()
    assert info["git_commit"] is None and info["git_dirty"] is None


def test_markdown_task_metric_columns() -> None:
    records = _records()
    for r in records:
        r.task_metrics = {"mae": 0.25, "f_beta": 0.5, "e_measure": 0.75, "s_measure": 0.625, "weighted_f": 0.375,
                          "ber": 12.5, "ber_tp": 3, "ber_tn": 4, "ber_n_pos": 4, "ber_n_neg": 4}
    md = results_markdown(build_results([_run("random", records=records)], backend=BACKEND, dataset="toy",
                                        max_clicks=4, command="cmd"))
    assert "| MAE | F-beta | E-measure | S-measure | wF | BER % | img BER % |" in md
    # every image scored the same: zero-width intervals
    assert ("| 0.250 [0.250, 0.250] | 0.500 [0.500, 0.500] | 0.750 [0.750, 0.750] | 0.625 [0.625, 0.625] "
            "| 0.375 [0.375, 0.375] | 12.50 [12.50, 12.50] | 12.50 [12.50, 12.50] |") in md


def test_plot_is_a_png_with_bands(tmp_path) -> None:
    results = build_results([_run("random"), _run("clicker", oracle=True)], backend=BACKEND, dataset="toy",
                            max_clicks=4, command="cmd")
    path = plot_iou_vs_clicks(results, tmp_path / "plots" / "iou_vs_clicks.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 400
    for entry in results["policies"].values():
        del entry["ci95"]
    bare = cv2.imread(str(plot_iou_vs_clicks(results, tmp_path / "bare.png")))
    # the bands shade pixels that stay white without intervals
    assert np.count_nonzero(np.all(image == 255, axis=2)) < np.count_nonzero(np.all(bare == 255, axis=2)) - 1000


def _recorded_episode() -> tuple[object, EpisodeRecord]:
    from agents.simple import GridPolicy
    from sam_gym.envs import SamPromptEnv

    env = SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs={"n": 2}, max_clicks=3)
    policy = GridPolicy()
    policy.bind(env)
    record = run_episode(policy, env, index=1, seed=0, record_masks=True, task_metrics=True)
    return env.dataset[1], record


def test_run_episode_records_masks_and_task_metrics() -> None:
    sample, record = _recorded_episode()
    image = sample.image
    assert record.masks is not None and len(record.masks) == len(record.ious) + 1 == 4
    assert all(m.shape == image.shape[:2] and m.dtype == bool for m in record.masks)
    assert len(record.init_points) == len(record.init_labels) == 2  # the env's default gt_pair
    assert set(record.task_metrics) == set(TASK_METRICS) - {"ber_image_mean"} | {
        "ber_tp", "ber_tn", "ber_n_pos", "ber_n_neg"}
    assert 0.0 <= record.task_metrics["mae"] <= 1.0


def test_run_episode_default_keeps_no_masks() -> None:
    from agents.simple import GridPolicy
    from sam_gym.envs import SamPromptEnv

    env = SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs={"n": 1}, max_clicks=2)
    policy = GridPolicy()
    policy.bind(env)
    record = run_episode(policy, env, index=0, seed=0)
    assert record.masks is None and record.task_metrics == {}


def test_run_episode_records_sample_hashes() -> None:
    from sam_gym.data.hashing import image_hash, sample_digests

    sample, record = _recorded_episode()
    assert record.image_sha256 == image_hash(sample.image)
    assert (record.image_sha256, record.sample_sha256) == sample_digests(sample)
    other_image, other_sample = sample_digests(dataclasses.replace(sample, target=~sample.target))
    assert other_image == record.image_sha256 and other_sample != record.sample_sha256  # another target, same image


def test_episode_strip_and_files(tmp_path) -> None:
    sample, record = _recorded_episode()
    image = sample.image
    strip = episode_strip(sample, record, columns=3, height=64, policy="grid", backend="classical")
    # under the header: 4 panels (init + 3 clicks) in rows of 3 -> 2 rows of (22-pixel caption + 64) pixels
    width = round(image.shape[1] * 64 / image.shape[0])
    header = strip.shape[0] - 2 * (22 + 64)
    assert strip.shape[1:] == (3 * width, 3) and strip.dtype == np.uint8 and header > 3 * 18
    assert np.any(strip[:header] < 128)  # title and legend are drawn
    assert not np.array_equal(episode_strip(sample, record, columns=3, height=64, policy="random",
                                            backend="classical")[:header], strip[:header])
    run = _run("grid:4", records=[record, EpisodeRecord(index=0, image_id="x", seed=0, ious=[0.5])])
    paths = save_episode_strips(run, [sample] * 2, tmp_path / "episodes", backend="classical")
    assert len(paths) == 1 and paths[0].name.startswith("grid_4_00_") and paths[0].read_bytes()[:8] == PNG_SIGNATURE
    record.masks = None
    with pytest.raises(ValueError, match="record_masks"):
        episode_strip(sample, record)


def test_episode_strip_colours_errors_against_the_ground_truth() -> None:
    # 48 x 48 black image, target = left half, prediction = top half: TP top-left, FP top-right,
    # FN bottom-left, true negative bottom-right
    h = w = 48
    target = np.zeros((h, w), bool)
    target[:, : w // 2] = True
    mask = np.zeros((h, w), bool)
    mask[: h // 2] = True
    sample = SimpleNamespace(image=np.zeros((h, w, 3), np.uint8), target=target, void=np.zeros((h, w), bool))
    record = EpisodeRecord(index=0, image_id="toy", seed=0, ious=[1 / 3], rewards=[0.0], on_target=[True],
                           points=[(40.0, 40.0)], labels=[0], masks=[mask, mask])
    strip = episode_strip(sample, record, columns=2, height=h)
    panel = strip[strip.shape[0] - h:, :w].astype(int)  # the first panel, below its caption
    inner = (slice(4, 20), slice(4, 20))  # away from the outlines
    tp, fp = panel[inner], panel[4:20, 28:44]
    fn, tn = panel[28:44, 4:20], panel[28:36, 28:36]  # tn away from the negative click at (40, 40)
    assert np.allclose(tp, 0.5 * np.array(TRUE_POSITIVE_RGB), atol=2)
    assert np.allclose(fp, 0.5 * np.array(FALSE_POSITIVE_RGB), atol=2)
    hatched = np.all(fn == FALSE_NEGATIVE_RGB, axis=-1)
    assert 0.2 < hatched.mean() < 0.5 and np.all(fn[~hatched] == 0)
    assert np.all(tn == 0)
    # the ground-truth outline runs along the target's right edge (column 23/24) in the bottom half
    assert np.any(np.all(panel[30:40, 22:26] == FALSE_NEGATIVE_RGB, axis=-1))


def test_peak_memory_sees_an_allocation() -> None:
    with PeakMemory() as before:
        pass
    with PeakMemory() as memory:
        # 64 MiB of fresh anonymous pages, every one written: memory the allocator could not have
        # kept resident from an earlier test, so RSS must grow by all of it
        with mmap.mmap(-1, 64 * 2**20) as block:
            pages = np.frombuffer(block, dtype=np.uint8)
            pages[:] = 1
            assert int(pages[:: mmap.PAGESIZE].sum()) == 64 * 2**20 // mmap.PAGESIZE
            del pages
    assert memory.peak_mb > 0 and memory.method in ("VmHWM", "ru_maxrss")
    if memory.method == "VmHWM":
        assert memory.peak_mb >= before.peak_mb + 48
    else:  # the lifetime peak never falls
        assert memory.peak_mb >= before.peak_mb


def test_markdown_table_aligns_and_checks_rows() -> None:
    from sam_gym.reporting import markdown_table

    table = markdown_table([["a", 1, 2.5]], ["name", "n", "x"], right=["n", "x"])
    assert table.splitlines() == ["| name | n | x |", "|---|---:|---:|", "| a | 1 | 2.5 |"]
    assert markdown_table([], ["name"]) == "| name |\n|---|"
    with pytest.raises(ValueError, match=r"Expected 2 cells in every row, got 1 in row 0"):
        markdown_table([["a"]], ["name", "n"])
    with pytest.raises(ValueError, match="Expected right-aligned columns among"):
        markdown_table([["a"]], ["name"], right=["nmae"])


def test_summary_ber_is_pooled_from_counts_with_an_interval() -> None:
    from sam_gym.metrics import pooled_ber

    records = _records()
    counts = [(9, 90, 10, 90), (0, 10, 90, 10)] * (len(records) // 2 + 1)
    for r, (tp, tn, n_pos, n_neg) in zip(records, counts, strict=False):
        r.task_metrics = {"mae": 0.1, "f_beta": 0.5, "e_measure": 0.5, "s_measure": 0.5, "weighted_f": 0.5,
                          "ber": pooled_ber([(tp, tn, n_pos, n_neg)]),
                          "ber_tp": tp, "ber_tn": tn, "ber_n_pos": n_pos, "ber_n_neg": n_neg}
    entry = build_results([_run("random", records=records)], backend=BACKEND, dataset="toy", max_clicks=4,
                          command="cmd")["policies"]["random"]
    used = counts[:len(records)]
    assert entry["ber"] == pytest.approx(pooled_ber(used))
    assert entry["ber_image_mean"] == pytest.approx(np.mean([pooled_ber([c]) for c in used]))
    assert entry["ber"] != pytest.approx(entry["ber_image_mean"])
    low, high = entry["ci95"]["ber"]
    assert low <= entry["ber"] <= high
