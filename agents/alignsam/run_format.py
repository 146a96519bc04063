"""The AlignSAM run folder (version 2): written by training, read by loading, and no file in it is unpickled.

Layout::

    DIR/config.json                the run description (JSON): the TrainConfig, the backend, the dataset and
                                   its split (index ranges or, for a random split, index lists, and the
                                   content hashes of the training samples, see :func:`split_record`), the
                                   state shape, the observation and action spaces, the steps done and the
                                   name of the checkpoint folder
    DIR/checkpoint-00005000/       the checkpoint, written as one unit (a staging folder renamed into place):
        model.pt                   the MaskablePPO policy and optimiser state dicts and the PPO counters
                                   (a weights-only torch file)
        srm.pt, srm.json           the SRM weights, optimiser and config (unless ``srm="none"``)
    DIR/tb/                        TensorBoard logs

``config.json`` is replaced (atomically) only once the checkpoint folder it names is complete, so it
always names one whole checkpoint: the model and the SRM come from the same step, and ``model.pt``
records its step, which loading checks against ``config.json``. A save killed half-way leaves the
previous checkpoint in force; training removes the leftovers when it starts (:func:`clean_run_folder`).

Loading rebuilds the ``MaskablePPO`` model from ``config.json`` (the hyper-parameters and the spaces)
and reads the weights with ``torch.load(weights_only=True)``, so a run folder from someone else
cannot run code. Version 1 folders (an SB3 ``alignsam.zip``, whose loading unpickles the ``data``
entries) are refused; ``sam-gym convert-run DIR`` re-saves one that the user trusts.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sam_gym.atomic import atomic_folder, atomic_write_bytes, remove_stale_temporaries

__all__ = ["LEGACY_MODEL_FILE", "MODEL_WEIGHTS", "RUN_CONFIG", "RUN_FORMAT", "RUN_VERSION", "checkpoint_dir",
           "clean_run_folder", "held_out_indices", "legacy_run_error", "load_model", "load_srm", "model_state",
           "read_model_state", "read_run_info", "restore_model", "space_from_json", "space_to_json",
           "split_description", "split_indices", "split_record", "train_sample_hashes", "write_checkpoint"]

RUN_CONFIG = "config.json"
RUN_FORMAT = "alignsam-run"
RUN_VERSION = 2
MODEL_WEIGHTS = "model.pt"
#: The version 1 model file (an SB3 zip).
LEGACY_MODEL_FILE = "alignsam.zip"
_MODEL_FORMAT = "alignsam-model"
_MODEL_VERSION = 1
_CHECKPOINT = re.compile(r"^checkpoint-\d{8,}(?:-\d+)?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: ``split``'s optional key: the content hashes of the training samples (runs written before it lack it).
_TRAIN_HASHES = "train_sha256"
#: ``config.json``'s required keys: a type, or a dict of the keys of a nested dict.
_SCHEMA: dict[str, Any] = {
    "config": dict,
    "backend": {"name": str, "description": str, "model_id": str, "is_sam": bool},
    "dataset": {"name": str, "n_samples": int},
    "split": {"train": list, "held_out": list},
    "state_shape": list,
    "num_timesteps": int,
    "complete": bool,
    "checkpoint": str,
    "spaces": {"observation": dict, "action": dict},
}


def legacy_run_error(run_dir: str | Path) -> ValueError:
    """The one-line error for a version 1 run folder (an SB3 ``alignsam.zip``)."""
    return ValueError(f"Expected an AlignSAM run folder in the safe format (version {RUN_VERSION}), got the old "
                      f"format in {run_dir} (an SB3 {LEGACY_MODEL_FILE}: loading it unpickles, which can run code); "
                      f"train it again with `sam-gym train`, or, only if you trust where it comes from, convert it "
                      f"with `sam-gym convert-run {run_dir}`")


# ----------------------------------------------------------------------------- config.json


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """Read ``DIR/config.json`` and check every key that loading and resuming use.

    Raises:
        ValueError: If the folder or the file is missing or unreadable, of the old format (see
            :func:`legacy_run_error`) or another version, or a key is missing or of the wrong type.
    """
    run_dir = Path(run_dir)
    path = run_dir / RUN_CONFIG
    if not run_dir.is_dir():
        raise ValueError(f"Expected an AlignSAM run folder (from `sam-gym train`), "
                         f"got {str(run_dir)!r}: no such folder")
    if not path.is_file():
        raise ValueError(f"Expected {path} in the AlignSAM run folder (written by `sam-gym train` with its first "
                         f"checkpoint), got no such file")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"Expected {path} to be valid JSON, could not read it: {exc}") from exc
    _check_run_info(info, run_dir, path)
    return info


def _check_run_info(info: Any, run_dir: Path, path: Path) -> None:
    if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
        got = repr(info.get("format")) if isinstance(info, dict) else f"a JSON {type(info).__name__}"
        raise ValueError(f"Expected {path} to describe an AlignSAM run (format {RUN_FORMAT!r}), got {got}")
    if info.get("version") == 1:
        raise legacy_run_error(run_dir)
    if info.get("version") != RUN_VERSION:
        raise ValueError(f"Expected {path} of {RUN_FORMAT} version {RUN_VERSION}, got version "
                         f"{info.get('version')!r} (written by another version of sam-gym?)")
    _check_schema(info, _SCHEMA, "", path)
    _check_values(info, path)


def _check_schema(data: dict[str, Any], schema: dict[str, Any], prefix: str, path: Path) -> None:
    for key, expected in schema.items():
        name = prefix + key
        if key not in data:
            raise ValueError(f"Expected {path} to hold the key {name!r}, got none (edited by hand? restore the "
                             f"file or train again)")
        value = data[key]
        kind = dict if isinstance(expected, dict) else expected
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"Expected {name!r} in {path} to be a JSON {_JSON_NAMES[kind]}, got {value!r:.80}")
        if isinstance(expected, dict):
            _check_schema(value, expected, f"{name}.", path)


_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "integer", bool: "boolean"}


def _check_values(info: dict[str, Any], path: Path) -> None:
    from agents.alignsam.config import TrainConfig

    shape = info["state_shape"]
    if len(shape) != 3 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        raise ValueError(f"Expected 'state_shape' in {path} to be 3 positive integers (C, rows, cols), got {shape!r}")
    if info["num_timesteps"] < 0:
        raise ValueError(f"Expected 'num_timesteps' in {path} >= 0, got {info['num_timesteps']}")
    split = info["split"]
    hashes, train, mode = split.get(_TRAIN_HASHES), split["train"], split.get("mode", "first")
    if mode not in ("first", "random"):
        raise ValueError(f"Expected 'split.mode' in {path} to be 'first' or 'random', got {mode!r}")
    indices = [i for part in (train, split["held_out"]) for i in part]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices) or (
            mode == "first" and (len(train) != 2 or len(split["held_out"]) != 2)):
        raise ValueError(f"Expected 'split.train' and 'split.held_out' in {path} to be index ranges [start, stop] "
                         f"(split mode 'first') or index lists (mode 'random'), got {json.dumps(split)[:80]}")
    n_train = train[1] - train[0] if mode == "first" else len(train)
    if hashes is not None and (not isinstance(hashes, list) or len(hashes) != n_train
                               or not all(isinstance(h, str) and _SHA256.match(h) for h in hashes)):
        raise ValueError(f"Expected 'split.{_TRAIN_HASHES}' in {path} to hold one hex SHA-256 string per training "
                         f"sample ({train}), got {json.dumps(hashes)[:80]}")
    if not _CHECKPOINT.match(info["checkpoint"]):
        raise ValueError(f"Expected 'checkpoint' in {path} to name a checkpoint folder (checkpoint-NNNNNNNN), "
                         f"got {info['checkpoint']!r}")
    try:
        TrainConfig.from_dict(info["config"], require_all=True)
        observation = space_from_json(info["spaces"]["observation"])
        space_from_json(info["spaces"]["action"])
    except ValueError as exc:
        raise ValueError(f"Expected a valid run description in {path}: {exc}") from exc
    if info["spaces"]["observation"]["type"] != "Dict" or "state" not in observation.spaces:
        raise ValueError(f"Expected 'spaces.observation' in {path} to describe SamPrompt-v0's Dict observation, "
                         f"got {json.dumps(info['spaces']['observation'])[:80]}")


def split_indices(n_samples: int, n_train: int, mode: str, seed: int) -> tuple[list[int], list[int]]:
    """The training and held-out dataset indices of a run (both sorted).

    Args:
        n_samples: The dataset's size.
        n_train: Training samples, in ``[1, n_samples]`` (``n_samples``: train on all, hold out none).
        mode: ``"first"`` (the first ``n_train``) or ``"random"`` (a uniformly random subset drawn
            with ``numpy.random.default_rng(seed)``).
        seed: Seed of the random subset.

    Raises:
        ValueError: If ``n_train`` is out of range or ``mode`` unknown.
    """
    if not 0 < n_train <= n_samples:
        raise ValueError(f"Expected n_train in [1, {n_samples}] for a dataset of {n_samples} samples, got {n_train}")
    if mode == "first":
        train = list(range(n_train))
    elif mode == "random":
        train = sorted(int(i) for i in np.random.default_rng(seed).choice(n_samples, size=n_train, replace=False))
    else:
        raise ValueError(f"Expected split mode 'first' or 'random', got {mode!r}")
    chosen = set(train)
    return train, [i for i in range(n_samples) if i not in chosen]


def split_record(dataset: Any, train: list[int], mode: str = "first", seed: int = 0) -> dict[str, Any]:
    """The run's split for ``config.json``, from :func:`split_indices`'s training indices.

    Returns:
        Mode ``"first"``: ``{"train": [0, n_train], "held_out": [n_train, len(dataset)], "train_sha256": [...]}``
        (index ranges ``[start, stop]``, as every run before the random split). Mode ``"random"``:
        ``{"mode": "random", "seed": seed, "train": [indices], "held_out": [indices], "train_sha256": [...]}``.
        ``train_sha256`` is the :func:`~sam_gym.data.hashing.sample_hash` of each training sample, so
        that an evaluation recognises the training samples by content in any dataset (:mod:`sam_gym.holdout`).
    """
    from sam_gym.data.hashing import sample_hash

    hashes = [sample_hash(dataset[i]) for i in train]
    if mode == "first":
        return {"train": [0, len(train)], "held_out": [len(train), len(dataset)], _TRAIN_HASHES: hashes}
    chosen = set(train)
    return {"mode": mode, "seed": int(seed), "train": list(train),
            "held_out": [i for i in range(len(dataset)) if i not in chosen], _TRAIN_HASHES: hashes}


def held_out_indices(info: dict[str, Any]) -> list[int]:
    """The dataset indices the run did not train on (from ``config.json``'s split, either mode)."""
    split = info["split"]
    if split.get("mode", "first") == "first":
        return list(range(*split["held_out"]))
    return list(split["held_out"])


def train_sample_hashes(info: dict[str, Any]) -> frozenset[str] | None:
    """The content hashes of the run's training samples, or ``None`` for a run that recorded its split by index only."""
    hashes = info["split"].get(_TRAIN_HASHES)
    return None if hashes is None else frozenset(hashes)


def split_description(info: dict[str, Any]) -> str:
    """The run's split in words, e.g. ``"trained on samples 0-7 of synthetic-shapes (64 samples)"``."""
    split, dataset = info["split"], info["dataset"]
    if split.get("mode", "first") == "random":
        return (f"trained on {len(split['train'])} random samples (split seed {split['seed']}) of {dataset['name']} "
                f"({dataset['n_samples']} samples)")
    start, stop = split["train"]
    return f"trained on samples {start}-{stop - 1} of {dataset['name']} ({dataset['n_samples']} samples)"


def space_to_json(space: Any) -> dict[str, Any]:
    """A JSON description of a gymnasium ``Dict``, ``Box``, ``Discrete`` or ``MultiDiscrete`` space."""
    from gymnasium import spaces

    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {key: space_to_json(sub) for key, sub in space.spaces.items()}}
    if isinstance(space, spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": np.dtype(space.dtype).name,
                "low": _bound(space.low), "high": _bound(space.high)}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
    raise ValueError(f"Expected a Dict, Box, Discrete or MultiDiscrete space, got {space}")


