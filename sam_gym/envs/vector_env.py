"""``SamPrompt-v0`` batched: one decoder call for all sub-envs per step.

:class:`SamPromptVectorEnv` is a Gymnasium :class:`~gymnasium.vector.VectorEnv` over ``num_envs``
sub-envs that share one dataset, one backend and one embedding cache. Their episodes are the rows
of one :class:`~sam_gym.envs.core.EpisodeCore` (the single env is its ``N = 1`` case): a step maps,
labels, rewards and masks the clicks of all sub-envs in array operations, runs one
``backend.decode_batch(...)`` call for all of them and builds the observation batch with one
``backend.observe_batch(...)`` call. With a SAM backend on CUDA that is one batched mask-decoder call
over the stacked per-env embeddings, prompts and previous logits on the backend's device (grouped
by prompt count, see :meth:`sam_gym.backends.sam.SamBackend.decode_batch`; on the CPU calls of
``decoder_batch`` prompts, for the reason measured in ``docs/benchmarks.md``); other backends loop
over ``decode``. Each sub-env (``envs[i]``, a ``SamPromptEnv``) is a view of its row and owns its
random generator. Results are those of ``num_envs`` single envs seeded ``seed + i``.

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
from sam_gym.envs.core import DecodeBatch, EpisodeCore, StepInfos
from sam_gym.envs.prompt_env import SamPromptEnv

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
    boolean ``_key`` mask per key, Gymnasium's vector format: keys, their order, dtypes and values
    are those that ``VectorEnv._add_info`` makes of the sub-envs' info dicts (a ``SyncVectorEnv``'s),
    but a step's infos are batched from the episode core's columns without a dict per sub-env.
    Every observation and info array returned is new; no later step writes into it.

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
        infos_per_env: The last reset's or step's info of each sub-env, as dicts (built when read).
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
        #: The batched state of all sub-envs; sub-env ``i`` is row ``i`` (its methods read and step that row).
        self.core = EpisodeCore(first, self.num_envs)
        self.core.owners = list(self.envs)
        for i, env in enumerate(self.envs):
            env.attach(self.core, i)
        self._all = np.arange(self.num_envs)
        self.backend = first.backend
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = first.render_mode
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        #: Per sub-env, where its last info is: ``(reset info dict, -1)`` or ``(step infos, row in them)``.
        self._info_of: list[tuple[Any, int]] = [({}, -1)] * self.num_envs
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
        obs = self.reset_envs(self._all, self._seeds(seed), [options] * self.num_envs)
        if seed is not None:
            # The sub-envs own the randomness; the vector env draws nothing. Gymnasium's
            # VectorEnv.reset would seed its own generator from ``seed`` (which may be a list here):
            # drop it instead, so that no generator from before the seeding survives it.
            self._np_random, self._np_random_seed = None, None
        return obs, self._merge_infos(self._current_parts())

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
        core, n = self.core, self.num_envs
        stepping = np.flatnonzero(~self._autoreset)  # an autoresetting sub-env ignores its action
        cells = core.fast_cells(actions, n)
        split: list[Any] | None = None
        if cells is None:
            split = self._split_actions(actions)
            for i in stepping.tolist():
                with _naming_sub_env(i):
                    self.envs[i].check_step(split[i])
        else:
            refused = ~core.state.live[stepping] | core.state.ended[stepping]
            if refused.any():
                i = int(stepping[np.argmax(refused)])
                with _naming_sub_env(i):
                    raise core.live_error(i)  # type: ignore[misc]
        resetting = np.flatnonzero(self._autoreset)
        new = [self.envs[i].draw_episode() for i in resetting.tolist()]
        batches = [core.start_requests(resetting, new)]
        clicks = None
        if len(stepping):
            clicks, step_requests = core.prepare_clicks(
                stepping, None if split is None else [split[i] for i in stepping.tolist()],
                cells=None if cells is None else cells[stepping])
            batches.append(step_requests)
        predictions = self._decode_batches(batches)
        rewards = np.zeros(n, dtype=np.float64)
        terminations = np.zeros(n, dtype=bool)
        truncations = np.zeros(n, dtype=bool)
        parts: list[tuple[np.ndarray, Any]] = []
        if len(resetting):
            infos = core.finish_start(resetting, new, predictions[0])
            self._set_infos(resetting, infos)
            parts.append((resetting, infos))
        if clicks is not None:
            rewards[stepping], terminations[stepping], truncations[stepping], step_infos = core.finish_clicks(
                clicks, predictions[1])
            self._set_infos(stepping, step_infos)
            parts.append((stepping, step_infos))
        obs = core.observe(self._all)
        self.final = [None] * n
        done = terminations | truncations
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._autoreset = done
        elif done.any():
            indices = np.flatnonzero(done)
            for i in indices.tolist():
                self.final[i] = ({key: value[i].copy() for key, value in obs.items()}, self._info(i))
            nones: list[Any] = [None] * len(indices)
            first = self.reset_envs(indices, nones, nones)
            for key in obs:
                obs[key][indices] = first[key]
            parts = self._current_parts()
        vector_info = self._merge_infos(parts)
        if self.autoreset_mode == AutoresetMode.SAME_STEP and done.any():
            for i in np.flatnonzero(done).tolist():
                final_obs, final_info = self.final[i]
                vector_info = self._add_info(vector_info, {"final_obs": final_obs, "final_info": final_info}, i)
        return obs, rewards, terminations, truncations, vector_info

    def action_masks(self) -> np.ndarray:
        """``(num_envs, n_actions)`` bool valid actions, row ``i`` = ``envs[i].action_masks()`` (one array operation).

        Raises:
            ValueError: In ``"point"`` mode, which has no discrete actions to mask.
        """
        if self.single_action_space.shape == (3,) and self.envs[0].action_mode == "point":
            return self.envs[0].action_masks()  # raises the single env's error
        return self.core.action_masks(self._all)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call method ``name`` of every sub-env with ``args`` and ``kwargs`` (or read it, if not callable).

        As ``gymnasium.vector.SyncVectorEnv.call``: one result per sub-env, in order, e.g.
        ``envs.call("action_masks")`` (``action_masks()`` gives the same as one array).
        """
        results = []
        for env in self.envs:
            attribute = env.get_wrapper_attr(name)
            results.append(attribute(*args, **kwargs) if callable(attribute) else attribute)
        return tuple(results)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Attribute ``name`` of every sub-env, in order (as ``SyncVectorEnv.get_attr``)."""
        return self.call(name)

    def set_attr(self, name: str, values: list[Any] | tuple[Any, ...] | Any) -> None:
        """Set attribute ``name`` of the sub-envs: one value each (a list or tuple), or one value for all.

        As ``SyncVectorEnv.set_attr``. The episode settings (grid, click budget, reward, modes) are
        read from the first sub-env by the shared episode core: change them by building a new env.

        Raises:
            ValueError: For a list or tuple whose length is not ``num_envs``.
        """
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"Expected one value per sub-env ({self.num_envs}) or a single value that is not a "
                             f"list or tuple, got {len(values)} values")
        for env, value in zip(self.envs, values, strict=True):
            env.set_wrapper_attr(name, value)

    def render(self) -> tuple[Any, ...] | None:
        """Each sub-env's ``render()`` (``rgb_array`` mode), as a tuple."""
        return tuple(env.render() for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        """Close the sub-envs (none when the constructor refused its arguments)."""
        for env in getattr(self, "envs", ()):
            env.close()

    # ------------------------------------------------------------------ batched halves
    def _decode_batches(self, batches: Sequence[DecodeBatch]) -> list[list[Prediction | None]]:
        """Decode the needed entries of ``batches`` together: one ``decode_batch`` call per ``multimask`` value.

        Items go to the backend in the order of their rows (sub-env index), as one request list per
        sub-env would; the predictions come back aligned with each batch's entries (``None`` where
        no decode was needed).
        """
        out: list[list[Prediction | None]] = [[None] * len(b.rows) for b in batches]
        owner = np.concatenate([np.full(len(b.rows), j, dtype=np.int64) for j, b in enumerate(batches)])
        local = np.concatenate([np.arange(len(b.rows)) for b in batches])
        rows = np.concatenate([b.rows for b in batches])
        needed = np.concatenate([b.needed for b in batches])
        multimask = np.concatenate([b.multimask for b in batches])
        for flag in (False, True):
            picked = np.flatnonzero(needed & (multimask == flag))
            if not len(picked):
                continue
            picked = picked[np.argsort(rows[picked], kind="stable")]
            items = list(zip(owner[picked].tolist(), local[picked].tolist(), strict=True))
            predictions = self.backend.decode_batch(
                [batches[j].embeddings[k] for j, k in items], [batches[j].points[k] for j, k in items],
                [batches[j].labels[k] for j, k in items], [batches[j].mask_inputs[k] for j, k in items],
                multimask=flag)
            for (j, k), prediction in zip(items, predictions, strict=True):
                out[j][k] = prediction
        return out

    def reset_envs(
        self, indices: Iterable[int], seeds: Sequence[int | None], options: Sequence[dict[str, Any] | None]
    ) -> Obs:
        """Reset the sub-envs ``indices`` with one batched decode; return their first observations, batched.

        Every seed and options dict is checked (:meth:`SamPromptEnv.check_reset`) before the first
        sub-env is reset. Their reset infos go to :attr:`infos_per_env`; they no longer autoreset.

        Args:
            indices: The sub-envs to reset.
            seeds: One seed (or ``None``) per index.
            options: One options dict (or ``None``) per index.

        Returns:
            The observations of ``indices``, along a leading axis in their order.

        Raises:
            ValueError: For a bad seed or options, before any sub-env is reset.
        """
        rows = np.asarray(list(indices), dtype=np.int64).reshape(-1)
        seeds, options = list(seeds), list(options)
        if not len(seeds) == len(options) == len(rows):
            raise ValueError(f"Expected one seed and one options entry per index ({len(rows)}), "
                             f"got {len(seeds)} seeds and {len(options)} options")
        for i, s, o in zip(rows.tolist(), seeds, options, strict=True):
            with _naming_sub_env(i):
                self.envs[i].check_reset(seed=s, options=o)
        new = [self.envs[i].draw_episode(seed=s, options=o) for i, s, o in zip(rows.tolist(), seeds, options,
                                                                                strict=True)]
        (predictions,) = self._decode_batches([self.core.start_requests(rows, new)])
        self._set_infos(rows, self.core.finish_start(rows, new, predictions))
        self._autoreset[rows] = False
        return self.core.observe(rows)

    # ------------------------------------------------------------------ infos
    @property
    def infos_per_env(self) -> list[dict[str, Any]]:
        """The last reset's or step's info of each sub-env, as a dict per sub-env (built on each read)."""
        return [self._info(i) for i in range(self.num_envs)]

    def _info(self, i: int) -> dict[str, Any]:
        source, k = self._info_of[i]
        return source.row(k) if isinstance(source, StepInfos) else source

    def _set_infos(self, rows: np.ndarray, infos: StepInfos | Sequence[dict[str, Any]]) -> None:
        """Record ``infos`` (entry ``k`` for sub-env ``rows[k]``) as the sub-envs' last infos."""
        of = self._info_of
        if isinstance(infos, StepInfos):
            for k, i in enumerate(rows.tolist()):
                of[i] = (infos, k)
        else:
            for i, info in zip(rows.tolist(), infos, strict=True):
                of[i] = (info, -1)

    def _current_parts(self) -> list[tuple[np.ndarray, Any]]:
        """The sub-envs' last infos as ``(sub-envs, their infos)`` parts: a dict list, or a step's columns."""
        groups: dict[int, tuple[Any, list[int], list[int]]] = {}
        dicts: list[int] = []
        for i, (source, k) in enumerate(self._info_of):
            if isinstance(source, StepInfos):
                groups.setdefault(id(source), (source, [], []))[1].append(i)
                groups[id(source)][2].append(k)
            else:
                dicts.append(i)
        parts: list[tuple[np.ndarray, Any]] = []
        if dicts:
            parts.append((np.array(dicts, dtype=np.int64), [self._info_of[i][0] for i in dicts]))
        for source, envs, ks in groups.values():
            parts.append((np.array(envs, dtype=np.int64), _take(source, np.array(ks, dtype=np.int64))))
        return parts

    def _merge_infos(self, parts: Sequence[tuple[np.ndarray, Any]]) -> dict[str, Any]:
        """Gymnasium's vector info (``_add_info`` over the sub-envs in order) of ``parts``, columns kept as arrays.

        Each part is ``(sub-envs, infos)``: a list of info dicts (resets), or a :class:`StepInfos`
        whose columns are written with one array assignment per key. Keys come in the order of their
        first sub-env, a new key's array takes the type of that sub-env's value, as ``_add_info``
        decides it.
        """
        n = self.num_envs
        dict_parts = [(envs, infos) for envs, infos in parts if not isinstance(infos, StepInfos)]
        if not any(isinstance(infos, StepInfos) for _, infos in parts) or any(
                key == "final_obs" or isinstance(value, dict)
                for _, infos in dict_parts for info in infos for key, value in info.items()):
            rows = {i: info for envs, infos in parts for i, info in zip(envs.tolist(), _dicts(infos), strict=True)}
            vector_info: dict[str, Any] = {}
            for i in sorted(rows):
                vector_info = self._add_info(vector_info, rows[i], i)
            return vector_info
        # key -> (first sub-env, position in its dict, its value); pieces: key -> [(sub-envs, values or None)]
        first: dict[str, tuple[int, int, Any]] = {}
        pieces: dict[str, list[tuple[np.ndarray, Any]]] = {}
        for envs, infos in parts:
            if isinstance(infos, StepInfos):
                for position, (key, column) in enumerate(infos.values.items()):
                    mask = infos.present.get(key)
                    at = envs if mask is None else envs[mask]
                    if not len(at):
                        continue
                    values = column if mask is None else column[mask]
                    j = int(np.argmin(at))
                    kind = infos.kinds[key]
                    head = values[j] if kind is None else kind(values[j])
                    if key not in first or (int(at[j]), position) < first[key][:2]:
                        first[key] = (int(at[j]), position, head)
                    pieces.setdefault(key, []).append((at, values))
            else:
                for i, info in zip(envs.tolist(), infos, strict=True):
                    for position, (key, value) in enumerate(info.items()):
                        if key not in first or (i, position) < first[key][:2]:
                            first[key] = (i, position, value)
                        pieces.setdefault(key, []).append((np.array([i]), _one(value)))
        vector_info = {}
        for key in sorted(first, key=lambda name: first[name][:2]):
            head = first[key][2]
            if type(head) in (int, float, bool) or issubclass(type(head), np.number):
                array = np.zeros(n, dtype=type(head))
            elif isinstance(head, np.ndarray):
                array = np.zeros((n, *head.shape), dtype=head.dtype)
            else:
                array = np.full(n, fill_value=None, dtype=object)
            present = np.zeros(n, dtype=np.bool_)
            for at, values in pieces[key]:
                array[at] = values
                present[at] = True
            vector_info[key], vector_info[f"_{key}"] = array, present
        return vector_info

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

    def __repr__(self) -> str:
        return f"SamPromptVectorEnv(num_envs={self.num_envs}, {self.envs[0]!r})"


def _one(value: Any) -> np.ndarray:
    """``value`` as a one-element array for ``array[[i]] = ...`` (an object array unless a number or an array)."""
    if isinstance(value, np.ndarray):
        return value[None]
    if type(value) in (int, float, bool) or isinstance(value, np.number):
        return np.array([value])
    out = np.empty(1, dtype=object)
    out[0] = value
    return out


def _take(infos: StepInfos, ks: np.ndarray) -> StepInfos:
    """The rows ``ks`` of ``infos`` (all of them, in order: ``infos`` itself)."""
    if len(ks) == len(infos) and (ks == np.arange(len(infos))).all():
        return infos
    present = {key: None if mask is None else mask[ks] for key, mask in infos.present.items()}
    return StepInfos(len(ks), {key: column[ks] for key, column in infos.values.items()}, present)


def _dicts(infos: StepInfos | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The info dicts of a part."""
    return [infos.row(k) for k in range(len(infos))] if isinstance(infos, StepInfos) else list(infos)


@contextmanager
def _naming_sub_env(index: int) -> Iterator[None]:
    """Name sub-env ``index`` in the error of its check, and say that no sub-env changed."""
    try:
        yield
    except (ValueError, RuntimeError) as exc:
        raise type(exc)(f"{exc} (sub-env {index}; no sub-env was changed)") from exc
