"""SAPNet as a policy of ``SamPrompt-v0``: :class:`SAPNetPolicy`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import cv2
import numpy as np

from agents.aop.predictor import object_points
from agents.sapnet.labels import label_source, supercategory
from agents.sapnet.model import SAPNet
from agents.sapnet.train import load_sapnet
from sam_gym.data.base import Sample
from sam_gym.data.scenes import sample_key
from sam_gym.metrics import iou
from sam_gym.policy import PromptPolicy

if TYPE_CHECKING:
    from sam_gym.envs import SamPromptEnv

__all__ = ["DEFAULT_SAPNET_DIR", "SAPNetPolicy"]

#: Where ``make_policy("sapnet")`` looks for a model when no path is given (``$SAM_GYM_SAPNET`` overrides).
DEFAULT_SAPNET_DIR = "runs/sapnet"


class SAPNetPolicy(PromptPolicy):
    """SAPNet in ``SamPrompt-v0``: click the annotated point, then steer the env to the selected proposal.

    Oracle: the "one annotated point" of the instance is taken from the ground truth (the interior
    maximum of the target's distance transform) with the target's class (``Sample.class_id``, or the
    category in a COCO_MVal file name; mapped to its COCO supercategory for a ``"supercategory"`` model,
    to ``"object"`` for an agnostic one; a class the model has not seen is scored by objectness). Step 1
    clicks that point (positive); the policy also decodes the point's proposal bag and selects one
    proposal with SAPNet. If the env's mask (the backend's top-score proposal) differs from the
    selected one (IoU < ``match_iou``), each further click steers towards the selected proposal, never
    looking at the ground truth again: the centre (distance-transform maximum) of the largest region
    where the env mask and the selected proposal disagree, positive where the proposal is foreground,
    negative where it is not. Once they agree, the last click is repeated (a penalised no-op).

    Point Distance Guidance needs the other annotated points of the image; an env episode knows only
    its own target, so in the env the PDG factor is 1 (it is active in ``benchmarks/sapnet_vs_top1.py``).

    Args:
        arg: Path of a trained model (``sam-gym train-sapnet --out DIR``), as in ``make_policy("sapnet:DIR")``;
            ``None``: ``$SAM_GYM_SAPNET`` or ``runs/sapnet``, with a clear error if absent.
        model: An already-loaded :class:`SAPNet` (instead of ``arg``).
        match_iou: IoU at which the env's mask counts as the selected proposal.

    Attributes:
        selected_mask: The selected proposal of the current episode, ``(H, W)`` bool.
    """

    name: ClassVar[str] = "sapnet"
    oracle: ClassVar[bool] = True
    env_kwargs: ClassVar[dict[str, Any]] = {"action_mode": "point", "init_prompts": "none"}

    def __init__(self, arg: str | None = None, model: SAPNet | None = None, match_iou: float = 0.95) -> None:
        super().__init__()
        if model is not None and arg is not None:
            raise ValueError(f"Expected either a model path or a model object, got both ({arg!r})")
        if model is None:
            path = Path(arg or os.environ.get("SAM_GYM_SAPNET") or DEFAULT_SAPNET_DIR)
            if not path.exists():
                raise ValueError(f"Expected a trained SAPNet model at {path}; train one with "
                                 f"'sam-gym train-sapnet --dataset D --backend B --out {path}' and use 'sapnet:{path}'")
            model = load_sapnet(path)
        self.model = model
        self.match_iou = float(match_iou)
        self.selected_mask: np.ndarray | None = None
        self._dataset_name = ""
        self._last = np.array([0.5, 0.5, 1.0], dtype=np.float32)

    def check_env(self, env: SamPromptEnv) -> None:
        """Check that the model fits ``env``'s backend embedding (called by :meth:`bind`)."""
        self.model.check_backend(env.backend)
        self._dataset_name = str(getattr(env.dataset, "name", ""))

    def label(self, sample: Sample) -> str:
        """The class label the model is asked about for ``sample``'s target."""
        space = self.model.config.label_space
        if space == "agnostic":
            return "object"
        raw = sample_key(self._dataset_name)(sample)[1]
        if space == "supercategory":
            try:
                return supercategory(raw, label_source(self._dataset_name))
            except ValueError:  # a dataset or class outside COCO/VOC: scored by objectness
                return str(raw)
        return str(raw)

    def reset(self) -> None:
        """Forget the previous episode's selection."""
        self.selected_mask = None

    def act(self, observation: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        """The next point action ``(x / W, y / H, label)``."""
        view = self.view()
        height, width = view.sample.target.shape
        if view.n_clicks == 0 or self.selected_mask is None:
            x, y = object_points([view.sample.target])[0]
            label = self.label(view.sample)
            bag = self.model.bags(view.backend, view.embedding, np.array([[x, y]]), [label])[0]
            index = self.model.select(view.backend, view.embedding, [bag], [label])[0]
            self.selected_mask = bag.masks[index]
            self._last = np.array([x / width, y / height, 1.0], dtype=np.float32)
            return self._last
        selected, current = self.selected_mask, view.mask
        if not selected.any() or iou(current, selected) >= self.match_iou:
            return self._last
        error = (selected ^ current).astype(np.uint8)
        n, regions = cv2.connectedComponents(error, connectivity=8)
        sizes = np.bincount(regions.ravel(), minlength=n)[1:]
        largest = (regions == 1 + int(np.argmax(sizes))).astype(np.uint8)
        # Not sam_gym.clicker's _padded_distance: that is RITM's protocol (exact DIST_MASK_PRECISE, over each
        # whole error class, previous clicks excluded). This click, as documented in docs/baselines-aop-sapnet.md,
        # is the centre of the largest disagreement region with cv2's 5x5 chamfer mask (mask size 5); the
        # two distances differ, so sharing the helper would move these clicks and change recorded results.
        dist = cv2.distanceTransform(np.pad(largest, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
        self._last = np.array([(col + 0.5) / width, (row + 0.5) / height, float(selected[row, col])],
                              dtype=np.float32)
        return self._last
