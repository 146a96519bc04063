"""``SamPrompt-v0``: learning where to click with a promptable segmenter (AlignSAM, CVPR 2024)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sam_gym.backends import PromptableSegmenter, make_backend
from sam_gym.backends.base import Embedding, Prediction
from sam_gym.cache import EmbeddingCache
from sam_gym.data import Sample, SegmentationDataset, check_sample, make_dataset
from sam_gym.envs.core import DEFAULT_SUCCESS_IOU, REPEAT_PENALTY, STATE_BOUND, Clicks, EpisodeCore, NewEpisode
from sam_gym.envs.episode import DecodeRequest, EpisodeView
from sam_gym.grid import PatchGrid
from sam_gym.wrappers import MASK_KEY, action_mask_space

__all__ = ["DEFAULT_SUCCESS_IOU", "REPEAT_PENALTY", "STATE_BOUND", "SamPromptEnv"]

logger = logging.getLogger("sam_gym")

ActionMode = Literal["patch", "patch_label", "point"]
InfoIou = Literal["full", "none"]
#: Maximum number of prompts placed at reset (``"gt_pair"`` and the recalibration module use 2).
MAX_INIT_PROMPTS = 2
#: Default ``max_prompts``: the initial prompts plus the standard 20-click evaluation budget.
DEFAULT_MAX_PROMPTS = MAX_INIT_PROMPTS + 20
_announced_backends: set[str] = set()


#: ``label_mode`` callable: ``(view, (x, y)) -> 0 | 1``.
LabelFn = Callable[[EpisodeView, tuple[float, float]], int]
#: ``init_prompts`` callable: ``view -> [(x, y, label), ...]`` (at most ``MAX_INIT_PROMPTS``).
InitFn = Callable[[EpisodeView], Sequence[tuple[float, float, int]]]


class SamPromptEnv(gym.Env[dict[str, Any], Any]):
    """Click on an image so that a promptable segmenter (SAM) segments the target object.

    ## Description

    The Gymnasium version of AlignSAM (Huang et al., "AlignSAM: Aligning Segment Anything Model to
    Open Context via Reinforcement Learning", CVPR 2024). Each episode is one image and one target
    object. The image is split into a ``rows x cols`` grid of patches; an action picks a patch centre
    as a point prompt, the segmenter decodes all prompts so far (its previous low-resolution logits
    fed back as mask input) and the agent is rewarded for clicking on the object. Image embeddings
    are computed once per image and cached in memory and, with ``cache_dir``, on disk.

    The episode is row 0 of a batched episode core (:mod:`sam_gym.envs.core`); the batched
    :class:`~sam_gym.envs.vector_env.SamPromptVectorEnv` (``gym.make_vec``) runs the same code on
    ``num_envs`` rows at once, with one decoder call per step for all of them.

    The default backend is ``"classical"``, a weight-free seed-based segmenter, so that the env runs
    offline with meaningful masks. **It is not SAM**, and every report says which backend produced
    it (``info["backend"]``, ``env.unwrapped.backend.description``). Real SAM: ``backend="sam_vit_h"``
    (or ``sam_vit_l``, ``sam_vit_b``, ``mobilesam_vit_t``) with ``checkpoint="auto"`` or a path.

    Default data: ``"synthetic-clutter"`` (:mod:`sam_gym.data.synthetic`, 64 seeded 128 x 160 scenes,
    no files): the target is every red shape of the image, three to five small ones, among three
    to six distractors of other colours, so a click selects one of several parts and the clicks
    decide the episode: the initial prompts alone rarely succeed, uniformly random patches seldom,
    the click simulator (``sam_gym.clicker``) within 15 clicks almost always (the measured figures
    and their command are in ``docs/evaluation.md``, "The default task"; ``tests/test_default_task.py``
    checks the bounds). ``dataset="synthetic-shapes"`` (one red target, the default before 0.2.0)
    is nearly solved by the initial prompts.

    ## Action Space

    ``action_mode="patch"`` (default, the paper's): ``Discrete(rows * cols)``. Action ``a`` is patch
    ``(row, col) = (a // cols, a % cols)``, clicked at its centre
    ``(x, y) = ((col + 0.5) * W / cols, (row + 0.5) * H / rows)`` in image pixels (x right, y down);
    the ground-truth pixel read is ``[floor(y), floor(x)]`` (:class:`~sam_gym.grid.PatchGrid` owns
    this mapping). The click's label comes from ``label_mode``.

    ``action_mode="patch_label"``: ``MultiDiscrete([rows * cols, 2])``, patch and label (1 positive).

    ``action_mode="point"``: ``Box(0, 1, (3,), float32)``: ``(u, v, l)`` with ``(x, y) = (u W, v H)``
    and label ``1`` if ``l >= 0.5`` else ``0``, for policies that click at exact pixels.

    An action outside the space raises ``ValueError`` and changes nothing; nothing is cast: booleans
    are refused everywhere, and so are floats in the discrete modes (``[5.7, 0.9]`` is not patch 5).

    ## Observation Space

    A flat ``Dict`` (SB3's ``MultiInputPolicy`` and checkers accept it without warnings):

    | Key | Space | Meaning |
    |-----|-------|---------|
    | ``state`` | ``Box(-1e4, 1e4, (C * gh * gw,))`` float32 | embedding x previous mask (eq. 4), see below |
    | ``mask`` | ``Box(0, 255, (1, m, m), uint8)`` | previous mask probability x 255 over the image frame |
    | ``clicks`` | ``Box((K * 3,), float32)`` | prompts so far, rows ``(x / W, y / H, label)`` (see below) |
    | ``clicked`` | ``Box(0, 1, (rows * cols,), float32)`` | 1 for patches the agent already clicked |

    ``state`` is the image embedding times the previous mask probability (paper eq. 4),
    average-pooled to ``gh x gw`` cells aligned with the patches and flattened channel-major from
    ``(C, gh, gw)``. ``clicks`` holds ``K = max_prompts`` rows (default 22: the 2 initial prompts
    plus the standard 20-click budget, or ``max_clicks + 2`` when that is larger), label 1/0, padding
    rows ``(0, 0, -1)``; its size does not depend on the click budget, so a model trained at
    ``max_clicks=15`` is evaluated at 20 unchanged. ``C x 64 x 64`` is the backend's
    ``embedding_shape`` (SAM: 256 x 64 x 64). ``state_pool="grid"`` (default) pools to the action
    grid, ``64 * 64 / (rows * cols)`` times smaller than the paper's full map, which
    ``state_pool="full"`` keeps (what that means for a PPO buffer is worked out in
    ``docs/benchmarks.md``); an integer ``n`` pools to ``n x n``. ``env.unwrapped.state_shape`` gives
    ``(C, gh, gw)`` for un-flattening.

    ## Rewards

    ``reward="alignsam"`` (default): +1 when the ground truth at the clicked pixel is foreground, -1
    when it is background, 0 when it is void. ``reward="iou_gain"``: IoU after the click minus IoU
    before it. In both, a click on a patch the agent already clicked (in point mode: the same pixel)
    gets -1 and is not sent to the segmenter; :meth:`action_masks` marks those patches invalid
    (sb3-contrib's ``MaskablePPO`` convention).

    ## Starting State

    A sample is drawn with ``np_random`` (or chosen with ``reset(options={"index": i})``). With
    ``init_prompts="gt_pair"`` (default, AlignSAM training), one random foreground and one random
    background ground-truth pixel are given as prompts and decoded; with ``"none"`` no prompt is
    given and the previous mask is taken as all ones (the state is the plain embedding); a callable
    ``f(view) -> [(x, y, label), ...]`` (at most 2) places its own (AlignSAM's recalibration module
    at evaluation).

    ## Episode End

    * Termination: with ``target_iou`` set, when the IoU reaches it.
    * Truncation: after ``max_clicks`` agent clicks (default 15, the paper's T). The env owns the
      click budget; it is registered without a ``TimeLimit``.
    * Either way the episode is over: :meth:`step` raises ``RuntimeError`` until :meth:`reset`.

    ``info["is_success"]`` is set only in the info of the episode's last step (termination or
    truncation, not at reset and not on a ``TimeLimit`` wrapper's cut): ``True`` when the IoU of the
    final mask with the target (void excluded) is at least ``target_iou`` (0.85, NoC@85's threshold,
    when not set). It judges the whole episode, initial prompts included: on the default data the
    ``gt_pair`` prompts alone rarely reach it, so success comes from the clicks (see "Default data"
    above).

    ## Action masks

    :meth:`action_masks` returns the valid actions (sb3-contrib's ``MaskablePPO`` reads it there).
    Other libraries read the mask from the observation or the info: ``action_mask="obs"`` adds the
    key ``action_mask``, ``Box(0, 1, (n,), int8)`` with 1 = allowed, to the observation (RLlib's
    action-masking modules, PettingZoo, TorchRL's ``ActionMask`` transform); ``"info"`` puts the same
    array in ``info["action_mask"]`` (Gymnasium's Taxi); ``"both"`` does both. ``n`` is ``rows * cols``
    (``"patch"``) or ``rows * cols + 2`` (``"patch_label"``: the patch entries, then the two label
    entries, always 1), the layout of :meth:`action_masks`; the mask describes the actions valid for
    the next step. The vector env batches it like every key. ``"point"`` mode has nothing to mask.
    :class:`sam_gym.wrappers.ActionMaskObservation` does the same as a wrapper, for any env with
    ``action_masks()``.

    ## Info

    At reset: ``image_id``, ``instance_id``, ``class_id``, ``image_size`` ``(H, W)``, ``backend``,
    ``iou``. At each step: ``iou`` (full resolution, void excluded), ``point`` ``(x, y)``, ``label``,
    ``n_clicks``, ``repeat``, ``on_target`` (ground truth at the point), ``backend``.

    With ``action_mask="info"`` or ``"both"``, ``action_mask`` (see "Action masks") at reset and at
    every step.

    ``info_iou="none"`` (a fast path for training with the default +/-1 reward, which needs only the
    ground truth at the clicked pixel) skips the full-resolution mask and IoU at reset and at every
    step: ``iou`` is then reported only at episode end (computed once, with ``is_success``). It
    cannot be combined with ``reward="iou_gain"`` or ``target_iou``, which need the IoU every step.

    ## Arguments

    | Parameter | Type | Default | Description |
    |-----------|------|---------|-------------|
    | ``dataset`` | str, Path or dataset | ``"synthetic-clutter"`` | see :func:`sam_gym.data.make_dataset` |
    | ``backend`` | str or backend | ``"classical"`` | see :func:`sam_gym.backends.make_backend` |
    | ``checkpoint`` | str, Path or None | ``None`` | SAM weights: path, ``"auto"`` (SAM default), ``"random"`` |
    | ``grid`` | (int, int) | ``(10, 10)`` | patch rows and columns |
    | ``max_clicks`` | int | 15 | click budget |
    | ``reward`` | str | ``"alignsam"`` | ``"alignsam"`` or ``"iou_gain"`` |
    | ``label_mode`` | str or callable | ``"oracle"`` | labels of location-only clicks (below) |
    | ``init_prompts`` | str or callable | ``"gt_pair"`` | ``"gt_pair"``, ``"none"`` or a callable |
    | ``target_iou`` | float or None | ``None`` | terminate when the IoU reaches it |
    | ``cache_dir`` | str, Path or None | ``None`` | on-disk embedding cache folder |
    | ``render_mode`` | str or None | ``None`` | ``"rgb_array"`` |
    | ``action_mode`` | str | ``"patch"`` | ``"patch"``, ``"patch_label"`` or ``"point"`` |
    | ``state_pool`` | ``"grid"``, ``"full"`` or int | ``"grid"`` | pooling of the state |
    | ``mask_obs_size`` | int | 64 | side of the ``mask`` observation |
    | ``multimask`` | ``"auto"``, bool | ``"auto"`` | 3 proposals, best kept; ``"auto"``: for a single prompt |
    | ``backend_kwargs`` | dict or None | ``None`` | extra backend arguments (``device``, ``half``) |
    | ``dataset_kwargs`` | dict or None | ``None`` | extra dataset arguments |
    | ``cache`` | EmbeddingCache or None | ``None`` | a cache to share between envs (overrides ``cache_dir``) |
    | ``info_iou`` | ``"full"`` or ``"none"`` | ``"full"`` | per-step full-resolution IoU, or only at episode end |
    | ``max_prompts`` | int or None | ``None`` | rows of ``clicks``, >= ``max_clicks + 2`` (``None``: 22 or that) |
    | ``action_mask`` | ``"obs"``, ``"info"``, ``"both"``, None | ``None`` | mask in the observation and/or info |

    ``label_mode``: ``"oracle"`` (ground truth at the point, as in AlignSAM training), ``"positive"``
    (every click foreground), or ``f(view, (x, y)) -> 0 | 1`` (AlignSAM's recalibration module).

    ## Deviations from the paper

    * Images are not resized to 800 x 800: the grid is laid over the original image, so patches are
      ``H / rows x W / cols`` pixels (the paper's 80 x 80 patches on 800 x 800 is the 10 x 10 case).
    * The state is pooled to the grid by default (``state_pool="full"`` is the paper's).
    * The paper's agent is not penalised for repeated clicks; here repeats get -1 and are maskable,
      so that the +/-1 reward cannot be farmed by clicking one foreground patch 15 times.
    * The paper's reward is +/-1; void pixels (absent from its datasets) give 0 here.

    ## Example

    >>> import gymnasium as gym
    >>> import sam_gym
    >>> env = gym.make("SamPrompt-v0")
    >>> obs, info = env.reset(seed=0)
    >>> sorted(obs)
    ['clicked', 'clicks', 'mask', 'state']
    >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    >>> reward in (-1.0, 0.0, 1.0)
    True

    ## Version History

    * v0: Initial version.
    * v0 in 0.2.0: default data changed from ``synthetic-shapes`` to ``synthetic-clutter``; the old
      task is ``dataset="synthetic-shapes"``. On the old default the ``gt_pair`` initial prompts
      alone gave a mean IoU of 0.97 and a random policy ``is_success`` 1.0 (50 seeds), so success
      rates said nothing about the clicks.
    * v0 in 0.2.0, too: ``clicks`` has ``max_prompts`` rows (default 22) instead of ``max_clicks + 2``,
      so one model serves any click budget up to 20; ``max_prompts=max_clicks + 2`` gives the old
      size.
    * v0, after 0.2.0: the ``action_mask`` option (off by default: the default observation and info
      are unchanged).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(
        self,
        dataset: str | Path | SegmentationDataset = "synthetic-clutter",
        backend: str | PromptableSegmenter = "classical",
        checkpoint: str | Path | None = None,
        grid: tuple[int, int] = (10, 10),
        max_clicks: int = 15,
        reward: Literal["alignsam", "iou_gain"] = "alignsam",
        label_mode: Literal["oracle", "positive"] | LabelFn = "oracle",
        init_prompts: Literal["gt_pair", "none"] | InitFn = "gt_pair",
        target_iou: float | None = None,
        cache_dir: str | Path | None = None,
        render_mode: str | None = None,
        action_mode: ActionMode = "patch",
        state_pool: Literal["grid", "full"] | int = "grid",
        mask_obs_size: int = 64,
        multimask: Literal["auto"] | bool = "auto",
        backend_kwargs: dict[str, Any] | None = None,
        dataset_kwargs: dict[str, Any] | None = None,
        cache: EmbeddingCache | None = None,
        info_iou: InfoIou = "full",
        max_prompts: int | None = None,
        action_mask: Literal["obs", "info", "both"] | None = None,
    ) -> None:
        self._check_arguments(grid=grid, max_clicks=max_clicks, reward=reward, label_mode=label_mode,
                              init_prompts=init_prompts, target_iou=target_iou, render_mode=render_mode,
                              action_mode=action_mode, state_pool=state_pool, mask_obs_size=mask_obs_size,
                              multimask=multimask, info_iou=info_iou, backend_kwargs=backend_kwargs,
                              dataset_kwargs=dataset_kwargs, cache=cache, max_prompts=max_prompts)
        _check_action_mask(action_mask, action_mode)
        self.dataset = make_dataset(dataset, **(dataset_kwargs or {}))
        if len(self.dataset) == 0:
            raise ValueError(f"Expected a non-empty dataset, got {self.dataset!r} with no sample")
        backend_kwargs = dict(backend_kwargs or {})
        if checkpoint is not None:
            backend_kwargs["checkpoint"] = checkpoint
        if cache is not None:
            if backend_kwargs or (not isinstance(backend, str) and backend is not cache.backend):
                raise ValueError("Expected either cache= (which carries its backend) or backend arguments, got both")
            self.backend = cache.backend
        else:
            self.backend = make_backend(backend, **backend_kwargs)
        self.cache = cache if cache is not None else EmbeddingCache(self.backend, cache_dir=cache_dir)
        if self.backend.name not in _announced_backends:
            _announced_backends.add(self.backend.name)
            level = logging.INFO if self.backend.is_sam else logging.WARNING
            logger.log(level, "SamPrompt env backend: %s", self.backend.description)

        self.rows, self.cols = int(grid[0]), int(grid[1])
        self.n_cells = self.rows * self.cols
        self.max_clicks = int(max_clicks)
        self.reward_mode = reward
        self.label_mode = label_mode
        self.init_prompts = init_prompts
        self.target_iou = None if target_iou is None else float(target_iou)
        self.render_mode = render_mode
        self.action_mode: ActionMode = action_mode
        self.multimask = multimask if multimask == "auto" else bool(multimask)
        self.mask_obs_size = int(mask_obs_size)
        self.info_iou: InfoIou = info_iou
        #: Whether the action mask is in the observation / the info (``action_mask``).
        self.mask_in_obs = action_mask in ("obs", "both")
        self.mask_in_info = action_mask in ("info", "both")
        c, eh, ew = self.backend.embedding_shape
        if state_pool == "grid":
            self.pool_hw: tuple[int, int] | None = (self.rows, self.cols)
        elif state_pool == "full":
            self.pool_hw = None
        else:
            self.pool_hw = (int(state_pool), int(state_pool))
        self.state_shape: tuple[int, int, int] = (c, *(self.pool_hw or (eh, ew)))
        self.max_init_prompts = MAX_INIT_PROMPTS
        needed = self.max_clicks + MAX_INIT_PROMPTS
        self.max_prompts = max(DEFAULT_MAX_PROMPTS, needed) if max_prompts is None else int(max_prompts)

        if action_mode == "patch":
            self.action_space: spaces.Space = spaces.Discrete(self.n_cells)
        elif action_mode == "patch_label":
            self.action_space = spaces.MultiDiscrete([self.n_cells, 2])
        else:
            self.action_space = spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)
        click_low = np.tile(np.array([0.0, 0.0, -1.0], dtype=np.float32), self.max_prompts)
        self.observation_space = spaces.Dict(
            {
                "state": spaces.Box(-STATE_BOUND, STATE_BOUND, shape=(int(np.prod(self.state_shape)),),
                                    dtype=np.float32),
                "mask": spaces.Box(0, 255, shape=(1, self.mask_obs_size, self.mask_obs_size), dtype=np.uint8),
                "clicks": spaces.Box(click_low, np.ones_like(click_low), dtype=np.float32),
                "clicked": spaces.Box(0.0, 1.0, shape=(self.n_cells,), dtype=np.float32),
                **({MASK_KEY: action_mask_space(self.action_space)} if self.mask_in_obs else {}),
            }
        )
        #: The batched episode state this env's episode is a row of (its own ``N = 1`` core, or a
        #: vector env's, see :meth:`attach`), and that row.
        self._core = EpisodeCore(self, 1)
        self._row = 0
        #: What ``finish_reset`` / ``finish_step`` will commit: the new episode, or the click.
        self._pending: NewEpisode | Clicks | None = None

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _check_arguments(*, grid: Any, max_clicks: Any, reward: Any, label_mode: Any, init_prompts: Any,
                         target_iou: Any, render_mode: Any, action_mode: Any, state_pool: Any,
                         mask_obs_size: Any, multimask: Any, info_iou: Any, backend_kwargs: Any,
                         dataset_kwargs: Any, cache: Any, max_prompts: Any) -> None:
        if (not isinstance(grid, (tuple, list)) or len(grid) != 2
                or not all(_is_int(g) and g >= 1 for g in grid)):
            raise ValueError(f"Expected grid to be (rows, cols) of positive integers, got {grid!r}")
        if not _is_int(max_clicks) or max_clicks < 1:
            raise ValueError(f"Expected max_clicks to be a positive integer, got {max_clicks!r}")
        if not _is_choice(reward, ("alignsam", "iou_gain")):
            raise ValueError(f"Expected reward to be 'alignsam' or 'iou_gain', got {reward!r}")
        if not (callable(label_mode) or _is_choice(label_mode, ("oracle", "positive"))):
            raise ValueError(f"Expected label_mode to be 'oracle', 'positive' or a callable, got {label_mode!r}")
        if not (callable(init_prompts) or _is_choice(init_prompts, ("gt_pair", "none"))):
            raise ValueError(f"Expected init_prompts to be 'gt_pair', 'none' or a callable, got {init_prompts!r}")
        if target_iou is not None and not (_is_real(target_iou) and 0.0 < target_iou <= 1.0):
            raise ValueError(f"Expected target_iou to be None or a number in (0, 1], got {target_iou!r}")
        render_modes = tuple(SamPromptEnv.metadata["render_modes"])
        if render_mode is not None and not _is_choice(render_mode, render_modes):
            raise ValueError(f"Expected render_mode to be None or one of {list(render_modes)}, got {render_mode!r}")
        if not _is_choice(action_mode, ("patch", "patch_label", "point")):
            raise ValueError(f"Expected action_mode to be 'patch', 'patch_label' or 'point', got {action_mode!r}")
        if not (_is_choice(state_pool, ("grid", "full")) or (_is_int(state_pool) and state_pool >= 1)):
            raise ValueError(f"Expected state_pool to be 'grid', 'full' or a positive integer, got {state_pool!r}")
        if not _is_int(mask_obs_size) or not 8 <= mask_obs_size <= 256:
            raise ValueError(f"Expected mask_obs_size to be an integer in [8, 256], got {mask_obs_size!r}")
        if not (_is_choice(multimask, ("auto",)) or isinstance(multimask, (bool, np.bool_))):
            raise ValueError(f"Expected multimask to be 'auto', True or False, got {multimask!r}")
        if not _is_choice(info_iou, ("full", "none")):
            raise ValueError(f"Expected info_iou to be 'full' or 'none', got {info_iou!r}")
        for name, kwargs in (("backend_kwargs", backend_kwargs), ("dataset_kwargs", dataset_kwargs)):
            if kwargs is not None and not (isinstance(kwargs, Mapping) and all(isinstance(k, str) for k in kwargs)):
                raise ValueError(f"Expected {name} to be None or a dict of keyword arguments, got {kwargs!r}")
        if cache is not None and not isinstance(cache, EmbeddingCache):
            raise ValueError(f"Expected cache to be None or an EmbeddingCache, got {cache!r}")
        if max_prompts is not None and not (_is_int(max_prompts) and max_prompts >= max_clicks + MAX_INIT_PROMPTS):
            raise ValueError(f"Expected max_prompts to be None or an integer >= max_clicks + {MAX_INIT_PROMPTS} "
                             f"(= {max_clicks + MAX_INIT_PROMPTS}), got {max_prompts!r}")
        if info_iou == "none" and (reward == "iou_gain" or target_iou is not None):
            raise ValueError("Expected info_iou='full' with reward='iou_gain' or target_iou (they need the IoU "
                             f"every step), got info_iou='none', reward={reward!r}, target_iou={target_iou!r}")

    def check_reset(self, *, seed: Any = None, options: Any = None) -> None:
        """Raise the error :meth:`reset` would raise for ``seed`` and ``options``, changing nothing.

        The vector env calls it for every sub-env before it resets any of them.

        Raises:
            ValueError: For a seed that is not ``None`` or a non-negative integer, options that are
                not a dict, an unknown option, or an ``index`` that is not an integer in range.
        """
        self._reset_index(seed, options)

    def check_step(self, action: Any) -> None:
        """Raise the error :meth:`step` would raise for ``action`` before the click, changing nothing.

        The vector env calls it for every sub-env before it steps any of them.

        Raises:
            RuntimeError: Before the first :meth:`reset`, or after the episode terminated or was
                truncated (call :meth:`reset`).
            ValueError: For an action outside :attr:`action_space` (booleans and, in the discrete
                modes, non-integers included).
        """
        self._check_live()
        self.parse_action(self._core.state.grids[self._row], action)  # type: ignore[arg-type]

    def _reset_index(self, seed: Any, options: Any) -> int | None:
        """Check ``reset``'s arguments; return ``options["index"]`` as an int, or ``None`` when absent."""
        if seed is not None and not (_is_int(seed) and seed >= 0):
            raise ValueError(f"Expected seed to be None or a non-negative integer, got {seed!r}")
        if options is None:
            return None
        if not isinstance(options, Mapping):
            raise ValueError(f"Expected options to be None or a dict such as {{'index': 0}}, got {options!r}")
        unknown = set(options) - {"index"}
        if unknown:
            raise ValueError(f"Expected reset options among {{'index'}}, got {sorted(unknown, key=repr)}")
        if "index" not in options:
            return None
        index = options["index"]
        if not _is_int(index) or not 0 <= index < len(self.dataset):
            raise ValueError(f"Expected options['index'] to be an integer in [0, {len(self.dataset)}), got {index!r}")
        return int(index)

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode on a random sample, or on ``options["index"]``.

        Args:
            seed: Seeds ``np_random`` (sample choice, initial prompts); pass it once, after creation.
            options: ``{"index": i}`` selects sample ``i`` of the dataset.
        """
        request = self.prepare_reset(seed=seed, options=options)
        return self.finish_reset(None if request is None else self.run_request(request))

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Click once: decode the prompts so far and reward the click (see the class docstring)."""
        request = self.prepare_step(action)
        return self.finish_step(None if request is None else self.run_request(request))

    # ------------------------------------------------------------------ split reset / step (vector env)
    def run_request(self, request: DecodeRequest) -> Prediction:
        """Run one :class:`DecodeRequest` with this env's backend (what :meth:`step` does in between)."""
        return self.backend.decode(request.embedding, request.points, request.labels,
                                   mask_input=request.mask_input, multimask=request.multimask)

    def prepare_reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> DecodeRequest | None:
        """First half of :meth:`reset`: draw the sample and the initial prompts.

        ``reset(seed, options)`` is ``finish_reset(decode(prepare_reset(seed, options)))``; a vector
        env runs the decode of all its sub-envs in one batch between the halves. The new episode
        replaces the current one only in :meth:`finish_reset`; arguments that :meth:`check_reset`
        refuses change nothing (not even ``np_random``).

        Returns:
            The decoder call the initial prompts need, or ``None`` without initial prompts.
        """
        episode = self.draw_episode(seed=seed, options=options)
        self._pending = episode
        return self._core.start_requests(np.array([self._row]), [episode]).request(0)

    def draw_episode(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> NewEpisode:
        """Seed ``np_random`` (when ``seed`` is given) and draw a new episode from it (:meth:`prepare_reset`'s work).

        Raises:
            ValueError: For arguments that :meth:`check_reset` refuses (then nothing changed).
        """
        index = self._reset_index(seed, options)
        super().reset(seed=None if seed is None else int(seed))
        if index is None:
            index = int(self.np_random.integers(len(self.dataset)))
        sample = check_sample(self.dataset[index], where=f"{self.dataset.name}[{index}]")
        height, width = sample.target.shape
        grid = PatchGrid(self.rows, self.cols, height, width)
        embedding = self.cache.get(sample.image)
        prompts = self._initial_prompts(sample, grid, embedding, index)
        return NewEpisode(sample=sample, index=index, grid=grid, embedding=embedding, prompts=prompts)

    def finish_reset(self, prediction: Prediction | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Second half of :meth:`reset`, given the prediction for :meth:`prepare_reset`'s request."""
        episode = self._take_pending(NewEpisode, "reset")
        rows = np.array([self._row])
        (info,) = self._core.finish_start(rows, [episode], [prediction])
        return self._single(self._core.observe(rows)), info

    def prepare_step(self, action: Any) -> DecodeRequest | None:
        """First half of :meth:`step`: check and map the action and label the click.

        ``step(action)`` is ``finish_step(decode(prepare_step(action)))``. The env keeps owning the
        click budget, the action mapping and the reward; only the decoder call is taken out. The
        click is committed to the episode only in :meth:`finish_step`.

        Returns:
            The decoder call the click needs, or ``None`` for a repeated click (not decoded).
        """
        self.check_step(action)
        clicks, requests = self._core.prepare_clicks(np.array([self._row]), [action])
        self._pending = clicks
        return requests.request(0)

    def finish_step(
        self, prediction: Prediction | None
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Second half of :meth:`step`, given the prediction for :meth:`prepare_step`'s request."""
        clicks = self._take_pending(Clicks, "step")
        rewards, terminated, truncated, infos = self._core.finish_clicks(clicks, [prediction])
        obs = self._single(self._core.observe(clicks.rows))
        return obs, float(rewards[0]), bool(terminated[0]), bool(truncated[0]), infos.row(0)

    def action_masks(self) -> np.ndarray:
        """Valid actions, ``True`` = allowed (sb3-contrib ``MaskablePPO`` convention).

        Returns:
            ``(rows * cols,)`` bool for ``"patch"``; ``(rows * cols + 2,)`` for ``"patch_label"``
            (the two label entries always valid).

        Raises:
            ValueError: In ``"point"`` mode, which has no discrete actions to mask.
        """
        if self.action_mode == "point":
            raise ValueError("Expected a discrete action_mode for action_masks(), got 'point' (continuous)")
        return self._core.action_masks(np.array([self._row]))[0]

    def episode_view(self) -> EpisodeView:
        """Return the current episode's full state (see :class:`EpisodeView`; ground truth included)."""
        if not self._core.state.live[self._row]:
            raise RuntimeError("Call reset() before episode_view()")
        return self._core.view(self._row)

    # gymnasium 1.2 (the release RLlib pins) types Env.render with its RenderFrame TypeVar; 1.4 does not
    def render(self) -> np.ndarray | None:  # type: ignore[override, unused-ignore]
        """Return the image with the mask overlaid (blue) and the clicks (green +, red -) in ``rgb_array`` mode."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' at creation")
            return None
        if not self._core.state.live[self._row]:
            raise RuntimeError("Call reset() before render()")
        from sam_gym.render import draw_episode

        view = self._core.view(self._row, fresh_iou=False)
        return draw_episode(view.sample.image, view.mask, view.points, view.labels, n_init=view.n_init)

    def attach(self, core: EpisodeCore, row: int) -> None:
        """Make this env's episode row ``row`` of ``core`` (a vector env's), whose settings must be this env's.

        The vector env's sub-envs are attached to its core: ``env.step`` on a sub-env steps its row,
        ``episode_view`` and ``action_masks`` read it.
        """
        self._core, self._row = core, int(row)
        self._pending = None

    # ------------------------------------------------------------------ internals
    def _check_live(self) -> None:
        error = self._core.live_error(self._row)
        if error is not None:
            raise error

    def parse_action(self, grid: PatchGrid, action: Any) -> tuple[float, float, int, int | None]:
        """Map an action to ``(x, y, cell, label or None)`` through the episode's patch grid.

        Raises:
            ValueError: For an action outside :attr:`action_space`. Booleans are refused, and so
                are non-integers in the discrete modes (a float patch index is not cast).
        """
        if self.action_mode == "patch":
            value = action.item() if isinstance(action, np.ndarray) and action.shape == () else action
            if not (_is_int(value) and 0 <= value < self.n_cells):
                raise ValueError(f"Expected an action in {self.action_space} (an integer), got {action!r}")
            cell = int(value)
            x, y = grid.cell_to_point(cell)
            return x, y, cell, None
        numbers = _number_array(action)
        if self.action_mode == "patch_label":
            if (numbers is None or not np.issubdtype(numbers.dtype, np.integer) or numbers.shape != (2,)
                    or not (0 <= numbers[0] < self.n_cells and 0 <= numbers[1] <= 1)):
                raise ValueError(f"Expected an action in {self.action_space} (integers [patch, label]), "
                                 f"got {action!r}")
            cell, label = (int(v) for v in numbers)
            x, y = grid.cell_to_point(cell)
            return x, y, cell, label
        with np.errstate(over="ignore"):  # a huge number becomes inf, which the space refuses
            point = None if numbers is None else numbers.astype(np.float32)
        if point is None or not self.action_space.contains(point):
            raise ValueError(f"Expected an action in {self.action_space} (numbers (u, v, label)), got {action!r}")
        u, v, lab = (float(t) for t in point)
        x, y = grid.normalized_to_point(u, v)
        return x, y, grid.point_to_cell(x, y), int(lab >= 0.5)

    def label_from_hook(self, view: EpisodeView, point: tuple[float, float]) -> int:
        """The ``label_mode`` callable's label of the ``(x, y)`` click, checked."""
        label = self.label_mode(view, point)  # type: ignore[operator]
        if label not in (0, 1):
            raise ValueError(f"Expected the label_mode callable to return 0 or 1, got {label!r}")
        return int(label)

    def _initial_prompts(self, sample: Sample, grid: PatchGrid, embedding: Embedding,
                         index: int) -> list[tuple[float, float, int]]:
        if self.init_prompts == "none":
            return []
        if self.init_prompts == "gt_pair":
            prompts = []
            width = sample.target.shape[1]
            for label, region in ((1, sample.target), (0, ~(sample.target | sample.void))):
                pixels = np.flatnonzero(region)  # row-major, the order of np.nonzero
                k = int(self.np_random.integers(pixels.size))
                row, col = divmod(pixels[k], width)
                prompts.append((col + 0.5, row + 0.5, label))
            return prompts
        height, width = sample.target.shape
        view = EpisodeView(sample=sample, embedding=embedding, backend=self.backend, grid=grid,
                           points=np.zeros((0, 2), dtype=np.float32), labels=np.zeros(0, dtype=np.int64), n_init=0,
                           n_clicks=0, max_clicks=self.max_clicks, prediction=None, mask_logits=None,
                           np_random=self.np_random)
        placed = [tuple(p) for p in self.init_prompts(view)]
        if len(placed) > MAX_INIT_PROMPTS or any(
            len(p) != 3 or p[2] not in (0, 1) or not (0 <= p[0] <= width and 0 <= p[1] <= height) for p in placed
        ):
            raise ValueError(f"Expected the init_prompts callable to return at most {MAX_INIT_PROMPTS} "
                             f"(x, y, label) prompts inside the {width}x{height} image, label 0/1, got {placed!r}")
        return [(float(x), float(y), int(lab)) for x, y, lab in placed]

    def _take_pending(self, kind: type[Any], name: str) -> Any:
        """Check that ``finish_<name>`` follows ``prepare_<name>`` and return what it prepared."""
        pending = self._pending
        if not isinstance(pending, kind):
            raise RuntimeError(f"Call prepare_{name}() before finish_{name}()")
        self._pending = None
        return pending

    @staticmethod
    def _single(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Row 0 of a one-row observation batch."""
        return {key: value[0] for key, value in batch.items()}

    def __repr__(self) -> str:
        return (f"SamPromptEnv(dataset={self.dataset.name!r}, backend={self.backend.description!r}, "
                f"grid=({self.rows}, {self.cols}), max_clicks={self.max_clicks})")


def _check_action_mask(action_mask: Any, action_mode: Any) -> None:
    """Refuse an ``action_mask`` argument that is not a choice, or that asks to mask ``"point"`` actions."""
    if action_mask is not None and not _is_choice(action_mask, ("obs", "info", "both")):
        raise ValueError(f"Expected action_mask to be None, 'obs', 'info' or 'both', got {action_mask!r}")
    if action_mask is not None and action_mode == "point":
        raise ValueError(f"Expected a discrete action_mode with action_mask={action_mask!r}, got 'point' "
                         "(continuous actions have nothing to mask)")


def _is_int(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy integer (booleans are not)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy integer or float (booleans are not)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_choice(value: Any, choices: tuple[str, ...]) -> bool:
    """Whether ``value`` is one of the strings ``choices`` (safe for arrays and unhashable values)."""
    return isinstance(value, str) and value in choices


def _holds_bool(value: Any) -> bool:
    """Whether ``value`` is a boolean or a (nested) list or tuple holding one."""
    if isinstance(value, (list, tuple)):
        return any(_holds_bool(v) for v in value)
    return isinstance(value, (bool, np.bool_))


def _number_array(value: Any) -> np.ndarray | None:
    """``value`` as an integer or float array, or ``None`` when it is not made of numbers (booleans included)."""
    if _holds_bool(value):
        return None
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):  # ragged nesting, or an object that refuses conversion
        return None
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        return None
    return array
