"""The click simulator with test-time adaptation of SAM's decoder: the registry's ``clicker-tta:CONFIG``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from agents.clicker import ClickerPolicy, click_action
from agents.tta.adapter import DecoderAdapter, check_adaptable
from agents.tta.config import DEFAULT_LR, DEFAULT_TARGET_IOU, EROSION_ITERATIONS, IMAGE_STEPS, tta_config
from agents.tta.losses import click_label_map, pseudo_label
from sam_gym.backends.base import Embedding
from sam_gym.policy import sub_envs

__all__ = ["ClickerTTAPolicy"]


@dataclass(frozen=True)
class _Click:
    """The click returned last, with what the env decodes for it (to adapt after it and after the image)."""

    embedding: Embedding
    points: np.ndarray  # (N, 2) (x, y) prompts including this click
    labels: np.ndarray  # (N,)
    mask_input: Any  # the low-res logits the env feeds back with it
    multimask: bool
    n_clicks: int  # agent clicks in the image including this one
    max_clicks: int
    image_shape: tuple[int, int]  # (H, W)


class ClickerTTAPolicy(ClickerPolicy):
    """The click simulator while SAM's mask decoder adapts at test time (Schön et al., CVPR-W 2024).

    The registry spec is ``clicker-tta:CONFIG`` with ``CONFIG`` one of :data:`CONFIGS` (the
    paper's table rows; default ``R+E+CM``, the paper's full model: click-level steps with a reset
    after each image, then an image-level step on the eroded result mask plus the click mask). See
    the module docstring for the rows and the losses.

    Its env must stop at ``target_iou`` (the paper's protocol; the image-level step follows only
    the images that reached it): :attr:`env_kwargs` carries it, so that
    :func:`sam_gym.evaluation.compare_policies` (and ``sam-gym eval``, whose ``--target-iou``
    rebuilds the policy with that value) give it such an env.

    The backend's decoder is adapted **in place**, so the env's own decodes use it. Timing:

    * after click ``t`` is decoded, the next call of :meth:`act` makes the click-level step on the
      prompts so far (with the mask input the env used), then computes click ``t + 1``;
    * the image's end is handled at the start of the next episode (:meth:`reset` or the next
      :meth:`act` with no click yet) or in :meth:`close`: the last click's step (``C`` only), the
      reset (``R``), then, when the image reached the env's ``target_iou`` before its click budget
      (``wseseg``'s condition), the image-level steps on the final mask (re-decoded with the very
      weights the env used for it) and/or the clicks. This assumes every action returned was
      stepped in the env (as :func:`sam_gym.evaluation.run_episodes` does).

    :meth:`close` (or leaving a ``with`` block) restores the decoder's original weights bit for bit
    and unbinds the policy, so that the adaptation never leaks into other policies sharing the
    backend; binding to an env with another backend closes first.

    Args:
        arg: The configuration name (``None``: ``R+E+CM``).
        lr: Adam learning rate (paper: 1e-6).
        per_class: Keep a separate decoder (weights and Adam state) per ``sample.class_id``.
        erosion_iterations: ``k`` of the ``E`` pseudo-label.
        image_steps: Adam steps on the pseudo-label after each successful image (paper: 1;
            ``wseseg``: 2).
        target_iou: IoU at which the env ends each image (:attr:`env_kwargs`; paper: 0.85 with 20
            clicks, 0.90 with 30).

    Raises:
        ValueError: For an unknown configuration or a bad number.
    """

    name: ClassVar[str] = "clicker-tta"
    #: The decoder adapts in place, image after image: one episode at a time.
    vectorizable: ClassVar[bool] = False

    def __init__(
        self,
        arg: str | None = None,
        lr: float = DEFAULT_LR,
        per_class: bool = False,
        erosion_iterations: int = EROSION_ITERATIONS,
        image_steps: int = IMAGE_STEPS,
        target_iou: float = DEFAULT_TARGET_IOU,
    ) -> None:
        super().__init__()
        self.config = tta_config(arg)
        if not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"Expected lr to be a positive number, got {lr!r}")
        for label, value in (("erosion_iterations", erosion_iterations), ("image_steps", image_steps)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Expected {label} to be a positive integer, got {value!r}")
        if isinstance(target_iou, bool) or not isinstance(target_iou, (int, float)) or not 0.0 < target_iou <= 1.0:
            raise ValueError(f"Expected target_iou to be a number in (0, 1], got {target_iou!r}")
        self.lr = float(lr)
        self.per_class = bool(per_class)
        self.erosion_iterations = int(erosion_iterations)
        self.image_steps = int(image_steps)
        self.target_iou = float(target_iou)
        self.adapter: DecoderAdapter | None = None
        self._pending: _Click | None = None
        self._image_start: tuple[dict[str, Any], dict[str, Any]] | None = None

    @property
    def env_kwargs(self) -> dict[str, Any]:  # type: ignore[override]
        """The click simulator's env options plus ``target_iou`` (episodes stop at the target IoU)."""
        return {**ClickerPolicy.env_kwargs, "target_iou": self.target_iou}

    # ------------------------------------------------------------------ binding
    def check_backend(self, backend: Any) -> None:
        """Check that ``backend`` can be adapted (:func:`check_adaptable`: a float32 SAM backend).

        Called by :meth:`bind`, and by ``sam-gym eval`` before any image is encoded.

        Raises:
            ValueError: If it cannot.
        """
        check_adaptable(backend)

    def bind(self, env: Any) -> None:
        """Bind to ``env`` (a single env, or a vector env of one) with a float32 SAM backend and :attr:`env_kwargs`.

        Raises:
            ValueError: If the env's backend is not a float32 SAM backend (:meth:`check_backend`), if
                the env lacks an option of :attr:`env_kwargs` (e.g. another ``target_iou``), or if
                ``env`` is a vector env of several sub-envs (the decoder adapts in place, image after image).
        """
        backend: Any = getattr(sub_envs(env)[0], "backend", None)
        self.check_backend(backend)
        if self.adapter is not None and self.adapter.backend is not backend:
            self.close()
        super().bind(env)
        if self.adapter is None:
            self.adapter = DecoderAdapter(backend, lr=self.lr, per_class=self.per_class)

    def close(self) -> None:
        """Restore the backend's original decoder weights (bit for bit) and unbind the policy.

        Any image still pending is dropped without its end-of-image step (the weights go back to
        the originals anyway). Safe to call more than once.
        """
        self._pending = None
        self._image_start = None
        if self.adapter is not None:
            self.adapter.restore_original()
            self.adapter = None
        self._env = None

    def __enter__(self) -> ClickerTTAPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ acting
    def reset(self) -> None:
        """Finish the previous image (end-of-image steps) at the start of an episode."""
        self._finish_image()

    def act(self, observation: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        """Adapt on the clicks so far (click level), then return the simulator's next click."""
        view = self.view()
        adapter = self.adapter
        if adapter is None:
            raise RuntimeError(f"Policy {self.name!r} was closed; bind it to an env again")
        pending = self._pending
        if view.n_clicks == 0 or pending is None:
            self._finish_image()
            adapter.select(view.sample.class_id)
            if self.config.reset:
                self._image_start = adapter.snapshot()
        elif self.config.click_level and len(view.points) == len(pending.points):
            adapter.step(lambda: adapter.click_loss(view.embedding, view.points, view.labels,
                                                    pending.mask_input, pending.multimask))
        x, y, label = self.next_click()
        points = np.vstack([view.points, np.array([[x, y]], dtype=np.float32)])
        labels = np.append(view.labels, np.int64(label))
        multimask = len(points) == 1 if self.env.multimask == "auto" else bool(self.env.multimask)
        height, width = view.sample.target.shape
        self._pending = _Click(view.embedding, points, labels, view.mask_logits, multimask,
                               view.n_clicks + 1, view.max_clicks, (height, width))
        return click_action(x, y, label, height, width)

    def _finish_image(self) -> None:
        """End-of-image work for the pending (last) click: see the class docstring."""
        pending, self._pending = self._pending, None
        adapter = self.adapter
        if pending is None or adapter is None:
            return
        config = self.config
        image_level = config.image_level and pending.n_clicks < pending.max_clicks
        result = None
        if image_level and config.result_mask is not None:
            prediction = adapter.backend.decode(pending.embedding, pending.points, pending.labels,
                                                mask_input=pending.mask_input, multimask=pending.multimask)
            result = prediction.mask(prediction.best)
        if config.click_level and not config.reset:
            adapter.step(lambda: adapter.click_loss(pending.embedding, pending.points, pending.labels,
                                                    pending.mask_input, pending.multimask))
        if config.reset and self._image_start is not None:
            adapter.load(self._image_start)
        self._image_start = None
        if not image_level:
            return
        if result is not None and config.result_mask is not None:
            target = pseudo_label(result, pending.points, pending.labels, config.result_mask, config.click_mask,
                                  self.erosion_iterations)
        else:
            target = click_label_map(pending.image_shape, pending.points, pending.labels)
        if (target >= 0).any():
            for _ in range(self.image_steps):
                adapter.step(lambda: adapter.image_loss(pending.embedding, pending.points, pending.labels,
                                                        pending.mask_input, target, pending.multimask))
