"""AoP-SAM as a ``SamPrompt-v0`` policy: click the sampled, filtered prompts, most confident first.

:class:`AoPPolicy` runs AoP-SAM's automatic pipeline (:func:`agents.aop.sampling.generate_masks`:
Prompt Predictor, Adaptive Sampling and Filtering) once per episode on the episode's image and
embedding (no ground truth: not an oracle), then clicks the surviving prompts, all positive, in order
of confidence.

How AoP's multi-object output maps onto the env: AoP-SAM is an *automatic* segmenter that decodes
each prompt separately into its own instance mask, whereas the env owns one mask of one target
object and decodes every click of the episode *jointly* (all clicks so far as positives, with the
previous low-resolution logits as mask input), for this policy as for every other. So:

* IoU after click 1 is exactly the IoU of AoP's most confident object mask with the target (the env
  decodes one point with multimask output and keeps the best predicted IoU, as AoP does);
* IoU after click ``k`` is SAM's joint decode of AoP's first ``k`` prompts: neither one of AoP's
  masks nor the union of its masks (on GrabCut image 1, classical backend: joint 0.200 after 2
  prompts, union of the separately decoded masks 0.150).

This is the one-target form of AoP that compares with the env's other location-only policies: AoP
contributes what it is, the locations and the order of its prompts, and the env turns clicks into a
mask as it does for random, grid or AlignSAM clicks. A union of separately decoded masks would need a
decoder call per prompt and a mask the env does not own. AoP's own multi-object evaluation (every
prompt decoded alone, greedy one-to-one IoU matching to all ground-truth instances with
:func:`sam_gym.metrics.greedy_iou_matching`) is ``benchmarks/aop_efficiency.py``; see
``docs/baselines-aop-sapnet.md``.

Click sequence: ASF's surviving prompts, most confident first. When ASF proposes nothing (no local
maximum of the map above the confidence threshold), the policy falls back to the map's local
maxima at any confidence, most confident first, with the same spacing (the next-best candidates),
so that it never clicks one fixed point on every step. When the sequence runs out before the click
budget, the policy clicks its last prompt again: a repeat, penalised and not decoded, which keeps
the mask (AoP has nothing more to add).

Points are ``(x, y)`` image pixels (x right, y down; pixel ``(floor(y), floor(x))``); masks ``(H, W)``
bool indexed ``[row, col]``; labels 1 foreground / 0 background.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from agents.aop.predictor import PromptPredictor, load_predictor
from agents.aop.sampling import ASFConfig, AutoResult, generate_masks, sample_prompts
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
        clicks: The current episode's click sequence, ``(K, 2)`` image ``(x, y)`` (see the module
            docstring): ``result.prompts``, or the fallback candidates when there are none.
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
        self.clicks: np.ndarray = np.zeros((0, 2), dtype=np.float32)

    def check_env(self, env: SamPromptEnv) -> None:
        """Check that the predictor fits ``env``'s backend embedding (called by :meth:`bind`)."""
        self.predictor.check_backend(env.backend)

    def reset(self) -> None:
        """Forget the previous episode's prompts."""
        self.result = None
        self.clicks = np.zeros((0, 2), dtype=np.float32)

    def act(self, observation: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        """The next prompt as a point action ``(x / W, y / H, 1)``."""
        view = self.view()
        if self.result is None or view.n_clicks == 0:
            self.result = generate_masks(self.predictor, view.backend, view.sample.image, view.embedding,
                                         self.config)
            self.clicks = self.click_sequence(self.result, view.sample.image.shape[:2])
        height, width = view.sample.target.shape
        x, y = self.clicks[min(view.n_clicks, len(self.clicks) - 1)]
        return np.array([x / width, y / height, 1.0], dtype=np.float32)

    def click_sequence(self, result: AutoResult, image_size: tuple[int, int]) -> np.ndarray:
        """The prompts to click, ``(K >= 1, 2)`` image ``(x, y)``: ASF's, else the fallback candidates.

        The fallback is :func:`~agents.aop.sampling.sample_prompts` on the same confidence map with no
        confidence threshold (every local maximum, most confident first, spaced as configured); a map
        always has one (its global maximum).
        """
        if len(result.prompts):
            return result.prompts
        config = self.config
        fallback, _ = sample_prompts(result.confidence_map, (int(image_size[0]), int(image_size[1])),
                                     threshold=-np.inf, smooth_sigma=config.smooth_sigma, spacing=config.spacing)
        return fallback
