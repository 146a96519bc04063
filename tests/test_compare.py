"""``sam-gym compare``: joining eval runs on their episodes, paired statistics, refusals with one line."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from sam_gym.cli import main
from sam_gym.evaluation import EpisodeRecord, PolicyRun
from sam_gym.reporting import build_results, join_runs, write_results

BACKEND = SimpleNamespace(name="classical", description="classical (weight-free, not SAM)", is_sam=False,
                          model_id="classical-test")


def _records(shift: float, samples: int = 12, seeds: tuple[int, ...] = (0,)) -> list[EpisodeRecord]:
    """Episodes whose final IoU is 0.5 + 0.03 * sample + ``shift`` (sample hashes ``h0``, ``h1``, ...)."""
    records = []
    for seed in seeds:
        for i in range(samples):
            final = min(1.0, 0.5 + 0.03 * i + shift)
            records.append(EpisodeRecord(index=i, image_id=f"img{i}", seed=seed, ious=[final / 2, final],
                                         rewards=[1.0, 1.0], on_target=[True, False], sample_sha256=f"h{i}"))
    return records


def _write_run(folder: Path, policies: dict[str, list[EpisodeRecord]], max_clicks: int = 2,
               backend: SimpleNamespace = BACKEND) -> Path:
    runs = [PolicyRun(name=name, records=records,
                      protocol={"oracle": False, "labels": "oracle", "init_prompts": "gt_pair", "action_mode": "patch"},
                      peak_mem_mb=1.0, peak_gpu_mem_mb=None, memory_method="VmHWM", description=name)
            for name, records in policies.items()]
    write_results(build_results(runs, backend=backend, dataset="toy", max_clicks=max_clicks, command="sam-gym eval"),
                  folder)
    return folder


def _compare(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["compare", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err.strip()


def test_compare_two_runs(tmp_path, capsys) -> None:
    a = _write_run(tmp_path / "a", {"base": _records(0.0), "same": _records(0.0)})
    b = _write_run(tmp_path / "b", {"better": _records(0.05)})
    out = tmp_path / "cmp" / "report.md"
    status, printed, _ = _compare(capsys, str(a), str(b / "results.json"), "--out", str(out))
    assert status == 0
    report = out.read_text()
    assert report in printed and "NOT SAM" in report
    assert "| a/base | 12 | 12 |" in report and "| b/better | 12 | 12 |" in report
    # every image gains 0.05: significant (exact two-sided p = 2 / 2**12); the copy differs nowhere
    better = next(line for line in report.splitlines() if line.startswith("| final IoU") and "b/better" in line)
    assert "| 0.715 | 0.665 | 0.050 [0.050, 0.050] | 0.0005 | 12 (12) |" in better
    same = next(line for line in report.splitlines() if line.startswith("| final IoU") and "a/same" in line)
    assert "| 0.000 [0.000, 0.000] | 1.0000 | 12 (0) |" in same


def test_compare_pairs_per_image_over_seeds(tmp_path, capsys) -> None:
    a = _write_run(tmp_path / "a", {"p": _records(0.0, samples=4, seeds=(0, 1))})
    b = _write_run(tmp_path / "b", {"q": _records(0.1, samples=4, seeds=(0, 1))})
    status, printed, _ = _compare(capsys, str(a), str(b), "--metric", "final_iou", "--reference", "q",
                                  "--out", str(tmp_path / "c.md"))
    assert status == 0
    assert "| a/p | 8 | 4 |" in printed  # 8 episodes, 4 images
    # 4 images (not 8 episodes) are the units: exact two-sided p = 2 / 2**4
    assert ("| final IoU (higher is better) | a/p | b/q | 0.545 | 0.645 | -0.100 [-0.100, -0.100] | 0.1250 | 4 (4) |"
            in printed)


@pytest.mark.parametrize(("second", "extra", "message"), [
    ({"samples": 10}, (), "Expected the same episodes (sample hash + seed) in every run, got 12 in a/p and 10 in "
                          "b/q, 10 shared by all; pass --shared-only"),
    ({"max_clicks": 3}, (), "same click budget, got 2 in a and 3 in b"),
    ({"backend": SimpleNamespace(name="classical", description="classical", is_sam=False, model_id="other")}, (),
     "same backend"),
    ({}, ("--reference", "nope"), "Expected --reference as one of"),
    ({}, ("--metric", "speed"), "Expected a per-episode metric among"),
])
def test_refusals_are_one_line(tmp_path, capsys, second, extra, message) -> None:
    a = _write_run(tmp_path / "a", {"p": _records(0.0)})
    samples = second.pop("samples", 12)
    b = _write_run(tmp_path / "b", {"q": _records(0.0, samples=samples)}, **second)
    out = tmp_path / "c.md"
    status, _, err = _compare(capsys, str(a), str(b), *extra, "--out", str(out))
    assert status == 2 and err.startswith("sam-gym compare: error:") and "\n" not in err and message in err
    assert not out.exists()


def test_shared_only_compares_the_common_episodes(tmp_path, capsys) -> None:
    a = _write_run(tmp_path / "a", {"p": _records(0.0)})
    b = _write_run(tmp_path / "b", {"q": _records(0.0, samples=10)})
    status, printed, _ = _compare(capsys, str(a), str(b), "--shared-only", "--out", str(tmp_path / "c.md"))
    assert status == 0 and "10 shared episodes" in printed and "| a/p | 10 | 10 |" in printed


def test_old_results_and_bad_paths_are_refused(tmp_path, capsys) -> None:
    a = _write_run(tmp_path / "a", {"p": _records(0.0)})
    old = _write_run(tmp_path / "old", {"q": _records(0.0)})
    results = json.loads((old / "results.json").read_text())
    del results["schema_version"]
    for entry in results["policies"].values():
        del entry["episodes"]
    (old / "results.json").write_text(json.dumps(results))
    status, _, err = _compare(capsys, str(a), str(old), "--out", str(tmp_path / "c.md"))
    assert status == 2 and "schema_version >= 2" in err and "old (schema_version 1)" in err
    status, _, err = _compare(capsys, str(a), "--out", str(tmp_path / "c.md"))
    assert status == 2 and "two or more runs" in err
    status, _, err = _compare(capsys, str(a), str(tmp_path / "missing"), "--out", str(tmp_path / "c.md"))
    assert status == 2 and "results.json" in err and "missing" in err
    status, _, err = _compare(capsys, str(a), str(a / "results.json"), "--out", str(tmp_path / "c.md"))
    assert status == 2 and "same results.json twice" in err


def test_same_folder_names_are_labelled_by_path(tmp_path, capsys) -> None:
    first = _write_run(tmp_path / "x" / "run", {"p": _records(0.0)})
    second = _write_run(tmp_path / "y" / "run", {"p": _records(0.0)})
    status, printed, _ = _compare(capsys, str(first), str(second), "--out", str(tmp_path / "c.md"))
    assert status == 0 and f"| {first}/p |" in printed and f"| {second}/p |" in printed


def test_join_runs_restricts_to_shared_episodes() -> None:
    def results(samples: int) -> dict:
        run = PolicyRun(name="p", records=_records(0.0, samples=samples), protocol={}, peak_mem_mb=0.0,
                        peak_gpu_mem_mb=None, memory_method="VmHWM", description="p")
        return build_results([run], backend=BACKEND, dataset="toy", max_clicks=2, command="c")

    rows = join_runs({"a": results(5), "b": results(3)}, shared_only=True)
    assert {name: len(entries) for name, entries in rows.items()} == {"a/p": 3, "b/p": 3}
    with pytest.raises(ValueError, match="same episodes"):
        join_runs({"a": results(5), "b": results(3)})


def test_compare_real_eval_runs(tmp_path, capsys) -> None:
    # two evaluations of the same seeded random policy: joined on their sample hashes, identical
    argv = ["--dataset", "synthetic-shapes", "--samples", "3", "--max-clicks", "3", "--seeds", "0,1"]
    assert main(["eval", "--policy", "random", "--policy", "grid", *argv, "--out", str(tmp_path / "one")]) == 0
    assert main(["eval", "--policy", "random", *argv, "--out", str(tmp_path / "two")]) == 0
    capsys.readouterr()
    status, printed, _ = _compare(capsys, str(tmp_path / "one"), str(tmp_path / "two"), "--out",
                                  str(tmp_path / "c.md"))
    assert status == 0 and "6 shared episodes" in printed
    line = next(row for row in printed.splitlines() if row.startswith("| NoC@90") and "two/random" in row)
    assert "| 1.0000 | 3 (0) |" in line