def _bound(values: np.ndarray) -> Any:
    """One number when every entry is the same, else the nested list."""
    flat = values.ravel()
    return flat[0].item() if flat.size and bool(np.all(flat == flat[0])) else values.tolist()


def space_from_json(data: Any) -> Any:
    """Inverse of :func:`space_to_json`.

    Raises:
        ValueError: If ``data`` does not describe such a space (numeric ``Box`` dtypes only).
    """
    from gymnasium import spaces

    try:
        kind = data["type"]
        if kind == "Dict":
            return spaces.Dict({str(key): space_from_json(sub) for key, sub in data["spaces"].items()})
        if kind == "Box":
            dtype = np.dtype(data["dtype"])
            if dtype.kind not in "biuf":
                raise ValueError(f"a non-numeric dtype {dtype}")
            shape = tuple(int(n) for n in data["shape"])
            low = np.broadcast_to(np.asarray(data["low"], dtype=dtype), shape)
            high = np.broadcast_to(np.asarray(data["high"], dtype=dtype), shape)
            return spaces.Box(low=low.copy(), high=high.copy(), shape=shape, dtype=dtype)
        if kind == "Discrete":
            return spaces.Discrete(int(data["n"]), start=int(data["start"]))
        if kind == "MultiDiscrete":
            return spaces.MultiDiscrete([int(n) for n in data["nvec"]])
        raise ValueError(f"an unknown space type {kind!r}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"Expected a Dict, Box, Discrete or MultiDiscrete space description, got "
                         f"{json.dumps(data)[:80]!s} ({type(exc).__name__}: {exc})") from exc


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_dir(run_dir: str | Path, info: dict[str, Any]) -> Path:
    """The checkpoint folder that ``config.json`` (``info``, from :func:`read_run_info`) names."""
    return Path(run_dir) / info["checkpoint"]


