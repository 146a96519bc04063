"""Backend registry: builders of :class:`~sam_gym.backends.base.PromptableSegmenter` by name.

Like segment-anything's ``sam_model_registry``, each name maps to a builder. Entry points are
strings so that nothing heavy (torch, segment-anything) is imported until a backend is built.

>>> from sam_gym.backends import available_backends
>>> "classical" in available_backends()
True
"""

from __future__ import annotations

from typing import Any

from sam_gym.backends.base import Embedding, Prediction, PromptableSegmenter
from sam_gym.registry import Entry, lookup

__all__ = [
    "ALIASES",
    "BACKENDS",
    "WEIGHT_ARGUMENTS",
    "Embedding",
    "Prediction",
    "PromptableSegmenter",
    "available_backends",
    "backend_entry",
    "make_backend",
]

#: name -> builder; ``checkpoint=True`` marks the backends with weights (see :data:`WEIGHT_ARGUMENTS`).
BACKENDS: dict[str, Entry] = {
    "classical": Entry("sam_gym.backends.classical:ClassicalBackend",
                       "weight-free classical seed-based segmenter (not SAM); the offline default"),
    "sam_vit_h": Entry("sam_gym.backends.sam:SamBackend", "SAM ViT-H (segment-anything)",
                       kwargs={"model_type": "vit_h"}, checkpoint=True),
    "sam_vit_l": Entry("sam_gym.backends.sam:SamBackend", "SAM ViT-L (segment-anything)",
                       kwargs={"model_type": "vit_l"}, checkpoint=True),
    "sam_vit_b": Entry("sam_gym.backends.sam:SamBackend", "SAM ViT-B (segment-anything)",
                       kwargs={"model_type": "vit_b"}, checkpoint=True),
    "mobilesam_vit_t": Entry("sam_gym.backends.sam:SamBackend", "MobileSAM ViT-T (mobilesam-mirror)",
                             kwargs={"model_type": "vit_t"}, checkpoint=True),
    **{
        name: Entry("sam_gym.backends.sam2:Sam2Backend", f"{family} Hiera-{size} (sam2, from rf-sam-2)",
                    kwargs={"model_type": name}, checkpoint=True)
        for family, version in (("SAM 2.1", "sam2.1"), ("SAM 2", "sam2"))
        for size in ("t", "s", "b+", "l")
        for name in [f"{version}_hiera_{size}"]
    },
    "null": Entry("sam_gym.backends.null:NullBackend",
                  "measuring stub with SAM's shapes and fixed outputs at no cost, NOT a segmenter (sam-gym bench)"),
}
#: Short aliases accepted by :func:`make_backend`.
ALIASES = {"vit_h": "sam_vit_h", "vit_l": "sam_vit_l", "vit_b": "sam_vit_b", "vit_t": "mobilesam_vit_t",
           "mobilesam": "mobilesam_vit_t", "sam": "sam_vit_h"}
#: Keyword arguments that only a backend with weights takes; a weight-free one (``classical``) takes none.
WEIGHT_ARGUMENTS = ("checkpoint", "device", "half")


def available_backends() -> list[str]:
    """Return the registered backend names."""
    return list(BACKENDS)


def backend_entry(name: str) -> Entry:
    """Return the registry entry of a backend name or alias (e.g. ``backend_entry("vit_b").checkpoint``).

    Raises:
        ValueError: If the name is unknown (the message lists the options and a close match).
    """
    return lookup(BACKENDS, name, kind="backend", aliases=ALIASES)


def make_backend(backend: str | PromptableSegmenter = "classical", **kwargs: Any) -> PromptableSegmenter:
    """Build a backend by name, or return an already-built one unchanged.

    Args:
        backend: A registered name (see :func:`available_backends`; aliases ``vit_h``, ``vit_l``,
            ``vit_b``, ``vit_t``, ``mobilesam``, ``sam`` are accepted) or a backend instance.
        **kwargs: Passed to the builder, e.g. ``checkpoint="auto" | "random" | PATH``,
            ``device="cuda"``, ``half=True`` for SAM backends. A :data:`WEIGHT_ARGUMENTS` value of
            ``None``, ``False`` or ``""`` means the builder's default, so command-line values pass through
            unchanged for any backend.

    Raises:
        ValueError: If the name is unknown (the message lists the options and a close match), or a
            weight-free backend gets a checkpoint, device or half precision.
    """
    if isinstance(backend, PromptableSegmenter):
        if kwargs:
            raise ValueError(f"Expected no backend keyword arguments with a backend instance, got {sorted(kwargs)}")
        return backend
    if not isinstance(backend, str):
        raise ValueError(f"Expected backend to be a name or a PromptableSegmenter, got {type(backend).__name__}")
    entry = backend_entry(backend)
    weights = {k: kwargs.pop(k) for k in WEIGHT_ARGUMENTS if k in kwargs}
    weights = {k: v for k, v in weights.items() if v not in (None, False, "")}
    if weights and not entry.checkpoint:
        given = ", ".join(f"{k}={v!r}" for k, v in weights.items())
        raise ValueError(f"Expected no checkpoint, device or half with backend {backend!r} (it has no weights), "
                         f"got {given}")
    return entry.resolve()(**entry.kwargs, **weights, **kwargs)
