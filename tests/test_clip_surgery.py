"""CLIP-Surgery wrapper: every tensor follows the model's device (the explicit SRM on a GPU)."""

from __future__ import annotations

import pytest

pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")


def _devices(module: torch.nn.Module) -> set[str]:
    return {t.device.type for t in (*module.parameters(), *module.buffers())}


def test_load_clip_puts_every_tensor_on_the_requested_device() -> None:
    from agents.alignsam.clip_surgery import load_clip

    # The meta device stands in for a GPU on a CPU-only machine: a tensor left behind shows up as "cpu".
    assert _devices(load_clip("tiny", "random", device="meta")) == {"meta"}


def test_clip_surgery_buffers_follow_the_wrapped_model_and_to() -> None:
    import open_clip

    from agents.alignsam.clip_surgery import TINY_CLIP, ClipSurgery

    tokenizer = open_clip.get_tokenizer("ViT-B-16")
    wrapped = ClipSurgery(open_clip.CLIP(**TINY_CLIP).to("meta"), tokenizer)
    assert _devices(wrapped) == {"meta"}
    assert _devices(ClipSurgery(open_clip.CLIP(**TINY_CLIP), tokenizer).to("meta")) == {"meta"}
