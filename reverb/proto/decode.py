"""A frame body decoded into a message (docs/protocol.md §3, §5), or ``RemoteProtocolError``
with its close code: the JSON layer (``wirejson.py``), then the message's declared fields (the
schema derived once from the dataclasses of ``messages.py``), with fast paths for the hot
messages: a ``sync`` checked in bulk and kept as JSON values (``WireSync``), ``rpc`` and
``rpc_result`` field by field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from itertools import repeat
from operator import ge, itemgetter
from typing import Any, Union

from reverb.errors import CloseCode, RemoteProtocolError
from reverb.proto.frames import _key, _set_head, _spawn_entry, _update_entry
from reverb.proto.messages import (
    ABSENT,
    MAX_MESSAGE_NAME,
    MESSAGE_TYPES,
    ROOM_MODES,
    Absent,
    AppMessage,
    Message,
    MessageError,
    RoomJoin,
    Rpc,
    SpawnEntry,
    Sync,
    UpdateEntry,
    WireLists,
    make_rpc,
    make_rpc_result,
)
from reverb.proto.wirejson import _check_tree, _check_unique_keys, _parse

__all__ = ["WireSync", "decode"]

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
        _set_head(self, tick, full, final, room, None if time is None else float(time), left)
        set_ = object.__setattr__
        set_(self, "schema", ABSENT if schema is None else schema)
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
