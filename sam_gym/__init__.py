"""sam_gym: Segment Anything as a Gymnasium environment.

``import sam_gym`` registers ``SamPrompt-v0`` (and its variants) with Gymnasium and stays light:
torch, segment-anything and open_clip are imported only when a backend or agent needs them.

>>> import gymnasium as gym
>>> import sam_gym
>>> env = gym.make("SamPrompt-v0")  # synthetic-clutter scenes, weight-free classical backend, offline
"""

from __future__ import annotations

import envs_registry as _envs_registry  # noqa: F401  (registers the environments)

__version__ = "0.2.0"

__all__ = ["__version__"]
