"""Training the AlignSAM agent: sb3-contrib ``MaskablePPO`` on ``SamPrompt-v0`` with the online SRM.

:func:`train` writes a run folder (:mod:`agents.alignsam.run_format`)::

    DIR/config.json        the TrainConfig, the backend description, the dataset and its train/held-out split,
                           the spaces, the timesteps done, steps per second, the checkpoint folder's name
    DIR/checkpoint-N/      the last checkpoint, one unit: model.pt (policy and optimiser state, weights only)
                           and srm.pt + srm.json (the SRM, unless srm="none")
    DIR/tb/                TensorBoard logs

A checkpoint is written every ``checkpoint_every`` steps, at the end, and when the process gets
Ctrl-C (SIGINT) or SIGTERM: training stops after the current step, saves, and raises
:class:`TrainingInterrupted` (the CLI prints one line and exits 130 / 143). ``train(config,
resume=True)`` continues from the last checkpoint.

Training episodes follow the paper: ``label_mode="oracle"`` (the clicked pixel's ground truth) and
``init_prompts="gt_pair"`` (one random positive and one random negative ground-truth point) on
``n_train`` samples, a seeded random subset (``train_split="random"``, the paper's) or the first
ones (``"first"``); the rest of the dataset is held out (:func:`~agents.alignsam.run_format.split_indices`,
recorded in ``config.json``). With ``train_labels="srm"`` the clicks are labelled by the online
SRM instead (as at evaluation), after its warm-up. The ``n_envs`` envs are one batched
:class:`~sam_gym.envs.vector_env.SamPromptVectorEnv` (one backend, one embedding cache, one
decoder call per step for all of them, in one process: a SAM backend must not be copied into
subprocesses) behind the SB3 ``VecEnv`` adapter (:mod:`sam_gym.envs.sb3`) and a ``VecMonitor``.
The training envs use ``info_iou="none"`` (the +/-1 reward needs no per-step IoU).
Points are ``(x, y)`` image pixels (x right, y down), masks ``(H, W)`` indexed ``[row, col]``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agents.alignsam.config import TrainConfig
from agents.alignsam.model import ppo_arguments
from agents.alignsam.run_format import (
    LEGACY_MODEL_FILE,
    MODEL_WEIGHTS,
    RUN_CONFIG,
    RUN_FORMAT,
    RUN_VERSION,
    checkpoint_dir,
    clean_run_folder,
    legacy_run_error,
    model_state,
    read_model_state,
    read_run_info,
    restore_model,
    space_from_json,
    space_to_json,
    split_indices,
    split_record,
    write_checkpoint,
)

__all__ = ["TrainingInterrupted", "build_model", "make_train_env", "train", "train_or_reuse"]

#: Fields that may differ between the saved config and a ``--resume`` call.
_RESUMABLE_CHANGES = {"timesteps", "out", "progress_bar", "extra", "device", "checkpoint_every", "torch_threads"}


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT / SIGTERM; ``exit_status`` is ``128 + signal number``."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + signum


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; other values unchanged."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def make_train_env(config: TrainConfig) -> tuple[Any, Any, Any]:
    """Build the training env: the batched vector env on the training split, as an SB3 ``VecEnv``.

    Returns:
        ``(vec_env, dataset, train_subset)``: ``train_subset.indices`` are the dataset indices of the
        training samples; ``vec_env`` is a ``VecMonitor`` over
        :class:`~sam_gym.envs.sb3.SB3VecEnv` (``vec_env.envs[i]`` is sub-env ``i``, a
        ``SamPromptEnv``); the sub-envs share one backend and one embedding cache.
    """
    from stable_baselines3.common.vec_env import VecMonitor

    from sam_gym.backends import backend_entry, make_backend
    from sam_gym.cache import EmbeddingCache
    from sam_gym.data import make_dataset
    from sam_gym.data.subset import Subset
    from sam_gym.envs.sb3 import make_sb3_vec_env

    dataset = make_dataset(config.dataset, **config.dataset_kwargs)
    train, _ = split_indices(len(dataset), config.n_train, config.train_split, config.split_seed)
    train_set = Subset(dataset, train, name=f"{dataset.name}[train {config.n_train}]")
    device = resolve_device(config.device) if backend_entry(config.backend).checkpoint else None
    backend = make_backend(config.backend, checkpoint=config.checkpoint, device=device, half=config.half)
    cache = EmbeddingCache(backend, max_items=max(64, config.n_train))
    venv = make_sb3_vec_env(config.n_envs, dataset=train_set, cache=cache, grid=config.grid,
                            max_clicks=config.max_clicks, label_mode="oracle", init_prompts="gt_pair",
                            action_mode="patch", info_iou="none")
    return VecMonitor(venv), dataset, train_set


def build_model(config: TrainConfig, vec_env: Any, tb_dir: Path | None) -> Any:
    """Create the ``MaskablePPO`` model with :class:`~agents.alignsam.features.AlignSAMExtractor`."""
    from sb3_contrib import MaskablePPO

    return MaskablePPO("MultiInputPolicy", vec_env, tensorboard_log=None if tb_dir is None else str(tb_dir),
                       device=resolve_device(config.device),
                       **ppo_arguments(config, vec_env.envs[0].unwrapped.state_shape))


def _run_info(config: TrainConfig, vec_env: Any, dataset: Any, num_timesteps: int, split: dict[str, Any],
              **extra: Any) -> dict[str, Any]:
    env = vec_env.envs[0].unwrapped
    backend = env.backend
    return {
        "format": RUN_FORMAT,
        "version": RUN_VERSION,
        "config": config.to_dict(),
        "backend": {"name": backend.name, "description": backend.description, "model_id": backend.model_id,
                    "is_sam": backend.is_sam},
        "dataset": {"name": dataset.name, "n_samples": len(dataset)},
        "split": split,
        "state_shape": list(env.state_shape),
        "spaces": {"observation": space_to_json(vec_env.observation_space),
                   "action": space_to_json(vec_env.action_space)},
        "num_timesteps": int(num_timesteps),
        **extra,
    }


def _resume_config(config: TrainConfig, info: dict[str, Any]) -> TrainConfig:
    """The saved config with the new ``timesteps``; other differences are an error.

    A field the saved ``config.json`` lacks (added since the run was made) keeps the value the run
    was made with, whatever ``config`` says: a resumed run continues as it was trained.
    """
    from agents.alignsam.config import _ADDED_FIELDS

    saved = TrainConfig.from_dict(info["config"], require_all=True)
    new, old = config.to_dict(), saved.to_dict()
    absent = set(_ADDED_FIELDS) - set(info["config"])
    changed = sorted(k for k in new if new[k] != old[k] and k not in _RESUMABLE_CHANGES | absent)
    if changed:
        details = ", ".join(f"{k}: saved {old[k]!r}, given {new[k]!r}" for k in changed)
        raise ValueError(f"Expected --resume with the saved run's settings, got different {details}")
    for key in _RESUMABLE_CHANGES:
        setattr(saved, key, getattr(config, key))
    return saved


def _check_new_run_folder(run_dir: Path) -> None:
    if (run_dir / LEGACY_MODEL_FILE).exists():
        raise legacy_run_error(run_dir)
    if (run_dir / RUN_CONFIG).exists():
        raise ValueError(f"Expected a new run folder, but {run_dir} holds a run ({RUN_CONFIG}); "
                         f"pass --resume or another --out")


def _check_spaces(saved: dict[str, Any], vec_env: Any, run_dir: Path) -> None:
    """The resumed run's env must have the saved observation and action spaces."""
    observation = space_from_json(saved["spaces"]["observation"])
    action = space_from_json(saved["spaces"]["action"])
    different = sorted(k for k in observation.spaces if vec_env.observation_space.spaces.get(k) != observation[k])
    different += sorted(set(vec_env.observation_space.spaces) - set(observation.spaces))
    if vec_env.action_space != action:
        different.append("action")
    if different:
        raise ValueError(f"Expected the training env to have the spaces saved in {run_dir}, got different "
                         f"{different} (another backend or dataset version?)")


