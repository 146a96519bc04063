"""The standard interactive-segmentation click simulator as a policy, with and without TTA.

:class:`ClickerPolicy` clicks where :func:`sam_gym.clicker.next_click` (the RITM protocol) says:
the innermost pixel of the larger error region of the current mask, positive in a false negative,
negative in a false positive. It is an *oracle* (it reads ``view.sample.target`` / ``void``) and
acts in the env's ``"point"`` action mode with no initial prompts, so that an episode through the
env is the NoC protocol: the env decodes all clicks so far with the previous low-res logits as mask
input (three proposals, best kept, for the first click).

:class:`ClickerTTAPolicy` is the same simulator while SAM's mask decoder adapts to the clicks and
results (Schön et al., CVPR-W 2024; machinery in :mod:`agents.tta`).

Coordinate convention: points ``(x, y)`` in original-image pixels, x right, y down; the pixel is
``(row, col) = (floor(y), floor(x))``; masks ``(H, W)`` indexed ``[row, col]``; labels 1
foreground / 0 background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from agents.tta import DEFAULT_LR, EROSION_ITERATIONS, IMAGE_STEPS, DecoderAdapter, pseudo_label, tta_config
from sam_gym.backends.base import Embedding
from sam_gym.clicker import next_click
from sam_gym.policy import PromptPolicy

__all__ = ["ClickerPolicy", "ClickerTTAPolicy", "click_action"]


def click_action(x: float, y: float, label: int, height: int, width: int) -> np.ndarray:
    """Return the env's point action ``(u, v, label)`` (float32), ``u = x / W``, ``v = y / H``.

    The env maps ``(u, v)`` back to ``(u W, v H)`` (:meth:`sam_gym.grid.PatchGrid.normalized_to_point`);
    float32 rounding moves a pixel-centre click ``(col + 0.5, row + 0.5)`` by ~1e-7 W pixels, so it
    stays on the pixel ``(floor(y), floor(x))`` = ``(row, col)`` that the env and backends read.
    """
    return np.array([x / width, y / height, float(label)], dtype=np.float32)


class ClickerPolicy(PromptPolicy):
    """RITM click simulator: the centre of the larger error region (oracle, point actions)."""

    name: ClassVar[str] = "clicker"
    oracle: ClassVar[bool] = True
    env_kwargs: ClassVar[dict[str, Any]] = {"action_mode": "point", "init_prompts": "none"}

    def next_click(self) -> tuple[float, float, int]:
        """The simulator's next click ``(x, y, label)`` for the bound env's current mask and prompts."""
        view = self.view()
        clicked = [tuple(p) for p in view.points.tolist()]
        return next_click(view.sample.target, view.mask, view.sample.void, clicked)

    def act(self, observation: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        """Return the point action of the simulator's next click."""
        x, y, label = self.next_click()
        height, width = self.view().sample.target.shape
        return click_action(x, y, label, height, width)


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


