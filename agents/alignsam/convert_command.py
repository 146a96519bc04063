"""``sam-gym convert-run DIR``: re-save a TRUSTED old-format AlignSAM run folder in the safe format.

Old run folders (format version 1) hold an SB3 ``alignsam.zip``; loading it with SB3 unpickles the
entries of its ``data`` file, which can run any code, so ``alignsam:DIR``, ``sam-gym train --resume``
and the demo refuse such a folder. This command loads it with SB3 **on purpose** (so run it only on
a folder you trust: your own, or one from a source you would run code from) and writes the version 2
layout of :mod:`agents.alignsam.run_format` in place: a checkpoint folder with ``model.pt`` (weights
only) and the SRM files, and a new ``config.json``. The old ``alignsam.zip``, ``srm.pt`` and ``srm.json``
at the top of the folder are then removed. ``tb/`` is kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

HELP = ("re-save a TRUSTED old AlignSAM run folder (SB3 alignsam.zip) in the safe format; this unpickles "
        "the old file, which can run code")

#: The old format's SRM files (at the top of the run folder).
_LEGACY_SRM_FILES = ("srm.pt", "srm.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's argument: the folder."""
    parser.add_argument("run_dir", metavar="DIR",
                        help="old-format run folder (config.json version 1 + alignsam.zip); only one you trust: "
                             "its alignsam.zip is unpickled")


def run(args: argparse.Namespace) -> int:
    """Convert ``args.run_dir`` and say what was done."""
    print(convert_run(args.run_dir))
    return 0


def convert_run(run_dir: str | Path) -> str:
    """Convert a version 1 run folder in place (unpickling its ``alignsam.zip``); return a summary line.

    Raises:
        ValueError: If the folder is not a readable version 1 run, or its model and ``config.json``
            are at different steps (a checkpoint interrupted mid-save: train again).
    """
    from agents.alignsam.config import TrainConfig
    from agents.alignsam.run_format import (
        LEGACY_MODEL_FILE,
        RUN_CONFIG,
        RUN_FORMAT,
        RUN_VERSION,
        load_model,
        model_state,
        read_run_info,
        space_to_json,
        write_checkpoint,
    )

    run_dir = Path(run_dir).expanduser()
    info = _read_legacy_info(run_dir / RUN_CONFIG, RUN_FORMAT)
    zip_path = run_dir / LEGACY_MODEL_FILE
    if not zip_path.is_file():
        raise ValueError(f"Expected the old model {zip_path} to convert, got no such file")
    names = set(TrainConfig().to_dict())
    filled = sorted(names - set(info["config"]))
    config = TrainConfig.from_dict(info["config"])
    srm_files = [] if config.srm == "none" else [run_dir / name for name in _LEGACY_SRM_FILES]
    for file in srm_files:
        if not file.is_file():
            raise ValueError(f"Expected the SRM file {file} to convert, got no such file")
    from sb3_contrib import MaskablePPO

    try:
        model = MaskablePPO.load(zip_path, device="cpu")  # unpickles: the user vouched for this folder
    except Exception as exc:  # noqa: BLE001 - any corrupt zip gets one clear message
        raise ValueError(f"Expected a MaskablePPO model at {zip_path}, could not load it: "
                         f"{type(exc).__name__}: {' '.join(str(exc).split())}") from exc
    step = info.get("num_timesteps")
    if model.num_timesteps != step:
        raise ValueError(f"Expected {zip_path} at step {step} (as {RUN_CONFIG} says), got step "
                         f"{model.num_timesteps}: the files come from different checkpoints; train again")
    new_info = {**info, "format": RUN_FORMAT, "version": RUN_VERSION, "config": config.to_dict(),
                "complete": bool(info.get("complete", False)),
                "spaces": {"observation": space_to_json(model.observation_space),
                           "action": space_to_json(model.action_space)}}

    def copy_srm(staging: Path) -> None:
        for file in srm_files:
            shutil.copy2(file, staging / file.name)

    folder = write_checkpoint(run_dir, new_info, model_state(model), copy_srm)
    converted = load_model(run_dir, read_run_info(run_dir), "cpu")  # the new files load safely, to the same weights
    if any(not converted.policy.state_dict()[k].equal(v) for k, v in model.policy.state_dict().items()):
        raise ValueError(f"Expected the converted model in {folder} to equal {zip_path}, got other weights")
    for file in (zip_path, *srm_files):
        file.unlink()
    note = f"; fields missing from the old config.json set to their defaults: {filled}" if filled else ""
    return (f"converted {run_dir} (step {step}) to the safe format: {folder.name}/ holds the weights; removed "
            f"{', '.join(f.name for f in (zip_path, *srm_files))}{note}")


def _read_legacy_info(path: Path, fmt: str) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"Expected {path} of an old-format AlignSAM run, got no such file")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"Expected {path} to be valid JSON, could not read it: {exc}") from exc
    if not isinstance(info, dict) or info.get("format") != fmt:
        raise ValueError(f"Expected {path} to describe an AlignSAM run (format {fmt!r}), got "
                         f"{info.get('format') if isinstance(info, dict) else type(info).__name__!r}")
    if info.get("version") != 1:
        raise ValueError(f"Expected {path} of the old format (version 1) to convert, got version "
                         f"{info.get('version')!r} (a version 2 run loads as it is)")
    if not isinstance(info.get("config"), dict):
        raise ValueError(f"Expected {path} to hold the key 'config' as a JSON object, got {info.get('config')!r:.80}")
    return info
