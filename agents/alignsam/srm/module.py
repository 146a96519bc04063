"""The SRM network and its loss: convolution blocks, cell self-attention, Dice + BCE.

See :mod:`agents.alignsam.srm` for what the module predicts and how it is trained. Maps are
``(B, channels, S, S)`` tensors on the image-aligned ``S x S`` grid (rows down, columns right).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CONTEXT_CHANNELS", "SemanticRecalibrationModule", "srm_loss"]

#: Extra implicit-input channels with ``SRMConfig.context`` (see ``recalibrator._context``).
CONTEXT_CHANNELS = 4


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.ReLU())


class _SelfAttention(nn.Module):
    """Multi-head self-attention over the cells of a feature map, with a residual connection."""

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        normed = self.norm(tokens)
        tokens = tokens + self.attn(normed, normed, normed, need_weights=False)[0]
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class SemanticRecalibrationModule(nn.Module):
    """The SRM network: implicit branch, optional explicit branch, classification head.

    Implicit SRM: ``V(0, s_t)``, two convolution blocks on the implicit input, then the head. Explicit
    SRM with ``fusion="early"`` (the paper's ``V(s_c, s_t)``): three convolution blocks over both
    inputs concatenated (they aggregate ``s_c`` and ``s_t``), a self-attention layer, two convolution
    blocks, then the head. With ``fusion="late"`` (runs saved before the option) the explicit input
    alone goes through that stack, the implicit input through the two implicit blocks, and the head
    reads both.

    Args:
        in_channels: Channels ``C`` of the backend's embedding (10 classical, 256 SAM).
        explicit: Add the explicit (CLIP-Surgery) branch.
        hidden: Channels of every block.
        context_channels: Extra channels of the implicit input (the mask-context channels of
            :meth:`Recalibrator.inputs`, 0 for the paper's input).
        fusion: ``"early"`` or ``"late"`` (explicit only; see above).
    """

    def __init__(self, in_channels: int, explicit: bool, hidden: int = 32, context_channels: int = 0,
                 fusion: str = "late") -> None:
        super().__init__()
        if in_channels < 1 or hidden < 8 or hidden % 8 or context_channels < 0 or fusion not in ("early", "late"):
            raise ValueError(f"Expected in_channels >= 1, hidden a multiple of 8, context_channels >= 0 and fusion "
                             f"'early' or 'late', got {in_channels}, {hidden}, {context_channels}, {fusion!r}")
        self.explicit = explicit
        self.fusion = fusion
        implicit_in = in_channels + 1 + context_channels
        early = explicit and fusion == "early"
        self.implicit_branch = (None if early else
                                nn.Sequential(_conv_block(implicit_in, hidden), _conv_block(hidden, hidden)))
        explicit_in = in_channels + 1 + (implicit_in if early else 0)
        self.explicit_branch = (
            nn.Sequential(
                _conv_block(explicit_in, hidden), _conv_block(hidden, hidden), _conv_block(hidden, hidden),
                _SelfAttention(hidden),
                _conv_block(hidden, hidden), _conv_block(hidden, hidden),
            )
            if explicit else None
        )
        branches = 2 if explicit and not early else 1
        self.head = nn.Sequential(nn.Conv2d(branches * hidden, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1))

    def forward(self, implicit: torch.Tensor, explicit: torch.Tensor | None = None) -> torch.Tensor:
        """Return foreground logits ``(B, 1, S, S)``.

        Args:
            implicit: ``(B, C + 1 [+ 4], S, S)``: ``E * M``, the previous mask probability ``M`` and,
                with context channels, the feature distances to the mask's inside and outside means.
            explicit: ``(B, C + 1, S, S)``: ``E * M_c`` and the CLIP-Surgery map ``M_c``; required
                exactly when the module has the explicit branch.
        """
        if self.explicit_branch is not None and explicit is None:
            raise ValueError("Expected the explicit input (E * M_c, M_c) for an explicit SRM, got None")
        if self.implicit_branch is None:  # early fusion: one stack over both states
            assert self.explicit_branch is not None and explicit is not None
            return self.head(self.explicit_branch(torch.cat([explicit, implicit], dim=1)))
        feats = [self.implicit_branch(implicit)]
        if self.explicit_branch is not None:
            assert explicit is not None
            feats.append(self.explicit_branch(explicit))
        return self.head(torch.cat(feats, dim=1))


def srm_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Dice + binary cross-entropy (the paper's SRM loss), void cells excluded.

    Args:
        logits: ``(B, 1, S, S)`` foreground logits.
        target: ``(B, 1, S, S)`` ground-truth foreground fraction of each cell, in ``[0, 1]``.
        weight: ``(B, 1, S, S)`` 1 for valid cells, 0 for void ones (default: all valid).
    """
    weight = torch.ones_like(target) if weight is None else weight
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum") / weight.sum().clamp_min(1)
    prob = torch.sigmoid(logits) * weight
    target = target * weight
    inter = (prob * target).flatten(1).sum(1)
    dice = 1.0 - (2.0 * inter + 1.0) / (prob.flatten(1).sum(1) + target.flatten(1).sum(1) + 1.0)
    return bce + dice.mean()
