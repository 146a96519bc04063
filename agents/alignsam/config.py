"""The arguments of an AlignSAM training run (CleanRL style: one dataclass, one docstring per field).

Each field's docstring says what the paper (AlignSAM, CVPR 2024, section 3 and Algorithm 1) does and,
where the default differs, why. ``TrainConfig.preset("paper")`` (``sam-gym train --preset paper``)
is the paper's whole setting: one episode per PPO update for E = 50 episodes, Monte-Carlo returns
(GAE lambda 1), the eq. 4 state only, separate actor and critic networks, the paper's SRM input,
no SRM warm-up (see ``PRESETS``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ALL_INPUTS", "PRESETS", "SRM_MODES", "TrainConfig"]

#: Recalibration-module variants: the paper's two branches, and the "w/o SRM" ablation.
SRM_MODES = ("implicit", "explicit", "none")
#: The observation keys the agent can read (``SamPrompt-v0``'s ``Dict`` observation); ``state`` is eq. 4.
ALL_INPUTS = ("state", "mask", "clicks", "clicked")
#: Fields added after runs were first saved in this format, with the value that reproduces how a run
#: saved without the field was made (its ``config.json`` loads with it): before ``half`` every run was
#: float32, before ``inputs`` the agent read every key, and so on. New runs get the field's default.
_ADDED_FIELDS: dict[str, Any] = {
    "half": False,
    "inputs": ALL_INPUTS,
    "train_labels": "oracle",
    "train_split": "first",
    "split_seed": 0,
    "share_features_extractor": True,
    "srm_q_per_action": False,
    "srm_fusion": "late",
}


@dataclass
class TrainConfig:
    """Everything :func:`agents.alignsam.training.train` needs; saved as ``DIR/config.json``."""

    dataset: str = "synthetic-clutter"
    """``"synthetic-shapes"`` or a folder with ``images/`` and ``masks/`` (see ``sam_gym.data.make_dataset``)."""
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra dataset arguments, e.g. ``{"n": 200}`` for more synthetic shapes, ``{"void_values": [255]}``."""
    backend: str = "classical"
    """Segmenter: ``"classical"`` (weight-free, NOT SAM, the offline default) or ``sam_vit_b`` etc."""
    checkpoint: str | None = None
    """SAM weights: a path, ``"auto"`` (download) or ``"random"`` (tests only); ``None`` for classical."""
    half: bool = False
    """SAM's image encoder and mask decoder in bf16 on a GPU (``--half``; the embeddings the agent is trained
    on, so evaluate it with the same precision: the backend's ``model_id`` says which)."""
    n_train: int = 50
    """Training images (paper: 50 per task); the rest of the dataset is held out. ``n_train`` equal to
    the dataset's size trains on all of it (e.g. a folder of exactly 50 images; evaluate on another)."""
    train_split: Literal["random", "first"] = "random"
    """Which samples train: ``"random"`` (the paper's 50 random samples; a subset drawn with
    ``split_seed``, recorded in ``config.json``) or ``"first"`` (the first ``n_train``, how runs were
    split before this option)."""
    split_seed: int = 0
    """Seed of the ``"random"`` training subset; separate from ``seed`` so that runs of several training
    seeds share one split (and one held-out set)."""
    timesteps: int = 20_000
    """Total environment steps (clicks) of PPO training. Paper (Algorithm 1): E = 50 episodes of T = 15
    clicks, one PPO update after each, i.e. 750 steps (``preset("paper")``). Default 20 000 (about 27
    updates of 750 steps): a larger budget for the larger rollouts of the default schedule, not measured
    better (see ``n_steps``)."""
    seed: int = 0
    """Seeds torch, numpy, the envs (``reset(seed=seed + i)``) and the SRM initialisation."""
    out: str = "runs/alignsam"
    """Run folder: ``config.json``, the checkpoint folder it names (model and SRM weights), ``tb/``."""
    srm: Literal["implicit", "explicit", "none"] = "implicit"
    """Semantic Recalibration Module branch: ``"implicit"`` (state only; blur, saliency, glass),
    ``"explicit"`` (adds a CLIP-Surgery text map; shadow, PASCAL classes) or ``"none"`` (the paper's
    w/o-SRM ablation: all clicks positive, no initial prompts at evaluation)."""
    text: str = ""
    """Text prompt of the explicit branch (e.g. ``"a photo of a cat"``); required with ``srm="explicit"``."""
    clip_model: str = "ViT-B-16"
    """open_clip architecture of CLIP-Surgery (``"tiny"``: a small random model for tests only)."""
    clip_pretrained: str = "openai"
    """open_clip pretrained tag (downloaded when online), a local checkpoint path, or ``"random"`` (tests only)."""
    q_updates: int | None = None
    """SRM optimiser steps after each action; ``None``: the paper's 1 (implicit) / 5 (explicit)."""
    srm_q_per_action: bool = True
    """Take ``q`` SRM steps per action, i.e. ``q * n_envs`` per vector step (the paper's "after each
    action"); ``False`` is ``q`` per vector step, how runs were trained before this option."""
    srm_fusion: Literal["early", "late"] = "early"
    """Explicit branch only: ``"early"`` is the paper's aggregation (three convolutions over both states
    ``s_c`` and ``s_t``, self-attention, two convolutions, then the head); ``"late"`` runs ``s_c`` and
    ``s_t`` through separate stacks and joins them at the head (how explicit runs were built before)."""
    srm_lr: float = 1e-3
    """Adam learning rate of the SRM (not given in the paper)."""
    srm_context: bool = True
    """Give the SRM four context channels (feature distances to the mask's inside / outside means and to
    the prompts' features; see ``agents.alignsam.srm.SRMConfig``). Not in the paper: a listed deviation,
    on for every backend; its held-out label-accuracy gain was measured on the classical backend only
    (``docs/alignsam.md``), not on SAM. ``False`` (``--no-srm-context``, ``preset("paper")``) is the paper's input."""
    srm_warmup_steps: int = 400
    """Supervised SRM steps (minibatch 16) on the training split before PPO starts (not in the paper, which
    trains the SRM online only; 0 disables, as ``preset("paper")`` does). On for every backend, measured on
    the classical backend only. The online updates during PPO follow as in the paper."""
    srm_warmup_episodes: int = 2
    """Warm-up episodes per training image (``Recalibrator.collect``: oracle labels, ground-truth initial pair)."""
    srm_warmup_clicks: int = 8
    """Clicks per warm-up episode (half on the foreground, half anywhere)."""
    srm_size: int = 32
    """Side of the SRM's image-aligned working map (state pooled to ``srm_size x srm_size``); the paper
    uses SAM's 64 x 64 embedding grid, 32 keeps CPU updates cheap and is aligned with the image frame."""
    learning_rate: float = 1e-4
    """Adam learning rate of PPO (paper: 1e-4)."""
    gamma: float = 0.99
    """Discount factor (paper: 0.99)."""
    gae_lambda: float = 0.95
    """GAE lambda. The paper's eq. 6-7 (returns bootstrapped at T, advantage = return - V) are GAE with
    lambda = 1 (``preset("paper")``); 0.95 is SB3's default, a deviation kept with the default schedule
    (not measured better)."""
    clip_range: float = 0.2
    """PPO clipping epsilon (paper: 0.2)."""
    n_epochs: int = 20
    """PPO epochs per update (paper: K = 20)."""
    ent_coef: float = 0.0
    """Entropy bonus (not given in the paper; SB3's default)."""
    max_clicks: int = 15
    """Clicks per episode (paper: T = 15)."""
    n_envs: int = 2
    """Environments stepped in one batched vector env sharing one backend and embedding cache (paper: 1)."""
    n_steps: int = 375
    """Steps per env per rollout. The paper updates after every episode (``n_envs * n_steps = T = 15``,
    ``preset("paper")``); the default collects 750 steps (50 episodes) per update, a deviation kept for
    throughput (20 epochs over 15 steps after every episode is dominated by update overhead), not
    measured better."""
    batch_size: int = 75
    """PPO minibatch (not given in the paper): 10 minibatches of a 750-step rollout (``preset("paper")``:
    the whole 15-step episode)."""
    inputs: tuple[str, ...] = ("state",)
    """Observation keys the agent reads, a subset of ``ALL_INPUTS`` that includes ``"state"``. The default
    is the paper's state (eq. 4) alone. ``ALL_INPUTS`` also reads the previous ``mask``, the ``clicks`` so
    far with their labels (oracle labels in training, SRM labels at evaluation: see ``train_labels``) and
    the ``clicked`` patches; it was the default until held-out real data showed no gain from it
    (``docs/alignsam.md``, "Held-out real data"), and is ``agents.alignsam.experiments --ablate-inputs``'s
    other agent."""
    train_labels: Literal["oracle", "srm"] = "oracle"
    """Labels of the training episodes' clicks (what SAM gets and what the ``clicks`` observation shows):
    ``"oracle"`` (the ground truth, the paper's training) or ``"srm"`` (the online SRM's labels, as at
    evaluation, removing the train/evaluation shift of the ``clicks`` labels; the reward stays the ground
    truth's). The SRM warm-up always uses oracle labels."""
    share_features_extractor: bool = True
    """Actor and critic share one features extractor (SB3's default; half the extractor's compute).
    ``False`` gives each its own (the paper's separate pi and V networks, ``preset("paper")``)."""
    grid: tuple[int, int] = (10, 10)
    """Patch grid ``(rows, cols)``: 100 candidate actions (paper: 80 x 80 patches of an 800 x 800 image)."""
    device: str = "auto"
    """Torch device of PPO, the SRM and CLIP (``"auto"``: cuda when available)."""
    torch_threads: int | None = 1
    """CPU threads of torch during training: 1 is several times faster for these small networks on a
    shared 2-core machine (oversubscribed OpenMP threads spin; SB3 issue #90); ``None`` keeps torch's default."""
    checkpoint_every: int = 5_000
    """Steps between atomic checkpoints of the model and the SRM (so a killed run can ``--resume``;
    Ctrl-C and SIGTERM also save one)."""
    progress_bar: bool = True
    """Show SB3's tqdm/rich progress bar."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes stored with the run (e.g. the command that launched it)."""

    def __post_init__(self) -> None:
        if isinstance(self.grid, (list, tuple)) and len(self.grid) == 2:
            self.grid = (int(self.grid[0]), int(self.grid[1]))
        if isinstance(self.inputs, (list, tuple)):
            self.inputs = tuple(self.inputs)
        self.validate()

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """A named setting (``PRESETS``) with ``overrides`` on top.

        ``"paper"``: Algorithm 1's schedule (one env, one episode of T clicks per PPO update, E = 50
        episodes, so ``n_steps = batch_size = max_clicks`` and ``timesteps = 50 * max_clicks``;
        GAE lambda 1, i.e. eq. 6-7's Monte-Carlo returns bootstrapped at T), the eq. 4 state only,
        separate actor and critic networks, the paper's SRM (no context channels, no warm-up, Q steps
        per action, early fusion for the explicit branch) and 50 random training samples.

        Raises:
            ValueError: On an unknown preset name or a bad override.
        """
        if name not in PRESETS:
            raise ValueError(f"Expected a preset among {sorted(PRESETS)}, got {name!r}")
        values = dict(PRESETS[name])
        clicks = int(overrides.get("max_clicks", cls.max_clicks))
        values.update(n_steps=clicks, batch_size=clicks, timesteps=50 * clicks)
        values.update(overrides)
        return cls(**values)

    def validate(self) -> None:
        """Check every field, raising ``ValueError`` with what was expected and what was received."""
        if self.srm not in SRM_MODES:
            raise ValueError(f"Expected srm to be one of {SRM_MODES}, got {self.srm!r}")
        if self.srm == "explicit" and not self.text.strip():
            raise ValueError("Expected a text prompt (--text 'a photo of a ...') with srm='explicit', got none")
        positive_ints = ("n_train", "timesteps", "max_clicks", "n_envs", "n_steps", "batch_size", "n_epochs",
                         "srm_size", "checkpoint_every", "srm_warmup_episodes")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Expected {name} to be a positive integer, got {value!r}")
        if self.q_updates is not None and (not isinstance(self.q_updates, int) or self.q_updates < 1):
            raise ValueError(f"Expected q_updates to be None or a positive integer, got {self.q_updates!r}")
        for name in ("srm_warmup_steps", "srm_warmup_clicks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Expected {name} to be a non-negative integer, got {value!r}")
        if self.torch_threads is not None and (not isinstance(self.torch_threads, int) or self.torch_threads < 1):
            raise ValueError(f"Expected torch_threads to be None or a positive integer, got {self.torch_threads!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"Expected seed to be a non-negative integer, got {self.seed!r}")
        for name in ("learning_rate", "srm_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Expected {name} > 0, got {getattr(self, name)!r}")
        for name in ("gamma", "gae_lambda", "clip_range"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"Expected {name} in (0, 1], got {getattr(self, name)!r}")
        if self.ent_coef < 0:
            raise ValueError(f"Expected ent_coef >= 0, got {self.ent_coef!r}")
        if not isinstance(self.grid, tuple) or len(self.grid) != 2 or min(self.grid) < 1:
            raise ValueError(f"Expected grid to be (rows, cols) of positive integers, got {self.grid!r}")
        unknown = [k for k in self.inputs if k not in ALL_INPUTS]
        if unknown or "state" not in self.inputs or len(set(self.inputs)) != len(self.inputs):
            raise ValueError(f"Expected inputs to be distinct keys among {ALL_INPUTS} including 'state', "
                             f"got {self.inputs!r}")
        for name, choices in (("train_labels", ("oracle", "srm")), ("train_split", ("random", "first")),
                              ("srm_fusion", ("early", "late"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"Expected {name} to be one of {choices}, got {getattr(self, name)!r}")
        if self.train_labels == "srm" and self.srm == "none":
            raise ValueError("Expected an SRM (srm='implicit' or 'explicit') with train_labels='srm', got srm='none'")
        if not isinstance(self.split_seed, int) or isinstance(self.split_seed, bool) or self.split_seed < 0:
            raise ValueError(f"Expected split_seed to be a non-negative integer, got {self.split_seed!r}")

    @property
    def q(self) -> int:
        """SRM updates per action: ``q_updates`` or the paper's 1 (implicit) / 5 (explicit); 0 without SRM."""
        if self.srm == "none":
            return 0
        if self.q_updates is not None:
            return self.q_updates
        return 5 if self.srm == "explicit" else 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields."""
        data = dataclasses.asdict(self)
        data["grid"] = list(self.grid)
        data["inputs"] = list(self.inputs)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], require_all: bool = False) -> TrainConfig:
        """Inverse of :meth:`to_dict`, checking the JSON types of the fields.

        Args:
            data: Field values (JSON types: ``grid`` a list of two integers).
            require_all: Refuse missing fields (a run's ``config.json``) instead of using the defaults,
                except those added since the format's first runs (``_ADDED_FIELDS``), which get the value
                that reproduces how such a run was made (not always today's default).

        Raises:
            ValueError: On unknown or (with ``require_all``) missing fields, or a value of the wrong type.
        """
        if not isinstance(data, dict):
            raise ValueError(f"Expected a dict of TrainConfig fields, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"Expected TrainConfig fields among {sorted(names)}, got unknown {unknown}")
        missing = sorted(names - set(data) - set(_ADDED_FIELDS))
        if require_all and missing:
            raise ValueError(f"Expected every TrainConfig field, got none for {missing}")
        for name, value in data.items():
            if not _has_type(value, hints[name]):
                raise ValueError(f"Expected TrainConfig field {name!r} of type {_type_name(hints[name])}, "
                                 f"got {value!r}")
        data = dict(data)
        if require_all:
            data = {**{k: v for k, v in _ADDED_FIELDS.items() if k not in data}, **data}
        for name in ("grid", "inputs"):
            if name in data:
                data[name] = tuple(data[name])
        return cls(**data)


#: Named settings of :meth:`TrainConfig.preset` (``n_steps``, ``batch_size`` and ``timesteps`` follow ``max_clicks``).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"n_envs": 1, "gae_lambda": 1.0, "inputs": ("state",), "share_features_extractor": False,
              "srm_context": False, "srm_warmup_steps": 0, "srm_q_per_action": True, "srm_fusion": "early",
              "train_split": "random", "train_labels": "oracle"},
}


def _has_type(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a field annotation (ints are floats; bools are not numbers)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, arg) for arg in args)
    if origin is Literal:
        return isinstance(value, str) and value in args
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return isinstance(value, (list, tuple)) and all(_has_type(v, args[0]) for v in value)
    if origin is tuple:
        return (isinstance(value, (list, tuple)) and len(value) == len(args)
                and all(_has_type(v, a) for v, a in zip(value, args, strict=True)))
    if origin is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "") if typing.get_origin(hint) else hint.__name__
