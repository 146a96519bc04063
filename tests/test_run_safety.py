"""AlignSAM run folders: loading runs no code from them, checkpoints survive interruption, bad files give one line.

The "payload" files below are pickles whose ``__reduce__`` would create a marker file when unpickled
(harmless: it opens an empty file in the test's folder). Each test asserts that the marker never
appears, after a control check that SB3's own loader does run the payload.
Everything runs on the weight-free classical backend (NOT SAM) with tiny PPO settings.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sb3_contrib")

from agents.alignsam.config import TrainConfig  # noqa: E402
from agents.alignsam.policy import AlignSAMPolicy  # noqa: E402
from agents.alignsam.run_format import RUN_CONFIG, read_run_info  # noqa: E402
from sam_gym import atomic  # noqa: E402
from sam_gym.cli import main  # noqa: E402
from sam_gym.envs import SamPromptEnv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--n-steps", "16", "--batch-size", "16", "--n-epochs", "1", "--n-envs", "1", "--n-train", "4",
        "--srm-warmup-steps", "2", "--max-clicks", "4", "--no-progress", "--device", "cpu", "--seed", "0"]
EVAL = ["--dataset", "synthetic-shapes", "--samples", "1", "--max-clicks", "2"]


class _Payload:
    """Unpickling this object opens (creates) ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run (32 steps) in the safe format."""
    out = tmp_path_factory.mktemp("safety") / "run"
    assert main(["train", "--timesteps", "32", "--out", str(out), *TINY]) == 0
    return out


def _copy(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest)
    return dest


def _legacy_copy(run_dir: Path, dest: Path) -> Path:
    """``run_dir`` re-saved in the old format (version 1): an SB3 ``alignsam.zip`` and the SRM files on top."""
    agent = AlignSAMPolicy.load(run_dir, device="cpu")
    dest.mkdir()
    agent.model.save(dest / "alignsam.zip")
    info = read_run_info(run_dir)
    for name in ("srm.pt", "srm.json"):
        shutil.copy2(run_dir / info["checkpoint"] / name, dest / name)
    legacy = {k: v for k, v in info.items() if k not in ("checkpoint", "spaces")}
    (dest / RUN_CONFIG).write_text(json.dumps({**legacy, "version": 1}))
    return dest


def _plant_payload(zip_path: Path, marker: Path) -> None:
    """Replace the zip's pickled ``observation_space`` (SB3 ``data`` JSON) with the payload."""
    with zipfile.ZipFile(zip_path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    data["observation_space"][":serialized:"] = base64.b64encode(pickle.dumps(_Payload(marker))).decode()
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)


@pytest.fixture
def evil_legacy(run_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """An old-format run whose zip runs the payload when SB3 loads it; ``(folder, marker)``."""
    folder = _legacy_copy(run_dir, tmp_path / "evil")
    marker = tmp_path / "pwned"
    _plant_payload(folder / "alignsam.zip", marker)
    return folder, marker


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0]
    return err[0]


# ----------------------------------------------------------------------------- loading runs no code


def test_payload_is_live_under_sb3s_loader(evil_legacy: tuple[Path, Path]) -> None:
    """Control: the planted zip does run code when unpickled, so the tests below are meaningful."""
    from sb3_contrib import MaskablePPO

    folder, marker = evil_legacy
    with pytest.raises(Exception):  # noqa: B017 - whatever SB3 makes of the replaced space
        MaskablePPO.load(folder / "alignsam.zip", device="cpu")
    assert marker.exists()


