"""The AlignSAM agent's feature extractor for ``SamPrompt-v0``'s ``Dict`` observation (SB3).

SB3's default ``CombinedExtractor`` would flatten the float ``state`` into an MLP input (a
``(256, 10, 10)`` SAM state is 25,600 numbers, 1 M for the full 64 x 64 map); this extractor keeps it
spatial. Actor and critic heads are SB3's ``net_arch`` on top of the concatenated features.

Observation keys (see :class:`sam_gym.envs.SamPromptEnv`): ``state`` (flattened ``(C, gh, gw)``
embedding times previous-mask probability, cell ``(r, c)`` = image patch ``(r, c)``, row 0 at the
top), ``mask`` (``(1, m, m)`` uint8 previous mask probability x 255 over the image frame, indexed
``[row, col]``), ``clicks`` (rows ``(x / W, y / H, label)``, x right, y down, label 1 foreground /
0 background, padding ``(0, 0, -1)``) and ``clicked`` (1 for patches already clicked). The
extractor reads the keys in ``inputs`` (``TrainConfig.inputs``): ``("state",)`` is the paper's eq. 4
state alone; the other keys are ignored when left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn
from torch.nn import functional as F

__all__ = ["AlignSAMExtractor"]

_KEYS = ("state", "mask", "clicks", "clicked")


class AlignSAMExtractor(BaseFeaturesExtractor):
    """Convolutions on the spatial state and on the mask, an MLP on the clicks (each part only if read).

    * ``state`` is un-flattened to ``(C, gh, gw)``, reduced to ``state_channels`` by a 1 x 1
      convolution (so that C = 10 for the classical backend and C = 256 for SAM cost about the same),
      then two 3 x 3 convolutions; the result is flattened (cells keep their position) and projected.
    * ``mask`` (scaled to [0, 1]) is pooled to 32 x 32 and goes through a small strided CNN; it is
      also average-pooled to the ``gh x gw`` grid and passed on as is, so that a linear head can map
      "mask high in cell i" to "click cell i" directly.
    * ``clicks`` and ``clicked`` (those of them in ``inputs``) go through one hidden layer.

    Args:
        observation_space: The env's ``Dict`` observation space.
        state_shape: ``(C, gh, gw)`` of the flattened ``state`` (``env.unwrapped.state_shape``).
        state_channels: Channels after the 1 x 1 reduction of the state.
        hidden: Width of the projected state and of the click MLP.
        inputs: The observation keys to read: distinct keys of ``("state", "mask", "clicks", "clicked")``,
            ``"state"`` among them (default: all four).

    Raises:
        ValueError: If ``inputs`` is not such a subset, a key it names is missing from the space, or
            ``state_shape`` does not match the ``state`` space size.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        state_shape: tuple[int, int, int] | list[int],
        state_channels: int = 32,
        hidden: int = 256,
        inputs: tuple[str, ...] | list[str] = _KEYS,
    ) -> None:
        keys = tuple(str(k) for k in inputs)
        if "state" not in keys or any(k not in _KEYS for k in keys) or len(set(keys)) != len(keys):
            raise ValueError(f"Expected inputs to be distinct keys among {_KEYS} including 'state', "
                             f"got {tuple(inputs)}")
        if not isinstance(observation_space, spaces.Dict) or any(k not in observation_space.spaces for k in keys):
            raise ValueError(f"Expected a Dict observation space with keys {keys}, got {observation_space}")
        shape = tuple(int(v) for v in state_shape)
        state_size = int(np.prod(_shape(observation_space, "state")))
        if len(shape) != 3 or min(shape) < 1 or int(np.prod(shape)) != state_size:
            raise ValueError(f"Expected state_shape (C, gh, gw) with C * gh * gw == {state_size} (the size of the "
                             f"'state' space; pass env.unwrapped.state_shape), got {tuple(state_shape)}")
        if "mask" in keys:
            mask_shape = _shape(observation_space, "mask")
            if len(mask_shape) != 3 or mask_shape[0] != 1:
                raise ValueError(f"Expected a (1, m, m) 'mask' space, got shape {mask_shape}")
        channels, gh, gw = shape
        self.vector_keys = tuple(k for k in ("clicks", "clicked") if k in keys)
        vector_size = int(sum(np.prod(_shape(observation_space, k)) for k in self.vector_keys))
        features_dim = (hidden + (128 + gh * gw if "mask" in keys else 0)
                        + (hidden // 2 if self.vector_keys else 0))
        super().__init__(observation_space, features_dim)
        self.inputs = keys
        self.state_shape = shape
        self.state_net = nn.Sequential(
            nn.Conv2d(channels, state_channels, 1),
            nn.ReLU(),
            nn.Conv2d(state_channels, state_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(state_channels, state_channels, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(state_channels * gh * gw, hidden),
            nn.ReLU(),
        )
        self.mask_net = nn.Sequential(
            nn.AdaptiveAvgPool2d(32),
            nn.Conv2d(1, 16, 4, stride=4),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 128),
            nn.ReLU(),
        ) if "mask" in keys else None
        self.vector_net = (nn.Sequential(nn.Linear(vector_size, hidden // 2), nn.ReLU())
                           if self.vector_keys else None)

    def forward(self, observations: dict[str, Any]) -> torch.Tensor:
        """Return ``(B, features_dim)`` features of a batch of observations (only the keys of ``inputs`` are read)."""
        state = observations["state"].float().reshape(-1, *self.state_shape)
        parts = [self.state_net(state)]
        if self.mask_net is not None:
            # SB3's policies (normalize_images=True, the default) divide uint8 image spaces by 255 before
            # the extractor: a (1, m, m) uint8 Box with bounds [0, 255] is one, so the mask is in [0, 1].
            mask = observations["mask"].float()
            parts.append(self.mask_net(mask))
        if self.vector_net is not None:
            parts.append(self.vector_net(torch.cat([observations[k].float() for k in self.vector_keys], dim=1)))
        if self.mask_net is not None:
            parts.append(F.adaptive_avg_pool2d(mask, self.state_shape[1:]).flatten(1))
        return torch.cat(parts, dim=1)


def _shape(space: spaces.Dict, key: str) -> tuple[int, ...]:
    """The shape of the Box ``space[key]`` (every key the extractor reads is a Box)."""
    shape = space[key].shape
    if shape is None:
        raise ValueError(f"Expected the {key!r} observation space to be a Box with a shape, got {space[key]}")
    return tuple(shape)
