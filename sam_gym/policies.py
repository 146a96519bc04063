"""Policies by name: ``make_policy("clicker")``, ``make_policy("alignsam:runs/demo")``, ``make_policy("pkg.m:Cls")``.

A spec is ``NAME`` or ``NAME:ARG``. Registered names map to string entry points (imported only when
used, so the policies of ``agents`` are reached by name and ``sam_gym`` never imports them); each
entry says whether its factory takes ``ARG`` (:attr:`sam_gym.registry.Entry.arg`), and the
registry passes it only to those that do. Anything else of the form ``module.path:Attribute`` is
imported as a user policy (a class or factory called with no argument, or with ``arg=`` when an
``@ARG`` suffix is given: ``pkg.mod:MyPolicy@path``).
"""

from __future__ import annotations

from typing import Any

from sam_gym.registry import Entry, lookup, resolve

__all__ = ["POLICIES", "available_policies", "make_policy"]

#: name -> factory; ``arg`` says whether ``NAME:ARG`` is required, optional or refused.
POLICIES: dict[str, Entry] = {
    "random": Entry("agents.simple:RandomPolicy", "uniformly random patch among those not clicked yet"),
    "grid": Entry("agents.simple:GridPolicy",
                  "fixed sweep over the patch grid (SAM automatic-mask-generator order); grid:N visits an "
                  "N x N point grid first", arg="optional"),
    "clicker": Entry("agents.clicker:ClickerPolicy", "standard click simulator: centre of the larger error (oracle)"),
    "clicker-tta": Entry("agents.tta:ClickerTTAPolicy",
                         "click simulator with test-time adaptation of SAM's decoder (Schön et al. 2024; oracle); "
                         "clicker-tta:CONFIG", arg="optional"),
    "aop": Entry("agents.aop_sam:AoPPolicy",
                 "AoP-SAM prompt predictor + adaptive sampling and filtering (AAAI 2025); aop:PREDICTOR_DIR",
                 arg="optional"),
    "sapnet": Entry("agents.sapnet:SAPNetPolicy",
                    "SAPNet proposal selection from one point per instance (CVPR 2024); sapnet:MODEL_DIR",
                    arg="optional"),
    "alignsam": Entry("agents.alignsam.policy:AlignSAMPolicy.load", "trained AlignSAM agent: alignsam:RUN_DIR",
                      arg="required"),
}


def available_policies() -> list[str]:
    """Return the registered policy names."""
    return list(POLICIES)


def make_policy(spec: str, **kwargs: Any) -> Any:
    """Build a policy from a spec string.

    Args:
        spec: ``NAME``, ``NAME:ARG`` (e.g. ``alignsam:runs/demo``) or ``module.path:Attr[@ARG]``.
        **kwargs: Passed to the factory.

    Raises:
        ValueError: Unknown name (with the list and a close match), an argument that the policy
            refuses or lacks, or a user path that cannot be imported.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"Expected a policy spec such as 'random' or 'alignsam:DIR', got {spec!r}")
    name, _, arg = spec.partition(":")
    if "." in name and arg:
        attr, _, user_arg = arg.partition("@")
        try:
            factory = resolve(f"{name}:{attr}")
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"Could not import the user policy {spec!r}: {exc}") from exc
        return factory(user_arg, **kwargs) if user_arg else factory(**kwargs)
    entry = lookup(POLICIES, name, kind="policy", also=" or 'module.path:Class'")
    if arg and entry.arg == "none":
        raise ValueError(f"Expected no argument for the {name!r} policy, got {spec!r}")
    if not arg and entry.arg == "required":
        raise ValueError(f"Expected an argument for the {name!r} policy ({entry.help}), got {spec!r}")
    factory = entry.resolve()
    return factory(arg, **kwargs) if arg else factory(**kwargs)
