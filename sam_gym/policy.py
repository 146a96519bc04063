"""The one policy interface shared by the learned agent and every baseline.

It is Stable-Baselines3's ``PolicyPredictor`` protocol (``stable_baselines3.common.type_aliases``):
``predict(observation, state=None, episode_start=None, deterministic=False) -> (action, state)``, so a
trained SB3 model and a heuristic are scored by the same evaluation code: the package's
:func:`sam_gym.evaluation.run_episodes` (one env, one observation at a time) and SB3's
``evaluate_policy`` (a ``VecEnv``, observations batched along a leading ``n_envs`` axis). A
:class:`PromptPolicy` subclass implements :meth:`PromptPolicy.act` for ONE observation; the base
class's :meth:`PromptPolicy.predict` tells a single observation from a batch the way SB3's
``BasePolicy.predict`` does (``is_vectorized_observation``: every key has the space's shape, or
every key has it after a leading batch axis) and returns actions of the same form: unbatched in,
unbatched out; a batch of ``n`` in, ``(n, ...)`` actions out.

On top of it, a :class:`PromptPolicy` declares:

* ``env_kwargs``: the environment options it needs (e.g. ``action_mode="point"`` for a policy that
  clicks exact pixels); evaluation builds each policy's env from the shared settings plus these;
* ``oracle``: whether it reads ground truth. Privileged information reaches a policy only through
  :meth:`sam_gym.envs.SamPromptEnv.episode_view`, after :meth:`PromptPolicy.bind` gave it the env;
  results tables mark oracle policies;
* ``vectorizable``: whether it can act in several episodes at once (bound to a vector env).

Binding to a vector env: every policy reads the env it acts in (the patch grid, the env's
``np_random``, or the episode's ground truth), so it is bound before it predicts. ``bind(env)``
takes a single env, or an in-process vector env (SB3's ``DummyVecEnv`` or
:class:`sam_gym.envs.sb3.SB3VecEnv`, under VecEnv wrappers such as ``VecMonitor``;
Gymnasium's ``SyncVectorEnv`` or :class:`~sam_gym.envs.vector_env.SamPromptVectorEnv`) whose
sub-envs it reads in order (see :func:`sub_envs`). A vector env of one sub-env is the same as that
env. With ``n > 1`` sub-envs, the policy keeps one shallow copy of itself per sub-env
(``copy.copy``: the models are shared, what a copy assigns during an episode is its own), each
bound to its sub-env; row ``i`` of a batch is acted on by copy ``i`` and ``episode_start[i]``
resets copy ``i``. Refused, with a one-line ``ValueError``: a vector env whose sub-envs run in
other processes (``SubprocVecEnv``, ``AsyncVectorEnv``: their episodes cannot be read from here),
a policy with ``vectorizable = False`` and more than one sub-env, and a batch whose size is not
the number of bound sub-envs.

Points are ``(x, y)`` in image pixels (x right, y down); masks are ``(H, W)`` indexed ``[row, col]``.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from gymnasium import spaces

if TYPE_CHECKING:
    from sam_gym.envs import EpisodeView, SamPromptEnv

__all__ = ["PolicyPredictor", "PromptPolicy", "is_batched_observation", "sub_envs"]


class PolicyPredictor(Protocol):
    """What evaluation scores: anything with SB3's ``predict`` (``stable_baselines3.common.type_aliases``).

    A :class:`PromptPolicy`, an SB3 / sb3-contrib model, or a user's object of the same shape.
    """

    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Return the action(s) for ``observation`` and the next recurrent state."""
        ...

_IN_PROCESS = "DummyVecEnv, SB3VecEnv, SyncVectorEnv or SamPromptVectorEnv"


