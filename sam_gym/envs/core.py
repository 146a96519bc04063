"""The batched episode core of ``SamPrompt-v0``: N episodes held as arrays and stepped all at once.

:class:`EpisodeBatch` is the state of ``N`` episodes (prompts, labels, clicked cells, click counts,
the previous low-resolution logits, the ground truth read at the grid's cell centres), each field an
array (or, for backend-native objects, a list) with a leading axis of size ``N``.
:class:`EpisodeCore` computes the clicks, rewards, action masks and observations of any set of rows
in array operations. :class:`~sam_gym.envs.prompt_env.SamPromptEnv` is the ``N = 1`` case (its
episode is row 0 of its own core); :class:`~sam_gym.envs.vector_env.SamPromptVectorEnv` holds one
core of ``num_envs`` rows, and its sub-envs are views of their rows.

What is still done row by row, and why: drawing a new episode at reset (each sub-env owns its
random generator, as in ``SyncVectorEnv``), user callables (``label_mode``, ``init_prompts``),
``point`` actions (each is validated and mapped through its image's grid), reading each row's
chosen proposal out of its backend-native :class:`~sam_gym.backends.base.Prediction`, and the
per-item lists handed to ``backend.decode_batch`` / ``observe_batch`` / ``best_mask_ious`` (a list
interface, which SAM batches on its device). The full-resolution IoU (every step with
``info_iou="full"``, else at episode end) is one ``best_mask_ious`` call for all rows that need it.
Step infos are columns (:class:`StepInfos`), made into per-row dicts only when a caller asks for
one (the single env, SB3's list of dicts).

Coordinates: points ``(x, y)`` in image pixels (``x`` right, ``y`` down), pixels and cells
``(row, col)``, cells numbered row-major; labels 1 foreground / 0 background.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from sam_gym.backends.base import Embedding, Prediction
from sam_gym.backends.mask_iou import MaskReference
from sam_gym.data import Sample
from sam_gym.envs.episode import DecodeRequest, EpisodeView
from sam_gym.grid import PatchGrid
from sam_gym.wrappers import MASK_KEY

if TYPE_CHECKING:
    from sam_gym.envs.prompt_env import SamPromptEnv

__all__ = ["Clicks", "DecodeBatch", "EpisodeBatch", "EpisodeCore", "NewEpisode", "StepInfos"]

#: Reward of a click on a cell (or, in point mode, a pixel) that was already clicked.
REPEAT_PENALTY = -1.0
#: Bound of the ``state`` observation (values are clipped to it; SAM embeddings stay within +/-20).
STATE_BOUND = 1e4
_STATE_LOW, _STATE_HIGH = np.float32(-STATE_BOUND), np.float32(STATE_BOUND)
#: IoU that counts as success at episode end when no ``target_iou`` is given (NoC@85's threshold).
DEFAULT_SUCCESS_IOU = 0.85


@dataclass(frozen=True)
class NewEpisode:
    """An episode drawn at reset (sample, embedding, initial prompts), before it replaces a row.

    Attributes:
        sample: The image and its ground truth.
        index: The sample's index in the dataset.
        grid: The patch grid over the image.
        embedding: The image's embedding.
        prompts: The initial prompts, ``(x, y, label)`` in image pixels.
    """

    sample: Sample
    index: int
    grid: PatchGrid
    embedding: Embedding
    prompts: list[tuple[float, float, int]]


@dataclass(frozen=True)
class Clicks:
    """Checked clicks of some rows, committed by :meth:`EpisodeCore.finish_clicks`.

    Attributes:
        rows: ``(R,)`` the rows clicked.
        x: ``(R,)`` float64 ``x`` of each click in image pixels.
        y: ``(R,)`` float64 ``y``.
        cells: ``(R,)`` int64 patch of each click.
        labels: ``(R,)`` int64 label of each click.
        pixels: ``(R, 2)`` int64 ``(row, col)`` pixel of each click.
        on_target: ``(R,)`` bool ground truth at the pixel.
        void: ``(R,)`` bool void at the pixel.
        repeat: ``(R,)`` bool whether the cell (point mode: the pixel) was clicked before.
    """

    rows: np.ndarray
    x: np.ndarray
    y: np.ndarray
    cells: np.ndarray
    labels: np.ndarray
    pixels: np.ndarray
    on_target: np.ndarray
    void: np.ndarray
    repeat: np.ndarray


@dataclass(frozen=True, eq=False)
class DecodeBatch:
    """The decoder calls that some rows need, as lists aligned with ``rows`` (no per-row request object).

    Entry ``k`` is the call of ``rows[k]`` when ``needed[k]`` (a repeated click, or a reset without
    initial prompts, needs none; its list entries are then unused). Points are ``(x, y)`` float32 in
    image pixels, labels 1 foreground / 0 background.

    Attributes:
        rows: ``(R,)`` the rows.
        embeddings: ``R`` embeddings.
        points: ``R`` arrays ``(N_k, 2)`` (views of a batch array: read them, do not keep them).
        labels: ``R`` arrays ``(N_k,)``.
        mask_inputs: ``R`` previous ``(1, h, w)`` logits or ``None``.
        multimask: ``(R,)`` bool, whether to ask for 3 proposals.
        needed: ``(R,)`` bool, whether the row needs a decode.
    """

    rows: np.ndarray
    embeddings: list[Any]
    points: list[np.ndarray]
    labels: list[np.ndarray]
    mask_inputs: list[Any]
    multimask: np.ndarray
    needed: np.ndarray

    def request(self, k: int) -> DecodeRequest | None:
        """Entry ``k`` as a :class:`~sam_gym.envs.episode.DecodeRequest` (owning copies); ``None`` if not needed."""
        if not self.needed[k]:
            return None
        return DecodeRequest(self.embeddings[k], self.points[k].copy(), self.labels[k].copy(), self.mask_inputs[k],
                             bool(self.multimask[k]))


#: Step-info keys in the order a single env's info dict holds them.
_STEP_KEYS = ("iou", "point", "label", "n_clicks", "repeat", "on_target", "backend", "is_success", MASK_KEY)


class StepInfos:
    """The step infos of ``R`` rows as columns: ``info[key]`` of row ``k`` is ``values[key][k]`` where present.

    Keys, meaning and Python types are those of :class:`~sam_gym.envs.prompt_env.SamPromptEnv`'s
    step info; :meth:`row` builds row ``k``'s dict (what a single env returns), and a vector env
    batches the columns without building any dict (:meth:`sam_gym.envs.vector_env.SamPromptVectorEnv.step`).

    Attributes:
        values: Key -> ``(R,)`` array (float64, int64, bool or object) or ``(R, n)`` int8 (``action_mask``).
        present: Key -> ``(R,)`` bool where the key is in the row's info, ``None`` when in every row's.
    """

    #: Python type of each key's value in a row's dict (``None``: the array element as it is).
    kinds: dict[str, Any] = {"iou": float, "point": None, "label": int, "n_clicks": int, "repeat": bool,
                             "on_target": bool, "backend": None, "is_success": bool, MASK_KEY: None}

    def __init__(self, n: int, values: dict[str, np.ndarray], present: dict[str, np.ndarray | None]) -> None:
        self.n = int(n)
        self.values = {key: values[key] for key in _STEP_KEYS if key in values}
        self.present = present

    def __len__(self) -> int:
        return self.n

    def row(self, k: int) -> dict[str, Any]:
        """Row ``k``'s info dict (keys in a single env's order)."""
        out: dict[str, Any] = {}
        for key, column in self.values.items():
            mask = self.present.get(key)
            if mask is not None and not mask[k]:
                continue
            kind = self.kinds[key]
            out[key] = column[k] if kind is None else kind(column[k])
        return out


@dataclass(eq=False)
class EpisodeBatch:
    """The state of ``n`` episodes, one row each: what a reset starts and each click changes.

    Points are ``(x, y)`` image pixels stored as float32 (what the decoder and the observation
    take); rows ``j >= n_prompts[i]`` of ``points[i]`` are unused. Cells index the patch grid
    row-major. ``live[i]`` is ``False`` until row ``i``'s first reset.
    """

    n: int
    n_cells: int
    capacity: int
    samples: list[Sample | None] = field(init=False)
    grids: list[PatchGrid | None] = field(init=False)
    embeddings: list[Embedding | None] = field(init=False)
    predictions: list[Prediction | None] = field(init=False)
    #: The chosen proposal's ``(1, h, w)`` low-res logits per row (backend-native), the next mask input.
    logits: list[Any] = field(init=False)
    #: ``(row, col)`` pixels clicked per row (the repeat test of ``point`` mode).
    clicked_pixels: list[set[tuple[int, int]]] = field(init=False)

    def __post_init__(self) -> None:
        n = self.n
        self.samples, self.grids, self.embeddings = [None] * n, [None] * n, [None] * n
        self.predictions, self.logits = [None] * n, [None] * n
        #: Per row, the episode's ground truth for the full IoU (``backend.iou_reference``), once needed.
        self.iou_refs: list[MaskReference | None] = [None] * n
        self.clicked_pixels = [set() for _ in range(n)]
        self.index = np.zeros(n, dtype=np.int64)
        #: ``(n, 2)`` image ``(H, W)``.
        self.hw = np.ones((n, 2), dtype=np.int64)
        self.clicked_cells = np.zeros((n, self.n_cells), dtype=bool)
        #: Ground truth (target, void) at each cell's centre pixel, read once per episode.
        self.cell_target = np.zeros((n, self.n_cells), dtype=bool)
        self.cell_void = np.zeros((n, self.n_cells), dtype=bool)
        self.points = np.zeros((n, self.capacity, 2), dtype=np.float32)
        self.labels = np.zeros((n, self.capacity), dtype=np.int64)
        self.n_prompts = np.zeros(n, dtype=np.int64)
        self.n_init = np.zeros(n, dtype=np.int64)
        self.n_clicks = np.zeros(n, dtype=np.int64)
        self.iou = np.zeros(n, dtype=np.float64)
        #: Whether the last click terminated or truncated the episode (then the row needs a reset).
        self.ended = np.zeros(n, dtype=bool)
        self.live = np.zeros(n, dtype=bool)

    def mask(self, row: int) -> np.ndarray:
        """Row ``row``'s current ``(H, W)`` bool mask, indexed ``[row, col]`` (all ``False`` before any prompt)."""
        prediction = self.predictions[row]
        if prediction is None:
            return np.zeros(tuple(int(v) for v in self.hw[row]), dtype=bool)
        return prediction.mask(prediction.best)


