"""AoP-SAM as a ``SamPrompt-v0`` policy: click the sampled, filtered prompts, most confident first.

:class:`AoPPolicy` runs AoP-SAM's automatic pipeline (:func:`agents.aop.sampling.generate_masks`:
Prompt Predictor, Adaptive Sampling and Filtering) once per episode on the episode's image and
embedding (no ground truth: not an oracle), then clicks the surviving prompts, all positive, in order
of confidence.

How AoP's multi-object output maps onto the env: AoP-SAM is an *automatic* segmenter that decodes
each prompt separately into its own instance mask, whereas the env accumulates every click into one
mask of one target object. In the env the first click is AoP's most confident object and every
further click adds another object to the same mask, so the env's IoU measures how well the union of
AoP's objects covers the episode's target: a single-object score of a multi-object method, reported
for completeness. AoP's own evaluation (every prompt decoded alone, greedy one-to-one IoU matching to
all ground-truth instances with :func:`sam_gym.metrics.greedy_iou_matching`) is in
``benchmarks/aop_efficiency.py``. When the prompts run out before the click budget, the policy clicks
its last prompt again (a repeat: penalised, not decoded, the mask unchanged); with no candidate at
all it clicks the image centre.

Points are ``(x, y)`` image pixels (x right, y down; pixel ``(floor(y), floor(x))``); masks ``(H, W)``
bool indexed ``[row, col]``; labels 1 foreground / 0 background.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from agents.aop.predictor import PromptPredictor, load_predictor
from agents.aop.sampling import ASFConfig, AutoResult, generate_masks
from sam_gym.policy import PromptPolicy

if TYPE_CHECKING:
    from sam_gym.envs import SamPromptEnv

__all__ = ["DEFAULT_PREDICTOR_DIR", "AoPPolicy"]

#: Where ``make_policy("aop")`` looks for a predictor when no path is given (``$SAM_GYM_AOP`` overrides).
DEFAULT_PREDICTOR_DIR = "runs/aop"


class AoPPolicy(PromptPolicy):
    """AoP-SAM prompts clicked in the env (see the module docstring).

    Args:
        arg: Path of a trained predictor (``sam-gym train-aop --out DIR``: the folder or its
            ``aop_predictor.pt``), as in ``make_policy("aop:runs/aop")``. ``None``: ``$SAM_GYM_AOP``
            or ``runs/aop``; a clear error if there is none.
        predictor: An already-loaded predictor (instead of ``arg``).
        config: Adaptive Sampling and Filtering settings.

    Attributes:
        result: The current episode's :class:`~agents.aop.sampling.AutoResult` (after the first act).
    """

    name: ClassVar[str] = "aop"
    oracle: ClassVar[bool] = False
    env_kwargs: ClassVar[dict[str, Any]] = {"action_mode": "point", "init_prompts": "none"}

    def __init__(self, arg: str | None = None, predictor: PromptPredictor | None = None,
                 config: ASFConfig | None = None) -> None:
        super().__init__()
        if predictor is not None and arg is not None:
            raise ValueError(f"Expected either a predictor path or a predictor object, got both ({arg!r})")
        if predictor is None:
            path = Path(arg or os.environ.get("SAM_GYM_AOP") or DEFAULT_PREDICTOR_DIR)
            if not path.exists():
                raise ValueError(f"Expected a trained AoP predictor at {path}; train one with "
                                 f"'sam-gym train-aop --dataset D --backend B --out {path}' and use 'aop:{path}'")
            predictor = load_predictor(path)
        self.predictor = predictor
        self.config = config or ASFConfig()
        self.result: AutoResult | None = None

    def check_env(self, env: SamPromptEnv) -> None:
        """Check that the predictor fits ``env``'s backend embedding (called by :meth:`bind`)."""
        self.predictor.check_backend(env.backend)

    def reset(self) -> None:
        """Forget the previous episode's prompts."""
        self.result = None

    def act(self, observation: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        """The next prompt as a point action ``(x / W, y / H, 1)``."""
        view = self.view()
        if self.result is None or view.n_clicks == 0:
            self.result = generate_masks(self.predictor, view.backend, view.sample.image, view.embedding,
                                         self.config)
        height, width = view.sample.target.shape
        prompts = self.result.prompts
        if len(prompts) == 0:
            x, y = width / 2.0, height / 2.0
        else:
            x, y = prompts[min(view.n_clicks, len(prompts) - 1)]
        return np.array([x / width, y / height, 1.0], dtype=np.float32)
