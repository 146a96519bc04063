"""Tests of test-time adaptation of SAM's mask decoder (agents/tta.py: DecoderAdapter, ClickerTTAPolicy).

Offline and fast: a tiny but real ``Sam`` (segment-anything classes, 128-pixel input, 32 channels,
random weights) stands in for ViT-B. Points are ``(x, y)`` image pixels; masks ``(H, W)`` ``[row, col]``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from segment_anything.modeling import (  # noqa: E402
    Sam,
)

from agents.clicker import ClickerPolicy  # noqa: E402
from agents.tta import CONFIGS, ClickerTTAPolicy, DecoderAdapter, erode_cross, pseudo_label  # noqa: E402
from sam_gym.backends.sam import SamBackend  # noqa: E402
from sam_gym.cache import EmbeddingCache  # noqa: E402
from sam_gym.data import Sample, SyntheticShapes  # noqa: E402
from sam_gym.envs import SamPromptEnv  # noqa: E402
from sam_gym.evaluation import run_episodes  # noqa: E402
from sam_gym.policies import make_policy  # noqa: E402
from sam_gym.testing import tiny_sam  # noqa: E402

DIM = 32


def small_sam(seed: int = 0) -> Sam:
    """A real ``Sam`` with a 128-pixel input, 32 channels: (32, 8, 8) embedding, (32, 32) low-res logits."""
    return tiny_sam(seed, img_size=128, dim=DIM, encoder_depth=1, decoder_depth=1)


class _Classes:
    """Synthetic shapes with alternating class ids 1, 2 (for per-class decoders)."""

    name = "classes"

    def __init__(self, n: int) -> None:
        self.base = SyntheticShapes(n=n)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Sample:
        s = self.base[index]
        return Sample(s.image, s.target, s.void, s.image_id, class_id=1 + index % 2)


@pytest.fixture()
def backend() -> SamBackend:
    return SamBackend(model=small_sam(0), device="cpu")


@pytest.fixture()
def dataset() -> SyntheticShapes:
    return SyntheticShapes(n=3)


def _weights(backend: SamBackend) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in backend.model.mask_decoder.state_dict().items()}


def _same(backend: SamBackend, reference: dict[str, torch.Tensor]) -> bool:
    """Bit-for-bit equality of the decoder's tensors with ``reference``."""
    current = backend.model.mask_decoder.state_dict()
    return all(torch.equal(current[k], v) for k, v in reference.items())


def _env(backend: SamBackend, dataset: object, **kwargs: object) -> SamPromptEnv:
    return SamPromptEnv(dataset=dataset, backend=backend, action_mode="point", init_prompts="none", **kwargs)


def test_click_loss_falls_over_adaptation_steps(backend: SamBackend, dataset: SyntheticShapes) -> None:
    sample = dataset[0]
    embedding = backend.encode(sample.image)
    rows, cols = np.nonzero(sample.target)
    brows, bcols = np.nonzero(~sample.target)
    points = np.array([[cols[0] + 0.5, rows[0] + 0.5], [cols[-1] + 0.5, rows[-1] + 0.5],
                       [bcols[0] + 0.5, brows[0] + 0.5]], dtype=np.float32)
    labels = np.array([1, 1, 0])
    adapter = DecoderAdapter(backend, lr=1e-3)
    losses = [adapter.step(lambda: adapter.click_loss(embedding, points, labels, None)) for _ in range(6)]
    assert losses[-1] < losses[0]
    assert all(b <= a + 1e-6 for a, b in zip(losses[:-1], losses[1:], strict=True))
    assert not adapter.is_original()
    adapter.restore_original()
    assert adapter.is_original()
    assert not any(p.requires_grad for p in backend.model.parameters())


def test_reset_mode_restores_weights_bit_for_bit(backend: SamBackend, dataset: SyntheticShapes) -> None:
    original = _weights(backend)
    env = _env(backend, dataset, max_clicks=3)
    policy = ClickerTTAPolicy("R", lr=1e-2)
    run_episodes(policy, env, [0], seeds=(0,))
    assert not _same(backend, original)  # adapted in place during the image: the env decoded with it
    policy.reset()  # the next image starts: the click-level changes are discarded
    assert _same(backend, original)
    run_episodes(policy, env, [1, 2], seeds=(0,))
    policy.close()
    assert _same(backend, original)