class EpisodeCore:
    """The episode rules of a ``SamPromptEnv``, applied to rows of an :class:`EpisodeBatch`.

    Args:
        env: The env whose arguments (grid, budget, reward, modes, backend) define the episodes.
        n: Number of rows.
    """

    def __init__(self, env: SamPromptEnv, n: int) -> None:
        self.env = env
        self.backend = env.backend
        self.state = EpisodeBatch(n=int(n), n_cells=env.n_cells, capacity=env.max_clicks + env.max_init_prompts)
        #: The env that owns each row (its ``np_random`` is the row's generator).
        self.owners: list[SamPromptEnv] = [env] * int(n)
        p = env.max_prompts
        self._empty_clicks = np.tile(np.array([0.0, 0.0, -1.0], dtype=np.float32), (p, 1))
        #: Float32 scratch of the mask observation, ``(n, m, m)``, never handed out.
        self._scratch = np.empty((0, 0, 0), dtype=np.float32)

    # ------------------------------------------------------------------ reset
    def start_requests(self, rows: np.ndarray, new: Sequence[NewEpisode]) -> DecodeBatch:
        """The decoder calls of the new episodes' initial prompts (none without prompts), ``new[k]`` for ``rows[k]``."""
        points = [np.asarray([p[:2] for p in e.prompts], dtype=np.float32).reshape(-1, 2) for e in new]
        labels = [np.asarray([p[2] for p in e.prompts], dtype=np.int64).reshape(-1) for e in new]
        counts = np.array([len(e.prompts) for e in new], dtype=np.int64)
        return DecodeBatch(rows=np.asarray(rows, dtype=np.int64).reshape(-1), embeddings=[e.embedding for e in new],
                           points=points, labels=labels, mask_inputs=[None] * len(new),
                           multimask=self._multimask(counts), needed=counts > 0)

    def finish_start(self, rows: np.ndarray, new: Sequence[NewEpisode],
                     predictions: Sequence[Prediction | None]) -> list[dict[str, Any]]:
        """Make ``new[k]`` the episode of ``rows[k]``; return the reset infos."""
        env, s = self.env, self.state
        s.clicked_cells[rows] = False
        s.n_clicks[rows] = 0
        s.ended[rows] = False
        s.live[rows] = True
        s.iou[rows] = 0.0
        infos = []
        for row, episode, prediction in zip(rows.tolist(), new, predictions, strict=True):
            sample, grid = episode.sample, episode.grid
            s.samples[row], s.grids[row], s.embeddings[row] = sample, grid, episode.embedding
            s.index[row] = episode.index
            s.hw[row] = (grid.height, grid.width)
            s.clicked_pixels[row] = set()
            s.iou_refs[row] = None
            k = len(episode.prompts)
            s.n_prompts[row] = s.n_init[row] = k
            if k:
                s.points[row, :k] = [p[:2] for p in episode.prompts]
                s.labels[row, :k] = [p[2] for p in episode.prompts]
            pixels = _cell_pixels(env.rows, env.cols, grid.height, grid.width)
            s.cell_target[row] = sample.target[pixels[:, 0], pixels[:, 1]]
            s.cell_void[row] = sample.void[pixels[:, 0], pixels[:, 1]]
            s.predictions[row], s.logits[row] = None, None
            if prediction is not None:
                self._apply(row, prediction)
            info: dict[str, Any] = {
                "image_id": sample.image_id,
                "instance_id": sample.instance_id,
                "class_id": sample.class_id,
                "index": episode.index,
                "image_size": (grid.height, grid.width),
                "backend": self.backend.name,
            }
            infos.append(info)
        if env.info_iou == "full":
            self.set_full_ious(_decoded(rows, predictions))
            for info, iou in zip(infos, s.iou[rows].tolist(), strict=True):
                info["iou"] = iou
        self._add_mask_infos(rows, infos)
        return infos

    # ------------------------------------------------------------------ step
    def live_error(self, row: int) -> RuntimeError | None:
        """The ``RuntimeError`` that says to reset when row ``row`` cannot take a click, else ``None``."""
        s, env = self.state, self.env
        if not s.live[row]:
            return RuntimeError("Call reset() before step()")
        if s.ended[row]:
            if s.n_clicks[row] >= env.max_clicks:
                return RuntimeError(f"The episode ended after {env.max_clicks} clicks; call reset() before step()")
            return RuntimeError(f"The episode terminated (its IoU reached target_iou={env.target_iou}); "
                                "call reset() before step()")
        return None

    def fast_cells(self, actions: Any, n: int) -> np.ndarray | None:
        """``actions`` as ``(n,)`` int64 cells when it is an in-range integer array of ``patch`` actions, else ``None``.

        The array path of the vector env: such a batch needs no check per action. Anything else
        (lists, other dtypes, other modes, an action out of range) is checked action by action.
        """
        if not (self.env.action_mode == "patch" and isinstance(actions, np.ndarray) and actions.shape == (n,)
                and np.issubdtype(actions.dtype, np.integer)):
            return None
        if n and (actions.min() < 0 or actions.max() >= self.env.n_cells):
            return None
        return actions.astype(np.int64)

    def prepare_clicks(self, rows: np.ndarray, actions: Sequence[Any] | np.ndarray | None,
                       cells: np.ndarray | None = None) -> tuple[Clicks, DecodeBatch]:
        """Map and label the actions of ``rows`` (already checked); nothing is committed yet.

        Args:
            rows: ``(R,)`` rows, each live and not ended.
            actions: One action per row (``None`` when ``cells`` are given).
            cells: The actions as cells when :meth:`fast_cells` accepted them (``patch`` mode).

        Raises:
            ValueError: If neither ``actions`` nor ``cells`` is given.

        Returns:
            The clicks and the decoder calls they need (a repeated click needs none).
        """
        env, s = self.env, self.state
        labels: np.ndarray | None = None
        if cells is None and actions is None:
            raise ValueError("Expected the actions, or their cells, of the rows to step; got neither")
        given: Sequence[Any] | np.ndarray = () if actions is None else actions
        if cells is None and env.action_mode != "point":
            parsed = [env.parse_action(s.grids[r], a) for r, a in zip(rows.tolist(), given, strict=True)]
            cells = np.array([p[2] for p in parsed], dtype=np.int64).reshape(-1)
            if env.action_mode == "patch_label":
                labels = np.array([p[3] for p in parsed], dtype=np.int64).reshape(-1)
        if cells is not None:
            heights, widths = s.hw[rows, 0], s.hw[rows, 1]
            grid_rows, grid_cols = np.divmod(cells, env.cols)
            # PatchGrid.cell_to_point, elementwise in the same float64 order
            x = (grid_cols + 0.5) * widths / env.cols
            y = (grid_rows + 0.5) * heights / env.rows
            on_target = s.cell_target[rows, cells]
            void = s.cell_void[rows, cells]
        else:
            parsed = [env.parse_action(s.grids[r], a) for r, a in zip(rows.tolist(), given, strict=True)]
            x = np.array([p[0] for p in parsed], dtype=np.float64).reshape(-1)
            y = np.array([p[1] for p in parsed], dtype=np.float64).reshape(-1)
            cells = np.array([p[2] for p in parsed], dtype=np.int64).reshape(-1)
            labels = np.array([p[3] for p in parsed], dtype=np.int64).reshape(-1)
            heights, widths = s.hw[rows, 0], s.hw[rows, 1]
        # PatchGrid.pixel: (floor(y), floor(x)) clipped to the image
        pixels = np.stack([np.clip(np.floor(y), 0, heights - 1), np.clip(np.floor(x), 0, widths - 1)],
                          axis=1).astype(np.int64).reshape(-1, 2)
        if env.action_mode == "point":
            on_target = np.array([bool(s.samples[r].target[p[0], p[1]])
                                  for r, p in zip(rows.tolist(), pixels.tolist(), strict=True)], dtype=bool)
            void = np.array([bool(s.samples[r].void[p[0], p[1]])
                             for r, p in zip(rows.tolist(), pixels.tolist(), strict=True)], dtype=bool)
            repeat = np.array([tuple(p) in s.clicked_pixels[r] for r, p in zip(rows.tolist(), pixels.tolist(),
                                                                               strict=True)], dtype=bool)
        else:
            repeat = s.clicked_cells[rows, cells]
        if labels is None:
            if env.label_mode == "oracle":
                labels = on_target.astype(np.int64)
            elif env.label_mode == "positive":
                labels = np.ones(len(rows), dtype=np.int64)
            else:
                labels = np.array([env.label_from_hook(self.view(r), (float(xi), float(yi)))
                                   for r, xi, yi in zip(rows.tolist(), x.tolist(), y.tolist(), strict=True)],
                                  dtype=np.int64).reshape(-1)
        clicks = Clicks(rows=rows, x=x, y=y, cells=cells, labels=labels, pixels=pixels,
                        on_target=np.asarray(on_target, dtype=bool), void=np.asarray(void, dtype=bool),
                        repeat=np.asarray(repeat, dtype=bool))
        return clicks, self._click_requests(clicks)

    def finish_clicks(self, clicks: Clicks, predictions: Sequence[Prediction | None]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, StepInfos]:
        """Commit the clicks and their predictions; return rewards, terminations, truncations and the step infos."""
        env, s = self.env, self.state
        rows = clicks.rows
        previous_iou = s.iou[rows].copy()
        s.n_clicks[rows] += 1
        new = rows[~clicks.repeat]
        fresh = ~clicks.repeat
        s.clicked_cells[new, clicks.cells[fresh]] = True
        slot = s.n_prompts[new]
        s.points[new, slot, 0] = clicks.x[fresh]
        s.points[new, slot, 1] = clicks.y[fresh]
        s.labels[new, slot] = clicks.labels[fresh]
        s.n_prompts[new] += 1
        if env.action_mode == "point":
            for r, p in zip(new.tolist(), clicks.pixels[fresh].tolist(), strict=True):
                s.clicked_pixels[r].add((p[0], p[1]))
        full = env.info_iou == "full"
        for r, prediction in zip(rows.tolist(), predictions, strict=True):
            if prediction is not None:
                self._apply(r, prediction)
        if full:
            self.set_full_ious(_decoded(rows, predictions))
        if env.reward_mode == "alignsam":
            rewards = np.where(clicks.void, 0.0, np.where(clicks.on_target, 1.0, -1.0))
        else:
            rewards = s.iou[rows] - previous_iou
        rewards = np.where(clicks.repeat, REPEAT_PENALTY, rewards)
        if env.target_iou is None:
            terminated = np.zeros(len(rows), dtype=bool)
        else:
            terminated = s.iou[rows] >= env.target_iou
        truncated = ~terminated & (s.n_clicks[rows] >= env.max_clicks)
        ended = terminated | truncated
        s.ended[rows] = ended
        if not full:
            self.set_full_ious(rows[ended])
        success_iou = env.target_iou or DEFAULT_SUCCESS_IOU
        n = len(rows)
        ious = s.iou[rows]
        point = np.fromiter(zip(clicks.x.tolist(), clicks.y.tolist(), strict=True), dtype=object, count=n)
        backend = np.full(n, self.backend.name, dtype=object)
        values = {"iou": ious, "point": point, "label": clicks.labels.astype(np.int64, copy=False),
                  "n_clicks": s.n_clicks[rows], "repeat": clicks.repeat.astype(bool, copy=False),
                  "on_target": clicks.on_target.astype(bool, copy=False), "backend": backend,
                  "is_success": ious >= success_iou}
        present: dict[str, np.ndarray | None] = {"iou": None if full else ended, "is_success": ended}
        if env.mask_in_info:
            values[MASK_KEY] = self.action_masks(rows).astype(np.int8)
        return rewards.astype(np.float64), terminated, truncated, StepInfos(n, values, present)

    def set_full_ious(self, rows: np.ndarray) -> None:
        """Set ``iou`` of ``rows`` to the full-resolution IoU of their current mask, void excluded (0 before any mask).

        One ``backend.best_mask_ious`` call for all of them (SAM on CUDA: batched on the device); each
        episode's ground truth is prepared once (``backend.iou_reference``). Equal to
        :func:`sam_gym.metrics.iou` ``(mask, target, void)`` of each row.
        """
        s = self.state
        ids = [r for r in rows.tolist() if s.predictions[r] is not None]
        s.iou[rows] = 0.0
        if not ids:
            return
        references = []
        for r in ids:
            reference = s.iou_refs[r]
            if reference is None:
                sample = s.samples[r]
                assert sample is not None  # a row with a prediction has been reset
                reference = s.iou_refs[r] = self.backend.iou_reference(sample.target, sample.void)
            references.append(reference)
        s.iou[ids] = self.backend.best_mask_ious(cast("list[Prediction]", [s.predictions[r] for r in ids]), references)

    # ------------------------------------------------------------------ observation and masks
    def observe(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The observations of ``rows``, batched along a leading axis (one ``observe_batch`` call).

        Every array returned is new (as a ``SyncVectorEnv``'s copied batch is): a later step never
        overwrites an observation already handed out. The state is written once, by the clip from
        the backend's output (which may be a read-only view of the backend's memory); the mask's
        float steps run in a scratch buffer that the core keeps and never hands out.
        """
        env, s = self.env, self.state
        n_rows = len(rows)
        if n_rows == s.n and n_rows and rows[0] == 0 and rows[-1] == n_rows - 1:
            embeddings, logits = s.embeddings, s.logits  # all rows in order: no per-row list
        else:
            ids = rows.tolist()
            embeddings, logits = [s.embeddings[r] for r in ids], [s.logits[r] for r in ids]
        # observed rows have been reset, so each holds its image's embedding
        states, masks = self.backend.observe_batch(cast("list[Embedding]", embeddings), logits, env.pool_hw,
                                                   (env.mask_obs_size, env.mask_obs_size))
        if self._scratch.shape[0] < n_rows or self._scratch.shape[1:] != masks.shape[1:]:
            self._scratch = np.empty((max(n_rows, s.n), *masks.shape[1:]), dtype=np.float32)
        scratch = self._scratch[:n_rows]
        # round(clip(m, 0, 1) * 255) in float32, then the unsafe cast to uint8 (what astype does)
        np.clip(masks, 0.0, 1.0, out=scratch)
        np.multiply(scratch, 255, out=scratch)
        np.round(scratch, out=scratch)
        mask = np.empty((n_rows, 1, *masks.shape[1:]), dtype=np.uint8)
        np.copyto(mask[:, 0], scratch, casting="unsafe")
        k = s.capacity
        count = s.n_prompts[rows]
        used = np.arange(k)[None, :] < count[:, None]
        hw = s.hw[rows].astype(np.float32)
        pts = s.points[rows]
        clicks = np.empty((n_rows, *self._empty_clicks.shape), dtype=np.float32)
        clicks[:] = self._empty_clicks
        clicks[:, :k, 0] = np.where(used, np.clip(pts[:, :, 0] / hw[:, 1:2], 0.0, 1.0), clicks[:, :k, 0])
        clicks[:, :k, 1] = np.where(used, np.clip(pts[:, :, 1] / hw[:, 0:1], 0.0, 1.0), clicks[:, :k, 1])
        clicks[:, :k, 2] = np.where(used, s.labels[rows], clicks[:, :k, 2])
        obs = {
            "state": np.clip(np.asarray(states, dtype=np.float32), _STATE_LOW, _STATE_HIGH).reshape(n_rows, -1),
            "mask": mask,
            "clicks": clicks.reshape(n_rows, -1),
            "clicked": s.clicked_cells[rows].astype(np.float32),
        }
        if env.mask_in_obs:
            obs[MASK_KEY] = self.action_masks(rows).astype(np.int8)
        return obs

    def action_masks(self, rows: np.ndarray) -> np.ndarray:
        """``(R, n_actions)`` valid actions of ``rows`` (``True`` = allowed; before a reset all are)."""
        s = self.state
        valid = ~s.clicked_cells[rows] | ~s.live[rows][:, None]
        if self.env.action_mode == "patch_label":
            return np.concatenate([valid, np.ones((len(rows), 2), dtype=bool)], axis=1)
        return valid

    def view(self, row: int, fresh_iou: bool | None = None) -> EpisodeView:
        """Row ``row``'s episode as an :class:`~sam_gym.envs.episode.EpisodeView` (its sub-env's generator)."""
        env, s = self.env, self.state
        fresh = env.info_iou == "none" if fresh_iou is None else fresh_iou
        k = int(s.n_prompts[row])
        sample, grid, embedding = s.samples[row], s.grids[row], s.embeddings[row]
        assert sample is not None and grid is not None and embedding is not None
        return EpisodeView(
            sample=sample, embedding=embedding, backend=self.backend, grid=grid,
            points=s.points[row, :k].copy(), labels=s.labels[row, :k].copy(), n_init=int(s.n_init[row]),
            n_clicks=int(s.n_clicks[row]), max_clicks=env.max_clicks, prediction=s.predictions[row],
            mask_logits=s.logits[row], known_iou=None if fresh else float(s.iou[row]),
            np_random=self.owners[row].np_random,
        )

    # ------------------------------------------------------------------ internals
    def _add_mask_infos(self, rows: np.ndarray, infos: Sequence[dict[str, Any]]) -> None:
        """With ``action_mask="info"`` / ``"both"``: ``info["action_mask"]`` (``int8``) for each of ``rows``."""
        if self.env.mask_in_info:
            for info, mask in zip(infos, self.action_masks(rows).astype(np.int8), strict=True):
                info[MASK_KEY] = mask

    def _multimask(self, n_points: np.ndarray) -> np.ndarray:
        """``(R,)`` bool: whether a call with ``n_points[k]`` prompts asks for 3 proposals."""
        multimask = self.env.multimask
        if multimask == "auto":
            return np.asarray(n_points) == 1
        return np.full(np.shape(n_points), bool(multimask))

    def _click_requests(self, clicks: Clicks) -> DecodeBatch:
        """The decoder calls of ``clicks``: each row's prompts so far plus its click (none for a repeat)."""
        s = self.state
        rows = clicks.rows
        n_rows = len(rows)
        count = s.n_prompts[rows]
        points = s.points[rows]  # (R, capacity, 2) copies: the click goes into its slot without committing it
        labels = s.labels[rows]
        at = np.arange(n_rows)
        points[at, count, 0] = clicks.x
        points[at, count, 1] = clicks.y
        labels[at, count] = clicks.labels
        ids, ends = rows.tolist(), (count + 1).tolist()
        return DecodeBatch(
            rows=rows, embeddings=[s.embeddings[r] for r in ids],
            points=[points[k, :e] for k, e in enumerate(ends)], labels=[labels[k, :e] for k, e in enumerate(ends)],
            mask_inputs=[s.logits[r] for r in ids], multimask=self._multimask(count + 1), needed=~clicks.repeat)

    def _apply(self, row: int, prediction: Prediction) -> None:
        """Make ``prediction`` row ``row``'s current mask (its IoU is the caller's, with ``info_iou="full"``)."""
        s = self.state
        s.predictions[row] = prediction
        s.logits[row] = prediction.logits(prediction.best)


def _decoded(rows: np.ndarray, predictions: Sequence[Prediction | None]) -> np.ndarray:
    """The entries of ``rows`` whose prediction is not ``None`` (decoded in this call)."""
    return rows[np.fromiter((p is not None for p in predictions), dtype=bool, count=len(rows))]


@lru_cache(maxsize=256)
def _cell_pixels(rows: int, cols: int, height: int, width: int) -> np.ndarray:
    """``(rows * cols, 2)`` int64 ``(row, col)`` pixel of each cell centre (``PatchGrid.pixel``), read-only.

    Memoised per grid and image size (a reset of a known size computes nothing).
    """
    cells = np.arange(rows * cols)
    r, c = np.divmod(cells, cols)
    x = (c + 0.5) * width / cols
    y = (r + 0.5) * height / rows
    out = np.stack([np.clip(np.floor(y), 0, height - 1), np.clip(np.floor(x), 0, width - 1)],
                   axis=1).astype(np.int64)
    out.flags.writeable = False
    return out
