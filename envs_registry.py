"""Gymnasium registration of the sam_gym environments.

Installed as a top-level module and imported by ``import sam_gym``; ``gym.make("envs_registry:SamPrompt-v0")``
also works, since Gymnasium imports the module named before the colon. Entry points are strings, so
registering imports nothing heavy. Variants are registered keyword arguments, not subclasses.

Registered configurations:

* ``SamPrompt-v0``: AlignSAM defaults (10x10 patch grid, 15 clicks, +/-1 reward, oracle labels,
  one positive and one negative ground-truth point at reset) on the built-in synthetic shapes with
  the weight-free classical backend.
* ``SamPromptLabel-v0``: the agent chooses location and label, ``MultiDiscrete([100, 2])``.
* ``SamPromptPoint-v0``: continuous normalised ``(x, y)`` plus a label, for exact-pixel policies.
* ``SamPromptIoU-v0``: reward = IoU gain, no initial prompts.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

ENTRY_POINT = "sam_gym.envs.prompt_env:SamPromptEnv"
#: ``gym.make_vec(env_id, num_envs=n)``: one batched decoder call for all sub-envs per step.
VECTOR_ENTRY_POINT = "sam_gym.envs.vector_env:SamPromptVectorEnv"

VARIANTS: dict[str, dict[str, object]] = {
    "SamPrompt-v0": {},
    "SamPromptLabel-v0": {"action_mode": "patch_label"},
    "SamPromptPoint-v0": {"action_mode": "point"},
    "SamPromptIoU-v0": {"reward": "iou_gain", "init_prompts": "none"},
}


def register_envs() -> None:
    """Register every sam_gym environment id (idempotent)."""
    for env_id, kwargs in VARIANTS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=ENTRY_POINT, vector_entry_point=VECTOR_ENTRY_POINT, kwargs=dict(kwargs))


register_envs()
