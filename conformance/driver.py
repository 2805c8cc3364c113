"""Connection helpers: raw framing, strict decoding, handshake, and a sync table (§2-§7).

Only ``socket``, ``struct`` and ``json`` (plus ``time``/``math``) are used: the driver is a
black box client and never imports the library under test.
"""

from __future__ import annotations

import json
import math
import re
import socket
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME = 1048576
MIN_MAX_FRAME = 65536
MAX_SAFE_INT = 2**53 - 1
MAX_DEPTH = 32
RPC_ERROR_CODES = frozenset(
    {
        "unknown_object",
        "not_exposed",
        "not_owner",
        "bad_arguments",
        "rejected",
        "handler_error",
        "bad_return",
        "overloaded",
        "rate_limited",
    }
)
# §14.4: the codes of message_error
MESSAGE_ERROR_CODES = frozenset(
    {"unknown_message", "rejected", "handler_error", "overloaded", "rate_limited"}
)
MESSAGES = "messages"  # §14.1: the feature name
ROOMS = "rooms"  # §17.2: the feature name
ROOM_MESSAGES = frozenset(
    {"room_list_result", "room_joined", "room_refused", "room_left", "room_event"}
)
MAX_MESSAGE_NAME = 64  # §14.2
CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013, 1015, 3000, 3001, 3002, 3003}
)
LEAK_MARKERS = ("Traceback", 'File "', '.py"', ".py:", ".py,", "site-packages")
# A source file named anywhere in the text, its end included ("... in /srv/game/host.py").
_SOURCE_PATH = re.compile(r"\.pyc?\b|[/\\][\w.-]+[/\\][\w.-]+\.\w+\s*$")
# Python's own exception text (§8.4: a handler_error message names no internals): what
# `bump("x")`, `None.x` or `int("x")` raise, reaching the client verbatim.
_PYTHON_ERROR = re.compile(
    r"unsupported operand|can only concatenate|object is not|has no attribute|NoneType|"
    r"not subscriptable|invalid literal|positional argument|must be (?:str|int|real)|"
    r"\b(?:Type|Value|Key|Attribute|Index|ZeroDivision|Runtime|Name)Error\b|"
    r"'(?:int|str|float|list|dict|bool)'"
)

Msg = dict[str, Any]


class CaseFailure(Exception):
    """The server under test did something the spec forbids (verdict ``fail``)."""


class ServerViolation(CaseFailure):
    """The server sent bytes or a message that violate the spec."""


class RecvTimeout(CaseFailure):
    """Nothing (or not the expected thing) arrived before a deadline."""


class ConnectionEnded(CaseFailure):
    """The TCP connection ended (EOF or reset) while we were reading."""

    def __init__(self, message: str, *, reset: bool, partial: bool) -> None:
        super().__init__(message)
        self.reset = reset
        self.partial = partial


def frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its 4-byte big-endian length (§2.1)."""
    return struct.pack(">I", len(payload)) + payload


def encode(msg: Any) -> bytes:
    """Compact JSON encoding as UTF-8, refusing NaN/Infinity."""
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def is_int(value: Any) -> TypeGuard[int]:
    """An ``int`` in the sense of §3.6: an integer that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))


def leaks_internals(text: str) -> str | None:
    """Return the marker if ``text`` looks like a traceback or names a source file (§8.4)."""
    for marker in LEAK_MARKERS:
        if marker in text:
            return marker
    found = _SOURCE_PATH.search(text)
    return found.group(0).strip() if found else None


def python_error_text(text: str) -> str | None:
    """Return the fragment if ``text`` carries Python's own exception message (§8.4)."""
    found = _PYTHON_ERROR.search(text)
    return found.group(0) if found else None


def _pairs_no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-JSON constant {name}")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"non-finite number {text}")
    return value


