"""SAM 2's batched ``observe_batch`` equals a loop over ``observe`` exactly (random weights, CPU)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from test_sam2_backend import small_model  # noqa: E402
from test_sam_backend_observe_batch import batch_and_loop, items  # noqa: E402

from sam_gym.backends.sam2 import Sam2Backend  # noqa: E402


@pytest.fixture(scope="module")
def small() -> Sam2Backend:
    return Sam2Backend("sam2.1_hiera_t", model=small_model(0), device="cpu")


@pytest.mark.parametrize("grid_hw", [(4, 5), None])
@pytest.mark.parametrize("given", [[True] * 3, [False] * 3, [False, True, True]])
def test_observe_batch_equals_the_loop_exactly(small, grid_hw, given):
    embeddings, logits = items(small, [(60, 90), (90, 60), (60, 90)], given)
    states, masks, want_states, want_masks = batch_and_loop(small, embeddings, logits, grid_hw, (16, 12))
    assert states.shape == want_states.shape and masks.shape == (3, 16, 12)
    assert np.array_equal(states, want_states) and np.array_equal(masks, want_masks)
