"""``SamPrompt-v0`` batched: one decoder call for all sub-envs per step.

:class:`SamPromptVectorEnv` is a Gymnasium :class:`~gymnasium.vector.VectorEnv` over ``num_envs``
:class:`~sam_gym.envs.prompt_env.SamPromptEnv` sub-envs that share one dataset, one backend and one
embedding cache. Each sub-env keeps owning its episode (click budget, the action -> point mapping of
:class:`~sam_gym.grid.PatchGrid`, labels, reward); the vector env only takes the decoder call out of
every sub-env's step (:meth:`SamPromptEnv.prepare_step` / :meth:`SamPromptEnv.finish_step`) and runs
all of them as one ``backend.decode_batch(...)`` call. With a SAM backend on CUDA that is one batched
mask-decoder call over the stacked per-env embeddings, prompts and previous logits on the backend's
device (grouped by prompt count, see :meth:`sam_gym.backends.sam.SamBackend.decode_batch`; on the CPU
calls of ``decoder_batch`` prompts, for the reason measured in ``docs/benchmarks.md``); other
backends loop over ``decode``. Results are those of ``num_envs`` single envs seeded ``seed + i``.

The Stable-Baselines3 ``VecEnv`` adapter is in :mod:`sam_gym.envs.sb3` (it imports SB3).

Coordinate convention (as everywhere in ``sam_gym``): points ``(x, y)`` in original-image pixels,
``x`` right, ``y`` down; the pixel read is ``(row, col) = (floor(y), floor(x))``; masks ``(H, W)``
indexed ``[row, col]``; labels 1 foreground / 0 background.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from sam_gym.backends.base import Prediction
from sam_gym.envs.prompt_env import DecodeRequest, SamPromptEnv

__all__ = ["SamPromptVectorEnv"]

#: SamPromptEnv arguments that build the shared dataset / backend / cache (given to the first sub-env only).
_SHARED_ARGS = ("dataset", "backend", "checkpoint", "backend_kwargs", "dataset_kwargs", "cache_dir", "cache")
_MODES = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP}

#: A single observation (the keys of ``SamPromptEnv.observation_space``).
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

    # ------------------------------------------------------------------ gym vector API
    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        """Reset every sub-env (``options`` go to each; ``{"index": i}`` picks the same sample for all).

        Args:
            seed: ``None``, an int (sub-env ``i`` gets ``seed + i``) or one seed per sub-env.
            options: Reset options of :meth:`SamPromptEnv.reset`, given to every sub-env.

        Raises:
            ValueError: For a bad seed or options, before any sub-env is reset.
        """
        obs = self.reset_envs(range(self.num_envs), self._seeds(seed), [options] * self.num_envs)
        if seed is not None:
            # The sub-envs own the randomness; the vector env draws nothing. Gymnasium's
            # VectorEnv.reset would seed its own generator from ``seed`` (which may be a list here):
            # drop it instead, so that no generator from before the seeding survives it.
            self._np_random, self._np_random_seed = None, None
        return stack_observations(obs), self._vector_info(self.infos_per_env)

    def step(self, actions: Any) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-env with one batched decoder call (see the class docstring for autoreset).

        Every action and every sub-env's state is checked (:meth:`SamPromptEnv.check_step`) before
        the first sub-env is stepped: a refused batch changes no sub-env, so a corrected retry gives
        what a first call would have given.

        Raises:
            ValueError: For a batch of the wrong length or an invalid action of any sub-env.
            RuntimeError: Before :meth:`reset`, or when a sub-env's episode ended without an autoreset
                (it was stepped on its own).
        """
        actions = self._split_actions(actions)
        for i, env in enumerate(self.envs):
            if not self._autoreset[i]:  # an autoresetting sub-env ignores its action
                with _naming_sub_env(i):
                    env.check_step(actions[i])
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
            for i in np.flatnonzero(done).tolist():
                final_obs, final_info = self.final[i]  # type: ignore[misc]
                infos = self._add_info(infos, {"final_obs": final_obs, "final_info": final_info}, i)
        return stack_observations(obs), rewards, terminations, truncations, infos

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

        Every seed and options dict is checked (:meth:`SamPromptEnv.check_reset`) before the first
        sub-env is reset. Their reset infos go to :attr:`infos_per_env`; they no longer autoreset.

        Args:
            indices: The sub-envs to reset.
            seeds: One seed (or ``None``) per index.
            options: One options dict (or ``None``) per index.

        Raises:
            ValueError: For a bad seed or options, before any sub-env is reset.
        """
        indices = list(indices)
        seeds, options = list(seeds), list(options)
        if not len(seeds) == len(options) == len(indices):
            raise ValueError(f"Expected one seed and one options entry per index ({len(indices)}), "
                             f"got {len(seeds)} seeds and {len(options)} options")
        for i, s, o in zip(indices, seeds, options, strict=True):
            with _naming_sub_env(i):
                self.envs[i].check_reset(seed=s, options=o)
        requests = [self.envs[i].prepare_reset(seed=s, options=o)
                    for i, s, o in zip(indices, seeds, options, strict=True)]
        obs = []
        for i, prediction in zip(indices, self.decode(requests), strict=True):
            o, self.infos_per_env[i] = self.envs[i].finish_reset(prediction)
            self._autoreset[i] = False
            obs.append(o)
        return obs

    # ------------------------------------------------------------------ helpers
    def _seeds(self, seed: Any) -> list[Any]:
        """One seed per sub-env from ``reset``'s ``seed`` (each one is checked by the sub-env)."""
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            return [int(seed) + i for i in range(self.num_envs)]
        if not isinstance(seed, (Sequence, np.ndarray)) or isinstance(seed, str) or len(seed) != self.num_envs:
            got = f"{len(seed)} seeds" if isinstance(seed, (Sequence, np.ndarray)) else repr(seed)
            raise ValueError(f"Expected seed to be None, an int or {self.num_envs} seeds, got {got}")
        return list(seed)

    def _split_actions(self, actions: Any) -> list[Any]:
        """The batch as one action per sub-env (lists keep their elements, so that no bool is cast)."""
        if isinstance(actions, (list, tuple)):
            if len(actions) != self.num_envs:
                raise ValueError(f"Expected a batch of {self.num_envs} actions (leading axis), got {len(actions)}")
            return list(actions)
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


@contextmanager
def _naming_sub_env(index: int) -> Iterator[None]:
    """Name sub-env ``index`` in the error of its check, and say that no sub-env changed."""
    try:
        yield
    except (ValueError, RuntimeError) as exc:
        raise type(exc)(f"{exc} (sub-env {index}; no sub-env was changed)") from exc


def stack_observations(obs: Sequence[Obs]) -> Obs:
    """Batch single observations along a new leading axis (fresh arrays)."""
    return {key: np.stack([o[key] for o in obs]) for key in obs[0]}
