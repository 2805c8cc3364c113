"""Every message of docs/protocol.md §5 as a frozen dataclass, and the JSON codec.

A message class declares its wire name (``TYPE``) and its fields once; that declaration drives
both encoding and the validation of decoded messages (§3.5). Fields with a default are optional
on the wire; fields whose value is ``ABSENT`` are left out when encoding.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import importlib
import json
import math
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from operator import ge, itemgetter
from typing import Any, ClassVar, Union

from reverb.errors import CloseCode, EncodeError, RemoteProtocolError

__all__ = [
    "ABSENT",
    "MAX_DEPTH",
    "MAX_MESSAGE_NAME",
    "MAX_SAFE_INT",
    "PROTOCOL_VERSION",
    "Absent",
    "AppMessage",
    "Close",
    "Entries",
    "FrameTooLarge",
    "Hello",
    "Message",
    "MessageError",
    "Ping",
    "Pong",
    "Rpc",
    "RpcErrorReply",
    "RpcResult",
    "SpawnEntry",
    "Sync",
    "SyncFrame",
    "UpdateEntry",
    "Welcome",
    "WireLists",
    "WireSync",
    "decode",
    "dumpb",
    "dumps",
    "encode",
    "encode_rpc",
    "encode_sync",
    "make_rpc",
    "make_rpc_result",
    "spawn_fragment",
    "to_wire",
    "update_entry",
]

PROTOCOL_VERSION = 1
MAX_SAFE_INT = (
    2**53 - 1
)  # §3.4: every implementation (JavaScript included) represents these exactly
MAX_DEPTH = 32  # §3.4: deep enough for game state, shallow enough that no decoder recurses far
MAX_MESSAGE_NAME = 64  # §14.2: a message name is a short identifier, never a payload


class Absent(enum.Enum):
    """Marks an optional field that is left out of the encoded message."""

    ABSENT = "absent"


ABSENT = Absent.ABSENT


@dataclass(frozen=True)
class SpawnEntry:
    """An object as a client first sees it (§7.2)."""

    uid: int
    type: str
    owner: int | None
    args: list[Any]
    fields: dict[str, Any]


@dataclass(frozen=True)
class UpdateEntry:
    """The changed fields of an object, and its new owner if that changed (§7.2)."""

    uid: int
    fields: dict[str, Any]
    owner: int | Absent | None = ABSENT
    snap: bool | Absent = ABSENT  # §13.5: teleported, only on "time" connections


@dataclass(frozen=True)
class Message:
    """Base of all messages; ``TYPE`` is the wire name (§5)."""

    TYPE: ClassVar[str] = ""


@dataclass(frozen=True)
class Hello(Message):
    TYPE: ClassVar[str] = "hello"
    version: int
    max_frame: int | Absent = ABSENT
    auth: Any | Absent = ABSENT  # credentials for the server's authenticate hook (§4.8)
    contract: Any | Absent = ABSENT  # the client's types and RPCs (§4.9; form checked in §4.9.1)
    features: list[Any] | Absent = ABSENT  # optional features the client asks for (§4.11)
    resume: Any | Absent = ABSENT  # §18.3: the membership to resume (form checked there)


@dataclass(frozen=True)
class Welcome(Message):
    TYPE: ClassVar[str] = "welcome"
    version: int
    member: int
    tick_rate: float
    max_frame: int
    identity: Any | Absent = ABSENT  # who the authenticate hook says the client is (§4.8)
    features: list[Any] | Absent = ABSENT  # the features the server grants (§4.11)
    time: float | Absent = ABSENT  # the server time, with the feature "time" (§13.2)
    resume_token: str | Absent = ABSENT  # §18.2: with the feature "resume"
    resumed: bool | Absent = ABSENT  # §18.4: true when this welcome resumes a membership


@dataclass(frozen=True)
class Sync(Message):
    TYPE: ClassVar[str] = "sync"
    tick: int
    full: bool
    final: bool
    spawn: tuple[SpawnEntry, ...] = ()
    update: tuple[UpdateEntry, ...] = field(default=())
    despawn: tuple[int, ...] = ()
    # §12.3: additions to the field tables of the compact encoding, by type name
    schema: dict[str, Any] | Absent = ABSENT
    time: float | Absent = ABSENT  # §13.3: the server time of the tick, with "time"
    # §16.3: the despawned uids that left the client's view (still exist), with "interest"
    left: tuple[int, ...] | Absent = ABSENT
    room: str | Absent = ABSENT  # §17.4: the room it belongs to, with "rooms"

    def wire(self) -> WireLists:
        """The entries as JSON values: spawn objects, update objects (or compact arrays,
        §12.4), despawned uids and the schema additions (or None). What a client applies."""
        spawn = [
            {"uid": e.uid, "type": e.type, "owner": e.owner, "args": e.args, "fields": e.fields}
            for e in self.spawn
        ]
        update = [update_entry(e.uid, e.fields, e.owner, e.snap) for e in self.update]
        schema = None if isinstance(self.schema, Absent) else self.schema
        return spawn, update, list(self.despawn), schema


# spawn objects, update entries (objects or compact arrays), despawned uids, schema or None
WireLists = tuple[list[dict[str, Any]], list[Any], list[int], dict[str, Any] | None]


@dataclass(frozen=True)
class Rpc(Message):
    TYPE: ClassVar[str] = "rpc"
    id: int
    uid: int
    method: str
    args: list[Any]
    room: str | Absent = ABSENT  # §17.4: required with "rooms"


@dataclass(frozen=True)
class RpcResult(Message):
    TYPE: ClassVar[str] = "rpc_result"
    id: int
    value: Any
    room: str | Absent = ABSENT  # §17.4: with "rooms"


# The RPC path builds an ``Rpc`` and an ``RpcResult`` per call: these make the instance the
# frozen dataclass's ``__init__`` would (same type, same fields, equal), without its
# ``object.__setattr__`` per field. (tests/proto/test_rpc_path.py holds them to that.)
_new = object.__new__


def make_rpc(call_id: int, uid: int, method: str, args: list[Any]) -> Rpc:
    """``Rpc(id=call_id, uid=uid, method=method, args=args)``, built directly."""
    made: Rpc = _new(Rpc)
    made.__dict__.update(id=call_id, uid=uid, method=method, args=args, room=ABSENT)
    return made


def make_rpc_result(call_id: int, value: Any) -> RpcResult:
    """``RpcResult(id=call_id, value=value)``, built directly."""
    made: RpcResult = _new(RpcResult)
    made.__dict__.update(id=call_id, value=value, room=ABSENT)
    return made


@dataclass(frozen=True)
class RpcErrorReply(Message):
    TYPE: ClassVar[str] = "rpc_error"
    id: int
    code: str
    message: str
    room: str | Absent = ABSENT  # §17.4: with "rooms"


@dataclass(frozen=True)
class Ping(Message):
    TYPE: ClassVar[str] = "ping"
    nonce: int


@dataclass(frozen=True)
class Pong(Message):
    TYPE: ClassVar[str] = "pong"
    nonce: int
    time: float | Absent = ABSENT  # §13.4: the server time, to a "time" client


@dataclass(frozen=True)
class Close(Message):
    TYPE: ClassVar[str] = "close"
    code: int
    reason: str


@dataclass(frozen=True)
class AppMessage(Message):
    """A named application message, either way, with the feature ``"messages"`` (§14.2)."""

    TYPE: ClassVar[str] = "message"
    name: str
    data: Any | Absent = ABSENT  # any JSON value; absent means null (§14.2)
    room: str | Absent = ABSENT  # §17.4: with "rooms"


@dataclass(frozen=True)
class MessageError(Message):
    """The server could not handle a client's ``message`` (§14.4); the session stays open."""

    TYPE: ClassVar[str] = "message_error"
    name: str
    code: str
    reason: str
    room: str | Absent = ABSENT  # §17.4: with "rooms"


