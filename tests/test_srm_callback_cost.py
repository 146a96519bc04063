"""The SRM's online updates cost no full-resolution mask or IoU (the training env's ``info_iou="none"``).

:class:`agents.alignsam.srm.SRMCallback` feeds ``env.episode_view()`` to ``Recalibrator.update``
after every step; the SRM reads the view's low-res logits, prompts and ground truth only, and the
view computes its full-resolution ``mask`` and ``iou`` only when they are read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")

from agents.alignsam.srm import Recalibrator, SRMConfig  # noqa: E402
from sam_gym.backends.base import Prediction  # noqa: E402
from sam_gym.data import make_dataset  # noqa: E402
from sam_gym.envs import SamPromptEnv  # noqa: E402
from sam_gym.metrics import iou  # noqa: E402


@pytest.fixture()
def full_masks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record every full-resolution mask a prediction computes (not the memoised reads)."""
    computed: list[int] = []
    real = Prediction.mask

    def mask(self: Prediction, k: int | None = None) -> np.ndarray:
        key = self.best if k is None else int(k)
        if key not in self._masks:
            computed.append(key)
        return real(self, k)

    monkeypatch.setattr(Prediction, "mask", mask)
    return computed


def _training_env(**kwargs: Any) -> SamPromptEnv:
    """The env of ``agents.alignsam.training.make_train_env`` (oracle labels, ground-truth initial pair)."""
    return SamPromptEnv(dataset=make_dataset("synthetic-shapes", n=2), max_clicks=4, label_mode="oracle",
                        init_prompts="gt_pair", action_mode="patch", **kwargs)


def test_srm_updates_compute_no_full_resolution_mask(full_masks: list[int]) -> None:
    env = _training_env(info_iou="none")
    srm = Recalibrator(SRMConfig(in_channels=int(env.state_shape[0])), device="cpu", seed=0)
    env.reset(seed=0, options={"index": 0})
    srm.update([env.episode_view()], 1)
    ends = []
    for action in (11, 44, 77, 99):
        _, _, terminated, truncated, info = env.step(action)
        srm.update([env.episode_view()], 1)
        ends.append(terminated or truncated)
    assert ends == [False, False, False, True]
    assert len(full_masks) == 1  # the one the env needs for the IoU at the episode's end
    assert "iou" in info


def test_view_mask_and_iou_are_computed_when_read(full_masks: list[int]) -> None:
    env = _training_env(info_iou="none")
    env.reset(seed=0, options={"index": 1})
    env.step(45)
    view = env.episode_view()
    assert full_masks == []
    assert view.prediction is not None
    expected = view.prediction.mask(view.prediction.best)
    assert np.array_equal(view.mask, expected)
    assert view.iou == iou(expected, view.sample.target, view.sample.void)
    full = _training_env()  # info_iou="full": the view carries the env's IoU
    full.reset(seed=0, options={"index": 1})
    _, _, _, _, info = full.step(45)
    assert full.episode_view().iou == info["iou"] == view.iou
