"""Policies by name: ``make_policy("clicker")``, ``make_policy("alignsam:runs/demo")``, ``make_policy("pkg.m:Cls")``.

A spec is ``NAME`` or ``NAME:ARG``. Registered names map to string entry points (imported only when
used); anything else of the form ``module.path:Attribute`` is imported as a user policy (a class or
factory called with no argument, or with ``arg=`` when an ``@ARG`` suffix is given:
``pkg.mod:MyPolicy@path``).
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

__all__ = ["POLICIES", "available_policies", "make_policy"]

#: name -> (entry point "module:factory", description). Factories take ``arg: str | None``.
POLICIES: dict[str, tuple[str, str]] = {
    "random": ("agents.simple:RandomPolicy", "uniformly random patch among those not clicked yet"),
    "grid": ("agents.simple:GridPolicy", "fixed sweep over the patch grid (SAM automatic-mask-generator order)"),
    "clicker": ("agents.clicker:ClickerPolicy", "standard click simulator: centre of the larger error (oracle)"),
    "clicker-tta": ("agents.clicker:ClickerTTAPolicy",
                    "click simulator with test-time adaptation of SAM's decoder (Schön et al. 2024; oracle)"),
    "aop": ("agents.aop_sam:AoPPolicy", "AoP-SAM prompt predictor + adaptive sampling and filtering (AAAI 2025)"),
    "sapnet": ("agents.sapnet:SAPNetPolicy", "SAPNet proposal selection from one point per instance (CVPR 2024)"),
    "alignsam": ("agents.alignsam.policy:AlignSAMPolicy.load", "trained AlignSAM agent: alignsam:RUN_DIR"),
}


def available_policies() -> list[str]:
    """Return the registered policy names."""
    return list(POLICIES)


def _resolve(entry: str) -> Any:
    module_name, _, attr_path = entry.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


def make_policy(spec: str, **kwargs: Any) -> Any:
    """Build a policy from a spec string.

    Args:
        spec: ``NAME``, ``NAME:ARG`` (e.g. ``alignsam:runs/demo``) or ``module.path:Attr[@ARG]``.
        **kwargs: Passed to the factory.

    Raises:
        ValueError: Unknown name (with the list and a close match) or a user path that cannot be imported.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"Expected a policy spec such as 'random' or 'alignsam:DIR', got {spec!r}")
    name, _, arg = spec.partition(":")
    if name in POLICIES:
        factory = _resolve(POLICIES[name][0])
        return factory(arg or None, **kwargs) if arg else factory(**kwargs)
    if "." in name and arg:
        attr, _, user_arg = arg.partition("@")
        try:
            factory = _resolve(f"{name}:{attr}")
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"Could not import the user policy {spec!r}: {exc}") from exc
        return factory(user_arg, **kwargs) if user_arg else factory(**kwargs)
    close = difflib.get_close_matches(name, list(POLICIES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Expected a policy among {available_policies()} or 'module.path:Class', got {spec!r}.{hint}")
