"""CLIP-Surgery text-to-image similarity maps with open_clip (the SRM's explicit prompt).

Li et al., "CLIP Surgery for Better Explainability with Enhancement in Open-Vocabulary Tasks"
(2023). Two changes to a CLIP ViT make its patch tokens localise a text:

* **architecture surgery**: in the last ``depth`` transformer blocks a second path is added that
  uses v-v self-attention (``softmax(v v^T / sqrt(d)) v``, the same projection weights) and skips
  the feed-forward layer; the original q-k path runs unchanged beside it and feeds both paths'
  attention. Patch tokens are taken from the new path;
* **feature surgery**: the similarity of each patch token to the text embedding, minus its
  similarity to a redundant embedding (here the empty prompt ``""``, as the reference code does for
  a single text), removing the features shared by all prompts.

The map is min-max normalised to ``[0, 1]`` and resized to the image: ``map[row, col]`` is the
score of pixel ``(row, col)``, i.e. of point ``(x, y) = (col, row)`` (x right, y down). The image is
stretched to CLIP's square input (no crop), so the map covers the whole image frame.

Weights: an open_clip pretrained tag (``"openai"``, downloaded when online), a local checkpoint
path, or ``"random"`` (random initialisation; tests only). ``model_name="tiny"`` is a small random
ViT for tests and smoke runs. Offline without a checkpoint, :func:`load_clip` raises a
``RuntimeError`` that says what to do (a local path, or the implicit SRM).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["TINY_CLIP", "ClipSurgery", "load_clip"]

#: A small open_clip CLIP configuration (random weights) for tests: 64 x 64 input, 2 + 2 layers.
TINY_CLIP: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def load_clip(model_name: str = "ViT-B-16", pretrained: str = "openai", device: str = "cpu") -> ClipSurgery:
    """Build a :class:`ClipSurgery` from an open_clip architecture and weights.

    Args:
        model_name: open_clip architecture (``"ViT-B-16"``, ``"ViT-B-32"``, ...) or ``"tiny"``.
        pretrained: An open_clip pretrained tag (``"openai"``), a local checkpoint file, or
            ``"random"`` (random initialisation, for tests only).
        device: Torch device.

    Raises:
        RuntimeError: When the weights cannot be loaded (e.g. offline): the message names the options.
        ValueError: On an unknown architecture.
    """
    import open_clip

    tokenizer_name = "ViT-B-16" if model_name == "tiny" else model_name
    if model_name == "tiny":
        if pretrained != "random":
            raise ValueError(f"Expected pretrained='random' with the test-only 'tiny' CLIP, got {pretrained!r}")
        model = open_clip.CLIP(**TINY_CLIP)
    elif model_name not in open_clip.list_models():
        raise ValueError(f"Expected an open_clip architecture such as 'ViT-B-16' (or 'tiny'), got {model_name!r}")
    elif pretrained == "random":
        model = open_clip.create_model(model_name, pretrained=None)
    else:
        if Path(pretrained).suffix and not Path(pretrained).expanduser().is_file():
            raise RuntimeError(f"CLIP checkpoint {pretrained!r} not found; pass an existing open_clip checkpoint file "
                               f"or a pretrained tag such as 'openai', or use --srm implicit (no CLIP)")
        try:
            model = open_clip.create_model(model_name, pretrained=str(Path(pretrained).expanduser())
                                           if Path(pretrained).suffix else pretrained)
        except Exception as exc:  # noqa: BLE001 - any download/load failure gets the same actionable message
            raise RuntimeError(
                f"Could not load CLIP weights {model_name}/{pretrained!r} ({type(exc).__name__}: {exc}). Offline, "
                f"download an open_clip checkpoint elsewhere and pass its path (--clip-pretrained PATH), or train "
                f"with --srm implicit, which needs no CLIP"
            ) from exc
    tokenizer = open_clip.get_tokenizer(tokenizer_name)
    return ClipSurgery(model.eval(), tokenizer).to(device)


class ClipSurgery(nn.Module):
    """CLIP-Surgery similarity maps of an open_clip ViT model.

    Args:
        model: An open_clip ``CLIP`` whose ``visual`` is a ``VisionTransformer`` with standard
            ``ResidualAttentionBlock`` blocks (class-token pooling, no attentional pooler).
        tokenizer: The matching open_clip tokenizer.
        depth: Number of last blocks that get the v-v path (the reference uses 6 of ViT-B's 12;
            capped at the model's depth).

    Raises:
        ValueError: If the vision tower is not a supported ViT.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: nn.Module, tokenizer: Any, depth: int = 6) -> None:
        super().__init__()
        visual: Any = getattr(model, "visual", None)
        blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
        pooling = getattr(visual, "pool_type", "")
        if blocks is None or getattr(visual, "attn_pool", None) is not None or pooling != "tok":
            raise ValueError("Expected an open_clip CLIP with a ViT vision tower (class-token pooling, no "
                             f"attentional pooler), got {type(visual).__name__}")
        if not all(isinstance(getattr(b, "attn", None), nn.MultiheadAttention) and b.attn.batch_first for b in blocks):
            raise ValueError("Expected ViT blocks with batch-first nn.MultiheadAttention (open_clip's default blocks)")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"Expected depth to be a positive integer, got {depth!r}")
        self.model: Any = model  # an open_clip CLIP, whose towers are reached by attribute
        self.tokenizer = tokenizer
        self.depth = min(depth, len(blocks))
        size = visual.image_size
        self.input_size = (int(size[0]), int(size[1])) if isinstance(size, (tuple, list)) else (int(size), int(size))
        cfg = getattr(visual, "preprocess_cfg", None) or {}
        # Buffers start on the model's device, and ``.to()`` on this wrapper moves them with the model.
        device = next(model.parameters()).device
        for name, values in (("mean", cfg.get("mean", _OPENAI_MEAN)), ("std", cfg.get("std", _OPENAI_STD))):
            self.register_buffer(name, torch.tensor(values, dtype=torch.float32, device=device).view(1, 3, 1, 1))

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    @torch.no_grad()
    def text_direction(self, text: str) -> torch.Tensor:
        """Return the normalised text embedding minus the normalised empty-prompt embedding, ``(D,)``."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"Expected a non-empty text prompt, got {text!r}")
        tokens = self.tokenizer([text, ""]).to(self.device)
        feats = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
        return feats[0] - feats[1]

    @torch.no_grad()
    def patch_tokens(self, image: np.ndarray) -> torch.Tensor:
        """Return the normalised surgery-path patch embeddings ``(gh, gw, D)`` of an RGB image.

        Args:
            image: ``(H, W, 3)`` uint8 RGB image (stretched to CLIP's input size).
        """
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"Expected an (H, W, 3) uint8 RGB image, got {getattr(image, 'shape', type(image))}")
        h, w = self.input_size
        resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if image.shape[0] >= h else cv2.INTER_CUBIC)
        x = torch.from_numpy(resized).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        x = (x - self.mean) / self.std
        visual = self.model.visual
        x = visual._embeds(x)
        blocks = list(visual.transformer.resblocks)
        for block in blocks[: len(blocks) - self.depth]:
            x = block(x)
        x_ori, x_vv = x, x  # both paths start from the input of the first surgery block
        for block in blocks[len(blocks) - self.depth :]:
            attn_ori, attn_vv = _dual_attention(block.attn, block.ln_1(x_ori))
            x_vv = x_vv + attn_vv  # the new path skips the feed-forward layer
            x_ori = x_ori + block.ls_1(attn_ori)
            x_ori = x_ori + block.ls_2(block.mlp(block.ln_2(x_ori)))
        tokens = visual.ln_post(x_vv[0, 1:])
        if visual.proj is not None:
            tokens = tokens @ visual.proj
        gh, gw = visual.grid_size
        return F.normalize(tokens.float(), dim=-1).reshape(gh, gw, -1)

    @torch.no_grad()
    def similarity_map(self, image: np.ndarray, text: str, size: tuple[int, int] | None = None) -> np.ndarray:
        """Return the CLIP-Surgery map of ``text`` over ``image``, float32 in ``[0, 1]``.

        Args:
            image: ``(H, W, 3)`` uint8 RGB image.
            text: The prompt, e.g. ``"a photo of a cat"``.
            size: ``(h, w)`` of the returned map over the image frame; default the image's ``(H, W)``.

        Returns:
            ``(h, w)`` map indexed ``[row, col]``, row 0 at the top of the image.
        """
        sim = self.patch_tokens(image) @ self.text_direction(text)
        sim = (sim - sim.min()) / (sim.max() - sim.min()).clamp_min(1e-8)
        out_h, out_w = size if size is not None else image.shape[:2]
        resized = F.interpolate(sim[None, None], size=(int(out_h), int(out_w)), mode="bilinear", align_corners=False)
        return resized[0, 0].clamp(0.0, 1.0).cpu().numpy().astype(np.float32)


def _dual_attention(attn: nn.MultiheadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the original q-k attention output and the v-v attention output of a block, ``(B, L, D)`` each."""
    batch, length, dim = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = (t.reshape(batch, length, heads, dim // heads).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    ori = F.scaled_dot_product_attention(q, k, v)
    vv = F.scaled_dot_product_attention(v, v, v)

    def merge(t: torch.Tensor) -> torch.Tensor:
        return attn.out_proj(t.transpose(1, 2).reshape(batch, length, dim))

    return merge(ori), merge(vv)
