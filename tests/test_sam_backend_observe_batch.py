"""SAM's batched ``observe_batch`` equals a loop over ``observe`` exactly (random weights, CPU).

One pooled operation per image size on the device and one host copy, for grid pooling and for the
full map (``grid_hw=None``), with and without previous logits, mixed in one batch and over images
of different sizes (different valid regions of the padded frame).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from sam_gym.backends.base import PromptableSegmenter  # noqa: E402
from sam_gym.backends.sam import SamBackend  # noqa: E402
from sam_gym.testing import tiny_sam  # noqa: E402


def batch_and_loop(backend: PromptableSegmenter, embeddings, logits, grid_hw, mask_hw):
    states, masks = backend.observe_batch(embeddings, logits, grid_hw, mask_hw)
    pairs = [backend.observe(e, m, grid_hw, mask_hw) for e, m in zip(embeddings, logits, strict=True)]
    return states, masks, np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def items(backend: PromptableSegmenter, sizes: list[tuple[int, int]], with_logits: list[bool], seed: int = 0):
    """Embeddings of random images of ``sizes`` and, where asked, the logits of one decoded click."""
    rng = np.random.default_rng(seed)
    embeddings, logits = [], []
    for (h, w), given in zip(sizes, with_logits, strict=True):
        embedding = backend.encode(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        embeddings.append(embedding)
        point = np.array([[w / 3, h / 2]], dtype=np.float32)
        logits.append(backend.decode(embedding, point, np.array([1])).logits() if given else None)
    return embeddings, logits


@pytest.fixture(scope="module")
def tiny() -> SamBackend:
    return SamBackend(model=tiny_sam(0), device="cpu")


SIZES = [(60, 90), (60, 90), (90, 60), (64, 64), (60, 90)]


@pytest.mark.parametrize("grid_hw", [(4, 5), None])
@pytest.mark.parametrize("given", [[True] * 5, [False] * 5, [True, False, True, False, True]])
def test_observe_batch_equals_the_loop_exactly(tiny, grid_hw, given):
    embeddings, logits = items(tiny, SIZES, given)
    states, masks, want_states, want_masks = batch_and_loop(tiny, embeddings, logits, grid_hw, (16, 12))
    assert states.dtype == np.float32 and masks.dtype == np.float32
    assert states.shape == want_states.shape and masks.shape == (5, 16, 12)
    assert np.array_equal(states, want_states) and np.array_equal(masks, want_masks)


def test_observe_batch_of_one_and_its_errors(tiny):
    embeddings, logits = items(tiny, [(60, 90)], [True])
    states, masks, want_states, want_masks = batch_and_loop(tiny, embeddings, logits, (3, 3), (8, 8))
    assert np.array_equal(states, want_states) and np.array_equal(masks, want_masks)
    with pytest.raises(ValueError, match="one length"):
        tiny.observe_batch(embeddings, [None, None], (3, 3), (8, 8))
    with pytest.raises(ValueError, match=r"low_res_logits\[0\]"):
        tiny.observe_batch(embeddings, [np.zeros((1, 5, 5), np.float32)], (3, 3), (8, 8))


def test_observe_batch_resizes_once_per_image_size_without_calling_observe(tiny, monkeypatch):
    import sam_gym.backends.sam as sam_module

    embeddings, logits = items(tiny, SIZES, [True, False, True, True, True])
    resized = []
    original = sam_module.resize_probabilities
    monkeypatch.setattr(sam_module, "resize_probabilities", lambda x, size: resized.append(len(x)) or original(x, size))
    monkeypatch.setattr(tiny, "observe", lambda *a, **k: pytest.fail("observe_batch looped over observe"))
    tiny.observe_batch(embeddings, logits, (4, 5), (16, 12))
    # items with logits by size: (60, 90) items 0 and 4, (90, 60) item 2, (64, 64) item 3; two resizes each
    assert sorted(resized) == [1, 1, 1, 1, 2, 2]


@pytest.mark.parametrize("grid_hw", [(4, 5), None])
def test_stacked_path_of_cuda_equals_the_loop_exactly(tiny, grid_hw):
    """The path taken on CUDA (embeddings stacked, one multiply and pool per size), run on the CPU."""
    from sam_gym.backends.sam import observe_pooled

    embeddings, logits = items(tiny, SIZES, [True, False, True, True, True])
    features = [tiny._features(e) for e in embeddings]
    tensors = [None if m is None else tiny._logits_tensor(m, "m") for m in logits]
    regions = [(tiny.image_region(e, (16, 16)), tiny.image_region(e, (64, 64))) for e in embeddings]
    with torch.inference_mode():
        states, masks = observe_pooled(features, tensors, regions, grid_hw, (16, 12), stack=True)
    _, _, want_states, want_masks = batch_and_loop(tiny, embeddings, logits, grid_hw, (16, 12))
    assert np.array_equal(states, want_states) and np.array_equal(masks, want_masks)
