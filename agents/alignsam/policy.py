"""The trained AlignSAM agent as a :class:`~sam_gym.policy.PromptPolicy` (``make_policy("alignsam:RUN_DIR")``).

The agent picks a patch (``action_mode="patch"``); its Semantic Recalibration Module gives each
click's label and the two initial prompts, plugged into the env through ``label_mode`` and
``init_prompts`` (see :attr:`AlignSAMPolicy.env_kwargs`). A run trained with ``srm="none"`` is the
paper's w/o-SRM ablation: every click positive, no initial prompt. The agent declares its training
samples by content (:attr:`AlignSAMPolicy.train_sample_hashes`), so that ``sam-gym eval`` leaves
them out (:mod:`sam_gym.holdout`). Points are ``(x, y)`` image pixels (x right, y down); masks
``(H, W)`` indexed ``[row, col]``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from agents.simple import RandomPolicy
from sam_gym.policy import PromptPolicy
from sam_gym.protocol import ProtocolPolicy

__all__ = ["AlignSAMPolicy", "SRMRandomPolicy"]


class AlignSAMPolicy(PromptPolicy):
    """A trained ``MaskablePPO`` agent and its SRM.

    Build it with :meth:`load`. ``predict`` has SB3's signature plus ``action_masks`` (passed by
    :func:`sam_gym.evaluation.run_episodes`; taken from the bound env when omitted).

    Args:
        model: The ``MaskablePPO`` model.
        srm: The :class:`~agents.alignsam.srm.Recalibrator`, or ``None`` for an ``srm="none"`` run.
        run_info: The run's ``config.json`` content.
        run_dir: The run folder (for messages).
    """

    name = "alignsam"
    oracle = False

    def __init__(self, model: Any, srm: Any | None, run_info: dict[str, Any], run_dir: Path) -> None:
        super().__init__()
        self.model = model
        self.srm = srm
        self.run_info = run_info
        self.run_dir = Path(run_dir)
        if srm is None:
            self._env_kwargs: dict[str, Any] = {"action_mode": "patch", "label_mode": "positive",
                                                "init_prompts": "none"}
        else:
            self._env_kwargs = {"action_mode": "patch", "label_mode": srm.labeller, "init_prompts": srm.initial_prompts}

    @property
    def env_kwargs(self) -> dict[str, Any]:  # type: ignore[override]
        """Env options: patch actions, SRM labels and initial prompts (``"positive"`` / ``"none"`` without SRM)."""
        return dict(self._env_kwargs)

    @property
    def train_sample_hashes(self) -> frozenset[str] | None:
        """Content hashes of the samples the run trained on, or ``None`` for a run that recorded only index ranges."""
        from agents.alignsam.run_format import train_sample_hashes

        return train_sample_hashes(self.run_info)

    @property
    def train_split(self) -> str:
        """The run's split in words (for messages)."""
        from agents.alignsam.run_format import split_description

        return split_description(self.run_info)

    def with_env_kwargs(self, **overrides: Any) -> AlignSAMPolicy:
        """The same agent (same model and SRM objects) requiring other env options, for ablations.

        Example: ``agent.with_env_kwargs(init_prompts="gt_pair")`` clicks and labels with the SRM but
        starts from a ground-truth initial pair (privileged: the target is given, as by a user's
        first clicks in interactive segmentation).
        """
        variant = AlignSAMPolicy(self.model, self.srm, self.run_info, self.run_dir)
        variant._env_kwargs = {**self._env_kwargs, **overrides}
        return variant

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto") -> AlignSAMPolicy:
        """Load a run folder written by :func:`agents.alignsam.training.train`, running no code from it.

        The model is rebuilt from ``config.json`` and its weights are read with
        ``torch.load(weights_only=True)`` (see :mod:`agents.alignsam.run_format`); an old-format
        folder (an SB3 ``alignsam.zip``) is refused with what to do.

        Args:
            run_dir: The folder (``sam-gym train --out``).
            device: Torch device (``"auto"``: cuda when available).

        Raises:
            ValueError: If the folder, ``config.json`` or the checkpoint it names is missing, invalid,
                of the old format or holds anything but weights.
        """
        from agents.alignsam.run_format import load_model, load_srm, read_run_info
        from agents.alignsam.training import resolve_device

        if not isinstance(run_dir, (str, Path)) or not str(run_dir):
            raise ValueError(f"Expected a run folder path (alignsam:RUN_DIR), got {run_dir!r}")
        run_dir = Path(run_dir).expanduser()
        info = read_run_info(run_dir)
        device = resolve_device(device)
        model = load_model(run_dir, info, device)
        srm = load_srm(run_dir, info, device)
        if not info["complete"]:
            warnings.warn(f"AlignSAM run {run_dir} is a checkpoint of an unfinished training "
                          f"({info['num_timesteps']} of {info['config']['timesteps']} steps)", stacklevel=2)
        return cls(model, srm, info, run_dir)

    def check_env(self, env: Any) -> None:
        """Refuse an env whose state shape, grid or observation space differ from training.

        Called by :meth:`~sam_gym.policy.PromptPolicy.bind` for each (sub-)env; warns when the click
        budget or the backend differ from training.
        """
        unwrapped = env
        trained_shape = tuple(self.run_info["state_shape"])
        if tuple(unwrapped.state_shape) != trained_shape or (unwrapped.rows, unwrapped.cols) != tuple(
            self.run_info["config"]["grid"]
        ):
            grid = self.run_info["config"]["grid"]
            raise ValueError(f"Expected an env with state shape {trained_shape} and grid {grid} "
                             f"(as trained in {self.run_dir}), got {unwrapped.state_shape} and "
                             f"{(unwrapped.rows, unwrapped.cols)}; use the training backend and state pooling")
        trained_space, space = self.model.observation_space, unwrapped.observation_space
        if any(space[k] != trained_space[k] for k in ("state", "mask", "clicked")):
            raise ValueError(f"Expected the trained observation space {trained_space} (same mask size and grid as "
                             f"training), got {space}")
        if space["clicks"] != trained_space["clicks"]:
            warnings.warn(f"AlignSAM agent {self.run_dir} was trained with max_clicks="
                          f"{self.run_info['config']['max_clicks']} and runs with max_clicks={unwrapped.max_clicks}: "
                          f"it sees the first {trained_space['clicks'].shape[0] // 3} prompts only", stacklevel=3)
        if unwrapped.backend.model_id != self.run_info["backend"]["model_id"]:
            trained = self.run_info["backend"]["description"]
            warnings.warn(f"AlignSAM agent {self.run_dir} was trained with backend {trained!r} "
                          f"but is evaluated with {unwrapped.backend.description!r}", stacklevel=3)

    def act(self, observation: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        """The model's action for ``observation``, already-clicked patches masked out."""
        action, _ = self.model.predict(self._fit_clicks(observation), deterministic=deterministic,
                                       action_masks=self.env.action_masks())
        return np.asarray(action)

    def _fit_clicks(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Cut or pad (with ``(0, 0, -1)`` rows) the ``clicks`` vector to the trained size (old runs only).

        New runs see ``max_prompts`` rows whatever the click budget, so their sizes match and the
        observation passes unchanged. Runs saved before ``max_prompts`` have ``max_clicks + 2`` rows:
        an env with another budget has another length, and such an agent sees the first rows.
        """
        clicks = np.asarray(observation["clicks"], dtype=np.float32)
        size = int(self.model.observation_space["clicks"].shape[0])
        if clicks.shape[-1] == size:
            return observation
        if clicks.shape[-1] > size:
            fitted = clicks[..., :size]
        else:
            pad = np.tile(np.array([0.0, 0.0, -1.0], dtype=np.float32), (size - clicks.shape[-1]) // 3)
            fitted = np.concatenate([clicks, np.broadcast_to(pad, (*clicks.shape[:-1], pad.size))], axis=-1)
        return {**observation, "clicks": fitted}

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3's ``predict``, delegating to ``MaskablePPO.predict`` with ``action_masks``.

        Args:
            observation: The env's observation dict (single or batched).
            state: Unused (no recurrent state); returned unchanged.
            episode_start: Unused by the feed-forward agent.
            deterministic: Greedy action instead of a sample.
            action_masks: Valid actions (``env.action_masks()``); from the bound env when ``None``.
        """
        if action_masks is None and (self._env is not None or self._copies is not None):
            masks = [env.action_masks() for env in self.envs]
            action_masks = masks[0] if self._copies is None else np.stack(masks)
        observation = self._fit_clicks(observation)
        action, _ = self.model.predict(observation, state=state, episode_start=episode_start,
                                       deterministic=deterministic, action_masks=action_masks)
        return action, state

    def __repr__(self) -> str:
        backend = self.run_info["backend"]["description"]
        srm = self.run_info["config"]["srm"]
        return f"AlignSAMPolicy(run_dir={str(self.run_dir)!r}, srm={srm!r}, backend={backend!r})"


class SRMRandomPolicy(ProtocolPolicy):
    """The paper's "w/o RL" ablation: uniformly random unclicked patches, labelled by an agent's SRM.

    :class:`agents.simple.RandomPolicy`'s clicks (drawn from the env's ``np_random``, reproducible
    from the ``reset`` seed) under the agent's protocol (its SRM's labels and initial prompts), so
    that a results table compares click *locations* only. It is the
    :class:`sam_gym.protocol.ProtocolPolicy` of a random policy; any other location-only policy is
    run the same way with ``ProtocolPolicy(policy, agent)`` or ``sam-gym eval --protocol alignsam:RUN_DIR``.

    Args:
        agent: The trained agent whose SRM labels the clicks.
    """

    def __init__(self, agent: AlignSAMPolicy) -> None:
        super().__init__(RandomPolicy(), agent, protocol_name=f"alignsam:{agent.run_dir}")
        self.name = "random+srm"
