"""The env as other RL libraries use it: TorchRL's GymWrapper and ActionMask, RecordVideo, the README recipes.

Each library test skips cleanly when its optional extra is absent (``sam-gym[torchrl]``,
``sam-gym[video]``).
"""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import sam_gym  # noqa: F401  (registers the envs)

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## Other RL libraries (RLlib, Tianshou, PufferLib, TorchRL)"
#: Optional modules a README block imports, with the extra that installs them.
OPTIONAL = {"torchrl": "torchrl"}


def _blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(HEADING) + len(HEADING)
    end = text.find("\n## ", start)
    return re.findall(r"^```python\n(.*?)^```$", text[start:end], flags=re.MULTILINE | re.DOTALL)


def test_readme_section_covers_the_conventions() -> None:
    code = "\n".join(_blocks())
    assert len(_blocks()) == 3
    for needle in ('action_mask="both"', 'action_mask="obs"', "gym.make_vec", 'call("action_masks")',
                   "ActionMaskObservation", 'rest="obs", mask="mask"', 'rest="observations", mask="action_mask"',
                   "GymWrapper", "ActionMask()"):
        assert needle in code, needle


@pytest.mark.parametrize("number", range(3))
def test_readme_block_runs(number: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = _blocks()[number]
    for module, extra in OPTIONAL.items():
        if re.search(rf"^(from|import) {module}\b", body, flags=re.MULTILINE):
            pytest.importorskip(module, reason=f'pip install "sam-gym[{extra}]"')
    monkeypatch.chdir(tmp_path)
    exec(compile(body, f"README {HEADING!r} block {number + 1}", "exec"), {"__name__": "__readme__"})  # noqa: S102


def test_torchrl_rollout_with_action_mask_never_repeats_a_patch() -> None:
    pytest.importorskip("torchrl", reason='pip install "sam-gym[torchrl]"')
    from torchrl.envs import GymWrapper, TransformedEnv
    from torchrl.envs.transforms import ActionMask
    from torchrl.envs.utils import check_env_specs

    # 4 patches, 4 clicks: uniformly random clicks repeat one with probability 1 - 4!/4^4 = 0.91
    env = GymWrapper(gym.make("SamPrompt-v0", action_mask="obs", grid=(2, 2), max_clicks=4,
                              dataset_kwargs={"n": 3}))
    check_env_specs(env, seed=0)
    env = TransformedEnv(env, ActionMask())
    for seed in range(3):
        env.set_seed(seed)
        rollout = env.rollout(10)
        patches = rollout["action"].argmax(-1).tolist()
        assert len(patches) == 4 and sorted(patches) == [0, 1, 2, 3]  # the budget ends the episode
        masks = rollout["action_mask"].bool()
        assert bool(masks[np.arange(4), patches].all())  # every action was allowed when taken
        assert rollout["next", "truncated"][-1].item() and not rollout["next", "truncated"][:-1].any()
        rewards = rollout["next", "reward"].squeeze(-1)
        assert set(rewards.tolist()) <= {-1.0, 0.0, 1.0}


def test_record_video_writes_an_episode(tmp_path: Path) -> None:
    pytest.importorskip("moviepy", reason='pip install "sam-gym[video]"')
    from gymnasium.wrappers import RecordVideo

    env = RecordVideo(gym.make("SamPrompt-v0", render_mode="rgb_array", max_clicks=3, dataset_kwargs={"n": 2}),
                      str(tmp_path / "videos"), episode_trigger=lambda episode: True, disable_logger=True)
    env.reset(seed=0)
    done = False
    while not done:
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        done = terminated or truncated
    env.close()
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["rl-video-episode-0.mp4"] and videos[0].stat().st_size > 0
