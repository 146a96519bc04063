"""One entry type and one lookup for every name table of sam_gym: backends, policies, commands, datasets.

Like Gymnasium's ``register(id, entry_point="pkg.mod:Cls")``, an :class:`Entry` names what it builds
by a string, ``"module.path:Attribute"`` (or a bare ``"module.path"`` for a command module), which
is imported only when the entry is resolved. That keeps ``import sam_gym`` light and lets the
library name code that sits above it (the policies and trainers of ``agents``) without importing it.

>>> from sam_gym.registry import Entry, lookup
>>> table = {"random": Entry("agents.simple:RandomPolicy", "uniformly random patch")}
>>> lookup(table, "random", kind="policy").target
'agents.simple:RandomPolicy'
>>> lookup(table, "randon", kind="policy")
Traceback (most recent call last):
...
ValueError: Expected policy to be one of ['random'], got 'randon'. Did you mean 'random'?
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Entry", "lookup", "resolve"]


@dataclass(frozen=True)
class Entry:
    """One name of a registry.

    Attributes:
        target: ``"module.path:Attribute"`` (dots after the colon walk attributes, e.g.
            ``"pkg.mod:Cls.load"``), or ``"module.path"`` for the module itself.
        help: One line saying what the name builds (shown in ``--help`` and in errors); empty where
            the target says it itself (a command module's ``HELP``).
        kwargs: Fixed keyword arguments the target is called with (e.g. a backend's ``model_type``).
        arg: Whether the target takes the ``NAME:ARG`` argument as its first parameter:
            ``"required"``, ``"optional"`` or ``"none"`` (then the registry never passes one).
        checkpoint: Whether the target loads weights, and so takes ``checkpoint``, ``device`` and
            ``half`` (a weight-free backend such as ``classical`` takes none of them).
    """

    target: str
    help: str = ""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    arg: Literal["required", "optional", "none"] = "none"
    checkpoint: bool = False

    def __post_init__(self) -> None:
        if self.arg not in ("required", "optional", "none"):
            raise ValueError(f"Expected arg to be 'required', 'optional' or 'none', got {self.arg!r}")

    def resolve(self) -> Any:
        """Import and return the target (a module, class or function)."""
        return resolve(self.target)


def resolve(target: str) -> Any:
    """Import ``"module.path:Attr.sub"`` (or ``"module.path"``) and return the object it names.

    Raises:
        ImportError: If the module cannot be imported.
        AttributeError: If the module has no such attribute.
    """
    module_name, _, attr_path = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split(".") if attr_path else ():
        obj = getattr(obj, part)
    return obj


def lookup(
    table: Mapping[str, Entry], name: str, kind: str, aliases: Mapping[str, str] | None = None, also: str = "",
    why: str = "",
) -> Entry:
    """Return ``table[name]`` (after ``aliases``), or raise with the names and a close match.

    Args:
        table: Name -> :class:`Entry`.
        name: The name asked for.
        kind: What the names are, for the message (``"backend"``, ``"policy"``, ...).
        aliases: Other accepted spellings -> their registered name (offered as close matches too).
        also: What else would be accepted, appended to the list (e.g. ``" or 'module.path:Class'"``).
        why: Appended to the name in the message (e.g. ``" (no such directory)"``).

    Raises:
        ValueError: ``"Expected {kind} to be one of [...]{also}, got 'x'{why}. Did you mean 'y'?"``.
    """
    aliases = aliases or {}
    key = aliases.get(name, name)
    if key in table:
        return table[key]
    close = difflib.get_close_matches(str(name), [*table, *aliases], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Expected {kind} to be one of {list(table)}{also}, got {name!r}{why}.{hint}")