def sub_envs(env: Any) -> list[SamPromptEnv]:
    """The :class:`~sam_gym.envs.SamPromptEnv` of each sub-env behind ``env``, in order.

    Args:
        env: A ``SamPromptEnv`` or a Gymnasium wrapper of one (``[env.unwrapped]``), or an in-process
            vector env (SB3 ``DummyVecEnv`` / :class:`sam_gym.envs.sb3.SB3VecEnv`, possibly under
            VecEnv wrappers such as ``VecMonitor``; Gymnasium ``SyncVectorEnv`` /
            ``SamPromptVectorEnv``, possibly under vector wrappers): the unwrapped env of each sub-env.

    Raises:
        ValueError: If ``env`` is a vector env whose sub-envs run in other processes, or if an env
            found is not a ``SamPromptEnv``.
    """
    from sam_gym.envs import SamPromptEnv

    base = getattr(env, "unwrapped", env)
    if hasattr(base, "num_envs"):
        members = getattr(base, "envs", None)
        if members is None:
            raise ValueError(f"Expected an in-process vector env ({_IN_PROCESS}) whose sub-envs this process can "
                             f"read, got {type(base).__name__}, whose sub-envs run in other processes")
        found = [getattr(member, "unwrapped", member) for member in members]
    else:
        found = [base]
    for member in found:
        if not isinstance(member, SamPromptEnv):
            raise ValueError(f"Expected a SamPromptEnv (or a wrapper or in-process vector env of them), "
                             f"got {type(member).__name__}")
    return found


def is_batched_observation(observation: Any, space: spaces.Space[Any]) -> bool:
    """Whether ``observation`` is a batch (leading ``n_envs`` axis) or one observation of ``space``.

    SB3's rule (``stable_baselines3.common.utils.is_vectorized_dict_observation``): one observation
    when every key has its subspace's shape, a batch when every key has it after one leading axis
    (the same length for all keys).

    Raises:
        TypeError: If ``space`` is not a ``Dict`` space or ``observation`` is not a dict.
        ValueError: If keys are missing or a shape is neither form.
    """
    if not isinstance(space, spaces.Dict):
        raise TypeError(f"Expected a Dict observation space (SamPromptEnv's), got {space}")
    if not isinstance(observation, Mapping):
        raise TypeError(f"Expected a dict observation with keys {list(space.spaces)}, got {type(observation).__name__}")
    missing = [key for key in space.spaces if key not in observation]
    if missing:
        raise ValueError(f"Expected an observation with keys {list(space.spaces)}, got {list(observation)} "
                         f"(missing {missing})")
    shapes = {key: np.shape(observation[key]) for key in space.spaces}
    expected = {key: tuple(sub.shape or ()) for key, sub in space.spaces.items()}
    if shapes == expected:
        return False
    for key, shape in expected.items():
        if shapes[key] != shape and shapes[key][1:] != shape:
            raise ValueError(f"Expected observation[{key!r}] of shape {shape} (one env) or (n_envs, "
                             f"{', '.join(map(str, shape))}) (a batch), got {shapes[key]}")
    mixed = any(shapes[key] == shape for key, shape in expected.items())
    if mixed or len({shape[0] for shape in shapes.values()}) != 1:
        raise ValueError(f"Expected every observation key batched with the same n_envs, or none, got shapes "
                         f"{shapes} (one env: {expected})")
    return True


