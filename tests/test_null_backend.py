"""The ``null`` backend: SAM's shapes, fixed outputs, no cost; labelled a measuring stub wherever reported."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

import sam_gym  # noqa: F401  (registers the envs)
from sam_gym.backends import BACKENDS, make_backend
from sam_gym.backends.null import NULL_LOGIT, NullBackend
from sam_gym.cache import EmbeddingCache
from sam_gym.data import make_dataset
from sam_gym.reporting import build_results, results_markdown


def test_registered_and_labelled_as_a_stub_not_a_segmenter():
    backend = make_backend("null")
    assert isinstance(backend, NullBackend) and not backend.is_sam
    assert "NOT a segmenter" in backend.description and "stub" in BACKENDS["null"].help
    assert "NOT a segmenter" in BACKENDS["null"].help
    with pytest.raises(ValueError, match="Expected no checkpoint, device or half with backend 'null'"):
        make_backend("null", checkpoint="random")


def test_sam_shapes_and_fixed_outputs():
    backend = NullBackend()
    image = np.zeros((40, 56, 3), np.uint8)
    emb = backend.encode(image)
    assert emb.features.shape == (256, 64, 64) and emb.image_size == (40, 56) and not emb.features.any()
    one = backend.decode(emb, np.array([[1.0, 2.0]]), np.array([1]))
    three = backend.decode(emb, np.array([[1.0, 2.0]]), np.array([1]), mask_input=one.logits(), multimask=True)
    assert len(one) == 1 and len(three) == 3
    assert one.low_res_logits.shape == (1, 256, 256) and three.low_res_logits.shape == (3, 256, 256)
    assert (three.low_res_logits == NULL_LOGIT).all() and three.mask().shape == (40, 56) and not three.mask().any()
    assert backend.encode(image).features is emb.features  # one shared, read-only array: no cost per image
    with pytest.raises(ValueError):
        emb.features[0, 0, 0] = 1.0
    state, mask = backend.observe(emb, None, (10, 10), (64, 64))
    assert state.shape == (256, 10, 10) and mask.shape == (64, 64) and (mask == 1.0).all()
    state, mask = backend.observe(emb, one.logits(), None, (8, 8))
    assert state.shape == (256, 64, 64) and np.allclose(mask, 1.0 / (1.0 + np.exp(-NULL_LOGIT)))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        backend.encode(np.zeros((40, 56), np.uint8))


def test_torch_outputs_on_a_device_like_sam():
    torch = pytest.importorskip("torch")
    backend = NullBackend(device="cpu")
    emb = backend.encode(np.zeros((40, 56, 3), np.uint8))
    assert isinstance(emb.features, torch.Tensor) and tuple(emb.features.shape) == (1, 256, 64, 64)
    pred = backend.decode(emb, np.array([[1.0, 2.0]]), np.array([1]), multimask=True)
    assert isinstance(pred.low_res_logits, torch.Tensor) and tuple(pred.logits().shape) == (1, 256, 256)
    assert pred.low_res_logits.device == backend.device and pred.mask().shape == (40, 56)


def test_env_runs_on_it_and_pickles():
    env = gym.make("SamPrompt-v0", backend="null", dataset_kwargs={"n": 2})
    obs, info = env.reset(seed=0)
    assert info["backend"] == "null" and obs["state"].shape == (256 * 100,)
    obs, reward, terminated, truncated, info = env.step(3)
    assert info["iou"] == 0.0 and not terminated
    restored = pickle.loads(pickle.dumps(env))
    np.testing.assert_array_equal(restored.step(4)[0]["state"], env.step(4)[0]["state"])


def test_disk_cache_round_trip(tmp_path):
    backend = NullBackend()
    image = np.zeros((40, 56, 3), np.uint8)
    EmbeddingCache(backend, cache_dir=tmp_path).get(image)
    fresh = EmbeddingCache(backend, cache_dir=tmp_path)
    emb = fresh.get(image)
    assert fresh.stats.disk_hits == 1 and emb.image_size == (40, 56) and emb.features.shape == (256, 64, 64)


def test_reports_say_not_sam():
    backend = NullBackend()
    from sam_gym.evaluation import compare_policies
    from sam_gym.policies import make_policy

    runs = compare_policies({"random": make_policy("random")}, make_dataset("synthetic-shapes", n=1),
                            EmbeddingCache(backend), max_clicks=2, grid=(4, 4), indices=[0], seeds=[0])
    results = build_results(runs, backend=backend, dataset="synthetic-shapes", max_clicks=2, command="test")
    text = results_markdown(results)
    assert "NOT SAM" in text and "NOT a segmenter" in text


@pytest.mark.parametrize("kwargs", [{"embedding_shape": (256, 64)}, {"low_res_shape": (0, 256)}])
def test_bad_shapes(kwargs):
    with pytest.raises(ValueError, match="Expected embedding_shape"):
        NullBackend(**kwargs)


def test_null_batched_methods_equal_the_loops_without_per_item_arrays():
    backend = NullBackend()
    embeddings = [backend.encode(np.zeros((32, 48, 3), np.uint8)) for _ in range(3)]
    logits = [None, backend.decode(embeddings[1], np.zeros((1, 2)), np.ones(1)).logits(), None]
    for given in (logits, [None] * 3):
        states, masks = backend.observe_batch(embeddings, given, (4, 4), (8, 8))
        pairs = [backend.observe(e, m, (4, 4), (8, 8)) for e, m in zip(embeddings, given, strict=True)]
        assert np.array_equal(states, np.stack([p[0] for p in pairs]))
        assert np.array_equal(masks, np.stack([p[1] for p in pairs]))
        assert not states.flags.writeable  # a broadcast view of the one fixed state, not B copies
    predictions = backend.decode_batch(embeddings, [np.zeros((1, 2))] * 3, [np.ones(1)] * 3, multimask=True)
    assert all(p is predictions[0] for p in predictions) and len(predictions[0]) == 3
    assert not predictions[0].mask().flags.writeable and predictions[0].best == 0
