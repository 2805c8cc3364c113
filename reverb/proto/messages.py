"""Every message of docs/protocol.md §5 as a frozen dataclass, and the wire's constants.

A message class declares its wire name (``TYPE``) and its fields once; that declaration drives
both encoding and the validation of decoded messages (§3.5). Fields with a default are optional
on the wire; fields whose value is ``ABSENT`` are left out when encoding.

The codec lives beside it: ``wirejson.py`` (strict JSON, §3, both ways), ``decode.py`` (a frame
body to a message), ``frames.py`` (a sync's encoded entries and frames) and ``encode.py`` (a
message to a frame body). The end of this module re-exports their public names, so that
``messages.decode``, ``messages.encode``, ``messages.SyncFrame``... keep working.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "ABSENT",
    "FAST",
    "MAX_DEPTH",
    "MAX_MESSAGE_NAME",
    "MAX_SAFE_INT",
    "MIN_BLOCK",
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
    "as_dict",
    "block_rows",
    "column_blocks",
    "decode",
    "dumpb",
    "dumpb_each",
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
MAX_SCHEMA_FIELDS = 1024  # §12.3: field names per type in the compact encoding's table


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


# -- the codec, re-exported (no logic here): ``m.decode``, ``m.encode``, ``m.SyncFrame``... -----
# Last, so that the codec modules find every name above when this module imports them first
# (reverb/proto/__init__.py imports this module before any of them).

from reverb.proto.decode import WireSync, decode  # noqa: E402
from reverb.proto.encode import as_dict, encode, encode_rpc, encode_sync  # noqa: E402
from reverb.proto.frames import (  # noqa: E402
    MIN_BLOCK,
    Entries,
    FrameTooLarge,
    SyncFrame,
    block_rows,
    column_blocks,
    spawn_fragment,
    update_entry,
)
from reverb.proto.wirejson import FAST, dumpb, dumpb_each, dumps, to_wire  # noqa: E402
