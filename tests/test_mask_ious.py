"""The full-resolution IoU of a batch (``best_mask_ious``) equals ``metrics.iou`` of each mask, on every path.

On CUDA, SAM and SAM 2 upsample and count a batch on their device, one upsampling per image size and
no mask copied to the host (checked here on CPU tensors with ``stack=True``, random weights); on the
CPU they count ``prediction.mask()`` on the host, as the default does. Every path must equal
:func:`sam_gym.metrics.iou` exactly, void excluded, for single and multimask predictions (where the
best proposal is not the first), over images of different sizes.
"""

from __future__ import annotations

import numpy as np
import pytest

from sam_gym.backends.base import Prediction
from sam_gym.backends.classical import ClassicalBackend
from sam_gym.backends.mask_iou import device_ious, device_reference, host_ious, host_reference
from sam_gym.backends.null import NullBackend
from sam_gym.metrics import iou

torch = pytest.importorskip("torch")

SIZES = [(60, 90), (90, 60), (60, 90), (64, 64), (60, 90)]


def ground_truth(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A random disc target and a void of two rows: one at random, one through the disc (so void cuts the target)."""
    yy, xx = np.mgrid[:h, :w]
    cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, rng.uniform(0.2, 0.4) * min(h, w)
    target = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    void = (yy == int(rng.integers(h))) | (yy == int(cy))
    return target, void


def batch(backend, seed: int = 0):
    """Predictions of one or two clicks per image (multimask for odd items) and their ground truths."""
    rng = np.random.default_rng(seed)
    predictions, truths = [], []
    for k, (h, w) in enumerate(SIZES):
        embedding = backend.encode(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        points = rng.uniform(0, 1, (1 + k % 2, 2)) * [w, h]
        prediction = backend.decode(embedding, points.astype(np.float32), np.arange(len(points)) % 2,
                                    multimask=bool(k % 2))
        if len(prediction) == 3:  # make the best proposal another than the first, whatever the random weights say
            scores = np.roll(np.sort(prediction.scores), k % 3)
            prediction = Prediction(scores, prediction.low_res_logits, prediction.full_mask)
        predictions.append(prediction)
        truths.append(ground_truth(rng, h, w))
    return predictions, truths


def check(backend, predictions, truths) -> np.ndarray:
    references = [backend.iou_reference(t, v) for t, v in truths]
    got = backend.best_mask_ious(predictions, references)
    assert got.dtype == np.float64 and got.shape == (len(predictions),)
    want = [iou(p.mask(), t, v) for p, (t, v) in zip(predictions, truths, strict=True)]
    assert got.tolist() == want
    assert host_ious(predictions, [host_reference(t, v) for t, v in truths]).tolist() == want
    return got


def device_backends():
    out = []
    try:
        from sam_gym.testing import tiny_sam_backend

        out.append(pytest.param(lambda: tiny_sam_backend(0), id="sam"))
    except ImportError:  # pragma: no cover - depends on the installation
        pass
    try:
        from test_sam2_backend import small_model

        from sam_gym.backends.sam2 import Sam2Backend

        out.append(pytest.param(lambda: Sam2Backend("sam2.1_hiera_t", model=small_model(0), device="cpu"),
                                id="sam2"))
    except ImportError:  # pragma: no cover - depends on the installation
        pass
    return out


@pytest.fixture(params=device_backends(), scope="module")
def device_backend(request):
    return request.param()


def test_device_ious_equal_metrics_iou_with_one_upsampling_per_size_and_no_host_mask(device_backend, monkeypatch):
    predictions, truths = batch(device_backend)
    assert {p.best for p in predictions} != {0}, "the multimask items should pick other proposals too"
    references = [device_reference(t, v, device_backend.device) for t, v in truths]  # what CUDA's look like
    calls = []
    cls = type(predictions[0].full_mask)
    original = cls.masks
    monkeypatch.setattr(cls, "masks", lambda self, logits: calls.append(len(logits)) or original(self, logits))
    got = device_ious(predictions, references, stack=True)  # what CUDA does
    assert sorted(calls) == [1, 1, 3]  # three (60, 90) items, one (90, 60), one (64, 64)
    calls.clear()
    one_by_one = device_ious(predictions, references)  # tensors on the CPU: one item per upsampling
    assert calls == [1] * 5
    assert all(not p._masks for p in predictions), "a mask went to the host"
    monkeypatch.undo()
    assert got.tolist() == one_by_one.tolist() == check(device_backend, predictions, truths).tolist()
    assert len(set(got.tolist())) > 1, "the IoUs should differ (a test of counting, not of constants)"


def test_on_the_cpu_sam_counts_on_the_host(device_backend):
    """On the CPU the backend's references are host arrays, so best_mask_ious is the host loop (no torch counting)."""
    predictions, truths = batch(device_backend)
    references = [device_backend.iou_reference(t, v) for t, v in truths]
    assert all(isinstance(r.valid, np.ndarray) for r in references)
    check(device_backend, predictions, truths)


def test_device_ious_count_foreign_items_on_the_host(device_backend):
    """An item the device cannot batch (a host prediction, or a host reference) is counted on the host."""
    predictions, truths = batch(device_backend)
    classical = ClassicalBackend()
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    host = classical.decode(classical.encode(image), np.array([[40.0, 30.0]], dtype=np.float32), np.array([1]))
    host_truth = ground_truth(rng, 60, 90)
    references = [device_reference(t, v, device_backend.device) for t, v in truths]
    mixed = [predictions[0], host, predictions[1], predictions[2]]
    refs = [references[0], host_reference(*host_truth), host_reference(*truths[1]), references[2]]
    got = device_ious(mixed, refs, stack=True)
    want = [iou(p.mask(), t, v) for p, (t, v) in zip(mixed, [truths[0], host_truth, truths[1], truths[2]],
                                                     strict=True)]
    assert got.tolist() == want


def test_host_ious_of_the_default_backend_and_an_empty_union():
    backend = ClassicalBackend()
    predictions, truths = batch(backend)
    check(backend, predictions, truths)
    # an empty mask (the null backend's) and an empty target: the union is empty, IoU 1 as metrics.iou says
    null = NullBackend()
    empty = null.decode(null.encode(np.zeros((10, 12, 3), np.uint8)), np.array([[1.0, 1.0]], np.float32), np.array([1]))
    nothing, void = np.zeros((10, 12), dtype=bool), np.eye(10, 12, dtype=bool)
    got = backend.best_mask_ious([empty], [backend.iou_reference(nothing, void)])
    assert got.tolist() == [iou(empty.mask(), nothing, void)] == [1.0]


@pytest.mark.parametrize("path", ["cpu", "as_on_cuda"])
def test_env_info_iou_on_sam_is_metrics_iou_of_the_episode_mask(path):
    """End to end: the vector env's info["iou"] (one best_mask_ious call per step) is the IoU of each sub-env's mask.

    ``as_on_cuda`` runs CUDA's path on CPU tensors: references on the device, items stacked per size.
    """
    pytest.importorskip("segment_anything")
    from sam_gym.data import SyntheticShapes
    from sam_gym.envs.vector_env import SamPromptVectorEnv
    from sam_gym.testing import tiny_sam_backend

    backend = tiny_sam_backend(0, encoder_depth=1)
    if path == "as_on_cuda":
        backend.iou_reference = lambda target, void: device_reference(target, void, backend.device)
        backend.best_mask_ious = lambda predictions, references: device_ious(predictions, references, stack=True)
    envs = SamPromptVectorEnv(3, dataset=SyntheticShapes(n=4), backend=backend, max_clicks=4)
    _, info = envs.reset(seed=0)
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(4):
        for i, env in enumerate(envs.envs):
            view = env.episode_view()
            assert info["iou"][i] == iou(view.mask, view.sample.target, view.sample.void)
            seen.append(info["iou"][i])
        _, _, _, _, info = envs.step(rng.integers(0, 100, size=3))
    assert len(set(seen)) > 1
    kinds = {type(r.valid) for r in envs.core.state.iou_refs if r is not None}
    assert kinds == ({torch.Tensor} if path == "as_on_cuda" else {np.ndarray})