# -- rooms (§17), with the feature "rooms" -----------------------------------------------------


@dataclass(frozen=True)
class RoomList(Message):
    """Ask for the listings of the live rooms (of type ``name``, §17.3)."""

    TYPE: ClassVar[str] = "room_list"
    req: int
    name: str | Absent | None = ABSENT


@dataclass(frozen=True)
class RoomListResult(Message):
    TYPE: ClassVar[str] = "room_list_result"
    req: int
    rooms: list[Any]
    truncated: bool | Absent = ABSENT


@dataclass(frozen=True)
class RoomJoin(Message):
    """``mode``: join_or_create, create, join, join_by_id (§17.5)."""

    TYPE: ClassVar[str] = "room_join"
    req: int
    mode: str
    name: str | Absent = ABSENT
    options: dict[str, Any] | Absent = ABSENT
    filter: dict[str, Any] | Absent = ABSENT
    room: str | Absent = ABSENT
    token: str | Absent = ABSENT
    switch: bool | Absent = ABSENT


@dataclass(frozen=True)
class RoomJoined(Message):
    TYPE: ClassVar[str] = "room_joined"
    req: int
    room: str
    name: str
    created: bool
    tick_rate: float | Absent = ABSENT  # the room's sync rate in Hz (informational)


@dataclass(frozen=True)
class RoomRefused(Message):
    TYPE: ClassVar[str] = "room_refused"
    req: int
    code: str
    reason: str


@dataclass(frozen=True)
class RoomLeave(Message):
    TYPE: ClassVar[str] = "room_leave"
    req: int


@dataclass(frozen=True)
class RoomLeft(Message):
    TYPE: ClassVar[str] = "room_left"
    room: str
    consented: bool
    req: int | Absent = ABSENT
    reason: str | Absent = ABSENT


@dataclass(frozen=True)
class RoomWatch(Message):
    TYPE: ClassVar[str] = "room_watch"
    req: int
    name: str | Absent | None = ABSENT


@dataclass(frozen=True)
class RoomUnwatch(Message):
    TYPE: ClassVar[str] = "room_unwatch"
    req: int


@dataclass(frozen=True)
class RoomEvent(Message):
    TYPE: ClassVar[str] = "room_event"
    event: str
    room: dict[str, Any]


ROOM_REQUESTS = (RoomList, RoomJoin, RoomLeave, RoomWatch, RoomUnwatch)  # C->S
ROOM_REPLIES = (RoomListResult, RoomJoined, RoomRefused, RoomLeft, RoomEvent)  # S->C
ROOM_MODES = frozenset({"join_or_create", "create", "join", "join_by_id", "reservation"})


def in_room(message: Message, room: str) -> Message:
    """A copy of a room-scoped message (``sync``, ``rpc_result``, ``rpc_error``) carrying
    ``room`` (§17.4); a ``SyncFrame`` keeps sharing its encoded entries."""
    if isinstance(message, (SyncFrame, WireSync)):
        stamped = copy.copy(message)
        object.__setattr__(stamped, "room", room)
        rows = getattr(stamped, "_rows", None)
        if rows is not None:  # §20.4: its rows, should it be split, carry the room too
            object.__setattr__(stamped, "_rows", in_room(rows, room))
        return stamped
    return dataclasses.replace(message, room=room)  # type: ignore[call-arg]


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        Welcome,
        Sync,
        Rpc,
        RpcResult,
        RpcErrorReply,
        Ping,
        Pong,
        Close,
        AppMessage,
        MessageError,
        *ROOM_REQUESTS,
        *ROOM_REPLIES,
    )
}

# -- schema: derived once from the dataclass declarations ------------------------------------

_Check = typing.Callable[[Any, str], Any]


def _fail(path: str, expected: str, value: Any) -> typing.NoReturn:
    raise RemoteProtocolError(
        f"field {path!r}: expected {expected}, got {type(value).__name__}", CloseCode.PROTOCOL_ERROR
    )


def _check_int(value: Any, path: str) -> int:
    if type(value) is not int:
        _fail(path, "an integer", value)
    return value


def _check_number(value: Any, path: str) -> float:
    if type(value) not in (int, float):
        _fail(path, "a number", value)
    return float(value)


def _check_str(value: Any, path: str) -> str:
    if type(value) is not str:
        _fail(path, "a string", value)
    return value


def _check_bool(value: Any, path: str) -> bool:
    if type(value) is not bool:
        _fail(path, "a boolean", value)
    return value


def _check_list(value: Any, path: str) -> list[Any]:
    if type(value) is not list:
        _fail(path, "an array", value)
    return value


def _check_dict(value: Any, path: str) -> dict[str, Any]:
    if type(value) is not dict:
        _fail(path, "an object", value)
    return value


def _check_any(value: Any, path: str) -> Any:
    return value


_SCALARS: dict[Any, _Check] = {
    int: _check_int,
    float: _check_number,
    str: _check_str,
    bool: _check_bool,
    Any: _check_any,
}


def _checker(hint: Any) -> tuple[_Check, bool]:
    """Return (check, optional) for a field's type hint."""
    if hint in _SCALARS:
        return _SCALARS[hint], False
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        optional = Absent in args
        rest = tuple(a for a in args if a is not Absent)
        nullable = type(None) in rest
        rest = tuple(a for a in rest if a is not type(None))
        (inner,) = rest
        check, _ = _checker(inner)
        if nullable:
            return (lambda v, p: None if v is None else check(v, p)), optional
        return check, optional
    if origin is list:
        return _check_list, False
    if origin is dict:
        return _check_dict, False
    if origin is tuple:
        item, _ = _checker(args[0])

        def check_tuple(value: Any, path: str) -> tuple[Any, ...]:
            items = _check_list(value, path)
            return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(items))

        return check_tuple, False
    if dataclasses.is_dataclass(hint):
        return _struct_checker(hint), False
    raise TypeError(f"no wire schema for {hint!r}")  # pragma: no cover - a declaration bug


def _struct_checker(cls: Any) -> _Check:
    hints = typing.get_type_hints(cls)
    spec = []
    for f in dataclasses.fields(cls):
        check, optional = _checker(hints[f.name])
        spec.append((f.name, check, optional))

    def check_struct(value: Any, path: str) -> Any:
        obj = _check_dict(value, path)
        kwargs = {}
        for name, check, optional in spec:
            if name not in obj:
                if optional:
                    continue
                raise RemoteProtocolError(
                    f"missing field {path + '.' + name if path else name!r}",
                    CloseCode.PROTOCOL_ERROR,
                )
            kwargs[name] = check(obj[name], f"{path}.{name}" if path else name)
        return cls(**kwargs)

    return check_struct


_DECODERS: dict[str, _Check] = {name: _struct_checker(cls) for name, cls in MESSAGE_TYPES.items()}

# -- JSON layer: §3.1-§3.4 -------------------------------------------------------------------
#
# Decoding runs for every byte a peer sends, so it must stay cheap even on a hostile megabyte
# (issue 8: Python hooks per number and per object cost ~0.35 s per MiB of small ints). The C
# scanner builds the value with no per-value hook; §3.4 is then checked on the result by a
# walk whose per-item work is done by C builtins, after text-level searches have ruled out
# what cannot occur (``_check_tree``). Only NaN/Infinity keep a hook: it runs when they appear.


class _Refused(ValueError):
    """Raised by our own hooks, with our own words (never Python's text)."""


def _no_constants(name: str) -> Any:
    raise _Refused(f"{name} is not allowed")


