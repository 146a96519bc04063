"""Keeping a learned policy's training samples out of its evaluation.

A learned policy may declare the samples it was trained on, by content: a
``train_sample_hashes`` attribute holding the :func:`sam_gym.data.hashing.sample_hash` of each
training sample (a ``frozenset`` of hex strings), or ``None`` when its run recorded its split
without hashes (then ``train_split`` describes that split in words, for the warning). An
AlignSAM run (:class:`agents.alignsam.policy.AlignSAMPolicy`) does; a
:class:`~sam_gym.protocol.ProtocolPolicy` counts its protocol policy's declaration too (the
labels come from a model trained on those samples). Policies without the attribute (random, grid,
oracles) were trained on nothing.

:func:`select_held_out` matches the evaluation dataset's samples against those hashes, so the
dataset's name or folder does not matter: a copy of the training data under another name is
recognised, and another dataset that shares no sample is scored in full.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sam_gym.protocol import ProtocolPolicy

__all__ = ["HeldOut", "TrainingSamples", "select_held_out"]


@dataclass
class TrainingSamples:
    """What an evaluation knows of one policy's training samples.

    Attributes:
        known: The policy recorded the content hashes of its training samples (``False``: an old
            run whose split is recorded by index only; whether they are scored is unknown).
        split: How the policy describes its split (for messages).
        scored: Dataset indices scored although they are its training samples (``include_train``).
        excluded: Dataset indices left out because they are its training samples.
    """

    known: bool
    split: str
    scored: list[int] = field(default_factory=list)
    excluded: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """``{"checked", "split", "train_indices_scored", "train_indices_excluded"}`` for ``results.json``."""
        return {"checked": self.known, "split": self.split, "train_indices_scored": list(self.scored),
                "train_indices_excluded": list(self.excluded)}


@dataclass
class HeldOut:
    """The samples an evaluation scores, after leaving out the policies' training samples.

    Attributes:
        indices: The dataset indices to score, in dataset order.
        excluded: Dataset indices left out as some policy's training samples (empty with ``include_train``).
        include_train: Training samples were kept (``sam-gym eval --include-train``).
        policies: Policy name -> :class:`TrainingSamples`, for the policies that declare training samples.
    """

    indices: list[int]
    excluded: list[int]
    include_train: bool
    policies: dict[str, TrainingSamples]

    def to_dict(self) -> dict[str, Any]:
        """``{"include_train", "excluded_indices", "policies": {name: TrainingSamples.to_dict()}}``."""
        return {"include_train": self.include_train, "excluded_indices": list(self.excluded),
                "policies": {name: info.to_dict() for name, info in self.policies.items()}}


_MISSING = object()


def _declarations(policy: Any) -> list[Any]:
    """The policies whose training samples count for ``policy`` (itself, or a wrapper's two parts)."""
    parts = [policy.policy, policy.protocol] if isinstance(policy, ProtocolPolicy) else [policy]
    return [p for p in parts if getattr(p, "train_sample_hashes", _MISSING) is not _MISSING]


def select_held_out(
    policies: Mapping[str, Any], dataset: Any, candidates: Iterable[int], *, limit: int | None = None,
    include_train: bool = False,
) -> HeldOut:
    """Choose the samples to score: the candidates in order, leaving out the policies' training samples.

    Samples are hashed (:func:`~sam_gym.data.hashing.sample_hash`) only when some policy declares
    hashes, one at a time, until ``limit`` samples are chosen. A policy whose run records its split
    without hashes gets one warning saying that its training samples cannot be told apart.

    Args:
        policies: Report name -> policy.
        dataset: The evaluation dataset.
        candidates: Dataset indices to choose from, in order.
        limit: Choose at most this many samples (the first ones that are not left out).
        include_train: Keep training samples (each policy's :attr:`TrainingSamples.scored` lists them).

    Returns:
        The :class:`HeldOut` selection.
    """
    from sam_gym.data.hashing import sample_hash

    hashes: dict[str, frozenset[str]] = {}
    info: dict[str, TrainingSamples] = {}
    for name, policy in policies.items():
        parts = _declarations(policy)
        if not parts:
            continue
        declared = [p.train_sample_hashes for p in parts]
        known = all(h is not None for h in declared)
        split = "; ".join(str(getattr(p, "train_split", "") or "unknown split") for p in parts)
        info[name] = TrainingSamples(known=known, split=split)
        hashes[name] = frozenset().union(*(frozenset(h) for h in declared if h is not None))
        if not known:
            warnings.warn(f"Policy {name!r} records its training split by index only ({split}), without sample "
                          f"hashes: sam-gym cannot tell whether {dataset.name} holds its training samples and "
                          f"scores them all; train it again with this version to record them, or evaluate on data "
                          f"it was not trained on", stacklevel=2)
    chosen: list[int] = []
    excluded: list[int] = []
    for index in candidates:
        if limit is not None and len(chosen) >= limit:
            break
        index = int(index)
        owners = []
        if any(hashes.values()):
            try:
                digest = sample_hash(dataset[index])
            except ValueError:  # an unusable file: prepare_episodes skips it and says why
                digest = ""
            owners = [name for name, known in hashes.items() if digest in known]
        if owners and not include_train:
            excluded.append(index)
            for name in owners:
                info[name].excluded.append(index)
            continue
        chosen.append(index)
        for name in owners:
            info[name].scored.append(index)
    return HeldOut(indices=chosen, excluded=excluded, include_train=include_train, policies=info)
