"""AlignSAM (CVPR 2024): a MaskablePPO agent that picks where to click, with a Semantic Recalibration Module.

Modules (heavy imports such as torch and sb3 happen only inside them, not here):

* :mod:`~agents.alignsam.config`: :class:`TrainConfig`, the run's arguments;
* :mod:`~agents.alignsam.features`: the SB3 features extractor for ``SamPrompt-v0`` observations;
* :mod:`~agents.alignsam.srm`: the Semantic Recalibration Module and its online training callback;
* :mod:`~agents.alignsam.clip_surgery`: CLIP-Surgery text maps (the SRM's explicit branch);
* :mod:`~agents.alignsam.training`: ``train(config) -> run folder``;
* :mod:`~agents.alignsam.train_command`: ``sam-gym train``;
* :mod:`~agents.alignsam.run_format`: the run folder (atomic checkpoints, loading without unpickling);
* :mod:`~agents.alignsam.convert_command`: ``sam-gym convert-run`` for trusted old-format run folders;
* :mod:`~agents.alignsam.policy`: :class:`AlignSAMPolicy`, the trained agent (``make_policy("alignsam:DIR")``);
* :mod:`~agents.alignsam.experiments`: held-out comparison with the random policy and the paper's ablations.
"""

from __future__ import annotations

from agents.alignsam.config import TrainConfig

__all__ = ["TrainConfig"]