def model_state(model: Any) -> dict[str, Any]:
    """What a checkpoint keeps of a ``MaskablePPO`` model: weights, optimiser state, counters (no objects)."""
    return {
        "format": _MODEL_FORMAT, "version": _MODEL_VERSION, "num_timesteps": int(model.num_timesteps),
        "n_updates": int(model._n_updates),
        "ep_info_buffer": [{str(k): _plain(v) for k, v in ep.items()} for ep in (model.ep_info_buffer or [])],
        "policy": model.policy.state_dict(), "optimizer": model.policy.optimizer.state_dict(),
    }


def _plain(value: Any) -> int | float:
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


def write_checkpoint(run_dir: Path, info: dict[str, Any], state: dict[str, Any],
                     write_files: Callable[[Path], object] | None = None) -> Path:
    """Write a checkpoint folder as one unit, then point ``config.json`` at it; return the folder.

    Args:
        run_dir: The run folder.
        info: The run description (``config.json`` without ``"checkpoint"``), checked as
            :func:`read_run_info` checks it; its ``num_timesteps`` must be the state's.
        state: :func:`model_state` of the model.
        write_files: Writes the other files (the SRM's) into the folder it is given.
    """
    import torch

    if info["num_timesteps"] != state["num_timesteps"]:
        raise ValueError(f"Expected the run description and the model at the same step, got "
                         f"{info['num_timesteps']} and {state['num_timesteps']}")
    name = base = f"checkpoint-{state['num_timesteps']:08d}"
    suffix = 0
    while (run_dir / name).exists():  # the same step saved again (after the final PPO update)
        suffix += 1
        name = f"{base}-{suffix}"
    info = {**info, "checkpoint": name}
    _check_run_info(info, run_dir, run_dir / RUN_CONFIG)
    with atomic_folder(run_dir / name) as staging:
        torch.save(state, staging / MODEL_WEIGHTS)
        if write_files is not None:
            write_files(staging)
    atomic_write_bytes(run_dir / RUN_CONFIG, (json.dumps(info, indent=2) + "\n").encode())
    for old in _checkpoint_folders(run_dir):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return run_dir / name


