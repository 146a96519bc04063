"""Marks of a results row that is not on a deployable method's footing, for tables and plots.

``†``: the row is privileged, its episodes read the ground truth (an oracle policy, oracle click
labels, ground-truth initial prompts: :data:`sam_gym.protocol.PRIVILEGES`). ``‡``: the row was
scored on (possibly) its own policy's training samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sam_gym.protocol import PRIVILEGES

__all__ = ["ORACLE_MARK", "TRAIN_MARK", "footing_notes", "on_training_samples", "privileged", "row_label"]

#: Marks a privileged row: its episodes read the ground truth.
ORACLE_MARK = "†"
#: Marks a row scored on (possibly) its own training samples.
TRAIN_MARK = "‡"


def privileged(entry: Mapping[str, Any]) -> list[str]:
    """The row's privileges (results without the key: an oracle policy's one)."""
    return list(entry.get("privileged", ["episode_view"] if entry.get("oracle") else []))


def on_training_samples(entry: Mapping[str, Any]) -> bool:
    """Whether the row scored some of its policy's training samples, or cannot tell (``None``)."""
    return "train_samples_scored" in entry and (entry["train_samples_scored"] is None
                                                or entry["train_samples_scored"] > 0)


def row_label(name: str, entry: Mapping[str, Any]) -> str:
    """The policy name with its marks: ``†`` privileged, ``‡`` scored on its training samples."""
    return f"{name}{ORACLE_MARK if privileged(entry) else ''}{TRAIN_MARK if on_training_samples(entry) else ''}"


def footing_notes(results: Mapping[str, Any]) -> list[str]:
    """The footnotes of the marks, the protocol and the held-out selection (Markdown lines)."""
    policies: Mapping[str, Any] = results["policies"]
    lines: list[str] = []
    marked = {name: privileged(e) for name, e in policies.items() if privileged(e)}
    if marked:
        lines += ["", f"{ORACLE_MARK} Privileged: the row's episodes read the ground truth, so it is not on the "
                  "footing of a deployable method and not comparable with the unmarked rows:", "",
                  *(f"- `{name}`: {'; '.join(PRIVILEGES.get(k, k) for k in keys)}" for name, keys in marked.items())]
    if results.get("protocol"):
        wrapped = [name for name, e in policies.items() if e.get("protocol_from")]
        lines += ["", f"Protocol: {', '.join(f'`{n}`' for n in wrapped)} clicked with the labels and initial prompts "
                  f"of `{results['protocol']}` (`--protocol`); the other rows used their own."]
    held_out = results.get("held_out") or {}
    for name, info in (held_out.get("policies") or {}).items():
        if not info["checked"]:
            lines += ["", f"{TRAIN_MARK} `{name}`: its run records its split by index only ({info['split']}): "
                      "whether these samples include its training samples is unknown."]
        elif info["train_indices_scored"]:
            lines += ["", f"{TRAIN_MARK} `{name}`: scored on {len(info['train_indices_scored'])} of its own training "
                      "samples (`--include-train`): not a held-out score."]
    excluded = held_out.get("excluded_indices") or []
    if excluded:
        owners = [f"`{n}`" for n, i in held_out["policies"].items() if i["train_indices_excluded"]]
        lines += ["", f"Held out: {len(excluded)} sample(s) of the dataset are training samples of {', '.join(owners)} "
                  "(matched by content) and were left out for every policy."]
    return lines