class _SignalStop:
    """SIGINT / SIGTERM handling of :func:`train`.

    While ``deferred`` (PPO is learning) the first signal is recorded, and the checkpoint callback
    stops training after the current step; otherwise, or on a second signal, the handler raises
    :class:`TrainingInterrupted` at once (the last checkpoint on disk is whole either way).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.signum: int | None = None
        self.deferred = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.deferred and self.signum is None:
            self.signum = signum  # no printing here: the handler may interrupt a write to stdout
            return
        raise TrainingInterrupted(signum, f"interrupted by {signal.Signals(signum).name} before saving; "
                                          f"{self._last_checkpoint()}")

    def _last_checkpoint(self) -> str:
        try:
            step = read_run_info(self.run_dir)["num_timesteps"]
        except ValueError:
            return f"no checkpoint in {self.run_dir} yet (train again without --resume)"
        return f"the checkpoint of step {step} in {self.run_dir} is whole (continue with --resume)"

    def interrupted(self, step: int) -> TrainingInterrupted:
        """The exception to raise once the checkpoint of ``step`` is saved after a deferred signal."""
        assert self.signum is not None
        return TrainingInterrupted(self.signum, f"interrupted by {signal.Signals(self.signum).name}; checkpoint "
                                                f"of step {step} saved in {self.run_dir} (continue with --resume)")

    @contextlib.contextmanager
    def installed(self) -> Iterator[_SignalStop]:
        """Handle SIGINT and SIGTERM inside the block (in the main thread only; elsewhere it does nothing)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _warm_up(srm: Any, config: TrainConfig, env: Any) -> dict[str, Any]:
    """Supervised SRM warm-up on the training split (not in the paper); return what it did.

    ``env`` is an unwrapped training env (training images only, oracle labels, ground-truth
    initial pair), so only training ground truth supervises the SRM. Returns ``{}`` when
    ``config.srm_warmup_steps`` is 0.
    """
    if config.srm_warmup_steps == 0:
        return {}
    start = time.perf_counter()
    samples = srm.collect(env, range(len(env.dataset)), config.srm_warmup_episodes, config.srm_warmup_clicks,
                          seed=config.seed)
    losses = srm.pretrain(samples, config.srm_warmup_steps, seed=config.seed)
    tail = losses[-min(50, len(losses)):]
    return {"samples": len(samples), "steps": config.srm_warmup_steps, "seconds": round(time.perf_counter() - start, 2),
            "final_loss": round(float(sum(tail) / len(tail)), 4), "train_map": srm.map_metrics(samples)}


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train an AlignSAM agent and return its run folder (``config.out``).

    Args:
        config: The run's settings.
        resume: Continue from the run's last checkpoint up to ``config.timesteps`` total steps. The
            resumed part is seeded from ``seed`` and the step reached, so it is reproducible, but not
            identical to an uninterrupted run.

    Raises:
        ValueError: On bad settings, or ``resume`` without a compatible checkpoint.
        TrainingInterrupted: On SIGINT / SIGTERM (after saving a checkpoint when PPO was learning).
    """
    run_dir = Path(config.out).expanduser()
    stop = _SignalStop(run_dir)
    with stop.installed():
        return _train(config, resume, run_dir, stop)


def _train(config: TrainConfig, resume: bool, run_dir: Path, stop: _SignalStop) -> Path:
    import torch
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList
    from stable_baselines3.common.utils import set_random_seed

    from agents.alignsam.srm import Recalibrator, SRMCallback, SRMConfig

    config.validate()
    saved: dict[str, Any] = {}
    if resume:
        if not (run_dir / RUN_CONFIG).is_file() and run_dir.is_dir() and not (run_dir / LEGACY_MODEL_FILE).exists():
            raise ValueError(f"Expected a checkpoint in {run_dir} to resume from, got none (training stopped "
                             f"before its first checkpoint?); train again without --resume")
        saved = read_run_info(run_dir)
        config = _resume_config(config, saved)
    else:
        _check_new_run_folder(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    clean_run_folder(run_dir, keep=saved.get("checkpoint"))
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    set_random_seed(config.seed)
    vec_env, dataset, train_set = make_train_env(config)
    split = split_record(dataset, train_set.indices, config.train_split, config.split_seed)  # hashes them once
    device = resolve_device(config.device)
    model = build_model(config, vec_env, run_dir / "tb")
    if resume:
        _check_spaces(saved, vec_env, run_dir)
        restore_model(model, read_model_state(run_dir, saved, device), checkpoint_dir(run_dir, saved) / MODEL_WEIGHTS)
    vec_env.seed(config.seed + model.num_timesteps)

    srm: Recalibrator | None = None
    warmup: dict[str, Any] = saved.get("srm_warmup", {})
    if config.srm != "none":
        if resume:
            srm = Recalibrator.load(checkpoint_dir(run_dir, saved), device=device)
        else:
            srm_config = SRMConfig(mode=config.srm, in_channels=int(vec_env.envs[0].unwrapped.state_shape[0]),
                                   size=config.srm_size, text=config.text, clip_model=config.clip_model,
                                   clip_pretrained=config.clip_pretrained, lr=config.srm_lr,
                                   context=config.srm_context,
                                   fusion=config.srm_fusion if config.srm == "explicit" else "late")
            srm = Recalibrator(srm_config, device=device, seed=config.seed)
            warmup = _warm_up(srm, config, vec_env.envs[0].unwrapped)
        if config.train_labels == "srm":  # after the warm-up, which uses oracle labels
            for env in vec_env.envs:
                env.unwrapped.label_mode = srm.labeller

    def save_all(num_timesteps: int, **extra: Any) -> None:
        info = _run_info(config, vec_env, dataset, num_timesteps, split, **({"srm_warmup": warmup} if warmup else {}),
                         **extra)
        write_checkpoint(run_dir, info, model_state(model), None if srm is None else srm.save)

    class _Checkpoint(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.last = model.num_timesteps

        def _on_step(self) -> bool:
            if stop.signum is not None:
                print(f"\n{signal.Signals(stop.signum).name}: stopping to save a checkpoint (send it again to stop "
                      f"without saving)", flush=True)
                return False
            if self.num_timesteps - self.last >= config.checkpoint_every:
                self.last = self.num_timesteps
                save_all(self.num_timesteps, complete=False)
            return True

    save_all(model.num_timesteps, complete=False)
    remaining = config.timesteps - model.num_timesteps
    callbacks: list[BaseCallback] = [_Checkpoint()]
    if srm is not None:
        callbacks.insert(0, SRMCallback(srm, config.q, per_action=config.srm_q_per_action))
    start, done_before = time.perf_counter(), model.num_timesteps
    if remaining > 0:
        stop.deferred = True
        model.learn(total_timesteps=remaining, callback=CallbackList(callbacks), progress_bar=config.progress_bar,
                    reset_num_timesteps=not resume, tb_log_name="alignsam")
        stop.deferred = False
    if stop.signum is not None and model.num_timesteps < config.timesteps:
        save_all(model.num_timesteps, complete=False)
        vec_env.close()
        raise stop.interrupted(model.num_timesteps)
    seconds = time.perf_counter() - start
    steps_per_second = (model.num_timesteps - done_before) / seconds if seconds > 0 else 0.0
    save_all(model.num_timesteps, complete=True, train_seconds=round(seconds, 2),
             steps_per_second=round(steps_per_second, 2))
    backend = vec_env.envs[0].unwrapped.backend
    print(f"AlignSAM: {model.num_timesteps - done_before} steps in {seconds:.1f} s ({steps_per_second:.1f} steps/s), "
          f"backend {backend.description}, run folder {run_dir}")
    vec_env.close()
    return run_dir


def train_or_reuse(config: TrainConfig) -> tuple[Path, bool]:
    """Reuse the finished run in ``config.out`` made with the same settings, else train (or resume) it.

    Settings are compared field by field, except those that do not change what is trained
    (``out``, ``progress_bar``, ``extra``, ``device``, ``checkpoint_every``, ``torch_threads``).
    An unfinished run with the same settings (a killed job) is resumed from its last checkpoint.

    Returns:
        ``(run folder, reused)``.

    Raises:
        ValueError: If ``config.out`` holds a run made with other settings (delete it or pick another folder),
            or a run of the old format (see :func:`agents.alignsam.run_format.legacy_run_error`).
    """
    run_dir = Path(config.out)
    if not (run_dir / RUN_CONFIG).is_file() and not (run_dir / LEGACY_MODEL_FILE).exists():
        return train(config), False
    info = read_run_info(run_dir)
    ignore = _RESUMABLE_CHANGES - {"timesteps"}
    saved = {k: v for k, v in TrainConfig.from_dict(info["config"], require_all=True).to_dict().items()
             if k not in ignore}
    wanted = {k: v for k, v in config.to_dict().items() if k not in ignore}
    if saved != wanted:
        changed = sorted(k for k in wanted.keys() | saved.keys() if saved.get(k) != wanted.get(k))
        details = ", ".join(f"{k}: saved {saved.get(k)!r}, given {wanted.get(k)!r}" for k in changed)
        raise ValueError(f"Expected {run_dir} to hold a run with the same settings, got different {details}; "
                         "delete the folder or choose another one")
    if info["complete"]:
        return run_dir, True
    return train(config, resume=True), False