def _parse_int(text: str) -> int:
    # Only used when the interpreter's cap on int digits is off: int() of a megabyte of digits
    # is quadratic, so the length is checked before converting.
    if len(text.lstrip("-")) > 16 or abs(int(text)) > MAX_SAFE_INT:
        raise _Refused("integer out of the safe range ±(2**53-1)")
    return int(text)


_decoder = json.JSONDecoder(parse_constant=_no_constants)
_guarded_decoder = json.JSONDecoder(parse_constant=_no_constants, parse_int=_parse_int)
# Python ≥ 3.10.7 refuses int() of more than 4300 digits by default (cheap: ~0.1 ms at the cap).
_INT_DIGITS_CAP = 4300


_get_int_max_str_digits = getattr(sys, "get_int_max_str_digits", None)


def _int_digits_capped() -> bool:
    get = _get_int_max_str_digits
    return get is not None and 0 < get() <= _INT_DIGITS_CAP


_SURROGATE = re.compile("[\ud800-\udfff]")
# Strict UTF-8 decoding refuses encoded surrogates, so a lone one can only come from a
# \\uD800-\\uDFFF escape: without such an escape in the text, no string needs looking at.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# An int beyond ±(2**53-1) has at least 16 digits; a float literal overflows only with at
# least 16 digits before its point or an exponent of at least 3 digits. Without either in the
# text, no number needs looking at. (Found by substring search once digits are all made "0":
# a regular expression trying every position costs ~50 ms per MiB.) A run of 16 to 31 digits
# right after a point is a float's fraction (17 digits are common: ``repr(random())``), which
# is harmless: the text needs a look only when it has more runs of 16 than such fractions.
# The exponent is found by a pattern that starts with a literal, which the regular expression
# engine scans for in C (a substring search for "e000" crawls over text made mostly of "0").
_FOLD_NUMBERS = bytes.maketrans(b"123456789E", b"000000000e")
_RUN = b"0" * 16
_FRACTION = b"." + _RUN
_BIG_EXPONENT = re.compile(rb"e[-+]?000")


def _has_big_number(body: bytes) -> bool:
    folded = body.translate(_FOLD_NUMBERS)
    if _RUN in folded and folded.count(_RUN) != folded.count(_FRACTION):
        return True
    return _BIG_EXPONENT.search(folded) is not None


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NUMBERS = frozenset({int, float, bool}).__contains__
_STRINGS = frozenset({str}).__contains__
_CONTAINERS = frozenset({dict, list}).__contains__
_DICTS = frozenset({dict}).__contains__
_ARRAYS = frozenset({list}).__contains__


def _values_of(dicts: list[dict[str, Any]]) -> Any:
    return chain.from_iterable(map(dict.values, dicts))


def _only(values: list[Any], kind: Callable[[type], bool]) -> list[Any]:
    """The items of ``values`` whose type ``kind`` accepts, filtered in C."""
    return list(compress(values, map(kind, map(type, values))))


def _check_numbers(numbers: list[Any]) -> None:
    """Every int within ±(2**53-1), every float finite (§3.4); ``numbers`` holds no other type
    but bool. ``min``/``max`` clear almost every list in C; the loop is for the rest."""
    if max(numbers) <= MAX_SAFE_INT and min(numbers) >= -MAX_SAFE_INT:
        return
    for value in numbers:
        if type(value) is int:
            if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                raise RemoteProtocolError(
                    "payload is not valid JSON: integer out of the safe range ±(2**53-1)",
                    CloseCode.INVALID_PAYLOAD,
                )
        elif type(value) is float and not math.isfinite(value):
            raise RemoteProtocolError(
                "payload is not valid JSON: number out of range", CloseCode.INVALID_PAYLOAD
            )


def _check_strings(strings: list[str]) -> None:
    if any(map(_SURROGATE.search, strings)):
        raise RemoteProtocolError(
            "string holds a lone surrogate (no UTF-8 form)", CloseCode.INVALID_PAYLOAD
        )


_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _depth_within(text: str, limit: int) -> bool:
    """True when ``text`` (valid JSON, strings without escapes) nests at most ``limit`` levels:
    the brackets outside strings, with each innermost pair removed per round (C work; a sync
    of a thousand compact rows takes 3 rounds). False means "look closer", not "too deep"."""
    if "\\" in text:
        return False  # an escaped quote would shift the strings; the walk decides
    outside = "".join(text.split('"')[::2])  # JSON text outside strings: every even piece
    shape = outside.encode("utf-8").translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not shape:
            return True
        # one level per round: a pair emptied by this round's removals waits for the next
        shape = shape.replace(b"[]", b"-").replace(b"{}", b"-").replace(b"-", b"")
    return not shape


def _check_tree(body: bytes, text: str, root: dict[str, Any]) -> int:
    """§3.4 on the decoded message: nesting depth, number ranges, lone surrogates. Returns how
    many members all its objects have, for the duplicate-key check.

    The walk goes level by level, each level's values in one list, so that the work per value
    is done by C builtins (``map``, ``compress``, ``min``, ``max``); what the text shows cannot
    occur (no big number, no surrogate escape, no further array or object) is skipped.
    """
    numbers = _has_big_number(body)
    strings = _SURROGATE_ESCAPE.search(text) is not None
    braces = text.count("{")
    containers = text.count("[") + braces  # at least as many as the value holds
    if braces == 1 and not numbers and not strings:
        if containers <= MAX_DEPTH or _depth_within(text, MAX_DEPTH):
            return len(root)  # the root is the only object; nothing is deep, big or a surrogate
    level: list[Any] = [root]
    depth = 1
    seen = members = 0
    while level:
        if depth > MAX_DEPTH:
            raise RemoteProtocolError(
                f"payload nests deeper than {MAX_DEPTH} levels", CloseCode.INVALID_PAYLOAD
            )
        seen += len(level)
        dicts = _only(level, _DICTS)
        members += sum(map(len, dicts))
        if strings:
            _check_strings(list(chain.from_iterable(dicts)))
        elif not numbers and seen >= containers:
            break  # nothing deeper exists, nothing here needs checking
        lists = _only(level, _ARRAYS) if len(dicts) < len(level) else []
        values = list(chain(_values_of(dicts), chain.from_iterable(lists)))
        if numbers:
            found = _only(values, _NUMBERS)
            if found:
                _check_numbers(found)
        if strings:
            _check_strings(_only(values, _STRINGS))
        level = _only(values, _CONTAINERS) if seen < containers else []
        depth += 1
    return members


def _check_unique_keys(text: str, members: int) -> None:
    """§3.4: no object repeats a key. The decoder keeps only the last of repeated keys, so the
    text then has more ``:`` separators (one per member, outside strings) than the value has
    members; counting them is C work."""
    if text.count(":") == members:
        return
    if _STRING.sub("", text).count(":") != members:
        raise RemoteProtocolError(
            "payload is not valid JSON: duplicate key in object", CloseCode.INVALID_PAYLOAD
        )


def _parse(text: str, body: bytes = b"") -> Any:
    # orjson reads an integer beyond 64 bits as a float: where such a number may be, the
    # standard library parses, so that it is refused as §3.4 says
    if _orjson is not None and not _has_big_number(body or text.encode("utf-8")):
        return _parse_fast(text)
    return _parse_stdlib(text)


def _parse_stdlib(text: str) -> Any:
    decoder = _decoder if _int_digits_capped() else _guarded_decoder
    try:  # the scanner itself, for a text that is one value and nothing else (the usual)
        value, end = decoder.scan_once(text, 0)  # type: ignore[attr-defined]
        if end == len(text):
            return value
    except Exception:  # refused, or whitespace around it: decoded again below, with its words
        pass
    try:
        return decoder.decode(text)
    except RecursionError:
        raise RemoteProtocolError("payload nests too deeply", CloseCode.INVALID_PAYLOAD) from None
    except json.JSONDecodeError as exc:
        raise RemoteProtocolError(
            f"payload is not valid JSON (at character {exc.pos})", CloseCode.INVALID_PAYLOAD
        ) from None
    except _Refused as exc:
        raise RemoteProtocolError(
            f"payload is not valid JSON: {exc}", CloseCode.INVALID_PAYLOAD
        ) from None
    except ValueError:  # int() over the interpreter's digit cap: its text is not for the peer
        raise RemoteProtocolError(
            "payload is not valid JSON: integer out of the safe range ±(2**53-1)",
            CloseCode.INVALID_PAYLOAD,
        ) from None


