"""Tests of SAPNet proposal selection: Point Distance Guidance, MIL, fit/save/load, the policy in the env."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from agents.sapnet import (  # noqa: E402
    SAPHead,
    SAPNetPolicy,
    fit,
    load_sapnet,
    mil_loss,
    point_distance_guidance,
    proposal_bag,
    proposal_scores,
    save_sapnet,
)
from sam_gym.backends import make_backend  # noqa: E402
from sam_gym.data.scenes import MultiInstanceScenes  # noqa: E402
from sam_gym.envs import SamPromptEnv  # noqa: E402
from sam_gym.evaluation import run_episodes  # noqa: E402
from sam_gym.policies import make_policy  # noqa: E402
from tests.test_aop import tiny_sam_backend  # noqa: E402


def test_point_distance_guidance_penalises_same_class_neighbours_only() -> None:
    points = np.array([[10.0, 10.0], [30.0, 10.0], [10.0, 30.0]])
    classes = ["cat", "cat", "dog"]
    boxes = np.array([
        [0, 0, 40, 20],  # holds point 0 and its same-class neighbour 1
        [0, 0, 20, 40],  # holds point 0 and point 2 of another class
        [5, 5, 15, 15],  # holds point 0 only
    ], dtype=np.float32)
    factors = point_distance_guidance(boxes, 0, points, classes, power=1.0)
    expected = 1.0 / (1.0 + np.exp(-1.0 / np.sqrt(20.0)))  # sigmoid(1 / dist ** 0.5), dist = 20
    np.testing.assert_allclose(factors, [expected, 1.0, 1.0], rtol=1e-6)
    assert point_distance_guidance(boxes, 0, points, classes)[0] == pytest.approx(expected ** (1 / 64), rel=1e-6)


def test_mil_loss_falls_and_selects_the_distinct_proposal() -> None:
    torch.manual_seed(0)
    features = torch.zeros(4, 32, 32)
    features[0, 4:12, 4:12] = 3.0  # class 0 objects look like channel 0, class 1 like channel 1
    features[1, 20:28, 20:28] = 3.0
    features[2] = 0.1 * torch.randn(32, 32)
    good0, good1, other = [4, 4, 12, 12], [20, 20, 28, 28], [0, 16, 8, 30]
    boxes = torch.tensor([[good0, other, [2, 2, 30, 30]], [other, good1, [14, 14, 30, 30]]], dtype=torch.float32)
    labels = torch.tensor([0, 1])
    head = SAPHead(4, 3, hidden=32, roi_size=3)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        cls_logits, ins_logits = head(features, boxes)
        loss = mil_loss(proposal_scores(cls_logits, ins_logits, torch.ones(2, 3)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        scores = proposal_scores(*head(features, boxes), torch.ones(2, 3))
    assert int(scores[0, :, 0].argmax()) == 0 and int(scores[1, :, 1].argmax()) == 1


@pytest.fixture(scope="module")
def classical_model() -> object:
    backend = make_backend("classical")
    model, losses = fit(backend, MultiInstanceScenes(n=2, size=(48, 64), seed=1).scenes(), epochs=3, n_negative=1)
    assert len(losses) == 3 and all(np.isfinite(losses))
    return model


def test_proposal_bag_has_six_proposals_with_boxes() -> None:
    backend = make_backend("classical")
    sample = MultiInstanceScenes(n=1, size=(48, 64)).scenes()[0]
    bag = proposal_bag(backend, backend.encode(sample.image), (20.5, 20.5))
    assert bag.masks.shape == (6, 48, 64) and bag.boxes.shape == (6, 4) and bag.scores.shape == (6,)
    for mask, (x0, y0, x1, y1) in zip(bag.masks, bag.boxes, strict=True):
        if mask.any():
            rows, cols = np.nonzero(mask)
            assert (x0, y0, x1, y1) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


def test_save_load_round_trip_and_errors(classical_model: object, tmp_path: Path) -> None:
    path = save_sapnet(classical_model, tmp_path / "sap")
    loaded = load_sapnet(path, make_backend("classical"))
    assert loaded.config == classical_model.config
    for key, value in classical_model.head.state_dict().items():
        torch.testing.assert_close(loaded.head.state_dict()[key], value)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "sapnet.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot be read"):
        load_sapnet(tmp_path / "bad")
    with pytest.raises(FileNotFoundError):
        load_sapnet(tmp_path / "none")
    assert isinstance(make_policy(f"sapnet:{tmp_path / 'sap'}"), SAPNetPolicy)


def test_sapnet_policy_runs_in_env_on_classical(classical_model: object) -> None:
    env = SamPromptEnv(dataset=MultiInstanceScenes(n=1, size=(48, 64), seed=5), action_mode="point",
                       init_prompts="none", max_clicks=3)
    policy = SAPNetPolicy(model=classical_model)
    records = run_episodes(policy, env, [0, 1])
    assert len(records) == 2 and all(len(r.ious) == 3 for r in records)
    assert all(r.labels[0] == 1 for r in records) and policy.selected_mask is not None
    target = env.dataset[1].target
    x, y = records[1].points[0]
    assert target[int(y), int(x)]  # the annotated point lies on the instance


def test_sapnet_correction_click_steers_to_the_selected_proposal(classical_model: object) -> None:
    env = SamPromptEnv(dataset=MultiInstanceScenes(n=1, size=(48, 64), seed=5), action_mode="point",
                       init_prompts="none", max_clicks=4)
    policy = SAPNetPolicy(model=classical_model)
    policy.bind(env)
    obs, _ = env.reset(seed=0, options={"index": 0})
    policy.reset()
    obs, *_ = env.step(policy.act(obs, deterministic=True))
    current = env.episode_view().mask
    height, width = current.shape
    # The selected proposal = the env mask with a 9 x 9 block flipped (the largest disagreement) and one
    # flipped pixel (a smaller one): the click goes to the centre of the block, labelled as the proposal there.
    selected = current.copy()
    selected[10:19, 20:29] = ~selected[10:19, 20:29]
    selected[40, 5] = ~selected[40, 5]
    policy.selected_mask = selected
    action = policy.act(obs, deterministic=True)
    row, col = int(action[1] * height), int(action[0] * width)
    assert (row, col) == (14, 24)
    assert action[2] == float(selected[row, col])
    np.testing.assert_allclose(action[:2], [(col + 0.5) / width, (row + 0.5) / height], rtol=1e-6)
    policy.selected_mask = current.copy()  # agreement: the last click is repeated
    np.testing.assert_array_equal(policy.act(obs, deterministic=True), action)


def test_sapnet_fits_and_runs_on_tiny_random_sam() -> None:
    backend = tiny_sam_backend()
    scenes = MultiInstanceScenes(n=2, size=(48, 64), seed=1).scenes()
    model, losses = fit(backend, scenes, epochs=2, n_negative=1, class_mode="agnostic")
    assert model.config.classes == ("object", "__background__") and len(losses) == 2
    env = SamPromptEnv(dataset=MultiInstanceScenes(n=1, size=(48, 64), seed=5), backend=backend,
                       action_mode="point", init_prompts="none", max_clicks=2)
    records = run_episodes(SAPNetPolicy(model=model), env, [0])
    assert len(records[0].ious) == 2
