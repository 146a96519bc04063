"""Small real models for tests and quick experiments (no weights, no download, CPU-friendly).

:func:`tiny_sam` builds segment-anything's own classes (``Sam``, ``ImageEncoderViT``,
``PromptEncoder``, ``MaskDecoder``) in a tiny configuration with random weights, so that code paths
of the SAM backend run in milliseconds. Its masks are meaningless; never report numbers from it.

:data:`TINY_SAM_ENTRY` lets a test drive the command line with it: it is a backend registry entry
that is *not* registered; a test adds it for its own duration with
``monkeypatch.setitem(sam_gym.backends.BACKENDS, "tiny_sam", TINY_SAM_ENTRY)`` and then passes
``--backend tiny_sam``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from sam_gym.registry import Entry

__all__ = ["TINY_SAM_ENTRY", "registered_tiny_sam", "tiny_sam", "tiny_sam_backend"]


def tiny_sam(
    seed: int = 0, img_size: int = 256, dim: int = 256, encoder_depth: int = 2, decoder_depth: int = 2
) -> Any:
    """Return a randomly initialised ``segment_anything.modeling.Sam`` of a tiny configuration.

    Args:
        seed: ``torch.manual_seed`` used for the initialisation.
        img_size: Input side (multiple of 16): the embedding is ``(dim, img_size / 16, img_size / 16)``
            and the low-resolution logits ``(img_size / 4, img_size / 4)``.
        dim: Embedding channels and decoder width (SAM: 256).
        encoder_depth: ViT blocks of the image encoder (the last one uses global attention).
        decoder_depth: Two-way transformer blocks of the mask decoder.
    """
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    if img_size % 16:
        raise ValueError(f"Expected img_size to be a multiple of 16, got {img_size}")
    torch.manual_seed(seed)
    side = img_size // 16
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size, patch_size=16, embed_dim=32, depth=encoder_depth, num_heads=2, mlp_ratio=2.0,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=(encoder_depth - 1,), window_size=4, out_chans=dim,
        ),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(side, side),
                                     input_image_size=(img_size, img_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=decoder_depth, embedding_dim=dim, mlp_dim=64,
                                          num_heads=8 if dim % 8 == 0 else 2),
            transformer_dim=dim, iou_head_depth=3, iou_head_hidden_dim=64,
        ),
    )


def tiny_sam_backend(seed: int = 0, device: str = "cpu", **kwargs: Any) -> Any:
    """Return a :class:`~sam_gym.backends.sam.SamBackend` around :func:`tiny_sam` (``kwargs`` go to it)."""
    from sam_gym.backends.sam import SamBackend

    return SamBackend(model=tiny_sam(seed, **kwargs), device=device)


def registered_tiny_sam(checkpoint: str | None = None, device: str | None = None, half: bool = False) -> Any:
    """The builder of :data:`TINY_SAM_ENTRY`: a 128-pixel, 32-channel :func:`tiny_sam` (seed 0) as a backend.

    Takes the arguments that :func:`sam_gym.backends.make_backend` passes to a backend with weights.

    Raises:
        ValueError: For a checkpoint other than ``"random"`` (its weights are random), or ``half`` off CUDA.
    """
    if checkpoint not in (None, "random"):
        raise ValueError(f"Expected no --checkpoint (or 'random') for the tiny test SAM, got {checkpoint!r}")
    from sam_gym.backends.sam import SamBackend

    return SamBackend(model=tiny_sam(0, img_size=128, dim=32, encoder_depth=1, decoder_depth=1), device=device,
                      half=half)


#: A backend entry for tests only (not in :data:`sam_gym.backends.BACKENDS`; see the module docstring).
TINY_SAM_ENTRY = Entry("sam_gym.testing:registered_tiny_sam", "tiny random SAM (tests only)", checkpoint=True)