def _parse_fast(text: str) -> Any:
    """orjson's parser. What it refuses (rare: the peer is then closed) is parsed again by
    the standard library's, so that the refusal and its words are the same as without orjson
    (a lone surrogate escape, which orjson refuses, is then found by §3.4's checks)."""
    try:
        return _orjson.loads(text)
    except _orjson.JSONDecodeError:
        return _parse_stdlib(text)


def decode(body: bytes) -> Message:
    """Decode one frame body into a message, or raise ``RemoteProtocolError`` with its code."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("payload is not valid UTF-8", CloseCode.INVALID_PAYLOAD) from None
    if text.startswith("\ufeff"):
        raise RemoteProtocolError(
            "payload starts with a byte order mark", CloseCode.INVALID_PAYLOAD
        )
    obj = _parse(text, body)
    if type(obj) is not dict:
        raise RemoteProtocolError(
            f"payload is a JSON {type(obj).__name__}, not an object", CloseCode.INVALID_PAYLOAD
        )
    members = _check_tree(body, text, obj)
    _check_unique_keys(text, members)
    kind = obj.get("type")
    if type(kind) is not str:
        raise RemoteProtocolError("message has no string 'type'", CloseCode.PROTOCOL_ERROR)
    check = _DECODERS.get(kind)
    if check is None:
        raise RemoteProtocolError(f"unknown message type {kind[:40]!r}", CloseCode.PROTOCOL_ERROR)
    if kind == "sync":
        return _decode_sync(obj) or check(obj, "")
    if kind == "rpc_result" or kind == "rpc":
        fast = _decode_rpc(obj, kind)
        if fast is not None:
            return fast
    message: Message = check(obj, "")
    if isinstance(message, Rpc) and message.id < 0:
        raise RemoteProtocolError("rpc id must not be negative", CloseCode.PROTOCOL_ERROR)
    if isinstance(message, RoomJoin):
        _check_room_join(message)
    if (
        isinstance(message, (AppMessage, MessageError))
        and not 0 < len(message.name) <= MAX_MESSAGE_NAME
    ):
        raise RemoteProtocolError(  # §14.2
            f"{kind} name must hold 1 to {MAX_MESSAGE_NAME} characters", CloseCode.PROTOCOL_ERROR
        )
    return message


def _decode_rpc(obj: dict[str, Any], kind: str) -> Message | None:
    """The RPC path's messages (§5.4, §5.5) as the schema would build them, checked field by
    field without its general machinery; None for anything else (an optional field present,
    a missing or mistyped one, a negative id): the schema then decides, with its words."""
    call_id = obj.get("id")
    if type(call_id) is not int:
        return None
    if kind == "rpc_result":
        if len(obj) != 3 or "value" not in obj:
            return None  # "room" (§17.4), or an unknown or missing field
        return make_rpc_result(call_id, obj["value"])
    if len(obj) != 5 or call_id < 0:
        return None
    uid, method, args = obj.get("uid"), obj.get("method"), obj.get("args")
    if type(uid) is not int or type(method) is not str or type(args) is not list:
        return None
    return make_rpc(call_id, uid, method, args)


def _check_room_join(join: RoomJoin) -> None:
    """§17.5: an unknown ``mode``, or a mode without the field it needs, is malformed."""
    needs = {"join_by_id": "room", "reservation": "token"}.get(join.mode)
    if join.mode not in ROOM_MODES:
        raise RemoteProtocolError(
            f"room_join mode {join.mode[:40]!r} is unknown", CloseCode.PROTOCOL_ERROR
        )
    if join.mode in ("join_or_create", "create", "join") and join.name is ABSENT:
        needs = "name"
    if needs is not None and getattr(join, needs) is ABSENT:
        raise RemoteProtocolError(
            f"room_join mode {join.mode!r} needs {needs!r}", CloseCode.PROTOCOL_ERROR
        )


# -- sync: validated in bulk, entries kept as JSON values (the client's hot path) -------------
#
# A sync of a thousand entries must cost the client little more than parsing it: the checks
# of §5/§7.2 run over whole lists with C builtins (``map``, ``set``, ``all``), no dataclass is
# built per entry, and the client world applies the dicts as they are (``WireSync.wire``).
# Whatever these checks refuse is decoded again by the generic schema, which names the fault.

_LIST_TYPES = frozenset({list}).__contains__
_DICT_TYPES = frozenset({dict}).__contains__
_INT_TYPES = frozenset({int}).__contains__
_STR_TYPES = frozenset({str}).__contains__
_OWNER_TYPES = frozenset({int, type(None)}).__contains__
_BOOL_TYPES = frozenset({bool}).__contains__
_ENTRY_TYPES = frozenset({dict, list})
_get = dict.get
_has = dict.__contains__
MAX_SCHEMA_FIELDS = 1024  # §12.3: field names per type in the compact encoding's table


def _all(kind: Callable[[type], bool], values: Any) -> bool:
    return all(map(kind, map(type, values)))


def _members(entries: list[dict[str, Any]], key: str) -> list[Any]:
    return list(map(_get, entries, repeat(key)))


def _decode_sync(obj: dict[str, Any]) -> WireSync | None:
    """The sync as a ``WireSync``, or None when the generic schema must say what is wrong."""
    tick = obj.get("tick")
    full = obj.get("full")
    final = obj.get("final")
    spawn = obj.get("spawn")
    update = obj.get("update")
    despawn = obj.get("despawn")
    time = obj.get("time")
    if (
        (time is not None and type(time) not in (int, float))
        or type(tick) is not int
        or type(full) is not bool
        or type(final) is not bool
        or type(spawn) is not list
        or type(update) is not list
        or type(despawn) is not list
        or not _all(_INT_TYPES, despawn)
    ):
        return None
    if spawn and not _spawn_ok(spawn):
        return None
    if update:
        kinds = set(map(type, update))
        if not kinds <= _ENTRY_TYPES:
            return None
        if list in kinds:
            compact = [e for e in update if type(e) is list] if dict in kinds else update
            _check_compact(compact)
        if dict in kinds:
            plain = [e for e in update if type(e) is dict] if list in kinds else update
            if not _update_ok(plain):
                return None
    schema = obj.get("schema")
    if schema is not None:
        _check_schema(schema)
    left = obj.get("left")
    if left is not None:
        _check_left(left, despawn)
    room = obj.get("room")
    if room is not None and type(room) is not str:
        return None
    cols = obj.get("cols")
    if cols is not None:
        _check_cols(cols)
    sync = WireSync(tick, full, final, spawn, update, despawn, schema, time, left, room)
    if cols:
        object.__setattr__(sync, "cols", cols)
    return sync


def _check_cols(cols: Any) -> None:
    """§20.2: an array of blocks ``[indexes, uids, column, ...]``: ``indexes`` a non-empty
    array of strictly increasing ints, ``uids`` a non-empty array of ints, then one array per
    index, each as long as ``uids``. Indexes are checked against the field tables by the
    client world, which holds them."""
    if type(cols) is not list or not _all(_LIST_TYPES, cols):
        raise RemoteProtocolError("sync cols is not an array of arrays (§20.2)", _PROTO)
    for block in cols:
        if len(block) < 3 or not _all(_LIST_TYPES, block):
            raise RemoteProtocolError(
                "a column block is not an array of at least 3 arrays (§20.2)", _PROTO
            )
        indexes, uids = block[0], block[1]
        if len(block) != len(indexes) + 2:
            raise RemoteProtocolError(
                "a column block does not have one column per index (§20.2)", _PROTO
            )
        if not uids or not _all(_INT_TYPES, uids) or not _all(_INT_TYPES, indexes):
            raise RemoteProtocolError(
                "a column block's uids and indexes must be integers (§20.2)", _PROTO
            )
        if any(map(ge, indexes, indexes[1:])) or indexes[0] < 0:
            raise RemoteProtocolError(
                "a column block's indexes are not strictly increasing (§20.2)", _PROTO
            )
        n = len(uids)
        if any(len(column) != n for column in block[2:]):
            raise RemoteProtocolError(
                "a column of a block is not as long as its uids (§20.2)", _PROTO
            )


_PROTO = CloseCode.PROTOCOL_ERROR


def block_rows(cols: list[list[Any]]) -> list[list[Any]]:
    """§20.3: the compact update entries (§12.4) that column blocks stand for, in order."""
    rows: list[list[Any]] = []
    for block in cols:
        indexes, uids, columns = block[0], block[1], block[2:]
        for k, uid in enumerate(uids):
            row = [uid]
            for index, column in zip(indexes, columns, strict=True):
                row.append(index)
                row.append(column[k])
            rows.append(row)
    return rows


MIN_BLOCK = 4  # §20: fewer rows of the same shape than this stay rows (a block costs bytes)


def column_blocks(uids: list[int], rows: list[Any]) -> tuple[list[Any], list[int], list[Any]]:
    """§20.2: compact update entries (§12.4; object-form entries stay as they are) as column
    blocks of entries with the same indexes, and the entries left as rows. Every uid appears
    once in ``uids`` (the world's one entry per object per tick), so moving rows into blocks,
    applied after the rows (§20.3), changes nothing."""
    n = len(rows)
    if n < MIN_BLOCK:
        return [], uids, rows
    if set(map(type, rows)) == {list} and len(set(map(len, rows))) == 1 and len(rows[0]) > 1:
        columns = list(zip(*rows, strict=True))
        index_columns = columns[1::2]
        if all(column.count(column[0]) == n for column in index_columns):  # the common tick
            block = [[c[0] for c in index_columns], list(columns[0])]
            block += map(list, columns[2::2])
            return [block], [], []
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, row in enumerate(rows):
        if type(row) is list and len(row) > 1:
            groups.setdefault(tuple(row[1::2]), []).append(i)
    blocks: list[Any] = []
    taken: set[int] = set()
    for key, members in groups.items():
        if len(members) >= MIN_BLOCK:
            columns = list(zip(*[rows[i] for i in members], strict=True))
            block = [list(key), list(columns[0])]
            block += map(list, columns[2::2])
            blocks.append(block)
            taken.update(members)
    if not blocks:
        return [], uids, rows
    rest = [i for i in range(n) if i not in taken]
    return blocks, [uids[i] for i in rest], [rows[i] for i in rest]


def _check_left(left: Any, despawn: list[int]) -> None:
    """§16.3: ``left`` is an array of integers, each in the same message's ``despawn``."""
    if type(left) is not list or not _all(_INT_TYPES, left):
        raise RemoteProtocolError(
            "sync left is not an array of integers (§16.3)", CloseCode.PROTOCOL_ERROR
        )
    if not set(left) <= set(despawn):
        raise RemoteProtocolError(
            "sync left names a uid not in its despawn (§16.3)", CloseCode.PROTOCOL_ERROR
        )


def _spawn_ok(spawn: list[Any]) -> bool:
    return (
        _all(_DICT_TYPES, spawn)
        and _all(_INT_TYPES, _members(spawn, "uid"))
        and _all(_STR_TYPES, _members(spawn, "type"))
        and all(map(_has, spawn, repeat("owner")))
        and _all(_OWNER_TYPES, _members(spawn, "owner"))
        and _all(_LIST_TYPES, _members(spawn, "args"))
        and _all(_DICT_TYPES, _members(spawn, "fields"))
    )


def _update_ok(update: list[dict[str, Any]]) -> bool:
    if not (
        _all(_INT_TYPES, _members(update, "uid")) and _all(_DICT_TYPES, _members(update, "fields"))
    ):
        return False
    if any(map(_has, update, repeat("snap"))) and not _all(
        _BOOL_TYPES, [e["snap"] for e in update if "snap" in e]
    ):
        return False  # §13.5: the generic schema names the fault
    if any(map(_has, update, repeat("owner"))):
        return _all(_OWNER_TYPES, [e["owner"] for e in update if "owner" in e])
    return True


def _check_compact(entries: list[list[Any]]) -> None:
    """§12.4: ``[uid, index, value, ...]``: odd length, an integer uid. Indexes are checked
    against the field table by the client world, which holds the tables."""
    if not all(n & 1 for n in set(map(len, entries))):
        raise RemoteProtocolError(
            "compact update entry of even length (§12.4)", CloseCode.PROTOCOL_ERROR
        )
    if not _all(_INT_TYPES, map(_first_item, entries)):
        raise RemoteProtocolError(
            "compact update entry without an integer uid (§12.4)", CloseCode.PROTOCOL_ERROR
        )


_first_item = itemgetter(0)


def _check_schema(schema: Any) -> None:
    """§12.3: ``{type name: {"at": int, "add": [name, ...]}}``."""
    if type(schema) is not dict:
        raise RemoteProtocolError("sync schema is not an object (§12.3)", CloseCode.PROTOCOL_ERROR)
    for spec in schema.values():
        if (
            type(spec) is not dict
            or type(spec.get("at")) is not int
            or spec["at"] < 0
            or type(spec.get("add")) is not list
            or not _all(_STR_TYPES, spec["add"])
        ):
            raise RemoteProtocolError(
                "malformed sync schema entry (§12.3)", CloseCode.PROTOCOL_ERROR
            )


class WireSync(Sync):
    """A decoded ``sync`` whose entries stay JSON values, checked for shape (§7.2, §12.4).

    ``wire()`` hands them to the client world as they are; ``spawn``/``update`` build entry
    dataclasses on demand (tests and tools)."""

    _lists: WireLists

    def __init__(
        self,
        tick: int,
        full: bool,
        final: bool,
        spawn: list[dict[str, Any]],
        update: list[Any],
        despawn: list[int],
        schema: dict[str, Any] | None = None,
        time: float | None = None,
        left: list[int] | None = None,
        room: str | None = None,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "tick", tick)
        set_(self, "full", full)
        set_(self, "final", final)
        set_(self, "room", ABSENT if room is None else room)  # §17.4
        set_(self, "schema", ABSENT if schema is None else schema)
        set_(self, "time", ABSENT if time is None else float(time))
        set_(self, "left", ABSENT if left is None else tuple(left))
        set_(self, "_lists", (spawn, update, despawn, schema))
        set_(self, "cols", None)  # §20.2: column blocks, when the sync has any

    def wire(self) -> WireLists:
        return self._lists

    @property
    def spawn(self) -> tuple[SpawnEntry, ...]:
        return tuple(_spawn_entry(e) for e in self._lists[0])

    @property
    def update(self) -> tuple[UpdateEntry, ...]:
        return tuple(_update_entry(e) for e in self._lists[1])

    @property
    def despawn(self) -> tuple[int, ...]:
        return tuple(self._lists[2])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sync):
            return NotImplemented
        return _key(self) == _key(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        spawn, update, despawn, schema = self._lists
        return (
            f"WireSync(tick={self.tick}, full={self.full}, final={self.final}, "
            f"spawn={spawn!r}, update={update!r}, despawn={despawn!r}, schema={schema!r})"
        )


def _spawn_entry(e: dict[str, Any]) -> SpawnEntry:
    return SpawnEntry(e["uid"], e["type"], e["owner"], e["args"], e["fields"])


def _update_entry(e: Any) -> UpdateEntry:
    if type(e) is list:
        raise ValueError("a compact update entry (§12.4) needs the field table: use wire()")
    return UpdateEntry(e["uid"], e["fields"], e.get("owner", ABSENT), e.get("snap", ABSENT))


def _key(sync: Sync) -> tuple[Any, ...]:
    """What two syncs must share to be equal: unknown members (§3.5) do not count."""
    spawn, update, despawn, schema = sync.wire()
    cols = getattr(sync, "cols", None)
    if cols:  # §20.3: a block means its rows, after the entries
        update = [*update, *block_rows(cols)]
    return (
        sync.tick,
        sync.full,
        sync.final,
        [_spawn_entry(e) for e in spawn],
        [e if type(e) is list else _update_entry(e) for e in update],
        despawn,
        schema,
        sync.time,
        sync.room,
    )


# -- encoding ---------------------------------------------------------------------------------


def to_wire(value: Any, where: str = "value", depth: int = 2) -> Any:
    """Return ``value`` as plain JSON data (tuples become lists), or raise ``EncodeError``.

    ``where`` names the value in the error, e.g. ``"Player uid=3 attribute 'pos'"``;
    ``depth`` is the nesting level the value will have in its message (§3.4): 2 for a
    message's own field, 5 for an object's field inside a ``sync``.
    """
    kind = type(value)
    if kind is str:
        if _SURROGATE.search(value):
            raise EncodeError(f"{where}: string holds a lone surrogate, which has no UTF-8 form")
        return value
    if value is None or kind is bool:
        return value
    if kind is int:
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return value
        raise EncodeError(f"{where}: integer {value} is outside ±(2**53-1) (docs/protocol.md §3.4)")
    if kind is float:
        if math.isfinite(value):
            return value
        raise EncodeError(f"{where}: {value} is not a finite number (docs/protocol.md §3.4)")
    if depth > MAX_DEPTH:
        raise EncodeError(f"{where}: nests deeper than {MAX_DEPTH} levels (docs/protocol.md §3.4)")
    if kind is list or kind is tuple:
        out_list = []
        for i, v in enumerate(value):
            vk = type(v)
            # the common items checked here, without naming them (the name is only needed
            # in an error, which the recursive call below raises with its words)
            if (
                v is None
                or vk is bool
                or (vk is int and -MAX_SAFE_INT <= v <= MAX_SAFE_INT)
                or (vk is float and math.isfinite(v))
                or (vk is str and not _SURROGATE.search(v))
            ):
                out_list.append(v)
            else:
                out_list.append(to_wire(v, f"{where}[{i}]", depth + 1))
        return out_list
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str or _SURROGATE.search(k):
                raise EncodeError(f"{where}: dict key {k!r} is not a UTF-8 string")
            out[k] = to_wire(v, f"{where}[{k!r}]", depth + 1)
        return out
    raise EncodeError(
        f"{where}: a {kind.__name__} cannot be sent; use None, bool, int, float, str, "
        "list, tuple or dict with str keys"
    )


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {
            f.name: _plain(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if getattr(obj, f.name) is not ABSENT
        }
    if type(obj) is tuple:
        return [_plain(v) for v in obj]
    return obj


_encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def _no_default(value: Any) -> Any:
    raise TypeError(f"a {type(value).__name__} is not JSON")


def _make_dumps() -> typing.Callable[[Any], str]:
    """``_encoder.encode`` without its per-call set-up: the C encoder built once. Only for
    values already checked by ``to_wire`` (no cycles: the marker check is off). Falls back to
    ``_encoder.encode`` where the C encoder is missing or takes other arguments."""
    make = getattr(json.encoder, "c_make_encoder", None)
    try:
        c_encode = make(  # type: ignore[misc]
            None, _no_default, json.encoder.encode_basestring, None, ":", ",", False, False, False
        )
        if "".join(c_encode({"a": [1, 0.5, "é", None, True]}, 0)) != '{"a":[1,0.5,"é",null,true]}':
            raise ValueError("unexpected output")  # pragma: no cover
    except Exception:  # pragma: no cover - another interpreter
        return _encoder.encode
    join = "".join

    def dumps(value: Any) -> str:
        return join(c_encode(value, 0))

    return dumps


dumps = _make_dumps()


def _stdlib_dumpb(value: Any) -> bytes:
    """``dumps`` as UTF-8 bytes, with the standard library's encoder."""
    return dumps(value).encode("utf-8")


def _load_orjson() -> Any:
    """orjson when installed (extra ``reverb-net[fast]``), else None."""
    try:
        return importlib.import_module("orjson")
    except ImportError:
        return None


_orjson = _load_orjson()


def _fast_dumpb(value: Any) -> bytes:
    """orjson's encoding where it is byte for byte the standard library's; else the latter's.

    orjson writes floats below 1e-4 differently (``0.00001``, ``1e-7`` against ``1e-05``,
    ``1e-07``): an output holding ``e-`` or ``0.0000`` (in a number or, harmlessly, in a
    string) is encoded again by the standard library. Everything else -- separators,
    non-ASCII kept as UTF-8, control characters as ``\\u00XX``, ``-0.0``, ``1e+16`` -- is
    the same (tests/proto/test_fast.py compares both on random messages)."""
    try:
        out: bytes = _orjson.dumps(value)
    except TypeError:  # a value orjson refuses: the standard library's error, as before
        return _stdlib_dumpb(value)
    if b"e-" in out or b"0.0000" in out:
        return _stdlib_dumpb(value)
    return out


dumpb = _fast_dumpb if _orjson is not None else _stdlib_dumpb
FAST = _orjson is not None  # whether orjson is in use (encoding and parsing)

# dumpb_each: the values of a list, encoded in one call with this string between them. The
# separator below (its encoding between the list's commas) has a comma only at both ends:
# two occurrences overlap by that comma at most, and only where a value's encoding ends or
# starts with the string's, which an object or an array cannot.
_SPLIT = "\x00reverb:each"
_SPLIT_BYTES = b',"\\u0000reverb:each",'


def dumpb_each(values: list[Any]) -> list[bytes]:
    """``[dumpb(v) for v in values]``, for values that are JSON objects or arrays (dicts,
    lists), wire-safe: the bytes are the same, in about half the time for many small values
    (one encoder call instead of one per value; §7.2 update entries of a busy tick).

    The values are encoded as one list with a separator string between them, split on the
    separator. A value holding the separator string itself makes the count of pieces wrong
    (occurrences never overlap, and a separator outside a value sits between two values):
    then each value is encoded on its own."""
    n = len(values)
    if n < 2 or FAST:
        return [dumpb(v) for v in values]
    seq: list[Any] = [_SPLIT] * (2 * n - 1)
    seq[::2] = values
    parts = _stdlib_dumpb(seq)[1:-1].split(_SPLIT_BYTES)
    if len(parts) != n:
        return [dumpb(v) for v in values]
    return parts


def as_dict(message: Message) -> dict[str, Any]:
    """The message as the JSON object that goes on the wire."""
    data: dict[str, Any] = {"type": message.TYPE}
    data.update(_plain(message))
    return data


_RPC_SHAPES: dict[type, Callable[[Any], dict[str, Any]]] = {
    Rpc: lambda msg: {
        "type": "rpc",
        "id": msg.id,
        "uid": msg.uid,
        "method": msg.method,
        "args": msg.args,
    },
    RpcResult: lambda msg: {"type": "rpc_result", "id": msg.id, "value": msg.value},
    RpcErrorReply: lambda msg: {
        "type": "rpc_error",
        "id": msg.id,
        "code": msg.code,
        "message": msg.message,
    },
}


def encode(message: Message) -> bytes:
    """Encode a message as a frame body (UTF-8 JSON, §3). Values must already be wire-safe."""
    kind = type(message)
    if (kind is RpcResult or kind is RpcErrorReply or kind is Rpc) and message.room is ABSENT:  # type: ignore[attr-defined]
        # the RPC path's messages, built directly (the same object ``as_dict`` builds, in
        # the same order; their values were checked by ``to_wire``)
        try:
            return dumps(_RPC_SHAPES[kind](message)).encode("utf-8")
        except ValueError as exc:  # pragma: no cover - to_wire refuses what would get here
            raise EncodeError(f"{message.TYPE}: {exc}") from None
    if isinstance(message, Sync):
        return _frame_of(message).body()
    try:
        return _encoder.encode(as_dict(message)).encode("utf-8")
    except ValueError as exc:  # NaN slipped past to_wire: a local bug, reported as such
        raise EncodeError(f"{message.TYPE}: {exc}") from None


def encode_rpc(call_id: int, uid: int, method: str, args: list[Any]) -> bytes:
    """``encode(Rpc(id=call_id, uid=uid, method=method, args=args))`` without building the
    message (the client's call path); ``args`` already checked by ``to_wire``."""
    body = {"type": "rpc", "id": call_id, "uid": uid, "method": method, "args": args}
    try:
        return dumps(body).encode("utf-8")
    except ValueError as exc:  # pragma: no cover - to_wire refuses what would get here
        raise EncodeError(f"rpc: {exc}") from None


def encode_sync(sync: Sync, limit: int) -> list[bytes]:
    """Encode one tick's sync as parts of at most ``limit`` bytes each (§7.5).

    Raises ``FrameTooLarge`` (naming the entry's uid) when one entry cannot fit any part."""
    return _frame_of(sync).parts(limit)


# -- sync fragments: each entry encoded once, frames assembled from the bytes (§7.2, §7.5) -----


class FrameTooLarge(EncodeError):
    """One entry of a sync needs more than a peer's frame limit, whatever the split (§7.5)."""

    def __init__(self, uid: int, size: int, limit: int) -> None:
        super().__init__(f"object uid={uid} does not fit the client's max_frame")
        self.uid = uid
        self.size = size
        self.limit = limit


def spawn_fragment(uid: int, type_name: str, owner: int | None, args: bytes, fields: Any) -> bytes:
    """A spawn entry (§7.2) as JSON bytes; ``args`` is already encoded, ``fields`` wire-safe."""
    return b'{"uid":%d,"type":%s,"owner":%s,"args":%s,"fields":%s}' % (
        uid,
        dumpb(type_name),
        b"null" if owner is None else b"%d" % owner,
        args,
        dumpb(fields),
    )


def update_entry(
    uid: int,
    fields: dict[str, Any],
    owner: int | Absent | None = ABSENT,
    snap: bool | Absent = ABSENT,
) -> Any:
    """An update entry (§7.2) as the JSON object to encode; ``fields`` must be wire-safe.
    ``snap`` (§13.5) is sent only when true."""
    entry = (
        {"uid": uid, "fields": fields}
        if owner is ABSENT
        else {"uid": uid, "fields": fields, "owner": owner}
    )
    if snap is True:
        entry["snap"] = True
    return entry


class Entries:
    """One list of a sync (spawn, update or despawn), encoded once however often it is sent.

    Built either from encoded fragments (one per entry) or from wire-safe JSON values, which
    are encoded together in one call when the whole list is wanted, and one by one only when a
    frame limit makes a split necessary. ``make`` instead of ``values``: a function giving the
    values, called only when the entries are first encoded (a tick's entries in a form that
    no peer of the tick may want); ``encode``: likewise, a function giving the fragments."""

    __slots__ = ("_encode", "_fragments", "_joined", "_make", "_values", "uids")

    def __init__(
        self,
        uids: list[int] | None = None,
        *,
        fragments: list[bytes] | None = None,
        values: list[Any] | None = None,
        make: Callable[[], list[Any]] | None = None,
        encode: Callable[[], list[bytes]] | None = None,
    ) -> None:
        self.uids = uids if uids is not None else []
        self._fragments = fragments
        self._values = values
        self._make = make
        self._encode = encode
        self._joined: bytes | None = None
        if fragments is None and values is None and make is None and encode is None:
            self._fragments = []

    def _encoded(self) -> list[bytes] | None:
        """The fragments, made now by ``encode`` if they were to be; None when only values."""
        fragments = self._fragments
        if fragments is None and self._encode is not None:
            fragments = self._fragments = self._encode()
            self._encode = None
        return fragments

    def _made(self) -> list[Any]:
        values = self._values
        if values is None:
            make = self._make
            values = self._values = make() if make is not None else []
            self._make = None
        return values

    def joined(self) -> bytes:
        """The entries, comma-separated: what goes between the list's brackets."""
        joined = self._joined
        if joined is None:
            fragments = self._encoded()
            if fragments is not None:
                joined = b",".join(fragments)
            else:
                joined = dumpb(self._made())[1:-1]
            self._joined = joined
        return joined

    def fragments(self) -> list[bytes]:
        """The entries one by one."""
        fragments = self._encoded()
        if fragments is None:
            fragments = self._fragments = [dumpb(v) for v in self._made()]
        return fragments

    def __len__(self) -> int:
        return len(self.uids)


_LISTS = (b',"spawn":[', b'],"update":[', b'],"despawn":[', b"]}")
# An empty list, shared by every frame that has nothing in one of its lists (a thousand views'
# syncs a tick: fewer objects for the garbage collector). Never appended to.
_NONE = Entries([], fragments=[])
_FINAL = {True: b"true", False: b"false"}


class SyncFrame(Sync):
    """A ``sync`` whose entries are already encoded JSON.

    The server's world builds one per view and tick; every peer that receives it shares the
    bytes, and ``parts(limit)`` splits them for a peer's frame limit without encoding again.
    It encodes to the same JSON as a ``Sync`` holding the same entries; reading ``spawn``,
    ``update`` or ``despawn`` decodes the fragments (for tests and tools, not the hot path)."""

    lists: tuple[Entries, Entries, Entries]
    schema_bytes: bytes | None
    cols_bytes: bytes | None
    _rows: SyncFrame | None
    _columns: Callable[[], tuple[bytes, Entries] | None] | None
    _decoded: tuple[tuple[SpawnEntry, ...], tuple[UpdateEntry, ...], tuple[int, ...]] | None

    def __init__(
        self,
        tick: int,
        full: bool,
        spawn: Entries | None = None,
        update: Entries | None = None,
        despawn: list[int] | None = None,
        final: bool = True,
        schema: bytes | None = None,
        time: float | None = None,
        left: list[int] | None = None,
        room: str | None = None,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "tick", tick)
        set_(self, "full", full)
        set_(self, "final", final)
        set_(self, "room", ABSENT if room is None else room)  # §17.4: right after "type"
        set_(self, "schema", ABSENT)
        set_(self, "left", ABSENT if left is None else tuple(left))  # §16.3
        set_(self, "schema_bytes", schema)  # §12.3, encoded; sent in the first part only
        set_(self, "time", ABSENT if time is None else time)  # §13.3: on every part
        gone = Entries(despawn, fragments=[b"%d" % u for u in despawn]) if despawn else _NONE
        set_(self, "lists", (spawn or _NONE, update or _NONE, gone))
        set_(self, "_decoded", None)
        set_(self, "cols_bytes", None)  # §20.2: the column blocks, encoded (a columnar variant)
        set_(self, "_rows", None)  # on a columnar variant: the same tick in rows (for parts)
        set_(self, "_columns", None)  # what makes the columnar variant, offered by the world

    def _head(self, final: bool, schema: bytes | None, left: Any = ABSENT) -> bytes:
        head = b'{"type":"sync","tick":%d,"full":%s,"final":%s' % (
            self.tick,
            _FINAL[self.full],
            _FINAL[final],
        )
        if self.room is not ABSENT:  # §17.4
            head = b'{"type":"sync","room":' + dumpb(self.room) + head[14:]
        if self.time is not ABSENT:
            head += b',"time":' + dumpb(self.time)
        if left is not ABSENT and left:  # §16.3: absent means empty
            head += b',"left":' + dumpb(list(left))
        return head if schema is None else head + b',"schema":' + schema

    def _assemble(
        self,
        joined: tuple[bytes, bytes, bytes],
        final: bool,
        schema: bytes | None = None,
        left: Any = ABSENT,
    ) -> bytes:
        spawn, update, despawn = joined
        opening = _LISTS
        cols = self.cols_bytes
        return b"".join(
            (
                self._head(final, schema, left),
                opening[0],
                spawn,
                opening[1],
                update,
                opening[2],
                despawn,
                opening[3] if cols is None else b'],"cols":' + cols + b"}",
            )
        )

    def offer_columns(self, columns: Callable[[], tuple[bytes, Entries] | None]) -> None:
        """§20: ``columns()`` gives this sync's update entries as column blocks (encoded)
        and the entries left as rows, or None; called once, for the first "columns" peer."""
        object.__setattr__(self, "_columns", columns)

    @property
    def offers_columns(self) -> bool:
        return self._columns is not None

    def columnar(self) -> SyncFrame:
        """This sync for a "columns" peer (§20): its updates in column blocks where the
        world offered them, else itself. Not cached on the frame: the variant refers to this
        frame (its rows, for ``parts``), and a reference back would make every tick's frames
        a cycle that only the garbage collector frees (the hub asks once per encoding)."""
        columns = self._columns
        found = columns() if columns is not None else None
        if found is None:
            return self
        cols, rest = found
        spawn, _, gone = self.lists
        made = SyncFrame(self.tick, self.full, spawn, rest, None, self.final)
        set_ = object.__setattr__
        for name in ("room", "schema_bytes", "time", "left"):
            set_(made, name, getattr(self, name))
        set_(made, "lists", (spawn, rest, gone))
        set_(made, "cols_bytes", cols)
        set_(made, "_rows", self)
        return made

    def body(self) -> bytes:
        """The whole sync as one frame body."""
        spawn, update, despawn = self.lists
        return self._assemble(
            (spawn.joined(), update.joined(), despawn.joined()),
            self.final,
            self.schema_bytes,
            self.left,
        )

    def parts(self, limit: int) -> list[bytes]:
        """Frame bodies of at most ``limit`` bytes, all but the last ``final: false`` (§7.5)."""
        body = self.body()
        if len(body) <= limit:
            return [body]
        rows = self._rows
        if rows is not None:  # §20.4: a sync that must be split goes in rows
            return rows.parts(limit)
        # As many entries per part as fit, in order: spawns, then updates, then despawns.
        overhead = len(self._assemble((b"", b"", b""), False)) + 16
        left = self.left
        gone = set() if left is ABSENT else {b"%d" % u for u in left}  # §16.3
        if gone:
            overhead += 10  # ,"left":[]
        parts: list[tuple[list[bytes], list[bytes], list[bytes]]] = []
        current: tuple[list[bytes], list[bytes], list[bytes]] = ([], [], [])
        schema = self.schema_bytes
        used = overhead
        if schema is not None:  # it goes in the first part
            used += len(schema) + 10
            if used > limit:
                raise FrameTooLarge(0, used, limit)
        for kind, entries in enumerate(self.lists):
            for i, fragment in enumerate(entries.fragments()):
                cost = len(fragment) + 1
                if kind == 2 and fragment in gone:
                    cost += cost  # listed in left as well
                if overhead + cost > limit:
                    raise FrameTooLarge(entries.uids[i], cost, limit)
                if used + cost > limit and any(current):
                    parts.append(current)
                    current, used = ([], [], []), overhead
                current[kind].append(fragment)
                used += cost
        parts.append(current)
        last = len(parts) - 1
        return [
            self._assemble(
                (b",".join(part[0]), b",".join(part[1]), b",".join(part[2])),
                self.final and i == last,
                schema if i == 0 else None,
                # §16.3: each part's left lists only that part's despawns
                left if left is ABSENT else [int(f) for f in part[2] if f in gone],
            )
            for i, part in enumerate(parts)
        ]

    def _decode(
        self,
    ) -> tuple[tuple[SpawnEntry, ...], tuple[UpdateEntry, ...], tuple[int, ...]]:
        decoded = self._decoded
        if decoded is None:
            spawn, update, despawn = (
                json.loads(b"[" + entries.joined() + b"]") for entries in self.lists
            )
            decoded = (
                tuple(SpawnEntry(**entry) for entry in spawn),
                tuple(_update_entry(entry) for entry in update),
                tuple(despawn),
            )
            object.__setattr__(self, "_decoded", decoded)
        return decoded

    @property
    def spawn(self) -> tuple[SpawnEntry, ...]:
        return self._decode()[0]

    @property
    def update(self) -> tuple[UpdateEntry, ...]:
        return self._decode()[1]

    @property
    def despawn(self) -> tuple[int, ...]:
        return self._decode()[2]

    def as_sync(self) -> Sync:
        """The same sync as a plain ``Sync`` of entry dataclasses."""
        spawn, update, despawn = self._decode()
        return Sync(
            tick=self.tick,
            full=self.full,
            final=self.final,
            spawn=spawn,
            update=update,
            despawn=despawn,
            time=self.time,
            left=self.left,
            room=self.room,
        )

    def wire(self) -> WireLists:
        spawn, update, despawn = (
            json.loads(b"[" + entries.joined() + b"]") for entries in self.lists
        )
        if self.cols_bytes is not None:  # §20.3: the blocks' rows come after the entries
            update += block_rows(json.loads(self.cols_bytes))
        schema = self.schema_bytes
        return spawn, update, despawn, None if schema is None else json.loads(schema)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sync):
            return NotImplemented
        return _key(self) == _key(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SyncFrame({self.body()!r})"


def _frame_of(sync: Sync) -> SyncFrame:
    """A ``Sync`` as a ``SyncFrame`` (plain dicts, no reflection)."""
    if isinstance(sync, SyncFrame):
        return sync
    try:
        spawn_list, update_list, despawn, schema_value = sync.wire()
        spawn = Entries(
            [e["uid"] for e in spawn_list],
            fragments=[
                spawn_fragment(e["uid"], e["type"], e["owner"], dumpb(e["args"]), e["fields"])
                for e in spawn_list
            ],
        )
        update = Entries(
            [e[0] if type(e) is list else e["uid"] for e in update_list],
            values=[
                e
                if type(e) is list
                else update_entry(
                    e["uid"], e["fields"], e.get("owner", ABSENT), e.get("snap", ABSENT)
                )
                for e in update_list
            ],
        )
        schema = None if schema_value is None else dumpb(schema_value)
        time = None if isinstance(sync.time, Absent) else sync.time
        left = None if isinstance(sync.left, Absent) else list(sync.left)
        room = None if isinstance(sync.room, Absent) else sync.room
        frame = SyncFrame(
            sync.tick, sync.full, spawn, update, list(despawn), sync.final, schema, time, left, room
        )
        frame.body()  # encodes now, so that a bad value is reported here
    except (TypeError, ValueError) as exc:  # NaN or a non-JSON value slipped past to_wire
        raise EncodeError(f"sync: {exc}") from None
    return frame
