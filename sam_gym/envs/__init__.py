"""Environments of sam_gym (imported lazily by Gymnasium through string entry points)."""

from __future__ import annotations

from sam_gym.envs.episode import EpisodeView
from sam_gym.envs.prompt_env import SamPromptEnv

__all__ = ["EpisodeView", "SamPromptEnv"]
