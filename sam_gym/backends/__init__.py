"""Backend registry: builders of :class:`~sam_gym.backends.base.PromptableSegmenter` by name.

Like segment-anything's ``sam_model_registry``, each name maps to a builder. Entry points are
strings so that nothing heavy (torch, segment-anything) is imported until a backend is built.

>>> from sam_gym.backends import available_backends
>>> "classical" in available_backends()
True
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from sam_gym.backends.base import Embedding, Prediction, PromptableSegmenter

__all__ = [
    "BACKENDS",
    "Embedding",
    "Prediction",
    "PromptableSegmenter",
    "available_backends",
    "make_backend",
]

#: name -> (entry point "module:callable", fixed keyword arguments, one-line description)
BACKENDS: dict[str, tuple[str, dict[str, Any], str]] = {
    "classical": (
        "sam_gym.backends.classical:ClassicalBackend",
        {},
        "weight-free classical seed-based segmenter (not SAM); the offline default",
    ),
    "sam_vit_h": ("sam_gym.backends.sam:SamBackend", {"model_type": "vit_h"}, "SAM ViT-H (segment-anything)"),
    "sam_vit_l": ("sam_gym.backends.sam:SamBackend", {"model_type": "vit_l"}, "SAM ViT-L (segment-anything)"),
    "sam_vit_b": ("sam_gym.backends.sam:SamBackend", {"model_type": "vit_b"}, "SAM ViT-B (segment-anything)"),
    "mobilesam_vit_t": (
        "sam_gym.backends.sam:SamBackend",
        {"model_type": "vit_t"},
        "MobileSAM ViT-T (mobilesam-mirror)",
    ),
}
#: Short aliases accepted by :func:`make_backend`.
ALIASES = {"vit_h": "sam_vit_h", "vit_l": "sam_vit_l", "vit_b": "sam_vit_b", "vit_t": "mobilesam_vit_t",
           "mobilesam": "mobilesam_vit_t", "sam": "sam_vit_h"}


def available_backends() -> list[str]:
    """Return the registered backend names."""
    return list(BACKENDS)


def make_backend(backend: str | PromptableSegmenter = "classical", **kwargs: Any) -> PromptableSegmenter:
    """Build a backend by name, or return an already-built one unchanged.

    Args:
        backend: A registered name (see :func:`available_backends`; aliases ``vit_h``, ``vit_l``,
            ``vit_b``, ``vit_t``, ``mobilesam``, ``sam`` are accepted) or a backend instance.
        **kwargs: Passed to the builder, e.g. ``checkpoint="auto" | "random" | PATH``,
            ``device="cuda"``, ``half=True`` for SAM backends.

    Raises:
        ValueError: If the name is unknown (the message lists the options and a close match).
    """
    if isinstance(backend, PromptableSegmenter):
        if kwargs:
            raise ValueError(f"Expected no backend keyword arguments with a backend instance, got {sorted(kwargs)}")
        return backend
    if not isinstance(backend, str):
        raise ValueError(f"Expected backend to be a name or a PromptableSegmenter, got {type(backend).__name__}")
    name = ALIASES.get(backend, backend)
    if name not in BACKENDS:
        close = difflib.get_close_matches(backend, list(BACKENDS) + list(ALIASES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Expected backend to be one of {available_backends()}, got {backend!r}.{hint}")
    entry, fixed, _ = BACKENDS[name]
    module_name, attr = entry.split(":")
    builder = getattr(importlib.import_module(module_name), attr)
    return builder(**fixed, **kwargs)
