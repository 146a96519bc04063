"""``SamPrompt`` envs for RLlib: the env creator that ``ray.tune.register_env`` takes, and its registration.

RLlib builds each env inside an env runner (a Ray actor, or the driver with 0 remote runners)
by calling the registered creator with the ``env_config`` of the algorithm's config.
:func:`make_env` builds the ``SamPrompt`` env named by ``env_config["env_id"]`` (default
``"SamPrompt-v0"``) with the other entries as its arguments, and wraps it in
:class:`~sam_gym.wrappers.RLlibActionMask`, the observation RLlib's action-masking RLModule
reads. The backend is built inside the runner, once per runner process: every env of a runner
(``num_envs_per_env_runner``) shares one backend and one embedding cache (:class:`~sam_gym.cache.EmbeddingCache`,
with its on-disk store when ``cache_dir`` is given), so a runner holds one SAM model, not one per env.

Example:
    >>> from sam_gym.rllib_env import make_env
    >>> env = make_env({"max_clicks": 3})
    >>> sorted(env.observation_space.spaces)
    ['action_mask', 'observations']
    >>> make_env({"max_clicks": 3}).unwrapped.backend is env.unwrapped.backend  # one backend per process
    True

This module imports Ray only in :func:`register` (``pip install "sam-gym[ray]"``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from sam_gym.cache import EmbeddingCache
from sam_gym.wrappers import RLlibActionMask

__all__ = ["ENV_NAME", "make_env", "register"]

#: The name :func:`register` registers the creator under (the ``env`` of RLlib's config).
ENV_NAME = "SamPrompt-rllib"
#: ``env_config`` entries that choose the backend and its cache; the rest are the env's arguments.
_BACKEND_KEYS = ("backend", "checkpoint", "backend_kwargs", "cache_dir", "cache_items")
#: One embedding cache (and so one backend) per runner process and backend configuration.
_caches: dict[str, EmbeddingCache] = {}


def _runner_cache(config: Mapping[str, Any]) -> EmbeddingCache:
    """The process's cache for the backend that ``config`` names, built on first use."""
    from sam_gym.backends import make_backend

    kwargs = dict(config.get("backend_kwargs") or {})
    if config.get("checkpoint") is not None:
        kwargs["checkpoint"] = str(config["checkpoint"])
    name = config.get("backend", "classical")
    if not isinstance(name, str):
        raise TypeError(f"Expected env_config['backend'] to be a backend name (the runner builds it), got "
                        f"{type(name).__name__}")
    cache_dir = config.get("cache_dir")
    items = config.get("cache_items", 64)
    ident = json.dumps([name, kwargs, None if cache_dir is None else str(cache_dir), items], sort_keys=True,
                       default=str)
    if ident not in _caches:
        _caches[ident] = EmbeddingCache(make_backend(name, **kwargs), cache_dir=cache_dir, max_items=items)
    return _caches[ident]


def make_env(env_config: Mapping[str, Any] | None = None) -> RLlibActionMask:
    """Build a ``SamPrompt`` env in RLlib's action-masking convention (the creator for ``register_env``).

    Args:
        env_config: ``env_id`` (default ``"SamPrompt-v0"``); ``backend`` (a name, default
            ``"classical"``), ``checkpoint``, ``backend_kwargs`` (``device``, ``half``), ``cache_dir``
            and ``cache_items`` (the in-memory LRU's size, default 64), which pick the runner's shared
            backend and cache; every other entry is an argument of the env (``dataset``, ``max_clicks``,
            ``grid``, ...). RLlib passes an ``EnvContext``, a dict with the runner's index.

    Raises:
        TypeError: If ``backend`` is not a name.
        ValueError: On an argument the env refuses, or an action mode without discrete actions to
            mask (``SamPromptPoint-v0``).
    """
    config = dict(env_config or {})
    env_id = str(config.pop("env_id", "SamPrompt-v0"))
    cache = _runner_cache(config)
    env_kwargs = {k: v for k, v in config.items() if k not in _BACKEND_KEYS}
    return RLlibActionMask(gym.make(env_id, cache=cache, **env_kwargs))


def register(name: str = ENV_NAME) -> str:
    """Register :func:`make_env` with ``ray.tune.register_env`` under ``name``; return ``name``.

    Raises:
        ImportError: In one line, naming the extra to install, when RLlib is not installed.
    """
    try:
        from ray.tune import register_env
    except ImportError as exc:
        raise ImportError(f'Training with RLlib needs Ray: pip install "sam-gym[ray]" ({exc})') from exc
    register_env(name, make_env)
    return name
