"""The arguments of an AlignSAM training run (CleanRL style: one dataclass, one docstring per field).

The paper's settings (AlignSAM, CVPR 2024, section 4.1) are the defaults; where a default differs
from the paper, the field's docstring says so and why.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["SRM_MODES", "TrainConfig"]

#: Recalibration-module variants: the paper's two branches, and the "w/o SRM" ablation.
SRM_MODES = ("implicit", "explicit", "none")
#: Fields added after runs were first saved in this format: a saved ``config.json`` without one of them
#: was made with its default (before ``half`` existed every run was trained in float32).
_ADDED_FIELDS = frozenset({"half"})


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
    """Training images: the first ``n_train`` samples; the rest is held out (paper: 50 per task)."""
    timesteps: int = 20_000
    """Total environment steps (clicks) of PPO training (the paper does not state its budget)."""
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
    srm_lr: float = 1e-3
    """Adam learning rate of the SRM (not given in the paper)."""
    srm_context: bool = True
    """Give the SRM four context channels (feature distances to the mask's inside / outside means and to
    the prompts' features; see ``agents.alignsam.srm.SRMConfig``). Not in the paper: it is a listed
    deviation, kept for the held-out label accuracy measured in ``docs/alignsam.md``."""
    srm_warmup_steps: int = 400
    """Supervised SRM steps (minibatch 16) on the training split before PPO starts (not in the paper, which
    trains the SRM online only; 0 disables). The online updates during PPO follow as in the paper."""
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
    """GAE lambda (not given in the paper; SB3's default)."""
    clip_range: float = 0.2
    """PPO clipping epsilon (paper: 0.2)."""
    n_epochs: int = 20
    """PPO epochs per update (paper: K = 20)."""
    ent_coef: float = 0.0
    """Entropy bonus (not given in the paper; SB3's default)."""
    max_clicks: int = 15
    """Clicks per episode (paper: T = 15)."""
    n_envs: int = 2
    """Environments stepped in one ``DummyVecEnv`` sharing one backend and embedding cache."""
    n_steps: int = 375
    """Steps per env per rollout: ``n_envs * n_steps = 750`` is the paper's E = 50 episodes of T = 15."""
    batch_size: int = 75
    """PPO minibatch (not given in the paper): 10 minibatches of a 750-step rollout."""
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
        self.validate()

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
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], require_all: bool = False) -> TrainConfig:
        """Inverse of :meth:`to_dict`, checking the JSON types of the fields.

        Args:
            data: Field values (JSON types: ``grid`` a list of two integers).
            require_all: Refuse missing fields (a run's ``config.json``) instead of using the defaults,
                except those added since the format's first runs (``half``), which get their default.

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
        missing = sorted(names - set(data) - _ADDED_FIELDS)
        if require_all and missing:
            raise ValueError(f"Expected every TrainConfig field, got none for {missing}")
        for name, value in data.items():
            if not _has_type(value, hints[name]):
                raise ValueError(f"Expected TrainConfig field {name!r} of type {_type_name(hints[name])}, "
                                 f"got {value!r}")
        data = dict(data)
        if "grid" in data:
            data["grid"] = tuple(data["grid"])
        return cls(**data)


def _has_type(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a field annotation (ints are floats; bools are not numbers)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, arg) for arg in args)
    if origin is Literal:
        return isinstance(value, str) and value in args
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
