"""What the server's world knows of one object besides the object itself (``Record``), and the
checks of its fields against the wire's rules (§3.4): the errors that withhold an object from
every peer until it can be encoded (issue 8, decision 7).
"""

from __future__ import annotations

import re
from typing import Any

from reverb.errors import EncodeError
from reverb.proto import messages as m
from reverb.replication.types import TypeInfo

__all__ = [
    "FIELD_DEPTH",
    "MISSING",
    "OWNER",
    "Record",
    "bad_owner",
    "encode_error",
    "field_to_wire",
    "holding",
    "unset",
]

MISSING = object()  # an attribute that is not set
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX = m.MAX_SAFE_INT
# Nesting levels inside a sync (§3.4): sync > spawn/update list > entry > args/fields > value.
FIELD_DEPTH = 5
OWNER = "belonging_membership"


class Record:
    """What the world knows of one object besides the object itself."""

    __slots__ = ("args", "error", "fields", "fragment", "info", "obj", "owner", "seen", "uid")

    def __init__(self, obj: Any, uid: int, info: TypeInfo, args: bytes) -> None:
        self.obj = obj
        self.uid = uid
        self.info = info
        self.args = args  # the constructor arguments, encoded once
        self.fields: dict[str, Any] | None = None  # the baseline; None until first synced
        self.owner: int | None = None
        self.fragment: bytes | None = None  # the baseline's spawn entry, encoded when needed
        self.error: EncodeError | None = None  # set while withheld (issue 8, decision 7)
        self.seen = 0  # the last tick that compared it


def field_to_wire(value: Any, record: Record, name: str) -> Any:
    """``m.to_wire`` for a field, with the common scalars checked inline."""
    kind = type(value)
    if kind is float:
        if value - value == 0.0:
            return value
    elif kind is int:
        if -_MAX <= value <= _MAX:
            return value
    elif kind is str:
        if value.isascii() or not _SURROGATE.search(value):
            return value
    elif kind is bool or value is None:
        return value
    return m.to_wire(value, f"{record.info.name} uid={record.uid} attribute {name!r}", FIELD_DEPTH)


def encode_error(record: Record, name: str, value: Any) -> EncodeError:
    try:
        field_to_wire(value, record, name)
    except EncodeError as exc:
        return exc
    raise AssertionError("not an encode error")  # pragma: no cover


def holding(error: EncodeError, name: str, value: Any) -> EncodeError:
    """The error, saying what the attribute holds (the log and ``sync_error`` show it)."""
    if value is MISSING or name == OWNER:
        return error
    return EncodeError(f"{error} (the attribute holds a {type(value).__name__})")


def unset(record: Record, name: str) -> EncodeError:
    return EncodeError(f"{record.info.name} uid={record.uid}: declared field {name!r} is not set")


def bad_owner(record: Record, owner: Any) -> EncodeError:
    return EncodeError(
        f"{record.info.name} uid={record.uid} attribute {OWNER!r}: "
        f"a {type(owner).__name__} is not a membership id (an int or None)"
    )
