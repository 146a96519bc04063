"""The ``MaskablePPO`` model of an AlignSAM run: its arguments, and building it from the spaces alone.

:func:`agents.alignsam.training.build_model` creates it for training (with an env);
:func:`model_for_spaces` rebuilds it without one when a run is loaded
(:func:`agents.alignsam.run_format.load_model`), as SB3's own ``load`` does, but from JSON.
"""

from __future__ import annotations

from typing import Any

from agents.alignsam.config import TrainConfig

__all__ = ["model_for_spaces", "ppo_arguments"]


def ppo_arguments(config: TrainConfig, state_shape: Any) -> dict[str, Any]:
    """``MaskablePPO``'s arguments (the policy: :class:`~agents.alignsam.features.AlignSAMExtractor` + MLP heads).

    The extractor reads ``config.inputs``; actor and critic share it unless ``config.share_features_extractor``
    is ``False`` (then each has its own, as the paper's separate pi and V networks).
    """
    from agents.alignsam.features import AlignSAMExtractor

    policy_kwargs = {
        "features_extractor_class": AlignSAMExtractor,
        "features_extractor_kwargs": {"state_shape": list(state_shape), "inputs": list(config.inputs)},
        "net_arch": {"pi": [256], "vf": [256]},
        "share_features_extractor": config.share_features_extractor,
    }
    return {"learning_rate": config.learning_rate, "n_steps": config.n_steps, "batch_size": config.batch_size,
            "n_epochs": config.n_epochs, "gamma": config.gamma, "gae_lambda": config.gae_lambda,
            "clip_range": config.clip_range, "ent_coef": config.ent_coef, "policy_kwargs": policy_kwargs,
            "seed": config.seed, "verbose": 0}


def model_for_spaces(config: TrainConfig, observation_space: Any, action_space: Any, state_shape: Any,
                     device: str) -> Any:
    """The model of :func:`agents.alignsam.training.build_model` without an env (for ``predict``), as SB3's load does.

    Like ``MaskablePPO.load``, this reseeds torch, numpy and ``random`` with ``config.seed``.
    """
    from sb3_contrib import MaskablePPO

    model = MaskablePPO("MultiInputPolicy", None, device=device, _init_setup_model=False,  # type: ignore[arg-type]
                        **ppo_arguments(config, state_shape))
    model.observation_space, model.action_space, model.n_envs = observation_space, action_space, config.n_envs
    model._setup_model()
    return model
