"""The Semantic Recalibration Module (SRM, AlignSAM section 3.3): a foreground map for labels and initial prompts.

The agent only picks *where* to click; the SRM says *what* the click is (foreground or
background) and, at evaluation, where the first positive and negative prompts go (its highest- and
lowest-scoring positions). It predicts a foreground probability map from

* the **implicit** input ``s_t``: the image embedding times the previous mask (the env's state,
  paper eq. 4), through two convolution blocks;
* the **explicit** input ``s_c``: the embedding times a CLIP-Surgery text map ``M_c``
  (:mod:`agents.alignsam.clip_surgery`); with ``srm="explicit"`` three convolution blocks aggregate
  ``s_c`` and ``s_t`` (concatenated), then a self-attention layer and two convolution blocks (the
  paper's ``V(s_c, s_t)``, ``SRMConfig.fusion="early"``; ``"late"``, for runs saved before the
  option, runs ``s_c`` alone through that stack and joins the implicit branch at the head);

and a classification head. It is trained online, during PPO training, with Dice + BCE against the
training images' ground truth (legitimate: these are the labelled training images), ``Q`` optimiser
steps after every action (:class:`SRMCallback`, ``q * n_envs`` per vector step; paper: Q = 1
implicit, 5 explicit).

Maps live on an image-aligned ``S x S`` grid: cell ``(r, c)`` covers pixels
``[r H / S, (r + 1) H / S) x [c W / S, (c + 1) W / S)`` (rows down, columns right), obtained from the
backend's ``observe(..., grid_hw=(S, S))`` so that classical and SAM backends give the same frame.
A point ``(x, y)`` (x right, y down, image pixels) reads cell ``(floor(y S / H), floor(x S / W))``
(the :class:`sam_gym.grid.PatchGrid` of ``S x S`` cells over the image).

Deviations from the paper (also in ``docs/alignsam.md``):

* the previous mask probability (resp. ``M_c``) is given as an extra input channel beside
  ``E * M`` (``E * M`` alone cannot tell "background" from "zero feature");
* each update uses a minibatch of the newest samples plus samples replayed from a small buffer of
  recent ones (the paper updates on the current sample), and every env step contributes two
  samples: the current state and the mask-free state (the state at evaluation's first call, before
  any prompt, when the SRM places the initial prompts);
* the map is ``S = 32`` by default (the paper's SAM embedding grid is 64 x 64).

Modules, by consumer:

* :mod:`~agents.alignsam.srm.module`: the network (:class:`SemanticRecalibrationModule`) and :func:`srm_loss`;
* :mod:`~agents.alignsam.srm.recalibrator`: :class:`SRMConfig` and :class:`Recalibrator` (inputs,
  replay buffer, optimiser, warm-up, metrics, save / load as ``srm.json`` + ``srm.pt``) and the
  env's label / initial-prompt callables that read its map;
* :mod:`~agents.alignsam.srm.hooks`: :class:`SRMCallback`, which trains it during PPO (Stable-Baselines3).
"""

from agents.alignsam.srm.hooks import SRMCallback
from agents.alignsam.srm.module import CONTEXT_CHANNELS, SemanticRecalibrationModule, srm_loss
from agents.alignsam.srm.recalibrator import SRM_CONFIG, SRM_WEIGHTS, Recalibrator, SRMConfig, SRMSample

__all__ = [
    "CONTEXT_CHANNELS",
    "SRM_CONFIG",
    "SRM_WEIGHTS",
    "Recalibrator",
    "SRMCallback",
    "SRMConfig",
    "SRMSample",
    "SemanticRecalibrationModule",
    "srm_loss",
]
