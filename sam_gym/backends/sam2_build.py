"""Building and loading a SAM 2 / SAM 2.1 image model: the half of the SAM 2 backend before predicting.

Like Meta's ``sam2.build_sam.build_sam2``: the model is composed from the ``sam2`` package's own
Hydra configs (``configs/sam2.1/sam2.1_hiera_t.yaml`` ...) with the same post-processing overrides
that ``build_sam2`` applies by default (a single-mask output that is not stable falls back to the
best of the three multimask outputs), so that :class:`sam2.sam2_image_predictor.SAM2ImagePredictor`
on the same module is the reference. The checkpoint is read safely (``weights_only``, on the CPU;
Meta's files hold ``{"model": state_dict}``, a bare state dict is accepted too) and every tensor is
checked before loading. A checkpoint that cannot serve is a one-line ``ValueError`` saying which
file and why, never a traceback from inside ``torch.load`` or Hydra.

The ``sam2`` module comes from the ``rf-sam-2`` distribution (see ``pyproject.toml``). This
module imports torch at import time; the registry imports it only when a SAM 2 backend is built.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from sam_gym.backends.sam_build import BuiltSam, load_state_dict, state_dict_digest
from sam_gym.backends.weights import WEIGHTS, file_sha256, resolve_checkpoint

try:
    import torch
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError('The SAM 2 backends need torch: pip install "sam-gym[sam]"') from exc

__all__ = ["CONFIGS", "build_sam2_model", "compose_sam2", "import_sam2_module", "read_sam2_state_dict"]

#: model type (the backend's registry name) -> the ``sam2`` package's Hydra config of it.
CONFIGS: dict[str, str] = {
    "sam2.1_hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "sam2_hiera_t": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_s": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_b+": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_l": "configs/sam2/sam2_hiera_l.yaml",
}
#: ``build_sam2(..., apply_postprocessing=True)``'s overrides: what SAM2ImagePredictor users get.
_POSTPROCESSING = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)
#: The top-level modules of every SAM 2 state dict.
_SAM2_PARTS = ("image_encoder.", "sam_prompt_encoder.", "sam_mask_decoder.")


def import_sam2_module(module: str) -> Any:
    """Import a module of ``sam2`` (or of its Hydra dependency) with an installation hint on failure."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f'The SAM 2 backends need the sam2 module (distribution rf-sam-2): pip install "sam-gym[sam]" '
            f"({exc})"
        ) from exc


def compose_sam2(model_type: str, overrides: Sequence[str] = ()) -> torch.nn.Module:
    """Build ``model_type``'s ``SAM2Base`` with random weights, as ``build_sam2(config, None)`` does.

    Args:
        model_type: A key of :data:`CONFIGS`, e.g. ``"sam2.1_hiera_t"``.
        overrides: Extra Hydra overrides after the post-processing ones, e.g.
            ``["++model.image_size=256"]`` for a small test model (its masks are meaningless).

    Returns:
        The module on the CPU, in training mode (the backend calls ``eval()``).

    Raises:
        ValueError: For an unknown ``model_type``.
        ImportError: If the ``sam2`` module (or Hydra) is not installed.
    """
    if model_type not in CONFIGS:
        raise ValueError(f"Expected model_type to be one of {sorted(CONFIGS)}, got {model_type!r}")
    import_sam2_module("sam2")  # initialises Hydra's global config module "sam2"
    hydra = import_sam2_module("hydra")
    hydra_utils = import_sam2_module("hydra.utils")
    omegaconf = import_sam2_module("omegaconf")
    cfg = hydra.compose(config_name=CONFIGS[model_type], overrides=[*_POSTPROCESSING, *overrides])
    omegaconf.OmegaConf.resolve(cfg)
    return hydra_utils.instantiate(cfg.model, _recursive_=True)


def read_sam2_state_dict(path: Path, model_type: str) -> Mapping[str, Any]:
    """Read a SAM 2 checkpoint on the CPU, tensors only (``weights_only=True``).

    Meta's files hold ``{"model": state_dict}``; a bare state dict (``torch.save(model.state_dict())``)
    is read too.

    Raises:
        ValueError: In one line, if the file cannot be read as a state dict (corrupt, truncated, a
            pickled object that is not plain tensors) or holds no SAM 2 weights.
    """
    what = f"a SAM 2 checkpoint of {model_type} weights (torch.save of {{'model': state_dict}})"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused an object: never load it
        raise ValueError(f"Expected {path} to be {what}, could not read it (it pickles objects other than "
                         f"tensors, which are not loaded, for safety)") from exc
    except Exception as exc:  # noqa: BLE001 - a corrupt file fails in many ways; each is the file's fault
        lines = str(exc).strip().splitlines()
        why = f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
        raise ValueError(f"Expected {path} to be {what}, could not read it ({why})") from exc
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]
    if not isinstance(state, Mapping):
        raise ValueError(f"Expected {path} to hold a state dict (a mapping of tensors), got {type(state).__name__}")
    if not any(str(key).startswith(_SAM2_PARTS) for key in state):
        keys = ", ".join(repr(k) for k in list(state)[:3]) or "none"
        raise ValueError(f"Expected {path} to hold {model_type} weights, but they do not fit the model: no key "
                         f"starts with image_encoder., sam_prompt_encoder. or sam_mask_decoder. (got {keys})")
    return state


def build_sam2_model(
    model_type: str, checkpoint: str | PathLike[str] = "auto", model: torch.nn.Module | None = None
) -> BuiltSam:
    """Build ``model_type`` and load its weights, or take an already-built ``SAM2Base`` as it is.

    Args:
        model_type: A key of :data:`CONFIGS`, e.g. ``"sam2.1_hiera_t"``.
        checkpoint: ``"auto"``, ``"random"`` or a checkpoint path (see
            :func:`sam_gym.backends.weights.resolve_checkpoint`); must stay ``"auto"`` with ``model``.
        model: An already-built ``SAM2Base`` (e.g. :func:`compose_sam2` with a small ``image_size``)
            used with its current weights.

    Returns:
        The model with its provenance; ``package`` is ``"sam2"``.

    Raises:
        ValueError: For an unknown ``model_type``, a checkpoint with ``model``, or a missing,
            unreadable or unfitting checkpoint file (one line each).
        ImportError: If the ``sam2`` module is not installed.
    """
    if model_type not in CONFIGS:
        raise ValueError(f"Expected model_type to be one of {sorted(CONFIGS)}, got {model_type!r}")
    if model is not None:
        if checkpoint != "auto":
            raise ValueError(
                f"Expected checkpoint='auto' (the default) with an injected model, got {checkpoint!r}; "
                f"load weights into the model before passing it"
            )
        digest = state_dict_digest(model)
        return BuiltSam(model, "sam2", None, digest, f"sam2, injected {type(model).__name__}, parameters {digest[:12]}")
    path = resolve_checkpoint(model_type, checkpoint)
    if path is None:
        model = compose_sam2(model_type)
        return BuiltSam(model, "sam2", None, state_dict_digest(model), "sam2, RANDOM weights (not a trained model)")
    state = read_sam2_state_dict(path, model_type)  # before the build, so that a bad file fails fast
    model = compose_sam2(model_type)
    load_state_dict(model, state, path, model_type)
    digest = file_sha256(path)
    source = f"sam2, weights {path.name}"
    if digest != WEIGHTS[model_type].sha256:
        source += f", sha256 {digest[:12]}, not the official checkpoint"
    return BuiltSam(model, "sam2", path, digest, source)