def test_python_api_refuses_old_run_without_running_it(evil_legacy: tuple[Path, Path]) -> None:
    folder, marker = evil_legacy
    with pytest.raises(ValueError, match="old format.*convert-run") as info:
        AlignSAMPolicy.load(folder)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_cli_eval_refuses_old_run_without_running_it(evil_legacy: tuple[Path, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    folder, marker = evil_legacy
    assert main(["eval", "--policy", f"alignsam:{folder}", *EVAL, "--out", str(tmp_path / "eval")]) == 2
    _one_line_error(capsys, "old format", "sam-gym convert-run")
    assert not marker.exists() and not (tmp_path / "eval" / "results.json").exists()


def test_resume_and_reuse_refuse_old_run_without_running_it(evil_legacy: tuple[Path, Path],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from agents.alignsam.training import train_or_reuse

    folder, marker = evil_legacy
    assert main(["train", "--timesteps", "48", "--out", str(folder), "--resume", *TINY]) == 2
    _one_line_error(capsys, "old format")
    assert main(["train", "--timesteps", "48", "--out", str(folder), *TINY]) == 2  # a new run must not clobber it
    _one_line_error(capsys, "old format")
    config = TrainConfig.from_dict({**json.loads((folder / RUN_CONFIG).read_text())["config"], "out": str(folder)})
    with pytest.raises(ValueError, match="old format"):
        train_or_reuse(config)
    assert not marker.exists()
    assert (folder / "alignsam.zip").is_file()  # left as it was


def test_model_file_holding_objects_is_refused_without_running_them(run_dir: Path, tmp_path: Path) -> None:
    folder = _copy(run_dir, tmp_path / "run")
    marker = tmp_path / "pwned"
    model = folder / read_run_info(folder)["checkpoint"] / "model.pt"
    torch.save({"format": "alignsam-model", "version": 1, "policy": _Payload(marker)}, model)
    with pytest.raises(ValueError, match="weights-only.*Unsupported global.*nothing in it was run"):
        AlignSAMPolicy.load(folder)
    assert not marker.exists()


def test_convert_run_resaves_a_trusted_old_run_with_the_same_actions(
        run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _legacy_copy(run_dir, tmp_path / "old")
    assert main(["convert-run", str(folder)]) == 0
    assert "converted" in capsys.readouterr().out
    assert not (folder / "alignsam.zip").exists() and not (folder / "srm.pt").exists()
    assert main(["convert-run", str(folder)]) == 2  # already converted
    _one_line_error(capsys, "version 2")
    _assert_same_agent(AlignSAMPolicy.load(run_dir, device="cpu"), AlignSAMPolicy.load(folder, device="cpu"))


def _assert_same_agent(first: AlignSAMPolicy, second: AlignSAMPolicy) -> None:
    env = SamPromptEnv(dataset="synthetic-shapes", init_prompts="gt_pair", max_clicks=4)
    for seed in range(3):
        obs, _ = env.reset(seed=seed, options={"index": 4 + seed})
        masks = env.action_masks()
        a1, _ = first.predict(obs, deterministic=True, action_masks=masks)
        a2, _ = second.predict(obs, deterministic=True, action_masks=masks)
        assert int(a1) == int(a2)
        view = env.episode_view()
        np.testing.assert_array_equal(first.srm.prob_map(view), second.srm.prob_map(view))


# ----------------------------------------------------------------------------- config.json schema


def _edit(info: dict[str, Any], edit: str) -> None:
    if edit == "no config":
        del info["config"]
    elif edit == "no state_shape":
        del info["state_shape"]
    elif edit == "no backend.model_id":
        del info["backend"]["model_id"]
    elif edit == "no config.srm":
        del info["config"]["srm"]
    elif edit == "config is a list":
        info["config"] = [1, 2]
    elif edit == "grid is text":
        info["config"]["grid"] = "10x10"
    elif edit == "steps as text":
        info["num_timesteps"] = "32"
    elif edit == "version 3":
        info["version"] = 3
    elif edit == "checkpoint outside":
        info["checkpoint"] = "../elsewhere"
    elif edit == "bad space":
        info["spaces"]["action"] = {"type": "Tuple"}


EDITS = ["no config", "no state_shape", "no backend.model_id", "no config.srm", "config is a list", "grid is text",
         "steps as text", "version 3", "checkpoint outside", "bad space"]
MESSAGES = ["'config'", "'state_shape'", "'backend.model_id'", "none for ['srm']", "'config'", "'grid'",
            "'num_timesteps'", "version 3", "'checkpoint'", "Tuple"]


@pytest.mark.parametrize(("edit", "message"), list(zip(EDITS, MESSAGES, strict=True)), ids=EDITS)
def test_hand_edited_config_json_gives_one_clear_error(run_dir: Path, tmp_path: Path, edit: str, message: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(run_dir, tmp_path / "run")
    info = json.loads((folder / RUN_CONFIG).read_text())
    _edit(info, edit)
    (folder / RUN_CONFIG).write_text(json.dumps(info))
    with pytest.raises(ValueError, match="config.json") as error:
        AlignSAMPolicy.load(folder)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert main(["eval", "--policy", f"alignsam:{folder}", *EVAL, "--out", str(tmp_path / "eval")]) == 2
    _one_line_error(capsys, message)


def test_files_from_different_steps_are_refused(run_dir: Path, tmp_path: Path) -> None:
    folder = _copy(run_dir, tmp_path / "run")
    info = json.loads((folder / RUN_CONFIG).read_text())
    (folder / RUN_CONFIG).write_text(json.dumps({**info, "num_timesteps": info["num_timesteps"] - 16}))
    with pytest.raises(ValueError, match="different checkpoints"):
        AlignSAMPolicy.load(folder)


# ----------------------------------------------------------------------------- interrupted training


def _config(out: Path, timesteps: int, **overrides: Any) -> TrainConfig:
    return TrainConfig(out=str(out), timesteps=timesteps, n_steps=16, batch_size=16, n_epochs=1, n_envs=1, n_train=4,
                       srm_warmup_steps=2, max_clicks=4, progress_bar=False, device="cpu", **overrides)


class _Killed(Exception):
    pass


def _fail_on_call(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Make the ``n``-th SRM save raise: the model file of that checkpoint is written, the SRM files are not."""
    from agents.alignsam.srm import Recalibrator

    calls = {"n": 0}
    original = Recalibrator.save

    def save(self: Recalibrator, directory: Path) -> None:
        calls["n"] += 1
        if calls["n"] == n:
            assert (Path(directory) / "model.pt").is_file()
            raise _Killed
        original(self, directory)

    monkeypatch.setattr(Recalibrator, "save", save)


def test_save_interrupted_between_files_keeps_the_last_checkpoint(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.alignsam.training import train

    out = tmp_path / "run"
    _fail_on_call(monkeypatch, 3)  # saves: step 0, step 16, then step 32 fails
    with pytest.raises(_Killed):
        train(_config(out, 48, checkpoint_every=16))
    monkeypatch.undo()
    info = read_run_info(out)
    assert info["num_timesteps"] == 16 and not info["complete"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-00000016", "config.json", "tb"]
    AlignSAMPolicy.load(out, device="cpu")  # model and SRM of step 16
    train(_config(out, 48, checkpoint_every=16), resume=True)
    assert read_run_info(out)["complete"] and read_run_info(out)["num_timesteps"] == 48


def test_first_save_interrupted_leaves_a_folder_that_trains_anew(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from agents.alignsam.training import train, train_or_reuse

    out = tmp_path / "run"
    _fail_on_call(monkeypatch, 1)
    with pytest.raises(_Killed):
        train(_config(out, 16))
    monkeypatch.undo()
    assert not (out / RUN_CONFIG).exists()
    with pytest.raises(ValueError, match="config.json"):
        AlignSAMPolicy.load(out)
    assert main(["train", "--timesteps", "16", "--out", str(out), "--resume", *TINY]) == 2
    _one_line_error(capsys, "without --resume")
    assert train_or_reuse(_config(out, 16)) == (out, False)
    assert read_run_info(out)["complete"]


def test_checkpoint_every_sets_the_checkpoint_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.alignsam import training

    steps: list[int] = []
    original = training.write_checkpoint

    def record(run_dir: Path, info: dict[str, Any], *args: Any) -> Path:
        steps.append(info["num_timesteps"])
        return original(run_dir, info, *args)

    monkeypatch.setattr(training, "write_checkpoint", record)
    out = tmp_path / "run"
    assert main(["train", "--timesteps", "32", "--checkpoint-every", "10", "--out", str(out), *TINY]) == 0
    assert steps == [0, 10, 20, 30, 32]
    assert read_run_info(out)["config"]["checkpoint_every"] == 10
    assert [p.name for p in out.iterdir() if p.name.startswith("checkpoint")] == ["checkpoint-00000032"]


_KILL_SCRIPT = """
import os, signal, sys
from agents.alignsam.srm import Recalibrator
original = Recalibrator.save
calls = []
def save(self, directory):
    calls.append(directory)
    if len(calls) == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)
    original(self, directory)
Recalibrator.save = save
from sam_gym.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def test_sigkill_mid_save_leaves_litter_that_the_next_start_removes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["train", "--timesteps", "32", "--checkpoint-every", "16", "--out", str(out), *TINY]
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, "2", *argv], env=_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    staging = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert len(staging) == 1 and staging[0].startswith(".checkpoint-00000016.")  # the killed save's staging folder
    assert read_run_info(out)["num_timesteps"] == 0
    AlignSAMPolicy.load(out, device="cpu")  # the checkpoint of step 0 is whole
    assert main(["train", "--timesteps", "32", "--checkpoint-every", "16", "--out", str(out), "--resume",
                 *TINY]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names[1:] == ["config.json", "tb"] and names[0].startswith("checkpoint-00000032")  # litter removed


def test_sigterm_saves_a_resumable_checkpoint_and_exits_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["train", "--timesteps", "100000", "--checkpoint-every", "100000", "--out", str(out), *TINY]
    proc = subprocess.Popen([sys.executable, "-m", "sam_gym.cli", *argv], env=_env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not any((out / "tb").glob("alignsam_*/events.*")):  # PPO has started learning
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "interrupted by SIGTERM; checkpoint of step" in err
    info = read_run_info(out)
    assert 0 < info["num_timesteps"] < 100000 and not info["complete"]
    step = info["num_timesteps"]
    assert main(["train", "--timesteps", str(step + 8), "--out", str(out), "--resume", *TINY]) == 0
    info = read_run_info(out)
    assert info["complete"] and info["num_timesteps"] >= step + 8


# ----------------------------------------------------------------------------- sam_gym.atomic temporaries


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    host = atomic._host_id()
    dead = tmp_path / f".results.json.{host}-{_dead_pid()}-abcd1234.tmp"
    dead_folder = tmp_path / f".checkpoint-00000016.{host}-{_dead_pid()}-abcd1234.tmp"
    live = tmp_path / f".results.md.{host}-{os.getpid()}-abcd1234.tmp"
    other_host = tmp_path / f".a.npz.0000ffff-{_dead_pid()}-abcd1234.tmp"
    old_untagged = tmp_path / ".results.json.xpoarf0s.tmp"
    new_untagged = tmp_path / ".results.md.xpoarf0s.tmp"
    user_file = tmp_path / ".notes.tmp"
    for path in (dead, live, other_host, old_untagged, new_untagged, user_file):
        path.write_text("x")
    dead_folder.mkdir()
    (dead_folder / "model.pt").write_text("x")
    stale = time.time() - atomic.STALE_AFTER_S - 60
    os.utime(old_untagged, (stale, stale))
    removed = atomic.remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([dead, dead_folder, old_untagged])
    assert all(p.exists() for p in (live, other_host, new_untagged, user_file))


def test_atomic_write_removes_a_killed_writers_litter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    litter = tmp_path / f".results.json.{atomic._host_id()}-{_dead_pid()}-abcd1234.tmp"
    litter.write_text("partial")
    monkeypatch.setattr(atomic, "_swept", set())
    atomic.atomic_write_bytes(tmp_path / "other.json", b"{}")
    assert not litter.exists() and (tmp_path / "other.json").read_bytes() == b"{}"
    assert [p.name for p in tmp_path.iterdir()] == ["other.json"]


def test_atomic_folder_is_all_or_nothing(tmp_path: Path) -> None:
    with atomic.atomic_folder(tmp_path / "unit") as staging:
        (staging / "a").write_text("1")
        assert not (tmp_path / "unit").exists()
    assert (tmp_path / "unit" / "a").read_text() == "1"
    with pytest.raises(RuntimeError), atomic.atomic_folder(tmp_path / "broken") as staging:
        (staging / "a").write_text("1")
        raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unit"]
    with pytest.raises(FileExistsError), atomic.atomic_folder(tmp_path / "unit"):
        pass
