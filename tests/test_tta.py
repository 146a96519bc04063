"""Tests of test-time adaptation of SAM's mask decoder (agents/tta/: DecoderAdapter, ClickerTTAPolicy).

Offline and fast: a tiny but real ``Sam`` (segment-anything classes, 128-pixel input, 32 channels,
random weights) stands in for ViT-B; the command-line tests register it as the backend ``tiny_sam``
(:data:`sam_gym.testing.TINY_SAM_ENTRY`) for their duration. Points are ``(x, y)`` image pixels;
masks ``(H, W)`` ``[row, col]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from segment_anything.modeling import (  # noqa: E402
    Sam,
)

from agents.clicker import ClickerPolicy  # noqa: E402
from agents.tta import (  # noqa: E402
    CONFIGS,
    ClickerTTAPolicy,
    DecoderAdapter,
    check_adaptable,
    click_label_map,
    erode_cross,
    pseudo_label,
)
from sam_gym import evaluation  # noqa: E402
from sam_gym.backends import BACKENDS  # noqa: E402
from sam_gym.backends.sam import SamBackend  # noqa: E402
from sam_gym.cache import EmbeddingCache  # noqa: E402
from sam_gym.cli import main  # noqa: E402
from sam_gym.data import Sample, SyntheticShapes  # noqa: E402
from sam_gym.envs import SamPromptEnv  # noqa: E402
from sam_gym.evaluation import run_episodes  # noqa: E402
from sam_gym.policies import make_policy  # noqa: E402
from sam_gym.testing import TINY_SAM_ENTRY, tiny_sam  # noqa: E402

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


def _env(backend: SamBackend, dataset: object, target_iou: float = 0.85, **kwargs: object) -> SamPromptEnv:
    """The env of ``ClickerTTAPolicy(target_iou=target_iou)`` (the tiny random SAM never reaches 0.85)."""
    return SamPromptEnv(dataset=dataset, backend=backend, action_mode="point", init_prompts="none",
                        target_iou=target_iou, **kwargs)


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
    policy = make_policy("clicker-tta:R+E+CM", lr=1e-2, target_iou=0.01)
    records = run_episodes(policy, env, [0], seeds=(0,))
    assert len(records[0].ious) < 4
    policy.reset()
    assert not _same(backend, original)  # click-level changes reset, image-level step kept
    policy.close()
    assert _same(backend, original)
    with pytest.raises(ValueError, match="target_iou=0.85"):
        ClickerTTAPolicy("R+U+CM").bind(SamPromptEnv(dataset=dataset, backend=backend, action_mode="point",
                                                     init_prompts="none", max_clicks=4))


def test_none_config_matches_the_plain_clicker(backend: SamBackend, dataset: SyntheticShapes) -> None:
    cache = EmbeddingCache(backend)
    env = SamPromptEnv(dataset=dataset, cache=cache, action_mode="point", init_prompts="none", max_clicks=3,
                       target_iou=0.85)
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
                       init_prompts="none", target_iou=0.85)
    with pytest.raises(ValueError, match="needs a SAM backend"):
        ClickerTTAPolicy("C").bind(env)
    with pytest.raises(ValueError, match="TTA configuration among"):
        make_policy("clicker-tta:X")
    assert make_policy("clicker-tta").config.name == "R+E+CM"


#: The paper's table, in its order: name -> (click level, reset, result mask, click mask).
PAPER_ROWS = {
    "none": (False, False, None, False),
    "R+E+CM": (True, True, "eroded", True),
    "R": (True, True, None, False),
    "C": (True, False, None, False),
    "E": (False, False, "eroded", False),
    "CM": (False, False, None, True),
    "R+CM": (True, True, None, True),
    "R+U+CM": (True, True, "untreated", True),
}


def test_configs_are_the_rows_of_the_papers_table() -> None:
    assert list(CONFIGS) == list(PAPER_ROWS)
    for name, (click_level, reset, result_mask, click_mask) in PAPER_ROWS.items():
        config = CONFIGS[name]
        assert (config.click_level, config.reset, config.result_mask, config.click_mask) == (
            click_level, reset, result_mask, click_mask)
        assert config.image_level == (result_mask is not None or click_mask)


def _adam_steps(policy: ClickerTTAPolicy) -> set[int]:
    assert policy.adapter is not None
    return {int(state["step"]) for state in policy.adapter.optimizer.state.values()}


@pytest.mark.parametrize("image_steps", [None, 2])
def test_one_image_level_step_as_the_paper_two_as_an_option(backend: SamBackend, dataset: SyntheticShapes,
                                                             image_steps: int | None) -> None:
    env = _env(backend, dataset, max_clicks=4, target_iou=0.01)
    kwargs: dict[str, Any] = {} if image_steps is None else {"image_steps": image_steps}
    policy = ClickerTTAPolicy(lr=1e-2, target_iou=0.01, **kwargs)  # R+E+CM
    records = run_episodes(policy, env, [0], seeds=(0,))
    assert len(records[0].ious) < 4  # the image reached the target: its image-level step follows
    policy.reset()  # reset to the image's start (no Adam state yet), then the image-level steps
    assert _adam_steps(policy) == {1 if image_steps is None else image_steps}
    policy.close()


@pytest.mark.parametrize("name", ["E", "CM", "R+CM"])
def test_image_level_rows_adapt_after_successful_images_only(backend: SamBackend, dataset: SyntheticShapes,
                                                             name: str) -> None:
    original = _weights(backend)
    failing = ClickerTTAPolicy(name, lr=1e-2, target_iou=1.0)  # never reached: no image-level step
    run_episodes(failing, _env(backend, dataset, max_clicks=2, target_iou=1.0), [0], seeds=(0,))
    failing.reset()
    assert _same(backend, original)
    failing.close()
    with ClickerTTAPolicy(name, lr=1e-2, target_iou=0.01) as policy:
        run_episodes(policy, _env(backend, dataset, max_clicks=4, target_iou=0.01), [0], seeds=(0,))
        policy.reset()
        assert not _same(backend, original)
        assert _adam_steps(policy) == {1}
    assert _same(backend, original)


def test_click_mask_only_label_is_the_clicks() -> None:
    label = click_label_map((4, 6), np.array([[1.5, 0.5], [5.9, 3.2]]), np.array([1, 0]))
    assert label[0, 1] == 1 and label[3, 5] == 0
    assert (label == -1).sum() == 4 * 6 - 2


def test_half_precision_backend_is_refused(backend: SamBackend) -> None:
    backend.dtype = torch.bfloat16  # what --half gives on a GPU
    with pytest.raises(ValueError, match="float32 SAM backend"):
        check_adaptable(backend)
    with pytest.raises(ValueError, match="float32 SAM backend"):
        ClickerTTAPolicy().check_backend(backend)


# ---------------------------------------------------------------------- the command line
@pytest.fixture()
def tiny_sam_cli(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[float | None, list[list[float]]]]:
    """Register ``--backend tiny_sam``; return what each policy's env and episodes were (filled by the runs)."""
    monkeypatch.setitem(BACKENDS, "tiny_sam", TINY_SAM_ENTRY)
    seen: dict[str, tuple[float | None, list[list[float]]]] = {}
    real = evaluation.run_episodes

    def spy(policy: Any, env: Any, *args: Any, **kwargs: Any) -> list[evaluation.EpisodeRecord]:
        records = real(policy, env, *args, **kwargs)
        config = getattr(policy, "config", None)
        key = f"clicker-tta:{config.name}" if config is not None else type(policy).__name__
        seen[key] = (env.unwrapped.target_iou, [list(r.ious) for r in records])
        return records

    monkeypatch.setattr(evaluation, "run_episodes", spy)
    return seen