def _checkpoint_folders(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name)]


def clean_run_folder(run_dir: str | Path, keep: str | None) -> list[Path]:
    """Remove what killed saves left in ``run_dir``; return what was removed.

    That is: stale staging folders and temporary files (see :func:`sam_gym.atomic.remove_stale_temporaries`)
    and the checkpoint folders other than ``keep`` (the one ``config.json`` names; ``None``: all).
    """
    run_dir = Path(run_dir)
    removed = remove_stale_temporaries(run_dir)
    for folder in _checkpoint_folders(run_dir):
        if folder.name != keep:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def read_model_state(run_dir: str | Path, info: dict[str, Any], device: str) -> dict[str, Any]:
    """Read ``model.pt`` of the checkpoint that ``info`` names, with ``torch.load(weights_only=True)``.

    Raises:
        ValueError: If the file is missing or unreadable, holds anything but tensors and plain
            values (refused without running it), or is not at ``info``'s step.
    """
    import pickle

    import torch

    path = checkpoint_dir(run_dir, info) / MODEL_WEIGHTS
    if not path.is_file():
        raise ValueError(f"Expected the model {path} named by {Path(run_dir) / RUN_CONFIG}, got no such file")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:  # other objects than tensors and plain values, or not a torch file
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]*[^\s.])", str(exc))
        raise ValueError(f"Expected {path} to be a weights-only AlignSAM model file, got one that torch does not "
                         f"read as weights only ({detail[1] if detail else 'not a torch file'}); nothing in it "
                         f"was run") from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types on corrupt files
        raise ValueError(f"Expected a readable AlignSAM model at {path}, got {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())}") from exc
    keys = ("num_timesteps", "n_updates", "ep_info_buffer", "policy", "optimizer")
    if (not isinstance(state, dict) or state.get("format") != _MODEL_FORMAT
            or state.get("version") != _MODEL_VERSION or any(k not in state for k in keys)):
        raise ValueError(f"Expected {path} to hold an {_MODEL_FORMAT} v{_MODEL_VERSION} model")
    if state["num_timesteps"] != info["num_timesteps"]:
        raise ValueError(f"Expected {path} at step {info['num_timesteps']} (as {RUN_CONFIG} says), got step "
                         f"{state['num_timesteps']}: the files come from different checkpoints; train again")
    return state