class PromptPolicy(abc.ABC):
    """Base class of the heuristic prompting policies.

    Subclasses implement :meth:`act` (one observation); :meth:`predict` adapts it to SB3's
    signature, single or batched (see the module docstring). Per-sub-env copies are shallow: a
    subclass keeps its episode state in attributes that :meth:`act` / :meth:`reset` *assign*
    (never mutate shared objects in place), or sets ``vectorizable = False``.

    Attributes:
        name: Name used in results tables.
        oracle: ``True`` if the policy reads ground truth (``view.sample.target`` / ``void``).
        env_kwargs: Environment options this policy needs (merged over the shared ones); keys are
            :class:`~sam_gym.envs.SamPromptEnv` arguments stored under the same attribute name
            (``action_mode``, ``label_mode``, ``init_prompts``).
        vectorizable: ``False`` if the policy cannot act in several episodes at once (then
            :meth:`bind` refuses a vector env of more than one sub-env).
    """

    name: ClassVar[str] = "policy"
    oracle: ClassVar[bool] = False
    env_kwargs: ClassVar[dict[str, Any]] = {}
    vectorizable: ClassVar[bool] = True

    def __init__(self) -> None:
        self._env: SamPromptEnv | None = None
        self._copies: list[PromptPolicy] | None = None

    def bind(self, env: Any) -> None:
        """Give the policy the env (or in-process vector env) whose episodes it will act in.

        The ``unwrapped`` env of each sub-env is kept (see :func:`sub_envs`); with more than one,
        a shallow copy of the policy is bound to each (see the module docstring).

        Raises:
            ValueError: If an env lacks :attr:`env_kwargs`, fails :meth:`check_env`, is a vector env
                that cannot be read from this process, or has several sub-envs and the policy is not
                :attr:`vectorizable`.
        """
        envs = sub_envs(env)
        self._env, self._copies = None, None
        if len(envs) > 1:
            if not self.vectorizable:
                raise ValueError(f"Expected a single env (or a vector env of one) for policy {self.name!r}, which "
                                 f"acts in one episode at a time, got a vector env of {len(envs)} sub-envs; "
                                 f"evaluate it with n_envs=1")
            copies = []
            for sub in envs:
                worker = copy.copy(self)
                worker.bind(sub)
                copies.append(worker)
            self._copies = copies
            return
        (unwrapped,) = envs
        for key, value in self.env_kwargs.items():
            have = getattr(unwrapped, key, None)
            if have != value:
                raise ValueError(f"Expected the env to have {key}={value!r} for policy {self.name!r}, got {have!r}")
        self.check_env(unwrapped)
        self._env = unwrapped

    def check_env(self, env: SamPromptEnv) -> None:  # noqa: B027 - optional hook, empty by design
        """Raise ``ValueError`` if the policy cannot act in ``env`` (beyond :attr:`env_kwargs`).

        Called by :meth:`bind` for each sub-env, before it is kept; the default accepts every env.
        """

    @property
    def env(self) -> SamPromptEnv:
        """The bound env (see :meth:`bind`)."""
        if self._env is None:
            if self._copies is not None:
                raise RuntimeError(f"Policy {self.name!r} is bound to a vector env of {len(self._copies)} sub-envs "
                                   f"(see policy.envs), not to one env")
            raise RuntimeError(f"Policy {self.name!r} is not bound to an env; call policy.bind(env) first "
                               f"(for SB3's evaluate_policy: policy.bind(vec_env))")
        return self._env

    @property
    def envs(self) -> list[SamPromptEnv]:
        """The bound sub-envs, in order (``[env]`` when bound to one env)."""
        if self._copies is not None:
            return [worker.env for worker in self._copies]
        return [self.env]

    def view(self) -> EpisodeView:
        """The bound env's current :class:`~sam_gym.envs.EpisodeView`."""
        return self.env.episode_view()

    def reset(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Called at the start of each episode (``episode_start``); override to clear episode state."""

    @abc.abstractmethod
    def act(self, observation: dict[str, np.ndarray], deterministic: bool) -> np.ndarray | int:
        """Return the next action for one (unbatched) ``observation``, in the bound env's action space."""

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3's ``PolicyPredictor.predict``, for one observation or a batch (leading ``n_envs`` axis).

        Args:
            observation: The env's observation dict, or a batch of them (each array with a leading
                axis of the number of bound sub-envs, as a ``VecEnv`` returns).
            state: Unused (no recurrent state); returned unchanged.
            episode_start: ``True`` (per sub-env for a batch) at the first step of an episode, which
                calls :meth:`reset` (of that sub-env's copy).
            deterministic: Whether stochastic policies should act greedily.

        Returns:
            ``(action, state)``: the action in the env's action space for one observation, or the
            ``(n_envs, ...)`` stacked actions for a batch.

        Raises:
            RuntimeError: If the policy is not bound.
            ValueError: If the observation does not fit the bound env's observation space, or the
                batch size is not the number of bound sub-envs.
        """
        envs = self.envs
        workers = self._copies or [self]
        starts = None if episode_start is None else np.asarray(episode_start, dtype=bool).reshape(-1)
        if not is_batched_observation(observation, envs[0].observation_space):
            if len(workers) > 1:
                raise ValueError(f"Expected a batch of {len(workers)} observations (one per sub-env) for policy "
                                 f"{self.name!r} bound to a vector env, got one observation")
            if starts is not None and starts.size and starts[0]:
                self.reset()
            return np.asarray(self.act(observation, deterministic)), state
        n = len(next(iter(observation.values())))
        if n != len(workers):
            raise ValueError(f"Expected a batch of {len(workers)} observations (the sub-envs policy {self.name!r} is "
                             f"bound to), got {n}; bind the policy to the vector env that is stepped: "
                             f"policy.bind(vec_env)")
        if starts is not None and starts.size != n:
            raise ValueError(f"Expected episode_start with {n} entries (one per sub-env), got {starts.size}")
        actions = []
        for i, worker in enumerate(workers):
            if starts is not None and starts[i]:
                worker.reset()
            actions.append(np.asarray(worker.act({key: value[i] for key, value in observation.items()},
                                                 deterministic)))
        return np.stack(actions), state
