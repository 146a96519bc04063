"""AoP-SAM (Chen et al., "AoP-SAM: Automation of Prompts for Efficient Segmentation", AAAI 2025).

* :mod:`agents.aop.frame`: a backend's embedding resampled onto the image frame (shared with SAPNet; the
  scenes both train on are :mod:`sam_gym.data.scenes`);
* :mod:`agents.aop.predictor`: the Prompt Predictor (confidence map), its targets, training, save/load;
* :mod:`agents.aop.sampling`: Adaptive Sampling and Filtering (local maxima, Prompt Elimination Map);
* :mod:`agents.aop.train_command`: ``sam-gym train-aop``;
* :mod:`agents.aop_sam`: :class:`~agents.aop_sam.AoPPolicy`, the policy for ``SamPrompt-v0``.

Points are ``(x, y)`` in image pixels (x right, y down; pixel ``(floor(y), floor(x))``); masks are
``(H, W)`` indexed ``[row, col]``.
"""

from __future__ import annotations