class ClickerTTAPolicy(ClickerPolicy):
    """The click simulator while SAM's mask decoder adapts at test time (Schön et al., CVPR-W 2024).

    The registry spec is ``clicker-tta:CONFIG`` with ``CONFIG`` one of :data:`agents.tta.CONFIGS`:
    ``none`` (no adaptation), ``R`` (click-level steps, reset after each image), ``C`` (click-level
    steps, continual), ``R+E+CM`` (the paper's full model, the default: click-level with reset,
    then an image-level step on the eroded result mask plus the click mask) or ``R+U+CM`` (same
    with the untreated result mask). See :mod:`agents.tta` for the losses.

    The backend's decoder is adapted **in place**, so the env's own decodes use it. Timing:

    * after click ``t`` is decoded, the next call of :meth:`act` makes the click-level step on the
      prompts so far (with the mask input the env used), then computes click ``t + 1``;
    * the image's end is handled at the start of the next episode (:meth:`reset` or the next
      :meth:`act` with no click yet) or in :meth:`close`: the last click's step (``C`` only), the
      reset (``R``), then, when the image reached the env's ``target_iou`` before its click budget
      (``wseseg``'s condition), the image-level steps on the final mask (re-decoded with the very
      weights the env used for it). This assumes every action returned was stepped in the env (as
      :func:`sam_gym.evaluation.run_episodes` does).

    :meth:`close` (or leaving a ``with`` block) restores the decoder's original weights bit for bit
    and unbinds the policy, so that the adaptation never leaks into other policies sharing the
    backend; binding to an env with another backend closes first.

    Args:
        arg: The configuration name (``None``: ``R+E+CM``).
        lr: Adam learning rate (paper: 1e-6).
        per_class: Keep a separate decoder (weights and Adam state) per ``sample.class_id``.
        erosion_iterations: ``k`` of the ``E`` pseudo-label.
        image_steps: Adam steps on the pseudo-label after each successful image.

    Raises:
        ValueError: For an unknown configuration or a bad number.
    """

    name: ClassVar[str] = "clicker-tta"

    def __init__(
        self,
        arg: str | None = None,
        lr: float = DEFAULT_LR,
        per_class: bool = False,
        erosion_iterations: int = EROSION_ITERATIONS,
        image_steps: int = IMAGE_STEPS,
    ) -> None:
        super().__init__()
        self.config = tta_config(arg)
        if not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"Expected lr to be a positive number, got {lr!r}")
        for label, value in (("erosion_iterations", erosion_iterations), ("image_steps", image_steps)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Expected {label} to be a positive integer, got {value!r}")
        self.lr = float(lr)
        self.per_class = bool(per_class)
        self.erosion_iterations = int(erosion_iterations)
        self.image_steps = int(image_steps)
        self.adapter: DecoderAdapter | None = None
        self._pending: _Click | None = None
        self._image_start: tuple[dict[str, Any], dict[str, Any]] | None = None

    # ------------------------------------------------------------------ binding
    def bind(self, env: Any) -> None:
        """Bind to ``env``; its backend must be a float32 SAM backend.

        Raises:
            ValueError: If the env's backend is not SAM (TTA adapts SAM's mask decoder), or if the
                configuration has an image-level step and the env has no ``target_iou`` (the
                image-level step needs the success that ends an episode early).
        """
        unwrapped = getattr(env, "unwrapped", env)
        backend = getattr(unwrapped, "backend", None)
        if backend is None or not getattr(backend, "is_sam", False):
            description = getattr(backend, "description", type(backend).__name__)
            raise ValueError(f"Expected a SAM backend for the clicker-tta policy (test-time adaptation of SAM's "
                             f"mask decoder needs a SAM backend), got {description!r}")
        if self.config.image_level and getattr(unwrapped, "target_iou", None) is None:
            raise ValueError(f"Expected an env with target_iou set for the TTA configuration {self.config.name!r} "
                             f"(its image-level step follows images that reach the target IoU), got target_iou=None")
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
        self._pending = _Click(view.embedding, points, labels, view.mask_logits, multimask,
                               view.n_clicks + 1, view.max_clicks)
        height, width = view.sample.target.shape
        return click_action(x, y, label, height, width)

    def _finish_image(self) -> None:
        """End-of-image work for the pending (last) click: see the class docstring."""
        pending, self._pending = self._pending, None
        adapter = self.adapter
        if pending is None or adapter is None:
            return
        config = self.config
        image_level = config.image_level and pending.n_clicks < pending.max_clicks
        if image_level:
            prediction = adapter.backend.decode(pending.embedding, pending.points, pending.labels,
                                                mask_input=pending.mask_input, multimask=pending.multimask)
            result = prediction.mask(prediction.best)
        if config.click_level and not config.reset:
            adapter.step(lambda: adapter.click_loss(pending.embedding, pending.points, pending.labels,
                                                    pending.mask_input, pending.multimask))
        if config.reset and self._image_start is not None:
            adapter.load(self._image_start)
        self._image_start = None
        if image_level:
            target = pseudo_label(result, pending.points, pending.labels, config.result_mask,  # type: ignore[arg-type]
                                  config.click_mask, self.erosion_iterations)
            if (target >= 0).any():
                for _ in range(self.image_steps):
                    adapter.step(lambda: adapter.image_loss(pending.embedding, pending.points, pending.labels,
                                                            pending.mask_input, target, pending.multimask))
