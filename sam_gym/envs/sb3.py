"""Stable-Baselines3 ``VecEnv`` adapter of :class:`~sam_gym.envs.vector_env.SamPromptVectorEnv`.

Importing this module imports ``stable_baselines3`` (``pip install "sam-gym[train]"``); nothing in
``sam_gym`` imports it eagerly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode

from sam_gym.envs.vector_env import Obs, SamPromptVectorEnv

try:
    from stable_baselines3.common.env_util import is_wrapped
    from stable_baselines3.common.vec_env import VecEnv
except ImportError as exc:
    raise ImportError('The SB3 adapter needs stable-baselines3: pip install "sam-gym[train]"') from exc

__all__ = ["SB3VecEnv", "make_sb3_vec_env"]


class SB3VecEnv(VecEnv):
    """A :class:`SamPromptVectorEnv` as a Stable-Baselines3 ``VecEnv``.

    SB3's conventions: a finished sub-env is reset in the same step; its last observation is in
    ``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]`` says whether the
    episode was cut by the click budget; ``reset_infos[i]`` holds the new episode's reset info.
    ``env_method("action_masks")`` and ``get_attr`` reach the sub-envs, so sb3-contrib's
    ``MaskablePPO`` finds the masks (``env_method("action_masks")`` for all sub-envs reads them in
    one array operation, :meth:`action_masks` returns them as one array). The decoder is called once
    per step for all sub-envs (plus one batched call for the resets on steps where an episode ends).

    Args:
        venv: The vector env, built with ``autoreset_mode="same_step"``.
    """

    def __init__(self, venv: SamPromptVectorEnv) -> None:
        if not isinstance(venv, SamPromptVectorEnv) or venv.autoreset_mode != AutoresetMode.SAME_STEP:
            raise ValueError(f"Expected a SamPromptVectorEnv with autoreset_mode='same_step', got {venv!r}")
        self.venv = venv
        self.envs = venv.envs
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self.render_mode = venv.render_mode
        self._actions: Any = None

    def reset(self) -> Obs:
        """Reset all sub-envs with the seeds of :meth:`seed` and the options of :meth:`set_options`."""
        obs = self.venv.reset_envs(range(self.num_envs), self._seeds, [o or None for o in self._options])
        self.reset_infos = [dict(info) for info in self.venv.infos_per_env]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Store the actions for :meth:`step_wait`."""
        self._actions = actions

    def step_wait(self) -> tuple[Obs, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Step all sub-envs (one batched decode) and reset the finished ones."""
        obs, rewards, terminations, truncations, _ = self.venv.step(self._actions)
        infos = [dict(info) for info in self.venv.infos_per_env]
        for i, final in enumerate(self.venv.final):
            if final is not None:
                final_obs, final_info = final
                self.reset_infos[i] = infos[i]
                infos[i] = dict(final_info)
                infos[i]["terminal_observation"] = final_obs
                infos[i]["TimeLimit.truncated"] = bool(truncations[i] and not terminations[i])
        return obs, rewards.astype(np.float32), terminations | truncations, infos

    def close(self) -> None:
        """Close the vector env."""
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        """Each sub-env's ``rgb_array`` frame."""
        return list(self.venv.render() or ())

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """Attribute ``attr_name`` of the sub-envs ``indices``."""
        return [getattr(self.envs[i], attr_name) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        """Set attribute ``attr_name`` of the sub-envs ``indices``."""
        for i in self._get_indices(indices):
            setattr(self.envs[i], attr_name, value)

    def action_masks(self) -> np.ndarray:
        """``(num_envs, n_actions)`` bool valid actions of all sub-envs (``True`` = allowed)."""
        return self.venv.action_masks()

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        """Call ``method_name`` on the sub-envs ``indices`` (e.g. ``"action_masks"``, read for all in one operation)."""
        if method_name == "action_masks" and indices is None and not method_args and not method_kwargs:
            return list(self.venv.action_masks())
        return [getattr(self.envs[i], method_name)(*method_args, **method_kwargs) for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        """Whether the sub-envs are wrapped in ``wrapper_class`` (they are bare ``SamPromptEnv``)."""
        return [is_wrapped(self.envs[i], wrapper_class) for i in self._get_indices(indices)]


def make_sb3_vec_env(num_envs: int = 8, **env_kwargs: Any) -> SB3VecEnv:
    """Build a :class:`SamPromptVectorEnv` (``"same_step"`` autoreset) wrapped for Stable-Baselines3.

    Args:
        num_envs: Number of sub-envs.
        **env_kwargs: :class:`~sam_gym.envs.prompt_env.SamPromptEnv` arguments.

    Returns:
        An :class:`SB3VecEnv` (a ``stable_baselines3`` ``VecEnv``).
    """
    return SB3VecEnv(SamPromptVectorEnv(num_envs, autoreset_mode="same_step", **env_kwargs))