def _eval_tiny(out: Path, *policies: str, extra: tuple[str, ...] = ()) -> int:
    argv = ["eval", *(a for p in policies for a in ("--policy", p)), "--dataset", "synthetic-shapes",
            "--episodes", "2", "--max-clicks", "3", "--backend", "tiny_sam", "--out", str(out), *extra]
    return main(argv)


def test_every_configuration_runs_from_the_cli_and_stops_at_the_target(
    tmp_path: Path, tiny_sam_cli: dict[str, tuple[float | None, list[list[float]]]],
) -> None:
    specs = ["clicker-tta", *(f"clicker-tta:{name}" for name in CONFIGS if name != "R+E+CM")]
    assert _eval_tiny(tmp_path / "default", *specs) == 0
    assert {key: target for key, (target, _) in tiny_sam_cli.items()} == {
        f"clicker-tta:{name}": 0.85 for name in CONFIGS}  # the policy's own default: the paper's NoC20@85
    tiny_sam_cli.clear()
    assert _eval_tiny(tmp_path / "low", *specs, "clicker", extra=("--target-iou", "0.01")) == 0
    assert {target for target, _ in tiny_sam_cli.values()} == {0.01}
    assert set(tiny_sam_cli) == {*(f"clicker-tta:{name}" for name in CONFIGS), "ClickerPolicy"}
    stopped = 0
    for _, episodes in tiny_sam_cli.values():
        for ious in episodes:  # each episode ends at the first click that reaches the target, or at the budget
            reached = [k for k, value in enumerate(ious) if value >= 0.01]
            assert len(ious) == (reached[0] + 1 if reached else 3)
            stopped += len(ious) < 3
    assert stopped > 0
    results = json.loads((tmp_path / "low" / "results.json").read_text())
    assert "--target-iou 0.01" in results["command"]


def test_cli_refuses_a_non_sam_backend_before_encoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    def encode(*args: object, **kwargs: object) -> None:
        raise AssertionError("images were encoded before the policies were checked")

    monkeypatch.setattr(evaluation, "prepare_episodes", encode)
    argv = ["eval", "--policy", "clicker", "--policy", "clicker-tta", "--dataset", "synthetic-shapes",
            "--episodes", "2", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "needs a SAM backend" in capsys.readouterr().err
    assert main([*argv, "--target-iou", "1.5"]) == 2
    assert "Expected --target-iou in (0, 1], got 1.5" in capsys.readouterr().err


def test_tta_table_prints_every_row(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "tta_table.py"
    spec = importlib.util.spec_from_file_location("tta_table", path)
    assert spec is not None and spec.loader is not None
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    monkeypatch.setitem(BACKENDS, "tiny_sam", TINY_SAM_ENTRY)
    monkeypatch.setattr(table, "PROTOCOLS", ((0.85, 2), (0.90, 3)))  # the paper's 20 / 30 clicks, cut short
    monkeypatch.setattr("sys.argv", ["tta_table.py", "--dataset", "synthetic-shapes", "--limit", "1",
                                     "--backend", "tiny_sam"])
    table.main()
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.split()}
    for name in CONFIGS:
        assert rows[name].endswith("restored")
