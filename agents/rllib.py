"""PPO from RLlib (new API stack) on ``SamPrompt`` envs, with RLlib's action-masking RLModule.

The env side is :mod:`sam_gym.rllib_env`: :func:`~sam_gym.rllib_env.register` registers the env
creator with ``ray.tune.register_env``; every env runner builds its own backend and embedding
cache, and sees the observation ``{"action_mask", "observations"}`` that RLlib's
``ActionMaskingTorchRLModule`` (shipped with RLlib in ``ray.rllib.examples``) reads. It adds
``log(mask)`` to the action logits, so masked actions (clicked patches) are never sampled, in
training and in inference alike.

:func:`ppo_config` builds the algorithm's config, :func:`train` runs it and keeps a checkpoint,
:func:`load_module` restores the trained RLModule from it and :func:`run_greedy` plays it greedily
in a local env, counting any action it chose against the env's mask. ``examples/train_rllib.py``
and ``docs/scaling.md`` show them together. Ray is imported inside the functions
(``pip install "sam-gym[ray]"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam_gym.rllib_env import make_env, register
from sam_gym.wrappers import MASK_KEY, OBSERVATIONS_KEY

__all__ = ["GreedyEpisode", "TrainSummary", "load_module", "ppo_config", "run_greedy", "train"]


def _import_rllib() -> Any:
    try:
        from ray.rllib.algorithms.ppo import PPOConfig
    except ImportError as exc:
        raise ImportError(f'Training with RLlib needs Ray: pip install "sam-gym[ray]" ({exc})') from exc
    return PPOConfig


def ppo_config(env_config: Mapping[str, Any] | None = None, *, num_env_runners: int = 0,
               num_envs_per_env_runner: int = 1, train_batch_size: int = 2000, minibatch_size: int = 250,
               num_epochs: int = 4, lr: float = 3e-4, hidden: Sequence[int] = (256, 256),
               seed: int | None = 0) -> Any:
    """A ``PPOConfig`` for the registered ``SamPrompt`` env with RLlib's action-masking RLModule.

    Args:
        env_config: The env creator's configuration (:func:`sam_gym.rllib_env.make_env`): ``env_id``,
            the backend and cache entries, and the env's own arguments.
        num_env_runners: Remote env runners (Ray actors), each with its own backend; ``0`` samples
            in the driver's process.
        num_envs_per_env_runner: Envs per runner (they share the runner's backend and cache).
        train_batch_size: Env steps per training iteration (``train_batch_size_per_learner``).
        minibatch_size: Env steps per SGD minibatch.
        num_epochs: Passes over each training batch.
        lr: Learning rate.
        hidden: Widths of the MLP encoder's layers (and of the policy and value heads' hidden layer).
        seed: Seed of the env runners' envs and of the module's initialisation (``None``: unseeded).

    Raises:
        ImportError: When RLlib is not installed.
    """
    ppo_config_class = _import_rllib()
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.examples.rl_modules.classes.action_masking_rlm import ActionMaskingTorchRLModule

    name = register()
    widths = [int(w) for w in hidden]
    config = (
        ppo_config_class()
        .environment(name, env_config=dict(env_config or {}))
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=num_envs_per_env_runner)
        .learners(num_learners=0)
        .training(train_batch_size_per_learner=train_batch_size, minibatch_size=minibatch_size,
                  num_epochs=num_epochs, lr=lr)
        .rl_module(rl_module_spec=RLModuleSpec(
            module_class=ActionMaskingTorchRLModule,
            model_config={"fcnet_hiddens": widths, "head_fcnet_hiddens": widths[-1:]}))
    )
    return config if seed is None else config.debugging(seed=seed)


@dataclass(frozen=True)
class TrainSummary:
    """What :func:`train` measured.

    Attributes:
        env_steps: Env steps sampled over the whole run.
        episodes: Episodes finished over the whole run.
        episode_return_mean: Mean return of the last iteration's finished episodes (RLlib's window).
        policy_loss: The last iteration's policy loss.
        vf_loss: The last iteration's value-function loss.
        checkpoint: The checkpoint folder, or ``None`` when none was asked for.
    """

    env_steps: int
    episodes: int
    episode_return_mean: float
    policy_loss: float
    vf_loss: float
    checkpoint: Path | None


def train(config: Any, iterations: int, checkpoint_dir: str | Path | None = None) -> TrainSummary:
    """Build the algorithm from ``config``, train it for ``iterations`` iterations, save it, stop it.

    ``ray.init`` is called by RLlib when Ray is not initialised yet (a local instance).

    Args:
        config: A config from :func:`ppo_config` (or any ``PPOConfig`` on the registered env).
        iterations: Training iterations (each samples ``train_batch_size`` env steps).
        checkpoint_dir: Folder to save the algorithm into at the end (:func:`load_module` reads it).

    Raises:
        ValueError: If ``iterations`` is not a positive integer.
    """
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
        raise ValueError(f"Expected iterations to be a positive integer, got {iterations!r}")
    algo = config.build_algo()
    try:
        for _ in range(iterations):
            result = algo.train()
        saved = Path(algo.save_to_path(str(Path(checkpoint_dir).resolve()))) if checkpoint_dir is not None else None
    finally:
        algo.stop()
    runners, learner = result["env_runners"], result["learners"]["default_policy"]
    return TrainSummary(env_steps=int(runners["num_env_steps_sampled_lifetime"]),
                        episodes=int(runners.get("num_episodes_lifetime", 0)),
                        episode_return_mean=float(runners.get("episode_return_mean", math.nan)),
                        policy_loss=float(learner["policy_loss"]), vf_loss=float(learner["vf_loss"]),
                        checkpoint=saved)


def load_module(checkpoint: str | Path) -> Any:
    """The trained RLModule in a checkpoint folder written by :func:`train` (``Algorithm.save_to_path``).

    Raises:
        FileNotFoundError: If the folder holds no RLModule of the default policy.
    """
    _import_rllib()
    from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID
    from ray.rllib.core.rl_module.rl_module import RLModule

    path = Path(checkpoint) / COMPONENT_LEARNER_GROUP / COMPONENT_LEARNER / COMPONENT_RL_MODULE / DEFAULT_MODULE_ID
    if not path.is_dir():
        raise FileNotFoundError(f"Expected an RLlib checkpoint folder (Algorithm.save_to_path) at {checkpoint}, "
                                f"found no RLModule at {path}")
    return RLModule.from_checkpoint(path)


@dataclass(frozen=True)
class GreedyEpisode:
    """One episode of :func:`run_greedy`.

    Attributes:
        episode_return: The sum of the rewards.
        length: Steps taken.
        masked_choices: Steps whose action the env's mask did not allow (0 for a masking policy).
        final_iou: ``info["iou"]`` at the end.
    """

    episode_return: float
    length: int
    masked_choices: int
    final_iou: float


def run_greedy(module: Any, env_config: Mapping[str, Any] | None = None, episodes: int = 5,
               seed: int = 0) -> list[GreedyEpisode]:
    """Play ``module`` greedily (the arg-max of its action logits) in a local env, ``episodes`` times.

    The env is :func:`sam_gym.rllib_env.make_env` of ``env_config``; episode ``i`` resets with
    ``seed + i``. Each chosen action is checked against the env's ``action_masks()`` read
    independently of the module's input.
    """
    import torch
    from ray.rllib.core.columns import Columns

    env = make_env(env_config)
    played = []
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        total, length, masked, done = 0.0, 0, 0, False
        while not done:
            batch = {Columns.OBS: {key: torch.from_numpy(obs[key][None]) for key in (MASK_KEY, OBSERVATIONS_KEY)}}
            with torch.no_grad():
                logits = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
            action = int(torch.argmax(logits[0]).item())
            masked += int(not np.asarray(env.get_wrapper_attr("action_masks")())[action])
            obs, reward, terminated, truncated, info = env.step(action)
            total, length, done = total + float(reward), length + 1, terminated or truncated
        played.append(GreedyEpisode(total, length, masked, float(info.get("iou", math.nan))))
    env.close()
    return played

