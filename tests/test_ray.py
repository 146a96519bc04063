"""Ray: ``sam-gym cache --ray`` on a local Ray instance, and RLlib's PPO on ``SamPrompt-v0``.

All tests share one local instance (2 CPUs, no dashboard), started by the ``ray_local`` fixture
and shut down after the last of them. Skipped without the ``ray`` extra.
"""

import json
import os
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("ray.rllib")

from sam_gym.cli import main  # noqa: E402
from sam_gym.data import make_dataset  # noqa: E402

#: Environment of the local instance: no usage report, no metrics agent work, quiet logs.
LIGHT = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0", "RAY_enable_metrics_collection": "0",
         "RAY_AUTH_MODE": "disabled", "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}


@pytest.fixture(scope="module")
def ray_local():
    with pytest.MonkeyPatch.context() as patch:
        for name, value in LIGHT.items():
            patch.setenv(name, value)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20)
        try:
            yield ray
        finally:
            ray.shutdown()


def _coco(folder: Path) -> Path:
    """A COCO dataset of 3 synthetic-clutter images, two of them with 2 objects: 5 samples, 3 images."""
    images = folder / "images"
    images.mkdir(parents=True)
    entries, annotations = [], []
    source = make_dataset("synthetic-clutter", n=3)
    for i in range(3):
        image = source[i].image
        cv2.imwrite(str(images / f"img{i}.png"), image[:, :, ::-1])
        h, w = image.shape[:2]
        entries.append({"id": i + 1, "file_name": f"img{i}.png", "height": h, "width": w})
        for j in range(1 if i == 2 else 2):
            x, y = 10 + 40 * j, 10 + 20 * i
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                                "area": 900.0, "segmentation": [[x, y, x + 30, y, x + 30, y + 30, x, y + 30]]})
    path = folder / "ann.json"
    path.write_text(json.dumps({"images": entries, "annotations": annotations,
                                "categories": [{"id": 1, "name": "thing"}]}))
    return path


def _entries(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.npz"))}


def test_ray_cache_writes_the_single_process_entries_then_encodes_nothing(ray_local, tmp_path, capsys):
    pytest.importorskip("pycocotools")
    dataset = ["--dataset", str(_coco(tmp_path / "coco")), "--image-dir", str(tmp_path / "coco" / "images")]
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert main(["cache", *dataset, "--cache-dir", str(local)]) == 0
    assert "3 images, 3 encoded" in capsys.readouterr().out
    # a file:// URI goes through pyarrow's filesystem (the path every remote store takes), 2 actors
    ray_argv = ["cache", *dataset, "--cache-dir", remote.as_uri(), "--ray", "--num-actors", "2", "--batch-size", "1"]
    assert main(ray_argv) == 0
    out = capsys.readouterr().out
    assert "3 images, 3 encoded, 0 already cached, 0 repaired" in out and "2 encoder actors" in out
    expected = _entries(local)
    assert len(expected) == 3 and _entries(remote) == expected  # byte for byte, every entry
    assert not [p for p in remote.rglob("*") if p.name.endswith(".tmp")]

    stamps = {p: p.stat().st_mtime_ns for p in remote.rglob("*.npz")}
    assert main(ray_argv) == 0
    out = capsys.readouterr().out
    assert "3 images, 0 encoded, 3 already cached, 0 repaired" in out and "0 encoder actors" in out
    assert {p: p.stat().st_mtime_ns for p in remote.rglob("*.npz")} == stamps  # nothing was rewritten


def test_ray_cache_repairs_an_invalid_entry_in_a_local_folder(ray_local, tmp_path, capsys):
    dataset = ["--dataset", "synthetic-clutter", "--limit", "3"]
    cache = tmp_path / "cache"
    assert main(["cache", *dataset, "--cache-dir", str(cache)]) == 0
    expected = _entries(cache)
    broken = sorted(cache.rglob("*.npz"))[1]
    broken.write_bytes(broken.read_bytes()[:1000])  # truncated
    capsys.readouterr()
    with pytest.warns(UserWarning, match="is invalid"):
        assert main(["cache", *dataset, "--cache-dir", str(cache), "--ray", "--num-actors", "1"]) == 0
    assert "3 images, 1 encoded, 2 already cached, 1 repaired" in capsys.readouterr().out
    assert _entries(cache) == expected
    with zipfile.ZipFile(broken) as archive:
        assert archive.testzip() is None


def test_ray_cache_unwritable_uri_is_one_line_error(tmp_path, capsys):
    argv = ["cache", "--dataset", "synthetic-shapes", "--limit", "1", "--cache-dir", "file:///proc/sam_gym_cache",
            "--ray"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Expected --cache-dir to be a writable folder" in err and "\n" not in err
    assert main([*argv[:-2], "nosuchscheme://bucket/x", "--ray"]) == 2
    assert "pyarrow or fsspec" in capsys.readouterr().err


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:1", "could not reach 127.0.0.1:1"),  # nothing listens there (ray.init would wait for minutes)
    ("no-port", "Expected --address to be HOST:PORT"),
])
def test_ray_cache_bad_address_is_one_line_error(tmp_path, capsys, address, message):
    argv = ["cache", "--dataset", "synthetic-shapes", "--limit", "1", "--cache-dir", str(tmp_path), "--ray",
            "--address", address]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_ray_cache_backend_error_on_the_cluster_is_one_line(ray_local, tmp_path, capsys):
    pytest.importorskip("segment_anything")
    missing = tmp_path / "no_such_vit_b.pth"
    argv = ["cache", "--dataset", "synthetic-shapes", "--limit", "1", "--cache-dir", str(tmp_path / "cache"),
            "--ray", "--backend", "sam_vit_b", "--checkpoint", str(missing), "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and "\n" not in err and "Traceback" not in err
    assert main([*argv[:-3], "random"]) == 2  # random weights differ in every actor: refused up front
    assert "random weights differ in every process" in capsys.readouterr().err


def test_rllib_ppo_trains_and_the_restored_policy_never_chooses_a_masked_action(ray_local, tmp_path):
    from agents.rllib import load_module, ppo_config, run_greedy, train

    env_config = {"max_clicks": 5, "dataset_kwargs": {"n": 4}}
    config = ppo_config(env_config, num_env_runners=0, train_batch_size=100, minibatch_size=50, num_epochs=1,
                        hidden=(16,))
    summary = train(config, iterations=3, checkpoint_dir=tmp_path / "ppo")
    assert summary.env_steps >= 300 and summary.episodes > 0
    assert np.isfinite([summary.policy_loss, summary.vf_loss, summary.episode_return_mean]).all()
    played = run_greedy(load_module(summary.checkpoint), env_config, episodes=3)
    assert [episode.length for episode in played] == [5, 5, 5]
    assert [episode.masked_choices for episode in played] == [0, 0, 0]


def test_load_module_names_a_missing_checkpoint(tmp_path):
    from agents.rllib import load_module

    with pytest.raises(FileNotFoundError, match="no RLModule"):
        load_module(tmp_path)


def test_workers_see_this_checkout(ray_local):
    # the Ray workers import the same sam_gym as the tests (PYTHONPATH or the editable install)
    import sam_gym

    where = ray.get(ray.remote(num_cpus=0)(lambda: __import__("sam_gym").__file__).remote())
    assert os.path.realpath(where) == os.path.realpath(sam_gym.__file__)
