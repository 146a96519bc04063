"""The one policy interface shared by the learned agent and every baseline.

It is Stable-Baselines3's ``PolicyPredictor`` protocol (``stable_baselines3.common.type_aliases``):
``predict(observation, state=None, episode_start=None, deterministic=False) -> (action, state)``, so a
trained SB3 model and a heuristic are scored by the same evaluation code. On top of it, a
:class:`PromptPolicy` declares:

* ``env_kwargs``: the environment options it needs (e.g. ``action_mode="point"`` for a policy that
  clicks exact pixels); evaluation builds each policy's env from the shared settings plus these;
* ``oracle``: whether it reads ground truth. Privileged information reaches a policy only through
  :meth:`sam_gym.envs.SamPromptEnv.episode_view`, after :meth:`PromptPolicy.bind` gave it the env;
  results tables mark oracle policies.

Points are ``(x, y)`` in image pixels (x right, y down); masks are ``(H, W)`` indexed ``[row, col]``.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from sam_gym.envs import EpisodeView, SamPromptEnv

__all__ = ["PromptPolicy"]


class PromptPolicy(abc.ABC):
    """Base class of the heuristic prompting policies.

    Subclasses implement :meth:`act`; :meth:`predict` adapts it to SB3's signature.

    Attributes:
        name: Name used in results tables.
        oracle: ``True`` if the policy reads ground truth (``view.sample.target`` / ``void``).
        env_kwargs: Environment options this policy needs (merged over the shared ones); keys are
            :class:`~sam_gym.envs.SamPromptEnv` arguments stored under the same attribute name
            (``action_mode``, ``label_mode``, ``init_prompts``).
    """

    name: ClassVar[str] = "policy"
    oracle: ClassVar[bool] = False
    env_kwargs: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        self._env: SamPromptEnv | None = None

    def bind(self, env: Any) -> None:
        """Give the policy the env whose episodes it will act in (its ``unwrapped`` env is kept)."""
        from sam_gym.envs import SamPromptEnv

        unwrapped = getattr(env, "unwrapped", env)
        if not isinstance(unwrapped, SamPromptEnv):
            raise ValueError(f"Expected a SamPromptEnv (or a wrapper of one), got {type(unwrapped).__name__}")
        for key, value in self.env_kwargs.items():
            have = getattr(unwrapped, key, None)
            if have != value:
                raise ValueError(f"Expected the env to have {key}={value!r} for policy {self.name!r}, got {have!r}")
        self._env = unwrapped

    @property
    def env(self) -> SamPromptEnv:
        """The bound env (see :meth:`bind`)."""
        if self._env is None:
            raise RuntimeError(f"Policy {self.name!r} is not bound to an env; call policy.bind(env) first")
        return self._env

    def view(self) -> EpisodeView:
        """The bound env's current :class:`~sam_gym.envs.EpisodeView`."""
        return self.env.episode_view()

    def reset(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Called at the start of each episode (``episode_start``); override to clear episode state."""

    @abc.abstractmethod
    def act(self, observation: dict[str, np.ndarray], deterministic: bool) -> np.ndarray | int:
        """Return the next action for ``observation`` (in the bound env's action space)."""

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3's ``PolicyPredictor.predict`` for a single (non-vectorised) env.

        Args:
            observation: The env's observation dict.
            state: Unused (no recurrent state); returned unchanged.
            episode_start: ``[True]`` at the first step of an episode, which calls :meth:`reset`.
            deterministic: Whether stochastic policies should act greedily.

        Returns:
            ``(action, state)``.
        """
        if episode_start is not None and bool(np.asarray(episode_start).reshape(-1)[0]):
            self.reset()
        return np.asarray(self.act(observation, deterministic)), state