def _check_values(root: Any) -> None:
    """Iteratively check §3.4 nesting depth and integer range."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise ValueError(f"nesting deeper than {MAX_DEPTH}")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
        elif is_int(value) and abs(value) > MAX_SAFE_INT:
            raise ValueError(f"integer {value} outside +-(2^53-1)")


def parse_strict(payload: bytes) -> Msg:
    """Decode one payload from the server, enforcing §3.1-§3.4."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ServerViolation(f"server payload is not UTF-8 (§3.1): {exc}") from None
    if text.startswith("\ufeff"):
        raise ServerViolation("server payload starts with a BOM (§3.1)")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs_no_duplicates,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
        )
        _check_values(value)
    except (ValueError, RecursionError) as exc:
        raise ServerViolation(
            f"server payload is invalid (§3.1/§3.4): {exc}: {text[:120]!r}"
        ) from None
    if not isinstance(value, dict):
        raise ServerViolation(f"server payload is not a JSON object (§3.2): {text[:120]!r}")
    if not isinstance(value.get("type"), str):
        raise ServerViolation(f"server message without a string type (§3.3): {text[:120]!r}")
    return value


def brief(msg: Msg, limit: int = 160) -> str:
    text = json.dumps(msg, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------- sync table


@dataclass
class Replica:
    type: str
    owner: int | None
    args: list[Any]
    fields: dict[str, Any]


def _check_spawn_entry(entry: Any) -> Replica:
    if not isinstance(entry, dict):
        raise ServerViolation(f"spawn entry is not an object (§7.2): {entry!r}")
    uid, typ, owner = entry.get("uid"), entry.get("type"), entry.get("owner", "missing")
    args, fields = entry.get("args"), entry.get("fields")
    if not is_int(uid) or uid <= 0:
        raise ServerViolation(f"spawn entry uid is not a positive int (§7.1/§7.2): {entry!r}")
    if not isinstance(typ, str):
        raise ServerViolation(f"spawn entry type is not a string (§7.2): {entry!r}")
    if not (owner is None or is_int(owner)):
        raise ServerViolation(f"spawn entry owner is not int|null (§7.2): {entry!r}")
    if not isinstance(args, list) or not isinstance(fields, dict):
        raise ServerViolation(f"spawn entry args/fields have wrong types (§7.2): {entry!r}")
    return Replica(typ, owner, list(args), dict(fields))


class Table:
    """A client's replica table, applying syncs exactly as §7.3-§7.6 prescribe.

    Any deviation by the server (a non-increasing tick, a delta before the first full
    sync, an update of an unknown UID, parts with different ticks...) raises
    :class:`ServerViolation`.
    """

    def __init__(self) -> None:
        self.objects: dict[int, Replica] = {}
        self.parts: list[Msg] = []
        self.last_tick: int | None = None
        self.applied = 0
        self.full_syncs = 0
        self.messages = 0
        self.multipart = 0
        self.ticks: list[int] = []
        # §12: set when this connection asked for "compact"; the field tables by type name
        self.compact = False
        self.field_tables: dict[str, list[str]] = {}
        self.compact_entries = 0
        self.schemas = 0
        # §20: set when this connection asked for "columns"; rows received in column blocks
        self.columns = False
        self.column_rows = 0
        # §16: set when "interest" was granted; every uid any sync named, and the uids that
        # arrived in sync.left
        self.interest = False
        self.named: set[int] = set()
        self.left: list[int] = []

    def feed(self, msg: Msg) -> bool:
        """Take one ``sync`` message; return True when a whole sync was applied."""
        self.messages += 1
        tick, full, final = msg.get("tick"), msg.get("full"), msg.get("final")
        lists = [msg.get(name) for name in ("spawn", "update", "despawn")]
        if not is_int(tick) or not isinstance(full, bool) or not isinstance(final, bool):
            raise ServerViolation(
                f"sync with missing/mistyped tick/full/final (§5.2): {brief(msg)}"
            )
        if not all(isinstance(item, list) for item in lists):
            raise ServerViolation(
                f"sync with missing spawn/update/despawn arrays (§5.2): {brief(msg)}"
            )
        if self.parts:
            first = self.parts[0]
            if tick != first["tick"]:
                raise ServerViolation(
                    f"sync part with tick {tick} while tick {first['tick']} is unfinished (§7.5)"
                )
            if full != first["full"]:
                raise ServerViolation("parts of one sync disagree on 'full' (§7.5)")
        elif self.last_tick is not None and tick <= self.last_tick:
            raise ServerViolation(
                f"sync tick {tick} not above previous tick {self.last_tick} (§7.6)"
            )
        self.parts.append(msg)
        if not final:
            return False
        parts, self.parts = self.parts, []
        if len(parts) > 1:
            self.multipart += 1
        self._apply(parts)
        self.last_tick = tick
        self.ticks.append(tick)
        self.applied += 1
        return True

    def _apply(self, parts: list[Msg]) -> None:
        full = parts[0]["full"]
        spawns = [entry for part in parts for entry in part["spawn"]]
        for part in parts:
            if "schema" in part:
                self._schema(part["schema"])
        updates = [entry for part in parts for entry in part["update"]]
        for part in parts:  # §20.3: a block's rows come after every update entry of the tick
            if "cols" in part:
                updates += self._block_rows(part["cols"])
        despawns = [entry for part in parts for entry in part["despawn"]]
        for part in parts:
            if "left" in part:
                self._left(part)
        self.named.update(e.get("uid") for e in spawns if isinstance(e, dict))
        self.named.update(
            e[0] if isinstance(e, list) and e else e.get("uid") if isinstance(e, dict) else None
            for e in updates
        )
        self.named.update(u for u in despawns if is_int(u))
        if self.applied == 0 and not full:
            raise ServerViolation("first sync after welcome is not full (§7.3)")
        if full:
            self.full_syncs += 1
            if updates or despawns:
                raise ServerViolation("full sync with non-empty update/despawn (§7.3)")
            objects: dict[int, Replica] = {}
            for entry in spawns:
                replica = _check_spawn_entry(entry)
                if entry["uid"] in objects:
                    raise ServerViolation(f"full sync lists uid {entry['uid']} twice (§7.3)")
                objects[entry["uid"]] = replica
            self.objects = objects
            return
        for entry in spawns:
            replica = _check_spawn_entry(entry)
            if entry["uid"] in self.objects:
                raise ServerViolation(f"delta spawns uid {entry['uid']} already held (§7.6)")
            self.objects[entry["uid"]] = replica
        for entry in updates:
            entry = self._plain_update(entry)  # §12.4 stands for the form of §7.2
            if not isinstance(entry, dict) or not is_int(entry.get("uid")):
                raise ServerViolation(f"malformed update entry (§7.2): {entry!r}")
            if not isinstance(entry.get("fields"), dict):
                raise ServerViolation(f"update entry without fields object (§7.2): {entry!r}")
            target = self.objects.get(entry["uid"])
            if target is None:
                raise ServerViolation(f"update of uid {entry['uid']} not held (§7.6)")
            target.fields.update(entry["fields"])
            if "owner" in entry:
                owner = entry["owner"]
                if not (owner is None or is_int(owner)):
                    raise ServerViolation(f"update entry owner not int|null (§7.2): {entry!r}")
                target.owner = owner
        for uid in despawns:
            if not is_int(uid):
                raise ServerViolation(f"despawn entry is not an int (§5.2): {uid!r}")
            if uid not in self.objects:
                raise ServerViolation(f"despawn of uid {uid} not held (§7.6)")
            del self.objects[uid]

    def _left(self, part: Msg) -> None:
        """§16.3: an array of integers, each in the same message's despawn; only with the
        feature "interest"."""
        left = part["left"]
        if not self.interest:
            raise ServerViolation("sync.left on a connection without interest (§16.3)")
        if not isinstance(left, list) or not all(is_int(u) for u in left):
            raise ServerViolation(f"sync.left is not an array of integers (§16.3): {left!r}")
        if not set(left) <= set(part["despawn"]):
            raise ServerViolation(f"sync.left names a uid not in its despawn (§16.3): {left!r}")
        self.left.extend(left)

    def _schema(self, schema: Any) -> None:
        """§12.3: append the announced names to the field tables."""
        if not self.compact:
            raise ServerViolation("sync.schema on a connection without compact (§12.1)")
        if not isinstance(schema, dict):
            raise ServerViolation(f"sync.schema is not an object (§12.3): {schema!r}"[:200])
        self.schemas += 1
        for type_name, spec in schema.items():
            if (
                not isinstance(spec, dict)
                or not is_int(spec.get("at"))
                or not isinstance(spec.get("add"), list)
                or not all(isinstance(name, str) for name in spec["add"])
            ):
                raise ServerViolation(f"malformed schema entry (§12.3): {spec!r}"[:200])
            table = self.field_tables.setdefault(type_name, [])
            if spec["at"] != len(table):
                raise ServerViolation(
                    f"schema for {type_name} at {spec['at']}, table holds {len(table)} (§12.3)"
                )
            for name in spec["add"]:
                if name in table:
                    raise ServerViolation(f"schema repeats {name!r} for {type_name} (§12.3)")
                table.append(name)
            if len(table) > 1024:
                raise ServerViolation(f"field table of {type_name} over 1024 names (§12.2)")

    def _block_rows(self, cols: Any) -> list[list[Any]]:
        """§20.2: column blocks as the compact update entries (§12.4) they stand for."""
        if not self.columns:
            raise ServerViolation("sync.cols on a connection without columns (§20.1)")
        if not isinstance(cols, list):
            raise ServerViolation(f"sync.cols is not an array (§20.2): {cols!r}"[:200])
        rows: list[list[Any]] = []
        for block in cols:
            if (
                not isinstance(block, list)
                or len(block) < 3
                or not all(isinstance(item, list) for item in block)
            ):
                raise ServerViolation(f"malformed column block (§20.2): {block!r}"[:200])
            indexes, uids, columns = block[0], block[1], block[2:]
            if (
                not uids
                or not all(is_int(u) for u in uids)
                or not all(is_int(i) and i >= 0 for i in indexes)
                or indexes != sorted(set(indexes))
                or len(columns) != len(indexes)
                or any(len(column) != len(uids) for column in columns)
            ):
                raise ServerViolation(f"malformed column block (§20.2): {block!r}"[:200])
            for r, uid in enumerate(uids):
                row: list[Any] = [uid]
                for index, column in zip(indexes, columns, strict=True):
                    row += [index, column[r]]
                rows.append(row)
        self.column_rows += len(rows)
        return rows

    def _plain_update(self, entry: Any) -> Any:
        """A compact update entry (§12.4) as the object form it stands for."""
        if not isinstance(entry, list):
            return entry
        if not self.compact:
            raise ServerViolation(f"compact update entry without compact (§12.1): {entry!r}")
        self.compact_entries += 1
        if len(entry) % 2 != 1 or not is_int(entry[0]):
            raise ServerViolation(f"malformed compact update entry (§12.4): {entry!r}"[:200])
        target = self.objects.get(entry[0])
        if target is None:
            raise ServerViolation(f"update of uid {entry[0]} not held (§7.6)")
        table = self.field_tables.get(target.type, [])
        indexes = entry[1::2]
        if not all(is_int(i) and 0 <= i < len(table) for i in indexes) or indexes != sorted(
            set(indexes)
        ):
            raise ServerViolation(
                f"compact entry indexes not increasing within the table of {len(table)} "
                f"(§12.4): {entry!r}"[:200]
            )
        return {
            "uid": entry[0],
            "fields": dict(zip([table[i] for i in indexes], entry[2::2], strict=True)),
        }

    def snapshot(self, uids: set[int] | None = None) -> dict[int, tuple[str, Any, str]]:
        """A comparable view: uid -> (type, owner, canonical fields JSON)."""
        return {
            uid: (rep.type, rep.owner, json.dumps(rep.fields, sort_keys=True))
            for uid, rep in self.objects.items()
            if uids is None or uid in uids
        }

    def find_type(self, type_name: str) -> list[int]:
        return sorted(uid for uid, rep in self.objects.items() if rep.type == type_name)


# --------------------------------------------------------------------------- connection


@dataclass
class CloseObservation:
    """What happened while waiting for the server to close a connection."""

    kind: str  # "close" (a close frame), "eof", "reset" or "timeout"
    code: Any = None
    reason: Any = None
    eof_after: bool = False
    after_close: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def describe(self) -> str:
        if self.kind == "close":
            tail = "then TCP closed" if self.eof_after else "but TCP stayed open"
            return f"close {self.code} {self.reason!r} after {self.elapsed:.2f}s, {tail}"
        return f"{self.kind} after {self.elapsed:.2f}s (no close frame)"


class Conn:
    """One raw TCP connection to the server under test."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 5.0,
        max_frame: int = DEFAULT_MAX_FRAME,
        rcvbuf: int | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_frame = max_frame
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(min(timeout, 5.0))
        try:
            self.sock.connect((host, port))
        except OSError as exc:
            self.sock.close()
            raise CaseFailure(f"cannot connect to {host}:{port}: {exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.closed = False
        self.send_failed = False
        self.welcome: Msg | None = None
        self.member: int | None = None
        self.table = Table()
        self.results: dict[int, list[Msg]] = {}
        self.pings: list[Any] = []
        self.pongs: list[Any] = []
        self.close_msg: Msg | None = None
        self.types_seen: list[str] = []
        self.frame_sizes: list[int] = []
        self.auto_pong = True
        self.next_id = 0
        self.on_sync: Callable[[Msg], None] | None = None
        self.asked: list[Any] = []  # hello.features
        self.inflate = False  # "deflate" granted (§15)
        self.compressed_frames = 0
        self.app_messages: list[Msg] = []  # §14: message and message_error, in arrival order
        self.on_message: Callable[[Msg], None] | None = None
        # §17: with "rooms" granted, the room this connection is in (None: none), the room
        # messages received in order, the room of every sync received (ignored ones too)
        self.rooms = False
        self.room: str | None = None
        self.room_msgs: list[Msg] = []
        self.sync_rooms: list[Any] = []

    # ----------------------------------------------------------------- sending

    def send_raw(self, data: bytes) -> bool:
        """Write bytes; return False (and remember it) if the server already hung up."""
        try:
            self.sock.settimeout(max(self.timeout, 1.0))
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.send_failed = True
            return False
        except TimeoutError:
            raise RecvTimeout("send blocked: the server does not read") from None

    def send_frame(self, payload: bytes) -> bool:
        return self.send_raw(frame(payload))

    def send(self, msg: Any) -> bool:
        return self.send_frame(encode(msg))

    def send_slowly(self, data: bytes, chunk: int = 1, pause: float = 0.0) -> bool:
        for start in range(0, len(data), chunk):
            if not self.send_raw(data[start : start + chunk]):
                return False
            if pause:
                time.sleep(pause)
        return True

    # ----------------------------------------------------------------- receiving

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RecvTimeout("timed out")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 18)
        except TimeoutError:
            raise RecvTimeout("timed out") from None
        except (ConnectionResetError, ConnectionAbortedError):
            self.closed = True
            raise ConnectionEnded(
                "connection reset by the server", reset=True, partial=bool(self.buf)
            ) from None
        if not data:
            self.closed = True
            raise ConnectionEnded(
                "server closed the TCP connection", reset=False, partial=bool(self.buf)
            )
        self.buf += data

    def recv_frame(self, deadline: float) -> bytes:
        """One payload, checked against §2.2/§2.3 from the receiver's side."""
        while len(self.buf) < 4:
            self._fill(deadline)
        (length,) = struct.unpack(">I", self.buf[:4])
        if length == 0:
            raise ServerViolation("server sent a frame with N = 0 (§2.2)")
        if length > self.max_frame:
            raise ServerViolation(
                f"server sent a {length}-byte frame above our announced max_frame "
                f"{self.max_frame} (§2.3)"
            )
        while len(self.buf) < 4 + length:
            self._fill(deadline)
        payload = bytes(self.buf[4 : 4 + length])
        del self.buf[: 4 + length]
        self.frame_sizes.append(length)
        return payload

    def recv_msg(self, deadline: float) -> Msg:
        payload = self.recv_frame(deadline)
        if payload[:1] == b"\x00":
            payload = self._inflated(payload)
        msg = parse_strict(payload)
        self.types_seen.append(msg["type"])
        return msg

    def _inflated(self, payload: bytes) -> bytes:
        """§15.2/15.3: a compressed frame, only where "deflate" was granted, bounded."""
        if not self.inflate:
            raise ServerViolation("compressed frame on a connection without deflate (§15.1)")
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(payload[1:], self.max_frame + 1)
        except zlib.error as exc:
            raise ServerViolation(f"compressed frame is not a zlib stream (§15.2): {exc}") from None
        if len(out) > self.max_frame:
            raise ServerViolation(
                f"compressed frame inflates beyond our max_frame {self.max_frame} (§15.2)"
            )
        if not inflater.eof or inflater.unused_data:
            raise ServerViolation("compressed frame is not exactly one zlib stream (§15.2)")
        self.compressed_frames += 1
        return out

    def pump(self, msg: Msg) -> None:
        """Book-keep one received message (syncs, answers, pings)."""
        kind = msg["type"]
        if kind in ("sync", "rpc_result", "rpc_error") and self.welcome is not None:
            if self.rooms and not isinstance(msg.get("room"), str):
                raise ServerViolation(f"{kind} without 'room' on a rooms connection (§17.4)")
            if not self.rooms and "room" in msg:
                raise ServerViolation(f"{kind} with 'room' on a connection without rooms (§17.4)")
        if kind == "sync":
            if self.welcome is None:
                raise ServerViolation("sync before welcome (§6.2)")
            if self.rooms:
                self.sync_rooms.append(msg.get("room"))
                if msg.get("room") != self.room:
                    return  # §17.4: a late sync of a room left: ignored
            self.table.feed(msg)
            if self.on_sync is not None:
                self.on_sync(msg)
        elif kind in ("rpc_result", "rpc_error"):
            call_id = msg.get("id")
            if not is_int(call_id):
                raise ServerViolation(f"{kind} without an int id (§5.2): {brief(msg)}")
            if kind == "rpc_error":
                code, message = msg.get("code"), msg.get("message")
                if not isinstance(code, str) or not isinstance(message, str):
                    raise ServerViolation(f"rpc_error without string code/message: {brief(msg)}")
                if code not in RPC_ERROR_CODES:
                    raise ServerViolation(f"rpc_error with undocumented code {code!r} (§8.3)")
                marker = leaks_internals(message)
                if marker is not None and code != "rejected":
                    raise ServerViolation(
                        f"rpc_error message leaks internals ({marker!r}, §8.4): {message[:200]!r}"
                    )
                python = python_error_text(message) if code == "handler_error" else None
                if python is not None:
                    raise ServerViolation(
                        f"handler_error message carries Python's exception text ({python!r}, "
                        f"§8.4): {message[:200]!r}"
                    )
            elif "value" not in msg:
                raise ServerViolation(f"rpc_result without value (§5.2): {brief(msg)}")
            self.results.setdefault(call_id, []).append(msg)
        elif kind == "ping":
            if not is_int(msg.get("nonce")):
                raise ServerViolation(f"ping without int nonce (§5.2): {brief(msg)}")
            self.pings.append(msg["nonce"])
            if self.auto_pong:
                self.send({"type": "pong", "nonce": msg["nonce"]})
        elif kind == "pong":
            self.pongs.append(msg.get("nonce"))
        elif kind == "close":
            self.close_msg = msg
            raise CaseFailure(f"server closed the session unexpectedly: {brief(msg)}")
        elif kind in ("message", "message_error"):
            self._app_message(msg)
        elif kind in ROOM_MESSAGES:
            self._room_message(msg)
        elif kind == "welcome":
            raise ServerViolation("second welcome (§6.2)")
        else:
            raise ServerViolation(f"unknown message type {kind!r} from server (§3.3)")

    @property
    def granted(self) -> frozenset[str]:
        """The features the server granted (those asked for and listed in welcome.features)."""
        features = self.welcome.get("features", []) if self.welcome is not None else []
        return frozenset(f for f in features if isinstance(f, str))

    def _room_message(self, msg: Msg) -> None:
        """§17: only with "rooms" granted; a join or leave starts a new replica table."""
        if not self.rooms:
            raise ServerViolation(
                f"{msg['type']} on a connection without 'rooms' (§17.2): {brief(msg)}"
            )
        kind = msg["type"]
        if kind == "room_joined" or (kind == "room_left" and msg.get("room") == self.room):
            fresh = Table()
            fresh.compact, fresh.interest = self.table.compact, self.table.interest
            fresh.columns = self.table.columns
            self.table = fresh
            self.room = msg.get("room") if kind == "room_joined" else None
        self.room_msgs.append(msg)

    def _app_message(self, msg: Msg) -> None:
        """§14: only with the feature granted; name 1..64 chars; message_error's code known."""
        kind = msg["type"]
        if MESSAGES not in self.granted:
            raise ServerViolation(
                f"{kind} on a connection without 'messages' (§14.1): {brief(msg)}"
            )
        name = msg.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_MESSAGE_NAME:
            raise ServerViolation(f"{kind} name is not a string of 1..64 (§14.2): {brief(msg)}")
        if kind == "message_error":
            code, reason = msg.get("code"), msg.get("reason")
            if not isinstance(code, str) or not isinstance(reason, str):
                raise ServerViolation(f"message_error without string code/reason: {brief(msg)}")
            if code not in MESSAGE_ERROR_CODES:
                raise ServerViolation(f"message_error with undocumented code {code!r} (§14.4)")
            marker = leaks_internals(reason) or python_error_text(reason)
            if marker is not None and code != "rejected":
                raise ServerViolation(
                    f"message_error reason leaks internals ({marker!r}, §8.4): {reason[:200]!r}"
                )
        self.app_messages.append(msg)
        if self.on_message is not None:
            self.on_message(msg)

    def wait(self, predicate: Callable[[], bool], timeout: float | None, what: str) -> None:
        """Pump messages until ``predicate()`` holds."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not predicate():
            try:
                msg = self.recv_msg(deadline)
            except RecvTimeout:
                raise RecvTimeout(f"timed out waiting for {what}") from None
            self.pump(msg)

    def drain(self, duration: float) -> None:
        """Pump whatever arrives during ``duration`` seconds."""
        deadline = time.monotonic() + duration
        while True:
            try:
                msg = self.recv_msg(deadline)
            except RecvTimeout:
                return
            self.pump(msg)

    # ----------------------------------------------------------------- session

    def hello(self, version: Any = PROTOCOL_VERSION, **extra: Any) -> Msg:
        """Send hello and return the first message the server answers with."""
        msg: Msg = {"type": "hello", "version": version}
        if self.max_frame != DEFAULT_MAX_FRAME:
            msg["max_frame"] = self.max_frame
        msg.update(extra)
        self.asked = extra.get("features", []) if isinstance(extra.get("features"), list) else []
        self.send(msg)
        return self.recv_msg(time.monotonic() + self.timeout)

    def accept_welcome(self, msg: Msg) -> Msg:
        if msg["type"] != "welcome":
            raise CaseFailure(f"expected welcome, got {brief(msg)}")
        version, member = msg.get("version"), msg.get("member")
        tick_rate, max_frame = msg.get("tick_rate"), msg.get("max_frame")
        if version != PROTOCOL_VERSION or not is_int(version):
            raise ServerViolation(f"welcome.version is not 1 (§5.2): {brief(msg)}")
        if not is_int(member) or member <= 0:
            raise ServerViolation(f"welcome.member is not a positive int (§4.3): {brief(msg)}")
        if not is_number(tick_rate):
            raise ServerViolation(f"welcome.tick_rate is not a number (§5.2): {brief(msg)}")
        if not is_int(max_frame) or max_frame < 1:
            raise ServerViolation(f"welcome.max_frame is not a positive int (§5.2): {brief(msg)}")
        self.welcome = msg
        self.member = member
        granted = msg.get("features", [])
        self.inflate = (
            "deflate" in self.asked and isinstance(granted, list) and "deflate" in granted
        )
        self.table.interest = (
            "interest" in self.asked and isinstance(granted, list) and "interest" in granted
        )
        self.rooms = ROOMS in self.asked and isinstance(granted, list) and ROOMS in granted
        return msg

    def handshake(self, **extra: Any) -> Msg:
        return self.accept_welcome(self.hello(**extra))

    def open(self, **extra: Any) -> Conn:
        """Handshake and wait for the first (full) sync to be applied."""
        self.handshake(**extra)
        self.wait(lambda: self.table.applied > 0, None, "the first full sync")
        return self

    def control_uid(self) -> int:
        found = self.table.find_type("Control")
        if len(found) != 1:
            raise CaseFailure(f"expected exactly one Control object in the world, found {found}")
        return found[0]

    def request(self, uid: Any, method: Any, args: Any, **extra: Any) -> int:
        call_id = self.next_id
        self.next_id += 1
        msg: Msg = {"type": "rpc", "id": call_id, "uid": uid, "method": method, "args": args}
        msg.update(extra)
        self.send(msg)
        return call_id

    def answer(self, call_id: int, timeout: float | None = None) -> Msg:
        self.wait(lambda: call_id in self.results, timeout, f"the answer to call {call_id}")
        return self.results[call_id][0]

    def call(
        self, uid: Any, method: Any, args: Any, timeout: float | None = None, **extra: Any
    ) -> Msg:
        return self.answer(self.request(uid, method, args, **extra), timeout)

    def call_ok(self, uid: Any, method: str, args: list[Any], timeout: float | None = None) -> Any:
        reply = self.call(uid, method, args, timeout)
        if reply["type"] != "rpc_result":
            raise CaseFailure(f"{method}{tuple(args)!r} failed: {brief(reply)}")
        return reply["value"]

    def control(self, method: str, *args: Any) -> Any:
        return self.call_ok(self.control_uid(), method, list(args))

    def expect_close(self, timeout: float) -> CloseObservation:
        """Read until the server sends close (then expect EOF) or ends the TCP connection."""
        start = time.monotonic()
        deadline = start + timeout
        obs = CloseObservation("timeout")
        while True:
            try:
                msg = self.recv_msg(deadline)
            except RecvTimeout:
                obs.elapsed = time.monotonic() - start
                return obs
            except ConnectionEnded as exc:
                obs.kind = "reset" if exc.reset else "eof"
                obs.elapsed = time.monotonic() - start
                return obs
            if msg["type"] != "close":
                obs.seen.append(msg["type"])
                if msg["type"] == "ping" and self.auto_pong:
                    self.send({"type": "pong", "nonce": msg.get("nonce")})
                continue
            obs.kind, obs.code, obs.reason = "close", msg.get("code"), msg.get("reason")
            obs.elapsed = time.monotonic() - start
            self.close_msg = msg
            after_deadline = time.monotonic() + 2.0
            while True:
                try:
                    extra = self.recv_msg(after_deadline)
                    obs.after_close.append(extra["type"])
                except (ConnectionEnded, RecvTimeout, ServerViolation) as exc:
                    obs.eof_after = isinstance(exc, ConnectionEnded)
                    return obs

    def wait_eof(self, timeout: float) -> str:
        """Wait until the server ends the TCP connection; return what came before."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            try:
                msg = self.recv_msg(deadline)
            except ConnectionEnded:
                return ",".join(seen) or "nothing"
            except RecvTimeout:
                raise RecvTimeout(f"TCP connection still open after {timeout:.1f}s") from None
            seen.append(msg["type"])

    def close(self) -> None:
        if not self.closed:
            self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def goodbye(self) -> None:
        """Clean close (§10.1): send close 1000 then close the socket."""
        if not self.closed:
            self.send({"type": "close", "code": 1000, "reason": "bye"})
        self.close()
