"""Test-time adaptation (TTA) of SAM's mask decoder during interactive segmentation.

Re-implements Schön, Lorenz, Ludwig and Lienhart (Universität Augsburg), "Adapting the Segment
Anything Model during usage in novel situations" (CVPR Workshops 2024), following the authors' code
in ``Schorob/wseseg`` (``evaluator.py``, ``run_experiment_series_sam.py``). Only the mask decoder's
parameters are adapted, with Adam (default learning rate ``1e-6``, the paper's). The interaction
stops when the IoU reaches the target (the env's ``target_iou``; default 0.85, NoC20@85):

* **click level** (after every click): the sparse binary cross-entropy of the paper's eq. 2 on the
  clicked pixels, positive clicks with target 1 and negative clicks with target 0, for the
  decoder's low-resolution logits of the current prompts. The logits are *sampled at the clicks*:
  each click ``(x, y)`` (image pixels) is mapped into SAM's padded input frame with the model's
  ``ResizeLongestSide`` transform and the ``(256, 256)`` low-resolution logits are read there by
  bilinear interpolation (``grid_sample``, ``align_corners=False``: the same interpolation SAM uses
  to upsample its masks). Positive and negative clicks are averaged separately and the two means
  averaged ("balanced", as ``wseseg``'s ``balanced_ce``).
* **image level** (after an image whose target IoU was reached): balanced BCE on a pseudo-label:
  the final result mask, ``untreated`` (``U``) or ``eroded`` (``E``: foreground and background
  each eroded ``k = 5`` times with a 3x3 cross, so that a band around the mask boundary is not
  used), and/or the clicked pixels (click mask, ``CM``; written over the result mask when both are
  used). This loss is taken on the full-resolution logits (SAM's differentiable
  ``postprocess_masks``), so that no click vanishes by down-sampling. One optimisation step, as the
  paper says (:data:`IMAGE_STEPS`); ``image_steps=2`` is the authors' later code (``wseseg``'s image
  step plus its "additional" step).
* **reset** (``R``): the click-level changes are discarded after each image: the decoder's weights
  (and Adam's moments) are restored bit for bit to their state at the image's start *before* the
  image-level step, which persists (``wseseg``'s ``reset_decoder_after_each_image``);
  **continual** (``C``): click-level changes are kept from image to image.

Named configurations (:data:`CONFIGS`, the rows of the paper's table in its order;
``clicker-tta:NAME``):

==========  ===========  =======  ===========================================================
name        click level  reset    image level
==========  ===========  =======  ===========================================================
``none``    no           --       no (the plain click simulator on SAM)
``R+E+CM``  yes          yes      eroded result mask + click mask (the paper's full model)
``R``       yes          yes      no (weights back to the originals after every image)
``C``       yes          no       no (adaptation accumulates over the image stream)
``E``       no           --       eroded result mask
``CM``      no           --       click mask
``R+CM``    yes          yes      click mask
``R+U+CM``  yes          yes      untreated result mask + click mask
==========  ===========  =======  ===========================================================

Deviations from ``wseseg`` (all documented in ``docs/baselines-clicker.md``): the previous
low-resolution *logits* are the decoder's mask input (the env's convention; ``wseseg`` feeds the
binarised mask); the first click asks for three proposals and keeps the best-scored one (the env's
``multimask="auto"``; ``wseseg`` always uses one); the click loss samples the logits at the clicks
instead of down-sampling a click mask (which can drop single-pixel clicks); the image loss
averages the foreground and background terms over their own pixels (``wseseg`` averages masked
losses over all pixels); ``E`` is the eroded mask alone, as the paper names it (``wseseg`` writes
the clicks over it); no replay memory; the reset snapshot is a deep copy (``wseseg`` keeps
``state_dict()`` references, which alias the live parameters, so its reset restores nothing).

Coordinate convention: points are ``(x, y)`` in original-image pixels, x right, y down, the pixel
is ``(row, col) = (floor(y), floor(x))``; masks are ``(H, W)`` indexed ``[row, col]``; labels are
1 foreground / 0 background.

:class:`ClickerTTAPolicy` is the click simulator (:class:`agents.clicker.ClickerPolicy`) with these
adaptations, the registry's ``clicker-tta:CONFIG``; :class:`DecoderAdapter` adapts the decoder
through the SAM backend's differentiable decode (``SamBackend.decoder_logits``).

This module imports torch lazily (inside :class:`DecoderAdapter`), so importing it is cheap.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

import numpy as np
from scipy import ndimage

from agents.clicker import ClickerPolicy, click_action
from sam_gym.backends.base import Embedding, PromptableSegmenter
from sam_gym.policy import sub_envs

__all__ = [
    "CONFIGS",
    "ClickerTTAPolicy",
    "DEFAULT_LR",
    "DEFAULT_TARGET_IOU",
    "EROSION_ITERATIONS",
    "IMAGE_STEPS",
    "DecoderAdapter",
    "TTAConfig",
    "balanced_bce",
    "check_adaptable",
    "click_label_map",
    "erode_cross",
    "pseudo_label",
    "tta_config",
]

#: Adam learning rate of the paper (``wseseg`` ``config.py``).
DEFAULT_LR = 1e-6
#: Erosion iterations of the ``E`` pseudo-label (paper; ``wseseg``'s series script uses 4).
EROSION_ITERATIONS = 5
#: Optimisation steps on the pseudo-label after an image: the paper's one (``wseseg``, the authors' later
#: code, makes two: the image step and its "additional" step; ``image_steps=2``).
IMAGE_STEPS = 1
#: IoU at which the interaction stops (the paper's NoC20@85 protocol; ``wseseg``'s ``MIN_IOU``).
DEFAULT_TARGET_IOU = 0.85


@dataclass(frozen=True)
class TTAConfig:
    """What is adapted and when (see the module docstring for the named rows).

    Attributes:
        name: Name used in reports.
        click_level: One Adam step on the click loss after every click.
        reset: Restore the decoder (and Adam's state) to the image's start after each image,
            before the image-level step.
        result_mask: Image-level pseudo-label from the result mask: ``"eroded"``, ``"untreated"``,
            or ``None`` (no result mask).
        click_mask: Put the clicks into the image-level pseudo-label (over the result mask, if any).
            With neither a result mask nor a click mask there is no image-level step.
    """

    name: str
    click_level: bool
    reset: bool
    result_mask: Literal["eroded", "untreated"] | None
    click_mask: bool

    @property
    def adapts(self) -> bool:
        """Whether the configuration changes the decoder at all."""
        return self.click_level or self.result_mask is not None

    @property
    def image_level(self) -> bool:
        """Whether an image-level step follows each successful image."""
        return self.result_mask is not None or self.click_mask


#: The named configurations: the rows of the paper's table, in its order (``wseseg`` ``RUNS``).
CONFIGS: dict[str, TTAConfig] = {
    "none": TTAConfig("none", click_level=False, reset=False, result_mask=None, click_mask=False),
    "R+E+CM": TTAConfig("R+E+CM", click_level=True, reset=True, result_mask="eroded", click_mask=True),
    "R": TTAConfig("R", click_level=True, reset=True, result_mask=None, click_mask=False),
    "C": TTAConfig("C", click_level=True, reset=False, result_mask=None, click_mask=False),
    "E": TTAConfig("E", click_level=False, reset=False, result_mask="eroded", click_mask=False),
    "CM": TTAConfig("CM", click_level=False, reset=False, result_mask=None, click_mask=True),
    "R+CM": TTAConfig("R+CM", click_level=True, reset=True, result_mask=None, click_mask=True),
    "R+U+CM": TTAConfig("R+U+CM", click_level=True, reset=True, result_mask="untreated", click_mask=True),
}


def tta_config(name: str | None) -> TTAConfig:
    """Return the named configuration (``None`` means the paper's full model ``R+E+CM``).

    Raises:
        ValueError: For an unknown name.
    """
    key = "R+E+CM" if name is None else name
    if key not in CONFIGS:
        raise ValueError(f"Expected a TTA configuration among {list(CONFIGS)}, got {name!r}")
    return CONFIGS[key]


def erode_cross(mask: np.ndarray, iterations: int = EROSION_ITERATIONS) -> np.ndarray:
    """Erode a ``(H, W)`` bool mask ``iterations`` times with the 3x3 cross (4-connected) kernel.

    Outside the image counts as background, so a mask touching the border is eroded from it too
    (``scipy.ndimage.binary_erosion`` with ``border_value=0``, as ``wseseg``). Each iteration
    removes one pixel from every side of a square: a ``s x s`` square becomes
    ``(s - 2k) x (s - 2k)``.
    """
    arr = np.asarray(mask, dtype=bool)
    if arr.ndim != 2:
        raise ValueError(f"Expected a 2-D (H, W) mask, got shape {arr.shape}")
    if not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"Expected iterations to be a positive integer, got {iterations!r}")
    return ndimage.binary_erosion(arr, structure=ndimage.generate_binary_structure(2, 1),
                                  iterations=int(iterations), border_value=0)


def click_label_map(shape: tuple[int, int], points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return an ``(H, W)`` int8 map: each click's label at its pixel ``[floor(y), floor(x)]``, -1 elsewhere.

    Points are ``(x, y)`` in image pixels; later clicks win on a shared pixel.
    """
    out = np.full(shape, -1, dtype=np.int8)
    for (x, y), label in zip(np.asarray(points).reshape(-1, 2), np.asarray(labels).reshape(-1), strict=True):
        row = min(max(int(np.floor(y)), 0), shape[0] - 1)
        col = min(max(int(np.floor(x)), 0), shape[1] - 1)
        out[row, col] = int(label)
    return out


def pseudo_label(
    result_mask: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    treatment: Literal["eroded", "untreated"],
    click_mask: bool = True,
    erosion_iterations: int = EROSION_ITERATIONS,
) -> np.ndarray:
    """Build the image-level pseudo-label from a result mask and the clicks.

    Args:
        result_mask: ``(H, W)`` bool final mask of the image, indexed ``[row, col]``.
        points: ``(N, 2)`` clicks ``(x, y)`` in image pixels.
        labels: ``(N,)`` click labels, 1 foreground / 0 background.
        treatment: ``"untreated"``: every pixel labelled by the mask; ``"eroded"``: foreground and
            background each eroded (:func:`erode_cross`), the band between them unlabelled.
        click_mask: Write each click's label at its pixel over the mask-derived label.
        erosion_iterations: ``k`` of the erosion.

    Returns:
        ``(H, W)`` int8: 1 foreground, 0 background, -1 unlabelled.
    """
    mask = np.asarray(result_mask, dtype=bool)
    if treatment == "untreated":
        dense = mask.astype(np.int8)
    elif treatment == "eroded":
        dense = np.full(mask.shape, -1, dtype=np.int8)
        dense[erode_cross(mask, erosion_iterations)] = 1
        dense[erode_cross(~mask, erosion_iterations)] = 0
    else:
        raise ValueError(f"Expected treatment 'eroded' or 'untreated', got {treatment!r}")
    if click_mask:
        clicks = click_label_map(mask.shape, points, labels)
        dense = np.where(clicks >= 0, clicks, dense).astype(np.int8)
    return dense


def balanced_bce(logits: Any, target: Any) -> Any:
    """Balanced binary cross-entropy with logits over the labelled entries (torch tensors).

    ``target`` holds 1 (foreground), 0 (background) or -1 (unlabelled, ignored). The mean BCE of the
    foreground entries and that of the background entries are averaged; when only one class is
    labelled its mean is returned.

    Raises:
        ValueError: If nothing is labelled.
    """
    import torch
    import torch.nn.functional as F

    losses = []
    for cls in (1, 0):
        sel = target == cls
        if bool(sel.any()):
            values = logits[sel]
            losses.append(F.binary_cross_entropy_with_logits(values, torch.full_like(values, float(cls))))
    if not losses:
        raise ValueError("Expected at least one labelled entry (0 or 1) in the target, got none")
    return torch.stack(losses).mean()


def check_adaptable(backend: Any) -> None:
    """Check that test-time adaptation can adapt ``backend``'s mask decoder: a float32 SAM backend.

    Raises:
        ValueError: If ``backend`` is not a SAM backend with a torch ``model``, or runs in half
            precision (small Adam steps, the paper's ``lr = 1e-6``, vanish in bf16).
    """
    if not getattr(backend, "is_sam", False) or not hasattr(backend, "model"):
        description = getattr(backend, "description", type(backend).__name__)
        raise ValueError(f"Expected a SAM backend for test-time adaptation (clicker-tta adapts SAM's mask decoder, "
                         f"so it needs a SAM backend), got {description!r}; use --backend sam_vit_b or similar")
    dtype = getattr(backend, "dtype", None)
    if dtype is not None and str(dtype) != "torch.float32":
        raise ValueError(f"Expected a float32 SAM backend for test-time adaptation (small Adam steps, the paper's "
                         f"lr is 1e-6, vanish in half precision), got dtype {dtype}; drop --half")


class DecoderAdapter:
    """Adapts a SAM backend's mask decoder in place, with exact snapshots and restoration.

    The backend's own ``decode`` (which the env calls) therefore uses the adapted weights. At
    construction the decoder's state dict is deep-copied; :meth:`restore_original` loads it back
    (in place, bit for bit) and clears Adam's state and the per-class copies.

    Args:
        backend: A SAM backend (``backend.is_sam``) in float32 exposing ``model``.
        lr: Adam learning rate.
        per_class: Keep one decoder state (weights and Adam moments) per ``class_id`` (see
            :meth:`select`); otherwise one shared state.

    Raises:
        ValueError: If the backend is not a float32 SAM backend with a torch model, or ``lr <= 0``.
    """

    def __init__(self, backend: PromptableSegmenter, lr: float = DEFAULT_LR, per_class: bool = False) -> None:
        check_adaptable(backend)
        if not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"Expected lr to be a positive number, got {lr!r}")
        import torch

        self.backend: Any = backend
        self.lr = float(lr)
        self.per_class = bool(per_class)
        self.decoder = cast(Any, backend).model.mask_decoder  # check_adaptable: a SAM backend
        self.optimizer = torch.optim.Adam(self.decoder.parameters(), lr=self.lr)
        self._original = self.snapshot()
        self._slots: dict[Hashable, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._slot_key: Hashable = None

    # ------------------------------------------------------------------ state
    def snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return deep copies of the decoder's state dict and of Adam's state."""
        weights = {k: v.detach().clone() for k, v in self.decoder.state_dict().items()}
        return weights, copy.deepcopy(self.optimizer.state_dict())

    def load(self, state: tuple[dict[str, Any], dict[str, Any]]) -> None:
        """Load a :meth:`snapshot` in place (the decoder's tensors keep their identity)."""
        weights, optim_state = state
        self.decoder.load_state_dict(weights)
        self.optimizer.load_state_dict(copy.deepcopy(optim_state))

    def select(self, key: Hashable) -> None:
        """Switch to the decoder state of class ``key`` (per-class mode only; a no-op otherwise).

        The current state is stored under the current key; an unseen key starts from the original
        weights with an empty Adam state.
        """
        if not self.per_class or key == self._slot_key:
            return
        self._slots[self._slot_key] = self.snapshot()
        self.load(self._slots.pop(key, self._original))
        self._slot_key = key

    def restore_original(self) -> None:
        """Put the original decoder weights back (bit for bit), clear Adam's and per-class states."""
        self.load(self._original)
        self._slots.clear()
        self._slot_key = None

    def is_original(self) -> bool:
        """Whether the decoder's weights equal the originals bit for bit."""
        import torch

        current = self.decoder.state_dict()
        return all(torch.equal(current[k], v) for k, v in self._original[0].items())

    # ------------------------------------------------------------------ differentiable decode
    def logits(
        self, embedding: Embedding, points: np.ndarray, labels: np.ndarray, mask_input: Any | None,
        multimask: bool | None = None,
    ) -> Any:
        """Decode with gradients on the decoder: the chosen proposal's ``(h, w)`` low-res logits.

        As the env's decode: with ``multimask`` three proposals are decoded and the best-scored one
        is kept; ``mask_input`` is the previous ``(1, h, w)`` low-res logits or ``None``. The prompt
        encoder and the image embedding stay frozen (the backend's ``decoder_logits``).

        Args:
            embedding: The image's embedding (``backend.encode``).
            points: ``(N, 2)`` ``(x, y)`` clicks in image pixels.
            labels: ``(N,)`` labels, 1 foreground / 0 background.
            mask_input: Previous low-res logits (tensor or array) or ``None``.
            multimask: Three proposals or one; ``None``: three for a single point (the env's
                ``multimask="auto"``).
        """
        import torch

        if multimask is None:
            multimask = len(np.asarray(points).reshape(-1, 2)) == 1
        low_res, iou = self.backend.decoder_logits(embedding, points, labels, mask_input, bool(multimask))
        return low_res[int(torch.argmax(iou))]

    def click_loss(
        self, embedding: Embedding, points: np.ndarray, labels: np.ndarray, mask_input: Any | None,
        multimask: bool | None = None,
    ) -> Any:
        """The sparse click loss (paper eq. 2): balanced BCE of the logits sampled at the clicks.

        Each click ``(x, y)`` (image pixels) goes to the padded input frame (the backend's
        ``frame_prompts``: ``ResizeLongestSide``) and the low-res logits (which span that whole
        frame) are sampled there bilinearly (``grid_sample``, ``align_corners=False``). Arguments as
        :meth:`logits`.
        """
        import torch
        import torch.nn.functional as F

        backend = self.backend
        logits = self.logits(embedding, points, labels, mask_input, multimask)
        coords, lab = backend.frame_prompts(embedding, points, labels)
        grid = torch.as_tensor(2.0 * coords / backend.img_size - 1.0, dtype=torch.float32, device=backend.device)
        values = F.grid_sample(logits[None, None], grid[None, None], mode="bilinear", align_corners=False)
        target = torch.as_tensor(lab, dtype=torch.float32, device=backend.device)
        return balanced_bce(values.reshape(-1), target)

    def image_loss(
        self, embedding: Embedding, points: np.ndarray, labels: np.ndarray, mask_input: Any | None,
        target: np.ndarray, multimask: bool | None = None,
    ) -> Any:
        """Balanced BCE of the full-resolution logits against an ``(H, W)`` pseudo-label (1/0/-1).

        Arguments as :meth:`logits`; ``target`` is indexed ``[row, col]`` like the image.
        """
        import torch

        backend = self.backend
        logits = self.logits(embedding, points, labels, mask_input, multimask)
        full = backend.full_logits(embedding, logits[None])[0]
        return balanced_bce(full, torch.as_tensor(np.asarray(target), device=backend.device))

    def step(self, loss_fn: Any) -> float:
        """One Adam step on the decoder for the loss returned by ``loss_fn()``; returns the loss value.

        Gradients are switched on for the decoder's parameters only during the step.
        """
        params = list(self.decoder.parameters())
        try:
            for p in params:
                p.requires_grad_(True)
            self.optimizer.zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward()
            self.optimizer.step()
        finally:
            self.optimizer.zero_grad(set_to_none=True)
            for p in params:
                p.requires_grad_(False)
        return float(loss.detach())


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
