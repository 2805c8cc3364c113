"""Field-level visibility, sans I/O (issue 11): which fields of an object each audience gets.

A replicated class may declare

- ``__reverb_owner_fields__ = ("inventory", ...)``: these reach only the client owning the
  object (``belonging_membership``), never the others;
- ``__reverb_server_fields__ = ("ai_state", ...)``: these never leave the server, not even to
  the owner (as ``__reverb_exclude__`` does, but named for the intent and checked here).

An object has two audiences, ``OWNER`` and ``OTHERS``; the engine encodes each entry (spawn or
update) at most once per audience and sends the owner's to the owner, the others' to every
other client that sees it. A type with no owner fields has one audience: both lists are the
same tuple, and the engine encodes once.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Audience", "FieldSplit", "audience_of", "field_split", "split_fields"]


class Audience(enum.Enum):
    OWNER = "owner"
    OTHERS = "others"


@dataclass(frozen=True)
class FieldSplit:
    """The field lists of one type per audience (declared order kept)."""

    owner: tuple[str, ...]  # every replicated field
    others: tuple[str, ...]  # the replicated fields minus the owner-only ones
    owner_only: frozenset[str]
    server_only: frozenset[str]

    @property
    def uniform(self) -> bool:
        """Whether both audiences get the same fields (one encoding serves all)."""
        return not self.owner_only

    def names(self, audience: Audience) -> tuple[str, ...]:
        return self.owner if audience is Audience.OWNER else self.others

    def allows(self, name: str, audience: Audience) -> bool:
        if name in self.server_only:
            return False
        return audience is Audience.OWNER or name not in self.owner_only


def _declared(cls: type, attr: str) -> frozenset[str]:
    value = getattr(cls, attr, ())
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"{cls.__qualname__}.{attr} must be a tuple of attribute names")
    names = frozenset(value)
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"{cls.__qualname__}.{attr}: {name!r} is not an attribute name")
    return names


def field_split(cls: type, fields: Iterable[str]) -> FieldSplit:
    """Split ``fields`` (the type's replicated fields, as ``TypeInfo.field_names`` gives them)
    into what the owner and the others receive.

    A name both owner-only and server-only is server-only (the stricter wins). A declared
    name that is not among ``fields`` is ignored here (types with undeclared fields replicate
    the public attributes an instance holds now)."""
    owner_only = _declared(cls, "__reverb_owner_fields__")
    server_only = _declared(cls, "__reverb_server_fields__")
    owner_only -= server_only
    names = [n for n in fields if n not in server_only]
    owner = tuple(names)
    others = owner if not owner_only else tuple(n for n in names if n not in owner_only)
    return FieldSplit(owner, others, owner_only, server_only)


def audience_of(obj: Any, client: int) -> Audience:
    """The audience ``client`` belongs to for ``obj``."""
    owner = getattr(obj, "belonging_membership", None)
    return Audience.OWNER if owner is not None and owner == client else Audience.OTHERS


def split_fields(
    split: FieldSplit, values: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One entry's field values for (the owner, the others), server-only ones dropped. When
    the split is uniform both are the same dict (encode it once)."""
    owner = {k: v for k, v in values.items() if k not in split.server_only}
    if split.uniform:
        return owner, owner
    return owner, {k: v for k, v in owner.items() if k not in split.owner_only}
