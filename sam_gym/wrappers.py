"""Gymnasium wrappers that adapt an env to the conventions of RL libraries other than SB3.

:class:`ActionMaskObservation` turns an env with SB3's ``action_masks()`` method (every
``SamPrompt`` env in a discrete action mode) into one that also carries the mask where other
libraries read it: in the observation under ``"action_mask"`` (the name that RLlib's action-masking
examples, PettingZoo and TorchRL's ``ActionMask`` transform use) and in ``info["action_mask"]``
(Gymnasium's Taxi convention). ``SamPromptEnv(action_mask="obs" | "info" | "both")`` does the same
inside the env, which a ``gym.make_vec`` batched env needs (it takes no wrappers).

:class:`RLlibActionMask` gives RLlib's action-masking RLModule what it reads: an observation
``{"action_mask": float32 mask, "observations": the env's observation flattened}`` (see
:mod:`sam_gym.rllib_env` and ``docs/scaling.md``).

The mask's layout is sb3-contrib's: for ``Discrete(n)`` ``n`` entries, for ``MultiDiscrete(nvec)``
the ``sum(nvec)`` entries of each component in order; 1 = allowed. Its space is
:func:`action_mask_space`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["MASK_KEY", "OBSERVATIONS_KEY", "ActionMaskObservation", "RLlibActionMask", "action_mask_space"]

#: The observation and info key of the action mask.
MASK_KEY = "action_mask"
#: The key of the (flattened) observation beside the mask, in RLlib's action-masking convention.
OBSERVATIONS_KEY = "observations"


def action_mask_space(action_space: spaces.Space[Any]) -> spaces.Box:
    """The space of the action mask of ``action_space``: ``Box(0, 1, (n,), int8)``, 1 = allowed.

    ``n`` is ``action_space.n`` for ``Discrete`` and ``sum(nvec)`` for a one-dimensional
    ``MultiDiscrete`` (sb3-contrib's flattened layout).

    Raises:
        ValueError: For any other action space (a continuous ``Box`` has no actions to mask).
    """
    if isinstance(action_space, spaces.Discrete):
        n = int(action_space.n)
    elif isinstance(action_space, spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
        n = int(action_space.nvec.sum())
    else:
        raise ValueError(f"Expected a Discrete or MultiDiscrete action space to mask, got {action_space} "
                         "(a continuous action mode has no discrete actions to mask)")
    return spaces.Box(0, 1, shape=(n,), dtype=np.int8)


class ActionMaskObservation(gym.ObservationWrapper[dict[str, Any], Any, dict[str, Any]],
                            gym.utils.RecordConstructorArgs):
    """Put the env's ``action_masks()`` into the observation and the info (``int8``, 1 = allowed).

    The wrapped env must have a ``Dict`` observation space and an ``action_masks()`` method
    (reached through any wrappers, as sb3-contrib does); the mask is read after every ``reset``
    and ``step``, so it describes the actions valid for the next step.

    Example:
        >>> import gymnasium as gym
        >>> import sam_gym
        >>> from sam_gym.wrappers import ActionMaskObservation
        >>> env = ActionMaskObservation(gym.make("SamPrompt-v0"))
        >>> obs, info = env.reset(seed=0)
        >>> obs["action_mask"].shape, obs["action_mask"].dtype, bool((info["action_mask"] == 1).all())
        ((100,), dtype('int8'), True)
        >>> obs, *_, info = env.step(7)
        >>> int(obs["action_mask"][7]), int(info["action_mask"][7])
        (0, 0)

    Args:
        env: The env to wrap.
        obs_key: Observation key of the mask, or ``None`` to leave the observation alone.
        info_key: Info key of the mask, or ``None`` to leave the info alone.

    Raises:
        TypeError: When the observation space is not a ``Dict``, or the env has no ``action_masks``.
        ValueError: When both keys are ``None``, the key is already an observation key, or the
            action space has no discrete actions (see :func:`action_mask_space`).
    """

    def __init__(self, env: gym.Env[Any, Any], obs_key: str | None = MASK_KEY,
                 info_key: str | None = MASK_KEY) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, obs_key=obs_key, info_key=info_key)
        gym.ObservationWrapper.__init__(self, env)
        for name, key in (("obs_key", obs_key), ("info_key", info_key)):
            if key is not None and not isinstance(key, str):
                raise ValueError(f"Expected {name} to be a string or None, got {key!r}")
        if obs_key is None and info_key is None:
            raise ValueError("Expected obs_key or info_key (or both) to be a key, got None for both")
        space = env.observation_space
        if not isinstance(space, spaces.Dict):
            raise TypeError(f"Expected an env with a Dict observation space, got {space}")
        if obs_key is not None and obs_key in space.spaces:
            raise ValueError(f"Expected obs_key to be a new observation key, got {obs_key!r}, which the env "
                             f"already uses (keys {sorted(space.spaces)}); pass another obs_key")
        try:
            env.get_wrapper_attr("action_masks")
        except AttributeError:
            raise TypeError(f"Expected an env with an action_masks() method (sb3-contrib's convention), "
                            f"got {env}") from None
        mask_space = action_mask_space(env.action_space)
        self.obs_key, self.info_key = obs_key, info_key
        if obs_key is not None:
            self.observation_space = spaces.Dict({**space.spaces, obs_key: mask_space})

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Reset the env; the observation and the info carry the mask (all actions allowed)."""
        obs, info = self.env.reset(seed=seed, options=options)
        mask = self._mask()
        return self._observe(obs, mask), self._inform(info, mask)

    def step(self, action: Any) -> tuple[dict[str, Any], Any, bool, bool, dict[str, Any]]:
        """Step the env; the observation and the info carry the mask for the next step."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        mask = self._mask()
        return self._observe(obs, mask), reward, terminated, truncated, self._inform(info, mask)

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        """``observation`` with the env's current mask under :attr:`obs_key`."""
        return self._observe(observation, self._mask())

    def _mask(self) -> np.ndarray:
        return np.asarray(self.env.get_wrapper_attr("action_masks")(), dtype=np.int8)

    def _observe(self, observation: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
        return observation if self.obs_key is None else {**observation, self.obs_key: mask}

    def _inform(self, info: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
        return info if self.info_key is None else {**info, self.info_key: mask.copy()}


class RLlibActionMask(gym.ObservationWrapper[dict[str, Any], Any, dict[str, Any]],
                      gym.utils.RecordConstructorArgs):
    """The observation of RLlib's action-masking RLModule: ``{"action_mask", "observations"}``.

    ``observations`` is the env's ``Dict`` observation flattened with ``gymnasium.spaces.flatten``
    (keys in sorted order, each array row-major), as ``float32``; ``action_mask`` is the env's
    ``action_masks()`` as ``float32`` (1.0 = allowed): RLlib's ``ActionMaskingTorchRLModule`` adds
    ``log(mask)`` to the logits, which needs a float mask. Both are read after every ``reset`` and
    ``step``, so the mask describes the actions valid for the next step.

    Example:
        >>> import gymnasium as gym
        >>> import sam_gym
        >>> from sam_gym.wrappers import RLlibActionMask
        >>> env = RLlibActionMask(gym.make("SamPrompt-v0"))
        >>> sorted(env.observation_space.spaces), env.observation_space["observations"].shape
        (['action_mask', 'observations'], (5262,))
        >>> obs, _ = env.reset(seed=0)
        >>> obs, *_ = env.step(7)
        >>> float(obs["action_mask"][7]), obs["observations"].dtype
        (0.0, dtype('float32'))

    Args:
        env: An env with a ``Dict`` observation space, a discrete action space and an
            ``action_masks()`` method (every ``SamPrompt`` env in a patch action mode).

    Raises:
        TypeError: When the observation space is not a ``Dict`` of fixed-size entries, or the env
            has no ``action_masks``.
        ValueError: When the action space has no discrete actions (see :func:`action_mask_space`).
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        if not isinstance(space, spaces.Dict):
            raise TypeError(f"Expected an env with a Dict observation space, got {space}")
        try:
            env.get_wrapper_attr("action_masks")
        except AttributeError:
            raise TypeError(f"Expected an env with an action_masks() method (sb3-contrib's convention), "
                            f"got {env}") from None
        mask = action_mask_space(env.action_space)
        flat = spaces.flatten_space(space)
        if not isinstance(flat, spaces.Box):  # a Sequence or Graph entry has no fixed size
            raise TypeError(f"Expected a Dict observation space of fixed-size entries, got {space}")
        self._env_space = space
        self.observation_space = spaces.Dict({
            MASK_KEY: spaces.Box(0.0, 1.0, shape=mask.shape, dtype=np.float32),
            OBSERVATIONS_KEY: spaces.Box(flat.low.astype(np.float32), flat.high.astype(np.float32),
                                         dtype=np.float32),
        })

    def observation(self, observation: dict[str, Any]) -> dict[str, np.ndarray]:
        """The mask and the flattened ``observation``."""
        mask = np.asarray(self.env.get_wrapper_attr("action_masks")(), dtype=np.float32)
        flat = np.asarray(spaces.flatten(self._env_space, observation), dtype=np.float32)
        return {MASK_KEY: mask, OBSERVATIONS_KEY: flat}
