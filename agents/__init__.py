"""Prompting policies for ``SamPrompt-v0``: the learned AlignSAM agent and the heuristic baselines.

Every policy implements Stable-Baselines3's ``predict()`` signature (see :mod:`agents.base`), so
that evaluation scores learned and heuristic policies with the same code.
"""

from __future__ import annotations

from agents.base import PromptPolicy

__all__ = ["PromptPolicy"]
