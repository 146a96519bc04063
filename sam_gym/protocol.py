"""The episode protocol of a policy: where its click labels and initial prompts come from, and what reads ground truth.

A location-only policy (``random``, ``grid``, an SB3 model trained on ``SamPrompt-v0``) picks only
*where* to click, in the env's ``"patch"`` action mode; the label of each click and the prompts
placed at reset come from the env (``label_mode``, ``init_prompts``). In the default env both read
the ground truth (``"oracle"`` labels, a ``"gt_pair"`` initial pair), which a learned agent such as
AlignSAM does not get: its own recalibration module labels its clicks and places its first prompts.
Two tools keep a comparison fair:

* :func:`privileges` names what a row's episodes read from the ground truth (:data:`PRIVILEGES`);
  reports mark every such row (``†``), not only the oracle policies.
* :class:`ProtocolPolicy` runs a location-only policy under another policy's labels and initial
  prompts (random patches with an AlignSAM run's SRM: the paper's "w/o RL" row), and
  :func:`apply_protocol` does so for every location-only policy of a comparison
  (``sam-gym eval --protocol alignsam:RUN_DIR``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["BORROWED", "PRIVILEGES", "ProtocolPolicy", "apply_protocol", "location_only_problem", "privileges"]

#: Privilege key -> what it means, in the order reports list them.
PRIVILEGES: dict[str, str] = {
    "oracle_labels": "oracle labels (each click labelled by the ground truth at its pixel)",
    "gt_init_prompts": "GT initial prompts (one ground-truth foreground and one background pixel at reset)",
    "episode_view": "reads the ground truth through episode_view (an oracle policy)",
}
#: The env options a :class:`ProtocolPolicy` takes from its protocol policy.
BORROWED = ("label_mode", "init_prompts")


def privileges(*, oracle: bool, labels: str, init_prompts: str) -> list[str]:
    """The :data:`PRIVILEGES` keys of a row, from :func:`sam_gym.evaluation.policy_protocol`'s fields.

    Args:
        oracle: The policy's own ``oracle`` flag (it reads ``episode_view().sample.target``).
        labels: Where click labels come from (``"oracle"``: the env reads the ground truth).
        init_prompts: The env's initial prompts (``"gt_pair"``: placed from the ground truth).

    Returns:
        The privileges, possibly none (a row on the same footing as a deployable method).
    """
    found = {"oracle_labels": labels == "oracle", "gt_init_prompts": init_prompts == "gt_pair",
             "episode_view": bool(oracle)}
    return [key for key in PRIVILEGES if found[key]]


def _name(policy: Any) -> str:
    name = getattr(policy, "name", None)
    return name if isinstance(name, str) else type(policy).__name__


def location_only_problem(policy: Any) -> str | None:
    """Why ``policy`` is not location-only, or ``None`` when it is.

    A location-only policy acts in the ``"patch"`` action mode (its own ``env_kwargs`` say so or
    leave the env's default), sets neither ``label_mode`` nor ``init_prompts`` and declares no
    ``labels`` of its own, so its clicks take their labels from the env.
    """
    kwargs = dict(getattr(policy, "env_kwargs", None) or {})
    mode = kwargs.get("action_mode", "patch")
    if mode != "patch":
        return f"it acts in action_mode={mode!r}, where each action carries its own label"
    own = [key for key in BORROWED if key in kwargs]
    if own:
        return f"it sets its own {' and '.join(own)}"
    if isinstance(getattr(policy, "labels", None), str):
        return f"it declares its own labels ({policy.labels!r})"
    return None


class ProtocolPolicy:
    """A location-only policy run with another policy's click labels and initial prompts.

    The clicks are ``policy``'s (same ``predict``, same draws from the env's ``np_random``); the
    env is built with ``protocol``'s ``label_mode`` and ``init_prompts`` (:data:`BORROWED`) in
    the ``"patch"`` action mode, so a table compares click *locations* only. With an AlignSAM run
    as ``protocol`` and :class:`agents.simple.RandomPolicy` as ``policy`` this is the paper's
    "w/o RL" row. The wrapper reads ground truth only if ``policy`` does (``oracle``).

    Args:
        policy: A location-only policy (see :func:`location_only_problem`) with SB3's ``predict``.
        protocol: A policy whose ``env_kwargs`` set ``label_mode`` and/or ``init_prompts`` in the
            ``"patch"`` action mode (e.g. :class:`agents.alignsam.policy.AlignSAMPolicy`).
        protocol_name: The protocol policy's name in reports (its spec, e.g. ``"alignsam:runs/a"``).

    Raises:
        ValueError: If ``policy`` is not location-only, or ``protocol`` sets neither option or
            another action mode.
    """

    def __init__(self, policy: Any, protocol: Any, protocol_name: str | None = None) -> None:
        problem = location_only_problem(policy)
        if problem is not None:
            raise ValueError(f"Expected a location-only policy (patch actions, labels and initial prompts from the "
                             f"env) to run under another protocol, got {_name(policy)!r}: {problem}")
        kwargs = dict(getattr(protocol, "env_kwargs", None) or {})
        borrowed = {key: kwargs[key] for key in BORROWED if key in kwargs}
        name = protocol_name or _name(protocol)
        if not borrowed:
            raise ValueError(f"Expected a protocol policy whose env options set label_mode or init_prompts "
                             f"(e.g. alignsam:RUN_DIR), got {name!r}, which sets neither")
        if kwargs.get("action_mode", "patch") != "patch":
            raise ValueError(f"Expected a protocol policy in the 'patch' action mode (its labels are those of "
                             f"patch clicks), got {name!r} with action_mode={kwargs['action_mode']!r}")
        self.policy = policy
        self.protocol = protocol
        self.protocol_name = name
        self.name = _name(policy)
        self._env_kwargs = {**dict(getattr(policy, "env_kwargs", None) or {}), "action_mode": "patch", **borrowed}

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """``policy``'s env options with ``protocol``'s ``label_mode`` / ``init_prompts``, patch actions."""
        return dict(self._env_kwargs)

    @property
    def oracle(self) -> bool:
        """Whether the wrapped policy reads ground truth."""
        return bool(getattr(self.policy, "oracle", False))

    @property
    def description(self) -> str:
        """The wrapped policy's description and the protocol it runs under."""
        inner = getattr(self.policy, "description", None) or type(self.policy).__name__
        return f"{inner}, with the labels and initial prompts of {self.protocol_name}"

    def bind(self, env: Any) -> None:
        """Bind the wrapped policy (if it binds) to ``env``."""
        if hasattr(self.policy, "bind"):
            self.policy.bind(env)

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """The wrapped policy's SB3 ``predict`` (``action_masks`` passed on only if it takes them)."""
        extra = {}
        if action_masks is not None and "action_masks" in inspect.signature(self.policy.predict).parameters:
            extra["action_masks"] = action_masks
        return self.policy.predict(observation, state=state, episode_start=episode_start,
                                   deterministic=deterministic, **extra)

    def close(self) -> None:
        """Close the wrapped policy (if it has ``close``)."""
        if hasattr(self.policy, "close"):
            self.policy.close()

    def __repr__(self) -> str:
        return f"ProtocolPolicy({self.policy!r}, protocol={self.protocol_name!r})"


def apply_protocol(policies: Mapping[str, Any], protocol: Any, protocol_name: str) -> dict[str, Any]:
    """Run every location-only policy of a comparison under ``protocol``'s labels and initial prompts.

    Policies that are not location-only (the protocol policy itself, oracles acting in the
    ``"point"`` mode, other learned agents) keep their own env options; reports mark those whose
    episodes read ground truth (:func:`privileges`).

    Args:
        policies: Report name -> policy, in report order (kept).
        protocol: The policy whose ``label_mode`` / ``init_prompts`` are used (see :class:`ProtocolPolicy`).
        protocol_name: Its name in reports.

    Returns:
        The same mapping with each location-only policy wrapped in a :class:`ProtocolPolicy`.

    Raises:
        ValueError: If ``protocol`` provides no such options (see :class:`ProtocolPolicy`).
    """
    return {name: ProtocolPolicy(policy, protocol, protocol_name)
            if policy is not protocol and location_only_problem(policy) is None else policy
            for name, policy in policies.items()}
