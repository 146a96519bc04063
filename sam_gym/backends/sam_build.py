"""Building and loading a Segment Anything / MobileSAM model: the half of the SAM backend before predicting.

Like segment-anything's own ``build_sam.py``: the package that builds each model type, the torch
device, reading a checkpoint file safely (``weights_only``, on the CPU) and loading it into the
model, and the digest that identifies weights without a file. :mod:`sam_gym.backends.sam` predicts
with what :func:`build_sam_model` returns.

A checkpoint that cannot serve (corrupt, truncated, a pickled payload that is not plain tensors, a
file of another model) is a one-line ``ValueError`` saying which file and why, never a traceback from
inside ``torch.load``.

This module imports torch at import time; the backend registry imports it only when a SAM backend is built.
"""

from __future__ import annotations

import hashlib
import importlib
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from sam_gym.backends.weights import WEIGHTS, file_sha256, resolve_checkpoint

try:
    import torch
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError('The SAM backends need torch: pip install "sam-gym[sam]"') from exc

__all__ = ["PACKAGES", "BuiltSam", "build_sam_model", "import_sam_module", "load_state_dict", "read_state_dict",
           "select_device", "state_dict_digest"]

#: model type -> (import name, distribution name) of the package that builds it.
PACKAGES: dict[str, tuple[str, str]] = {
    "vit_h": ("segment_anything", "segment-anything"),
    "vit_l": ("segment_anything", "segment-anything"),
    "vit_b": ("segment_anything", "segment-anything"),
    "vit_t": ("mobile_sam", "mobilesam-mirror"),
}
#: The top-level modules of every SAM state dict.
_SAM_PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")


def import_sam_module(module: str, model_type: str) -> Any:
    """Import a module of segment-anything / mobile_sam with an installation hint on failure."""
    package, dist = PACKAGES[model_type]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"The {model_type} backend needs the {dist} package (import name {package}): "
            f'pip install "sam-gym[sam]"'
        ) from exc


def select_device(device: str | None) -> torch.device:
    """Return the torch device for ``device`` (``None``: CUDA when available, else the CPU).

    Raises:
        ValueError: For a malformed device, or CUDA when it is not available.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"Expected device to be None, 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"Expected an available device, got {device!r}, but torch.cuda.is_available() is False"
        )
    return dev


def state_dict_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of all parameters and buffers."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        t = value.detach().to("cpu").contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def read_state_dict(path: Path, model_type: str) -> Mapping[str, Any]:
    """Read a SAM state-dict file on the CPU, tensors only (``weights_only=True``).

    Raises:
        ValueError: In one line, if the file cannot be read as a state dict (corrupt, truncated, a
            pickled object that is not plain tensors) or holds no SAM weights.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused an object: never load it
        raise ValueError(f"Expected {path} to be a PyTorch state-dict file of {model_type} weights (torch.save of "
                         f"tensors), could not read it (it pickles objects other than tensors, which are not "
                         f"loaded, for safety)") from exc
    except Exception as exc:  # noqa: BLE001 - a corrupt file fails in many ways; each is the file's fault
        lines = str(exc).strip().splitlines()
        why = f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
        raise ValueError(f"Expected {path} to be a PyTorch state-dict file of {model_type} weights (torch.save of "
                         f"tensors), could not read it ({why})") from exc
    if not isinstance(state, Mapping):
        raise ValueError(
            f"Expected {path} to hold a state dict (a mapping of tensors), got {type(state).__name__}"
        )
    if not any(str(key).startswith(_SAM_PARTS) for key in state):
        keys = ", ".join(repr(k) for k in list(state)[:3]) or "none"
        raise ValueError(f"Expected {path} to hold {model_type} weights, but they do not fit the model: no key "
                         f"starts with image_encoder., prompt_encoder. or mask_decoder. (got {keys})")
    return state


def load_state_dict(model: torch.nn.Module, state: Mapping[str, Any], path: Path, model_type: str) -> None:
    """Load ``state`` into ``model`` after checking, in one line of message, that every tensor fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshaped = [k for k in own if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)]
    if missing or unexpected or misshaped:
        example = (f"{misshaped[0]!r} {tuple(getattr(state[misshaped[0]], 'shape', ()))} instead of "
                   f"{tuple(own[misshaped[0]].shape)}" if misshaped else repr((missing or unexpected)[0]))
        raise ValueError(f"Expected {path} to hold {model_type} weights, but they do not fit the model: "
                         f"{len(missing)} missing, {len(unexpected)} unexpected and {len(misshaped)} mis-shaped "
                         f"tensors (e.g. {example})")
    model.load_state_dict(state)


@dataclass(frozen=True)
class BuiltSam:
    """A SAM model with where its weights came from.

    Attributes:
        model: The ``Sam`` module (on the CPU, in training mode, as its package builds it).
        package: ``"segment_anything"`` or ``"mobile_sam"``: the package whose transforms fit it.
        checkpoint_path: The weights file loaded, or ``None`` (random init or injected model).
        weights_sha256: SHA-256 of that file, or of the initial state dict when there is no file.
        source: Provenance for the backend's description, e.g. ``"segment_anything, weights sam_vit_b.pth"``.
    """

    model: torch.nn.Module
    package: str
    checkpoint_path: Path | None
    weights_sha256: str
    source: str


def build_sam_model(
    model_type: str, checkpoint: str | PathLike[str] = "auto", model: torch.nn.Module | None = None
) -> BuiltSam:
    """Build ``model_type`` and load its weights, or take an already-built model as it is.

    Args:
        model_type: ``"vit_h"``, ``"vit_l"``, ``"vit_b"`` (segment-anything) or ``"vit_t"`` (MobileSAM).
        checkpoint: ``"auto"``, ``"random"`` or a state-dict path (see
            :func:`sam_gym.backends.weights.resolve_checkpoint`); must stay ``"auto"`` with ``model``.
        model: An already-built ``Sam`` module used with its current weights.

    Raises:
        ValueError: For an unknown ``model_type``, a checkpoint with ``model``, or a missing,
            unreadable or unfitting checkpoint file (one line each).
        ImportError: If segment-anything / mobile_sam is not installed.
    """
    if model_type not in PACKAGES:
        raise ValueError(f"Expected model_type to be one of {sorted(PACKAGES)}, got {model_type!r}")
    if model is not None:
        if checkpoint != "auto":
            raise ValueError(
                f"Expected checkpoint='auto' (the default) with an injected model, got {checkpoint!r}; "
                f"load weights into the model before passing it"
            )
        package = type(model).__module__.split(".")[0]
        if package not in ("segment_anything", "mobile_sam"):
            package = PACKAGES[model_type][0]
        digest = state_dict_digest(model)
        return BuiltSam(model, package, None, digest,
                        f"{package}, injected {type(model).__name__}, parameters {digest[:12]}")
    package = PACKAGES[model_type][0]
    registry = import_sam_module(f"{package}.build_sam", model_type).sam_model_registry
    path = resolve_checkpoint(model_type, checkpoint)
    if path is None:
        model = registry[model_type](checkpoint=None)
        return BuiltSam(model, package, None, state_dict_digest(model),
                        f"{package}, RANDOM weights (not a trained model)")
    state = read_state_dict(path, model_type)  # before the slow build, so that a bad file fails fast
    model = registry[model_type](checkpoint=None)
    load_state_dict(model, state, path, model_type)
    digest = file_sha256(path)
    source = f"{package}, weights {path.name}"
    if digest != WEIGHTS[model_type].sha256:
        source += f", sha256 {digest[:12]}, not the official checkpoint"
    return BuiltSam(model, package, path, digest, source)
