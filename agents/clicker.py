"""The standard interactive-segmentation click simulator as a policy.

:class:`ClickerPolicy` clicks where :func:`sam_gym.clicker.next_click` (the RITM protocol) says:
the innermost pixel of the larger error region of the current mask, positive in a false negative,
negative in a false positive. It is an *oracle* (it reads ``view.sample.target`` / ``void``) and
acts in the env's ``"point"`` action mode with no initial prompts, so that an episode through the
env is the NoC protocol: the env decodes all clicks so far with the previous low-res logits as mask
input (three proposals, best kept, for the first click).

:class:`agents.tta.ClickerTTAPolicy` is the same simulator while SAM's mask decoder adapts to the
clicks and results (Schön et al., CVPR-W 2024).

Coordinate convention: points ``(x, y)`` in original-image pixels, x right, y down; the pixel is
``(row, col) = (floor(y), floor(x))``; masks ``(H, W)`` indexed ``[row, col]``; labels 1
foreground / 0 background.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from sam_gym.clicker import next_click
from sam_gym.policy import PromptPolicy

__all__ = ["ClickerPolicy", "click_action"]


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