def restore_model(model: Any, state: dict[str, Any], path: str | Path) -> None:
    """Load :func:`read_model_state`'s ``state`` into a ``MaskablePPO`` model built with the same settings.

    Raises:
        ValueError: If the weights do not fit the model (``path`` names the file in the message).
    """
    try:
        model.policy.load_state_dict(state["policy"])
        model.policy.optimizer.load_state_dict(state["optimizer"])
        episodes = [dict(ep) for ep in state["ep_info_buffer"]]
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"Expected {path} to fit the model described by its {RUN_CONFIG}, got "
                         f"{type(exc).__name__}: {' '.join(str(exc).split())}") from exc
    model.num_timesteps = int(state["num_timesteps"])
    model._n_updates = int(state["n_updates"])
    model.ep_info_buffer = deque(episodes, maxlen=model._stats_window_size)
    model.ep_success_buffer = deque(maxlen=model._stats_window_size)


def load_model(run_dir: str | Path, info: dict[str, Any], device: str) -> Any:
    """Rebuild the run's ``MaskablePPO`` model (without an env, for ``predict``) and load its weights."""
    from agents.alignsam.config import TrainConfig
    from agents.alignsam.model import model_for_spaces

    config = TrainConfig.from_dict(info["config"], require_all=True)
    model = model_for_spaces(config, space_from_json(info["spaces"]["observation"]),
                             space_from_json(info["spaces"]["action"]), info["state_shape"], device)
    restore_model(model, read_model_state(run_dir, info, device), checkpoint_dir(run_dir, info) / MODEL_WEIGHTS)
    return model


def load_srm(run_dir: str | Path, info: dict[str, Any], device: str) -> Any:
    """The run's :class:`~agents.alignsam.srm.Recalibrator` (``None`` for an ``srm="none"`` run)."""
    if info["config"]["srm"] == "none":
        return None
    from agents.alignsam.srm import Recalibrator

    return Recalibrator.load(checkpoint_dir(run_dir, info), device=device)