def test_continual_mode_keeps_changes_until_close(backend: SamBackend, dataset: SyntheticShapes) -> None:
    original = _weights(backend)
    env = _env(backend, dataset, max_clicks=3)
    sample = dataset[0]
    embedding = backend.encode(sample.image)
    points, labels = np.array([[80.5, 60.5]], dtype=np.float32), np.array([1])
    before = backend.decode(embedding, points, labels).low_res_logits.clone()
    with ClickerTTAPolicy("C", lr=1e-2) as policy:
        run_episodes(policy, env, [0, 1], seeds=(0,))
        policy.reset()
        assert not _same(backend, original)
        after = backend.decode(embedding, points, labels).low_res_logits  # the backend's own decode is adapted
        assert not torch.equal(before, after)
    assert _same(backend, original)
    assert torch.equal(backend.decode(embedding, points, labels).low_res_logits, before)


def test_image_level_step_persists_across_images_in_reset_mode(backend: SamBackend, dataset: SyntheticShapes) -> None:
    original = _weights(backend)
    # target_iou reachable at once: every image ends before its budget, so the image-level step runs.
    env = _env(backend, dataset, max_clicks=4, target_iou=0.01)
    policy = make_policy("clicker-tta:R+E+CM", lr=1e-2)
    records = run_episodes(policy, env, [0], seeds=(0,))
    assert len(records[0].ious) < 4
    policy.reset()
    assert not _same(backend, original)  # click-level changes reset, image-level step kept
    policy.close()
    assert _same(backend, original)
    with pytest.raises(ValueError, match="target_iou"):
        ClickerTTAPolicy("R+U+CM").bind(_env(backend, dataset, max_clicks=4))


def test_none_config_matches_the_plain_clicker(backend: SamBackend, dataset: SyntheticShapes) -> None:
    cache = EmbeddingCache(backend)
    env = SamPromptEnv(dataset=dataset, cache=cache, action_mode="point", init_prompts="none", max_clicks=3)
    plain = run_episodes(ClickerPolicy(), env, [0, 1], seeds=(0,))
    with ClickerTTAPolicy("none") as policy:
        tta = run_episodes(policy, env, [0, 1], seeds=(0,))
    assert [r.ious for r in plain] == [r.ious for r in tta]


def test_per_class_decoders(backend: SamBackend) -> None:
    original = _weights(backend)
    env = _env(backend, _Classes(2), max_clicks=3)
    policy = ClickerTTAPolicy("C", lr=1e-2, per_class=True)
    run_episodes(policy, env, [0], seeds=(0,))  # class 1
    policy.reset()
    class_one = _weights(backend)
    assert not _same(backend, original)
    adapter = policy.adapter
    assert adapter is not None
    adapter.select(2)  # an unseen class starts from the original decoder
    assert _same(backend, original)
    adapter.select(1)
    assert _same(backend, class_one)
    policy.close()
    assert _same(backend, original)


def test_erosion_shrinks_a_square_by_five_pixels_per_side() -> None:
    mask = np.zeros((40, 50), dtype=bool)
    mask[10:30, 15:35] = True  # 20 x 20
    eroded = erode_cross(mask, 5)
    expected = np.zeros_like(mask)
    expected[15:25, 20:30] = True  # 10 x 10: 5 pixels off every side
    assert np.array_equal(eroded, expected)
    one = erode_cross(mask, 1)
    assert one[11, 16] and not one[10, 16] and not one[11, 15]  # the cross kernel: 1 pixel per side
    label = pseudo_label(mask, np.array([[15.5, 10.5], [2.5, 2.5]]), np.array([1, 0]), "eroded")
    assert label[20, 25] == 1 and label[20, 42] == 0
    assert label[20, 47] == -1  # the background is eroded from the image border too (as wseseg)
    assert label[10, 20] == -1 and label[8, 20] == -1  # the band on both sides of the boundary is unlabelled
    assert label[10, 15] == 1 and label[2, 2] == 0  # clicks written over the mask
    untreated = pseudo_label(mask, np.zeros((0, 2)), np.zeros(0), "untreated", click_mask=False)
    assert np.array_equal(untreated, mask.astype(np.int8))


def test_bind_requires_a_sam_backend() -> None:
    env = SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs={"n": 1}, action_mode="point",
                       init_prompts="none")
    with pytest.raises(ValueError, match="needs a SAM backend"):
        ClickerTTAPolicy("C").bind(env)
    with pytest.raises(ValueError, match="TTA configuration among"):
        make_policy("clicker-tta:X")
    assert set(CONFIGS) >= {"none", "R+E+CM", "C", "R+U+CM"}
    assert make_policy("clicker-tta").config.name == "R+E+CM"
