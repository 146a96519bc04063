"""Training the AlignSAM agent: sb3-contrib ``MaskablePPO`` on ``SamPrompt-v0`` with the online SRM.

:func:`train` writes a run folder::

    DIR/alignsam.zip   the SB3 model (atomic writes; periodic checkpoints overwrite it)
    DIR/srm.pt         the SRM weights and optimiser (+ DIR/srm.json, its config), unless srm="none"
    DIR/config.json    the TrainConfig, the backend description, the dataset and its train/held-out split,
                       the timesteps done, steps per second
    DIR/tb/            TensorBoard logs

Training episodes follow the paper: ``label_mode="oracle"`` (the clicked pixel's ground truth) and
``init_prompts="gt_pair"`` (one random positive and one random negative ground-truth point) on the
first ``n_train`` samples; the rest of the dataset is held out
(:func:`sam_gym.data.subset.split`). The ``n_envs`` envs share one backend and one embedding cache
and are stepped in one process (``DummyVecEnv``; a SAM backend must not be copied into subprocesses).
The training envs use ``info_iou="none"`` (the +/-1 reward needs no per-step IoU).
Points are ``(x, y)`` image pixels (x right, y down), masks ``(H, W)`` indexed ``[row, col]``.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

from agents.alignsam.config import TrainConfig
from sam_gym.atomic import atomic_write_bytes

__all__ = ["MODEL_FILE", "RUN_CONFIG", "RUN_FORMAT", "build_model", "make_train_env", "train", "train_or_reuse"]

MODEL_FILE = "alignsam.zip"
RUN_CONFIG = "config.json"
RUN_FORMAT = "alignsam-run"
RUN_VERSION = 1
#: Fields that may differ between the saved config and a ``--resume`` call.
_RESUMABLE_CHANGES = {"timesteps", "out", "progress_bar", "extra", "device", "checkpoint_every", "torch_threads"}


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; other values unchanged."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def make_train_env(config: TrainConfig) -> tuple[Any, Any, Any]:
    """Build the training ``DummyVecEnv`` on the training split.

    Returns:
        ``(vec_env, dataset, train_subset)``; the envs share one backend and one embedding cache.
    """
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sam_gym.backends import backend_entry, make_backend
    from sam_gym.cache import EmbeddingCache
    from sam_gym.data import make_dataset
    from sam_gym.data.subset import split
    from sam_gym.envs import SamPromptEnv

    dataset = make_dataset(config.dataset, **config.dataset_kwargs)
    train_set, _ = split(dataset, config.n_train)
    device = resolve_device(config.device) if backend_entry(config.backend).checkpoint else None
    backend = make_backend(config.backend, checkpoint=config.checkpoint, device=device)
    cache = EmbeddingCache(backend, max_items=max(64, config.n_train))

    def factory() -> Any:
        return Monitor(SamPromptEnv(dataset=train_set, cache=cache, grid=config.grid, max_clicks=config.max_clicks,
                                    label_mode="oracle", init_prompts="gt_pair", action_mode="patch",
                                    info_iou="none"))

    vec_env = DummyVecEnv([factory for _ in range(config.n_envs)])
    return vec_env, dataset, train_set


def build_model(config: TrainConfig, vec_env: Any, tb_dir: Path | None) -> Any:
    """Create the ``MaskablePPO`` model with :class:`~agents.alignsam.features.AlignSAMExtractor`."""
    from sb3_contrib import MaskablePPO

    from agents.alignsam.features import AlignSAMExtractor

    state_shape = list(vec_env.envs[0].unwrapped.state_shape)
    policy_kwargs = {
        "features_extractor_class": AlignSAMExtractor,
        "features_extractor_kwargs": {"state_shape": state_shape},
        "net_arch": {"pi": [256], "vf": [256]},
    }
    return MaskablePPO(
        "MultiInputPolicy", vec_env, learning_rate=config.learning_rate, n_steps=config.n_steps,
        batch_size=config.batch_size, n_epochs=config.n_epochs, gamma=config.gamma, gae_lambda=config.gae_lambda,
        clip_range=config.clip_range, ent_coef=config.ent_coef, policy_kwargs=policy_kwargs,
        tensorboard_log=None if tb_dir is None else str(tb_dir), seed=config.seed,
        device=resolve_device(config.device), verbose=0,
    )


def _save_model(model: Any, run_dir: Path) -> None:
    buffer = io.BytesIO()
    model.save(buffer)
    atomic_write_bytes(run_dir / MODEL_FILE, buffer.getvalue())


def _run_info(config: TrainConfig, vec_env: Any, dataset: Any, num_timesteps: int, **extra: Any) -> dict[str, Any]:
    env = vec_env.envs[0].unwrapped
    backend = env.backend
    return {
        "format": RUN_FORMAT,
        "version": RUN_VERSION,
        "config": config.to_dict(),
        "backend": {"name": backend.name, "description": backend.description, "model_id": backend.model_id,
                    "is_sam": backend.is_sam},
        "dataset": {"name": dataset.name, "n_samples": len(dataset)},
        "split": {"train": [0, config.n_train], "held_out": [config.n_train, len(dataset)]},
        "state_shape": list(env.state_shape),
        "num_timesteps": int(num_timesteps),
        **extra,
    }


def _write_run_info(run_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_bytes(run_dir / RUN_CONFIG, json.dumps(info, indent=2).encode())


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """Read and validate ``DIR/config.json``.

    Raises:
        ValueError: If the folder or file is missing, unreadable or not an AlignSAM run.
    """
    run_dir = Path(run_dir)
    path = run_dir / RUN_CONFIG
    if not run_dir.is_dir():
        raise ValueError(f"Expected an AlignSAM run folder (from `sam-gym train`), "
                         f"got {str(run_dir)!r}: no such folder")
    if not path.is_file():
        raise ValueError(f"Expected {path} in the AlignSAM run folder (written by `sam-gym train`), got no such file")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"Expected {path} to be valid JSON, could not read it: {exc}") from exc
    if not isinstance(info, dict) or info.get("format") != RUN_FORMAT or info.get("version") != RUN_VERSION:
        raise ValueError(f"Expected {path} to describe an {RUN_FORMAT} v{RUN_VERSION} run, got "
                         f"{info.get('format') if isinstance(info, dict) else type(info).__name__}")
    return info


def _resume_config(config: TrainConfig, run_dir: Path) -> TrainConfig:
    """The saved config with the new ``timesteps``; other differences are an error."""
    saved = TrainConfig.from_dict(read_run_info(run_dir)["config"])
    new, old = config.to_dict(), saved.to_dict()
    changed = sorted(k for k in new if new[k] != old[k] and k not in _RESUMABLE_CHANGES)
    if changed:
        details = ", ".join(f"{k}: saved {old[k]!r}, given {new[k]!r}" for k in changed)
        raise ValueError(f"Expected --resume with the saved run's settings, got different {details}")
    for key in _RESUMABLE_CHANGES:
        setattr(saved, key, getattr(config, key))
    return saved


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
        resume: Continue from ``DIR/alignsam.zip`` (and ``DIR/srm.pt``) up to ``config.timesteps``
            total steps. The resumed part is seeded from ``seed`` and the step reached, so it is
            reproducible, but not identical to an uninterrupted run.

    Raises:
        ValueError: On bad settings, or ``resume`` without a compatible checkpoint.
    """
    import torch
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList
    from stable_baselines3.common.utils import set_random_seed

    from agents.alignsam.srm import SRM_WEIGHTS, Recalibrator, SRMCallback, SRMConfig

    config.validate()
    run_dir = Path(config.out).expanduser()
    if resume:
        config = _resume_config(config, run_dir)
        if not (run_dir / MODEL_FILE).is_file():
            raise ValueError(f"Expected a checkpoint {run_dir / MODEL_FILE} to resume from, got no such file")
    elif (run_dir / MODEL_FILE).exists():
        raise ValueError(f"Expected a new run folder, but {run_dir / MODEL_FILE} exists; "
                         f"pass --resume or another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    set_random_seed(config.seed)
    vec_env, dataset, _ = make_train_env(config)
    device = resolve_device(config.device)
    if resume:
        model = MaskablePPO.load(run_dir / MODEL_FILE, env=vec_env, device=device)
        model.tensorboard_log = str(run_dir / "tb")
    else:
        model = build_model(config, vec_env, run_dir / "tb")
    vec_env.seed(config.seed + model.num_timesteps)

    srm: Recalibrator | None = None
    warmup: dict[str, Any] = {}
    if config.srm != "none":
        if resume and (run_dir / SRM_WEIGHTS).is_file():
            srm = Recalibrator.load(run_dir, device=device)
        else:
            srm_config = SRMConfig(mode=config.srm, in_channels=int(vec_env.envs[0].unwrapped.state_shape[0]),
                                   size=config.srm_size, text=config.text, clip_model=config.clip_model,
                                   clip_pretrained=config.clip_pretrained, lr=config.srm_lr,
                                   context=config.srm_context)
            srm = Recalibrator(srm_config, device=device, seed=config.seed)
            warmup = _warm_up(srm, config, vec_env.envs[0].unwrapped)

    def save_all(num_timesteps: int, **extra: Any) -> None:
        _save_model(model, run_dir)
        if srm is not None:
            srm.save(run_dir)
        _write_run_info(run_dir, _run_info(config, vec_env, dataset, num_timesteps,
                                           **({"srm_warmup": warmup} if warmup else {}), **extra))

    class _Checkpoint(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.last = model.num_timesteps

        def _on_step(self) -> bool:
            if self.num_timesteps - self.last >= config.checkpoint_every:
                self.last = self.num_timesteps
                save_all(self.num_timesteps, complete=False)
            return True

    save_all(model.num_timesteps, complete=False)
    remaining = config.timesteps - model.num_timesteps
    callbacks: list[BaseCallback] = [_Checkpoint()]
    if srm is not None:
        callbacks.insert(0, SRMCallback(srm, config.q))
    start, done_before = time.perf_counter(), model.num_timesteps
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=CallbackList(callbacks), progress_bar=config.progress_bar,
                    reset_num_timesteps=not resume, tb_log_name="alignsam")
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
        ValueError: If ``config.out`` holds a run made with other settings (delete it or pick another folder).
    """
    run_dir = Path(config.out)
    if not (run_dir / RUN_CONFIG).is_file():
        return train(config), False
    info = read_run_info(run_dir)
    ignore = _RESUMABLE_CHANGES - {"timesteps"}
    saved = {k: v for k, v in info["config"].items() if k not in ignore}
    wanted = {k: v for k, v in config.to_dict().items() if k not in ignore}
    if saved != wanted:
        changed = sorted(k for k in wanted.keys() | saved.keys() if saved.get(k) != wanted.get(k))
        details = ", ".join(f"{k}: saved {saved.get(k)!r}, given {wanted.get(k)!r}" for k in changed)
        raise ValueError(f"Expected {run_dir} to hold a run with the same settings, got different {details}; "
                         "delete the folder or choose another one")
    if info.get("complete"):
        return run_dir, True
    return train(config, resume=(run_dir / MODEL_FILE).is_file()), False
