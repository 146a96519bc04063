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

Modules: :mod:`~agents.tta.config` (the configurations), :mod:`~agents.tta.losses` (pseudo-labels and
loss), :mod:`~agents.tta.adapter` (:class:`DecoderAdapter`) and :mod:`~agents.tta.policy`
(:class:`ClickerTTAPolicy`); every public name is importable from here. torch is imported lazily
(inside :class:`DecoderAdapter`), so importing the package is cheap.
"""

from __future__ import annotations

from agents.tta.adapter import DecoderAdapter, check_adaptable
from agents.tta.config import (
    CONFIGS,
    DEFAULT_LR,
    DEFAULT_TARGET_IOU,
    EROSION_ITERATIONS,
    IMAGE_STEPS,
    TTAConfig,
    tta_config,
)
from agents.tta.losses import balanced_bce, click_label_map, erode_cross, pseudo_label
from agents.tta.policy import ClickerTTAPolicy

__all__ = [
    "CONFIGS",
    "DEFAULT_LR",
    "DEFAULT_TARGET_IOU",
    "EROSION_ITERATIONS",
    "IMAGE_STEPS",
    "ClickerTTAPolicy",
    "DecoderAdapter",
    "TTAConfig",
    "balanced_bce",
    "check_adaptable",
    "click_label_map",
    "erode_cross",
    "pseudo_label",
    "tta_config",
]
