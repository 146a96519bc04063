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
``point`` actions (each is validated and mapped through its image's grid), the full-resolution IoU
(only with ``info_iou="full"``, images may differ in size), the per-row info dicts (Gymnasium's
and SB3's format) and the items handed to ``backend.decode_batch`` / ``observe_batch`` (a list
interface, which SAM batches on its device).

Coordinates: points ``(x, y)`` in image pixels (``x`` right, ``y`` down), pixels and cells
``(row, col)``, cells numbered row-major; labels 1 foreground / 0 background.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sam_gym.backends.base import Embedding, Prediction
from sam_gym.data import Sample
from sam_gym.envs.episode import DecodeRequest, EpisodeView
from sam_gym.grid import PatchGrid
from sam_gym.metrics import iou
from sam_gym.wrappers import MASK_KEY

if TYPE_CHECKING:
    from sam_gym.envs.prompt_env import SamPromptEnv

__all__ = ["Clicks", "EpisodeBatch", "EpisodeCore", "NewEpisode"]

#: Reward of a click on a cell (or, in point mode, a pixel) that was already clicked.
REPEAT_PENALTY = -1.0
#: Bound of the ``state`` observation (values are clipped to it; SAM embeddings stay within +/-20).
STATE_BOUND = 1e4
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

    def full_iou(self, row: int) -> float:
        """IoU of row ``row``'s full-resolution mask with the target, void excluded."""
        sample = self.samples[row]
        if self.predictions[row] is None or sample is None:
            return 0.0
        return iou(self.mask(row), sample.target, sample.void)


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

    # ------------------------------------------------------------------ reset
    def start_requests(self, new: Sequence[NewEpisode]) -> list[DecodeRequest | None]:
        """The decoder calls of the new episodes' initial prompts (``None`` without prompts)."""
        out: list[DecodeRequest | None] = []
        for episode in new:
            if not episode.prompts:
                out.append(None)
                continue
            points = np.asarray([p[:2] for p in episode.prompts], dtype=np.float32)
            labels = np.asarray([p[2] for p in episode.prompts], dtype=np.int64)
            out.append(DecodeRequest(episode.embedding, points, labels, None, self._multimask(len(points))))
        return out

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
            k = len(episode.prompts)
            s.n_prompts[row] = s.n_init[row] = k
            if k:
                s.points[row, :k] = [p[:2] for p in episode.prompts]
                s.labels[row, :k] = [p[2] for p in episode.prompts]
            pixels = _cell_pixels(grid, env.rows, env.cols)
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
            if env.info_iou == "full":
                info["iou"] = float(s.iou[row])
            infos.append(info)
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
                       cells: np.ndarray | None = None) -> tuple[Clicks, list[DecodeRequest | None]]:
        """Map and label the actions of ``rows`` (already checked); nothing is committed yet.

        Args:
            rows: ``(R,)`` rows, each live and not ended.
            actions: One action per row (``None`` when ``cells`` are given).
            cells: The actions as cells when :meth:`fast_cells` accepted them (``patch`` mode).

        Raises:
            ValueError: If neither ``actions`` nor ``cells`` is given.

        Returns:
            The clicks and, per row, the decoder call it needs (``None`` for a repeated click).
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
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Commit the clicks and their predictions; return rewards, terminations, truncations and infos."""
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
        for r, prediction in zip(rows.tolist(), predictions, strict=True):
            if prediction is not None:
                self._apply(r, prediction)
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
        if env.info_iou == "none":
            for r in rows[ended].tolist():
                s.iou[r] = s.full_iou(r)
        success_iou = env.target_iou or DEFAULT_SUCCESS_IOU
        infos = []
        for k, row in enumerate(rows.tolist()):
            info: dict[str, Any] = {
                "iou": float(s.iou[row]),
                "point": (float(clicks.x[k]), float(clicks.y[k])),
                "label": int(clicks.labels[k]),
                "n_clicks": int(s.n_clicks[row]),
                "repeat": bool(clicks.repeat[k]),
                "on_target": bool(clicks.on_target[k]),
                "backend": self.backend.name,
            }
            if env.info_iou == "none" and not ended[k]:
                del info["iou"]
            if ended[k]:
                info["is_success"] = bool(s.iou[row] >= success_iou)
            infos.append(info)
        self._add_mask_infos(rows, infos)
        return rewards.astype(np.float64), terminated, truncated, infos

    # ------------------------------------------------------------------ observation and masks
    def observe(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The observations of ``rows``, batched along a leading axis (one ``observe_batch`` call)."""
        env, s = self.env, self.state
        ids = rows.tolist()
        states, masks = self.backend.observe_batch([s.embeddings[r] for r in ids], [s.logits[r] for r in ids],
                                                   env.pool_hw, (env.mask_obs_size, env.mask_obs_size))
        n_rows = len(ids)
        clicks = np.broadcast_to(self._empty_clicks, (n_rows, *self._empty_clicks.shape)).copy()
        k = s.capacity
        count = s.n_prompts[rows]
        used = np.arange(k)[None, :] < count[:, None]
        hw = s.hw[rows].astype(np.float32)
        pts = s.points[rows]
        clicks[:, :k, 0] = np.where(used, np.clip(pts[:, :, 0] / hw[:, 1:2], 0.0, 1.0), clicks[:, :k, 0])
        clicks[:, :k, 1] = np.where(used, np.clip(pts[:, :, 1] / hw[:, 0:1], 0.0, 1.0), clicks[:, :k, 1])
        clicks[:, :k, 2] = np.where(used, s.labels[rows], clicks[:, :k, 2])
        obs = {
            "state": np.clip(states, -STATE_BOUND, STATE_BOUND, dtype=np.float32).reshape(n_rows, -1),
            "mask": np.round(np.clip(masks, 0.0, 1.0) * 255).astype(np.uint8)[:, None],
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

    def _multimask(self, n_points: int) -> bool:
        multimask = self.env.multimask
        return n_points == 1 if multimask == "auto" else bool(multimask)

    def _click_requests(self, clicks: Clicks) -> list[DecodeRequest | None]:
        s = self.state
        out: list[DecodeRequest | None] = []
        click_xy = np.stack([clicks.x, clicks.y], axis=1).astype(np.float32)
        for k, row in enumerate(clicks.rows.tolist()):
            if clicks.repeat[k]:
                out.append(None)
                continue
            n = int(s.n_prompts[row])
            points = np.concatenate([s.points[row, :n], click_xy[k : k + 1]])
            labels = np.append(s.labels[row, :n], clicks.labels[k])
            out.append(DecodeRequest(s.embeddings[row], points, labels, s.logits[row],
                                     self._multimask(n + 1)))
        return out

    def _apply(self, row: int, prediction: Prediction) -> None:
        """Make ``prediction`` row ``row``'s current mask (and its IoU, with ``info_iou="full"``)."""
        s = self.state
        s.predictions[row] = prediction
        s.logits[row] = prediction.logits(prediction.best)
        if self.env.info_iou == "full":
            s.iou[row] = s.full_iou(row)


def _cell_pixels(grid: PatchGrid, rows: int, cols: int) -> np.ndarray:
    """``(rows * cols, 2)`` int64 ``(row, col)`` pixel of each cell centre (``PatchGrid.pixel``)."""
    cells = np.arange(rows * cols)
    r, c = np.divmod(cells, cols)
    x = (c + 0.5) * grid.width / cols
    y = (r + 0.5) * grid.height / rows
    return np.stack([np.clip(np.floor(y), 0, grid.height - 1), np.clip(np.floor(x), 0, grid.width - 1)],
                    axis=1).astype(np.int64)
