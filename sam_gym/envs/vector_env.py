"""``SamPrompt-v0`` batched: one decoder call for all sub-envs per step, and an SB3 ``VecEnv`` adapter.

:class:`SamPromptVectorEnv` is a Gymnasium :class:`~gymnasium.vector.VectorEnv` over ``num_envs``
:class:`~sam_gym.envs.prompt_env.SamPromptEnv` sub-envs that share one dataset, one backend and one
embedding cache. Each sub-env keeps owning its episode (click budget, the action -> point mapping of
:class:`~sam_gym.grid.PatchGrid`, labels, reward); the vector env only takes the decoder call out of
every sub-env's step (:meth:`SamPromptEnv.prepare_step` / :meth:`SamPromptEnv.finish_step`) and runs
all of them as one ``backend.decode_batch(...)`` call. With a SAM backend on CUDA that is one batched
mask-decoder call over the stacked per-env embeddings, prompts and previous logits on the backend's
device (grouped by prompt count, see :meth:`sam_gym.backends.sam.SamBackend.decode_batch`; on the CPU
calls of ``decoder_batch`` = 2 prompts, which measured faster there than one large call); other backends
loop over ``decode``. Results are those of ``num_envs`` single envs seeded ``seed + i``.

:class:`SB3VecEnv` adapts it to Stable-Baselines3's ``VecEnv`` API (``terminal_observation`` in the
infos, ``env_method("action_masks")`` for sb3-contrib's ``MaskablePPO``).

Coordinate convention (as everywhere in ``sam_gym``): points ``(x, y)`` in original-image pixels,
``x`` right, ``y`` down; the pixel read is ``(row, col) = (floor(y), floor(x))``; masks ``(H, W)``
indexed ``[row, col]``; labels 1 foreground / 0 background.

Stable-Baselines3 is optional: it is imported, and ``SB3VecEnv`` defined, only when
``vector_env.SB3VecEnv``, :func:`sb3_vec_env_class` or :func:`make_sb3_vec_env` is first used.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from sam_gym.backends.base import Prediction
from sam_gym.envs.prompt_env import DecodeRequest, SamPromptEnv

__all__ = ["SamPromptVectorEnv", "make_sb3_vec_env", "sb3_vec_env_class"]

#: SamPromptEnv arguments that build the shared dataset / backend / cache (given to the first sub-env only).
_SHARED_ARGS = ("dataset", "backend", "checkpoint", "backend_kwargs", "dataset_kwargs", "cache_dir", "cache")
_MODES = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP}

Obs = dict[str, np.ndarray]


class SamPromptVectorEnv(VectorEnv):
    """``num_envs`` SamPrompt envs stepped together with one batched decoder call per step.

    ## Description

    Observations are the single env's ``Dict`` batched along a leading ``num_envs`` axis
    (``observation_space = batch_space(single_observation_space, num_envs)``); actions are a batch
    of single actions (``Discrete(n)`` batches to ``MultiDiscrete([n] * num_envs)``); rewards,
    terminations and truncations are ``(num_envs,)`` arrays; ``info`` is a dict of arrays with a
    boolean ``_key`` mask per key (Gymnasium's ``VectorEnv._add_info``).

    Sub-env ``i`` is seeded ``seed + i`` by ``reset(seed=seed)`` (a list gives one seed each), like
    ``gymnasium.vector.SyncVectorEnv``; observations, rewards, terminations, truncations and infos
    equal those of ``SyncVectorEnv`` over ``num_envs`` ``SamPromptEnv`` with the same arguments
    (exactly for backends whose ``decode_batch`` loops over ``decode``; up to float rounding of the
    batched SAM decoder).

    ## Autoreset

    ``autoreset_mode="next_step"`` (``AutoresetMode.NEXT_STEP``, Gymnasium's default, in
    ``metadata["autoreset_mode"]``): the step after a sub-env terminates or truncates resets it,
    ignoring its action, and returns its first observation with reward 0, ``terminated`` and
    ``truncated`` ``False`` and the reset ``info``. The reset's initial-prompt decode joins the
    step's batch. ``"same_step"``: the finished sub-env is reset in the same step; the returned
    observation is the new episode's first one and the last one is in ``info["final_obs"]``, its info
    in ``info["final_info"]`` (the resets take a second batched decoder call, only on such steps).

    ## Decoder calls

    One ``backend.decode_batch`` call per step for the sub-envs that need a decode (a repeated click
    needs none), split only by ``multimask`` (one flag per call): with ``multimask="auto"`` the
    first click after ``init_prompts="none"`` asks for 3 proposals and later clicks for 1.

    Args:
        num_envs: Number of sub-envs.
        autoreset_mode: ``"next_step"`` (default) or ``"same_step"`` (or the ``AutoresetMode``).
        **env_kwargs: :class:`~sam_gym.envs.prompt_env.SamPromptEnv` arguments; the dataset, backend
            and cache are built once and shared by all sub-envs.

    Attributes:
        envs: The sub-envs (each one an ordinary ``SamPromptEnv``: ``episode_view()``, ``action_masks()``).
        infos_per_env: The last reset's or step's info of each sub-env, as dicts.
        final: For ``"same_step"``: ``(final observation, final info)`` of the sub-envs reset in the
            last step, ``None`` for the others.
    """

    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self, num_envs: int = 8, autoreset_mode: str | AutoresetMode = "next_step", **env_kwargs: Any
    ) -> None:
        if not isinstance(num_envs, (int, np.integer)) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"Expected num_envs to be a positive integer, got {num_envs!r}")
        mode = _MODES.get(autoreset_mode, autoreset_mode) if isinstance(autoreset_mode, str) else autoreset_mode
        if mode not in _MODES.values():
            raise ValueError(f"Expected autoreset_mode to be 'next_step' or 'same_step', got {autoreset_mode!r}")
        self.autoreset_mode: AutoresetMode = mode  # type: ignore[assignment]
        first = SamPromptEnv(**env_kwargs)
        per_env = {k: v for k, v in env_kwargs.items() if k not in _SHARED_ARGS}
        self.envs: list[SamPromptEnv] = [first] + [
            SamPromptEnv(dataset=first.dataset, cache=first.cache, **per_env) for _ in range(int(num_envs) - 1)
        ]
        self.num_envs = int(num_envs)
        self.backend = first.backend
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = first.render_mode
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.infos_per_env: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        self.final: list[tuple[Obs, dict[str, Any]] | None] = [None] * self.num_envs
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._started = False

    # ------------------------------------------------------------------ gym vector API
    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        """Reset every sub-env (``options`` go to each; ``{"index": i}`` picks the same sample for all).

        Args:
            seed: ``None``, an int (sub-env ``i`` gets ``seed + i``) or one seed per sub-env.
            options: Reset options of :meth:`SamPromptEnv.reset`, given to every sub-env.
        """
        seeds = self._seeds(seed)
        if seed is not None:
            self._np_random, self._np_random_seed = None, None
        obs = self.reset_envs(range(self.num_envs), seeds, [options] * self.num_envs)
        self._autoreset[:] = False
        self._started = True
        return _stack(obs), self._vector_info(self.infos_per_env)

    def step(self, actions: Any) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-env with one batched decoder call (see the class docstring for autoreset)."""
        if not self._started:
            raise RuntimeError("Call reset() before step()")
        actions = self._split_actions(actions)
        n = self.num_envs
        rewards = np.zeros(n, dtype=np.float64)
        terminations = np.zeros(n, dtype=bool)
        truncations = np.zeros(n, dtype=bool)
        requests: list[DecodeRequest | None] = []
        for i, env in enumerate(self.envs):
            requests.append(env.prepare_reset() if self._autoreset[i] else env.prepare_step(actions[i]))
        predictions = self.decode(requests)
        obs: list[Obs] = []
        for i, env in enumerate(self.envs):
            if self._autoreset[i]:
                o, self.infos_per_env[i] = env.finish_reset(predictions[i])
            else:
                o, rewards[i], terminations[i], truncations[i], self.infos_per_env[i] = env.finish_step(predictions[i])
            obs.append(o)
        self.final = [None] * n
        done = terminations | truncations
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._autoreset = done
        elif done.any():
            indices = np.flatnonzero(done).tolist()
            for i in indices:
                self.final[i] = (obs[i], self.infos_per_env[i])
            nones: list[Any] = [None] * len(indices)
            for i, o in zip(indices, self.reset_envs(indices, nones, nones), strict=True):
                obs[i] = o
        infos = self._vector_info(self.infos_per_env)
        if self.autoreset_mode == AutoresetMode.SAME_STEP and done.any():
            for i in np.flatnonzero(done):
                final_obs, final_info = self.final[i]  # type: ignore[misc]
                infos = self._add_info(infos, {"final_obs": final_obs, "final_info": final_info}, int(i))
        return _stack(obs), rewards, terminations, truncations, infos

    def action_masks(self) -> np.ndarray:
        """``(num_envs, n_actions)`` bool valid actions, row ``i`` = ``envs[i].action_masks()``."""
        return np.stack([env.action_masks() for env in self.envs])

    def render(self) -> tuple[np.ndarray | None, ...] | None:
        """Each sub-env's ``render()`` (``rgb_array`` mode), as a tuple."""
        return tuple(env.render() for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        """Close the sub-envs."""
        for env in self.envs:
            env.close()

    # ------------------------------------------------------------------ batched halves
    def decode(self, requests: Sequence[DecodeRequest | None]) -> list[Prediction | None]:
        """Run all sub-envs' decoder requests as one ``decode_batch`` call per ``multimask`` value.

        Args:
            requests: One entry per sub-env, ``None`` where no decode is needed.

        Returns:
            The predictions, aligned with ``requests`` (``None`` where the request was ``None``).
        """
        out: list[Prediction | None] = [None] * len(requests)
        for multimask in (False, True):
            idx = [i for i, r in enumerate(requests) if r is not None and r.multimask == multimask]
            if not idx:
                continue
            batch = [requests[i] for i in idx]
            predictions = self.backend.decode_batch(
                [r.embedding for r in batch],  # type: ignore[union-attr]
                [r.points for r in batch],  # type: ignore[union-attr]
                [r.labels for r in batch],  # type: ignore[union-attr]
                [r.mask_input for r in batch],  # type: ignore[union-attr]
                multimask=multimask,
            )
            for i, prediction in zip(idx, predictions, strict=True):
                out[i] = prediction
        return out

    def reset_envs(
        self, indices: Iterable[int], seeds: Sequence[int | None], options: Sequence[dict[str, Any] | None]
    ) -> list[Obs]:
        """Reset the sub-envs ``indices`` with one batched decode; return their first observations.

        Their reset infos go to :attr:`infos_per_env`.
        """
        indices = list(indices)
        requests = [self.envs[i].prepare_reset(seed=s, options=o)
                    for i, s, o in zip(indices, seeds, options, strict=True)]
        obs = []
        for i, prediction in zip(indices, self.decode(requests), strict=True):
            o, self.infos_per_env[i] = self.envs[i].finish_reset(prediction)
            obs.append(o)
        return obs

    # ------------------------------------------------------------------ helpers
    def _seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"Expected an int, None or {self.num_envs} seeds, got {len(seeds)} seeds")
        return seeds

    def _split_actions(self, actions: Any) -> list[Any]:
        arr = np.asarray(actions)
        if arr.ndim == 0 or arr.shape[0] != self.num_envs:
            raise ValueError(f"Expected a batch of {self.num_envs} actions (leading axis), got shape {arr.shape}")
        return list(arr)

    def _vector_info(self, infos: Sequence[dict[str, Any]]) -> dict[str, Any]:
        vector_info: dict[str, Any] = {}
        for i, info in enumerate(infos):
            vector_info = self._add_info(vector_info, info, i)
        return vector_info

    def __repr__(self) -> str:
        return f"SamPromptVectorEnv(num_envs={self.num_envs}, {self.envs[0]!r})"


def _stack(obs: Sequence[Obs]) -> Obs:
    """Batch single observations along a new leading axis (fresh arrays)."""
    return {key: np.stack([o[key] for o in obs]) for key in obs[0]}


def make_sb3_vec_env(num_envs: int = 8, **env_kwargs: Any) -> Any:
    """Build a :class:`SamPromptVectorEnv` (``"same_step"`` autoreset) wrapped for Stable-Baselines3.

    Args:
        num_envs: Number of sub-envs.
        **env_kwargs: :class:`~sam_gym.envs.prompt_env.SamPromptEnv` arguments.

    Returns:
        An :class:`SB3VecEnv` (a ``stable_baselines3`` ``VecEnv``).
    """
    return sb3_vec_env_class()(SamPromptVectorEnv(num_envs, autoreset_mode="same_step", **env_kwargs))


@functools.cache
def sb3_vec_env_class() -> type:
    """Return the :class:`SB3VecEnv` class (defined on first use: it imports stable-baselines3)."""
    try:
        from stable_baselines3.common.env_util import is_wrapped
        from stable_baselines3.common.vec_env import VecEnv
    except ImportError as exc:
        raise ImportError('The SB3 adapter needs stable-baselines3: pip install "sam-gym[train]"') from exc

    class SB3VecEnv(VecEnv):
        """A :class:`SamPromptVectorEnv` as a Stable-Baselines3 ``VecEnv``.

        SB3's conventions: a finished sub-env is reset in the same step; its last observation is in
        ``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]`` says whether the
        episode was cut by the click budget; ``reset_infos[i]`` holds the new episode's reset info.
        ``env_method("action_masks")`` and ``get_attr`` reach the sub-envs, so sb3-contrib's
        ``MaskablePPO`` finds the masks. The decoder is still called once per step for all
        sub-envs (plus one batched call for the resets on steps where an episode ends).

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
            self.venv._autoreset[:] = False
            self.venv._started = True
            self.reset_infos = [dict(info) for info in self.venv.infos_per_env]
            self._reset_seeds()
            self._reset_options()
            return _stack(obs)

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

        def env_method(
            self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any
        ) -> list[Any]:
            """Call ``method_name`` on the sub-envs ``indices`` (e.g. ``"action_masks"``)."""
            return [getattr(self.envs[i], method_name)(*method_args, **method_kwargs)
                    for i in self._get_indices(indices)]

        def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
            """Whether the sub-envs are wrapped in ``wrapper_class`` (they are bare ``SamPromptEnv``)."""
            return [is_wrapped(self.envs[i], wrapper_class) for i in self._get_indices(indices)]

    return SB3VecEnv


def __getattr__(name: str) -> Any:
    if name == "SB3VecEnv":
        return sb3_vec_env_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
