"""The monitor's one interface to a running server: what it reads and the one thing it does.

Sessions and the connection table belong to the I/O thread and are read under the server's
lock (``Server.lock``), briefly: counters are copied, nothing is encoded or decoded while it is
held. An ``AsyncServer``'s belong to its event loop: they are read, and a client disconnected,
by a callback handed to the loop (``call_soon_threadsafe``), the monitor's thread waiting for
its answer (at most ``LOOP_TIMEOUT``). The world belongs to the game thread and is read from
snapshots the game thread takes (``Observer.tick``); only object counts by type are read
directly (a single ``list()`` of the table, which the interpreter performs without running
Python code in between).

Rooms (protocol §17) belong to the game thread too. An ``AsyncServer``'s are read on its loop
(which is its game's thread); a threaded server's are read as the object counts are, by
single C-level copies (``list()`` of the rooms, ``len()`` of a room's clients and objects, a
``dict()`` of its metadata), the scheduler's figures through ``scheduler.stats()``, retried
when the game thread changes a table in the middle of it. A read may be one tick stale; it
is never torn inside one room's figures that matter (its clients and objects are counted at
one instant each).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from reverb.errors import CloseCode
from reverb.proto.session import State
from reverb.stats import ConnectionStats

__all__ = ["LOOP_TIMEOUT", "MAX_REASON", "MAX_ROOMS", "ServerView", "stats_json"]

MAX_ROOMS = 200  # rooms /metrics exports and the overview lists: the fullest first
RATE_WINDOW = 1.0  # s: a room's held tick rate is measured over at least this long
MAX_METADATA_CHARS = 200  # a room's metadata shown on a page is cut to this many characters
MAX_REASON = 200  # §10.1: a close reason is short; an operator's note is cut to this
LOOP_TIMEOUT = 5.0  # s the monitor waits for an AsyncServer's loop to run its read
T = TypeVar("T")


class ServerView:
    """Reads a ``Server`` (or ``AsyncServer``, reads only) for the monitor."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.hub = server.hub
        self.ctx = server.context
        # room id -> (time, ticks, held rate) of the last measurement (rooms on show only)
        self._marks: dict[str, tuple[float, int, float | None]] = {}
        self._marks_lock = threading.Lock()

    def on_server(self, func: Callable[[], T]) -> T:
        """``func()`` where the server's sessions may be touched: under a threaded server's
        lock, or on an ``AsyncServer``'s event loop (raises ``TimeoutError`` when the loop
        does not get to it within ``LOOP_TIMEOUT``: a game blocking its loop)."""
        lock = getattr(self.server, "lock", None)
        if lock is not None:
            with lock:
                return func()
        loop: asyncio.AbstractEventLoop | None = getattr(self.server, "loop", None)
        if loop is None or loop.is_closed() or not loop.is_running() or _running() is loop:
            return func()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func())
                except BaseException as exc:
                    future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        try:
            return future.result(LOOP_TIMEOUT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError("the server's event loop did not answer in time") from None

    def on_game(self, func: Callable[[], T]) -> T:
        """``func()`` reading game-thread state (rooms): on an ``AsyncServer``'s loop; on a
        threaded server from this thread, again when the game thread changed a table under
        the read (``RuntimeError``: a dict changed size during iteration)."""
        if getattr(self.server, "lock", None) is None:
            return self.on_server(func)
        for _ in range(4):
            try:
                return func()
            except RuntimeError:
                continue
        return func()

    def rooms(self) -> dict[str, Any] | None:
        """The live rooms when the server has room types defined (None otherwise): counts by
        type over all of them, and rows for at most ``MAX_ROOMS`` (the fullest first, then
        by id; the default room first)."""
        service = getattr(self.server, "rooms", None)
        if service is None or not getattr(service.matchmaker, "definitions", None):
            return None
        mm = service.matchmaker

        held: dict[int, int] = {}  # member of a room other than the default -> its view size

        def read() -> list[dict[str, Any]]:
            held.clear()  # a read retried starts again
            ticks = {s.key: s for s in mm.scheduler.stats()}
            rows = []
            for room in list(mm.rooms.values()):
                members = sorted(list(room.clients))
                if room.context is not self.ctx:  # the default room's come from snapshots
                    held.update(_view_sizes(room.context.world))
                stats = ticks.get(room.room_id)
                rows.append(
                    {
                        "id": room.room_id,
                        "type": room.name,
                        "members": members,
                        "clients": len(members),
                        "max_clients": room.max_clients,
                        "reserved": room.reserved,
                        "locked": bool(room.locked),
                        "objects": len(room.context.world.objects),
                        "metadata": _metadata(room.metadata),
                        "tick_rate": None if stats is None else stats.rate,
                        "ticks": None if stats is None else stats.ticks,
                        "tick_seconds_sum": None if stats is None else stats.mean * stats.ticks,
                        "tick_p99": None if stats is None else stats.p99,
                        "tick_max": None if stats is None else stats.max,
                        "overruns": None if stats is None else stats.overruns,
                    }
                )
            return rows

        rows = self.on_game(read)
        by_type: Counter[str] = Counter(row["type"] for row in rows)
        member_room = {member: row["id"] for row in rows for member in row["members"]}
        rows.sort(key=lambda r: (r["id"] != "default", -r["clients"], r["id"]))
        shown = rows[:MAX_ROOMS]
        now = time.monotonic()
        for row in shown:
            row["held_rate"] = self._held_rate(row["id"], row["ticks"], now)
        with self._marks_lock:
            keep = {row["id"] for row in shown}
            for rid in [r for r in self._marks if r not in keep]:
                del self._marks[rid]
        return {
            "total": len(rows),
            "by_type": dict(sorted(by_type.items())),
            "rooms": shown,
            "truncated": len(rows) > MAX_ROOMS,
            "member_room": member_room,
            "member_view": dict(held),
        }

    def _matchmaker(self) -> Any:
        service = getattr(self.server, "rooms", None)
        if service is None or not getattr(service.matchmaker, "definitions", None):
            return None
        return service.matchmaker

    def room_of(self, member: int) -> str | None:
        """The id of the room ``member`` sits in (None: none, or no room types defined)."""
        mm = self._matchmaker()
        if mm is None:
            return None

        def read() -> str | None:
            room = mm.room_of(member)
            return None if room is None else str(room.room_id)

        return self.on_game(read)

    def room_ids(self) -> list[str] | None:
        """The live rooms' ids for a selector: the default room first, then by id, at most
        ``MAX_ROOMS`` (None: no room types defined)."""
        mm = self._matchmaker()
        if mm is None:
            return None
        ids = self.on_game(lambda: list(mm.rooms))
        ids.sort(key=lambda rid: (rid != "default", rid))
        return ids[:MAX_ROOMS]

    def _held_rate(self, room_id: str, ticks: int | None, now: float) -> float | None:
        """Ticks per second the room actually ran, over the last ``RATE_WINDOW`` or more
        between two reads (None until two reads that far apart saw it)."""
        if ticks is None:
            return None
        with self._marks_lock:
            mark = self._marks.get(room_id)
            if mark is None:
                self._marks[room_id] = (now, ticks, None)
                return None
            since, before, rate = mark
            if now - since >= RATE_WINDOW:
                rate = (ticks - before) / (now - since)
                self._marks[room_id] = (now, ticks, rate)
            return rate

    def _objects_by_type(self) -> dict[str, int]:
        objects = list(self.ctx.world.objects.values())
        counts: Counter[str] = Counter()
        for obj in objects:
            counts[type(obj).__name__] += 1
        return dict(counts)

    def _clients(self) -> list[dict[str, Any]]:
        """Call through ``on_server``: one row per client, its ``ConnectionStats`` and more."""
        clients = []
        for member, session in sorted(self.hub.members.items()):
            conn = self.server.by_member.get(member)
            stats = self.server.client_stats(member)
            if stats is None:  # pragma: no cover - members and stats read in one go
                continue
            row = stats_json(stats)
            row.update(
                member=member,
                address=_address(conn),
                identity=_jsonable(session.identity),
                max_frame=session.peer_max_frame,
            )
            clients.append(row)
        return clients

    def client_stats(self, member: int) -> dict[str, Any] | None:
        """One client's ``ConnectionStats`` as JSON (None: not connected)."""

        def read() -> dict[str, Any] | None:
            stats = self.server.client_stats(member)
            if stats is None:
                return None
            row = stats_json(stats)
            row["address"] = _address(self.server.by_member.get(member))
            return row

        return self.on_server(read)

    def metrics_state(self) -> dict[str, Any]:
        def read() -> tuple[Any, ...]:
            return (
                self._clients(),
                dict(self.hub.stats),
                self.hub.traffic(),
                self.hub.connections,
                sum(self.hub.pending.values()),
            )

        clients, stats, traffic, connections, pending = self.on_server(read)
        return {
            "clients": clients,
            "stats": stats,
            "traffic": traffic,
            "connections": connections,
            "pending_calls": pending,
            "inbox": len(getattr(self.server, "_inbox", ())),
            "tick": self.ctx.world.tick_count,
            "max_send_buffer": getattr(self.server, "max_send_buffer", 0),
            "objects": self._objects_by_type(),
            "rooms": self.rooms(),
        }

    def overview(self) -> dict[str, Any]:
        def read() -> tuple[Any, ...]:
            return self._clients(), dict(self.hub.stats), self.hub.traffic(), self.hub.connections

        clients, stats, traffic, connections = self.on_server(read)
        objects = self._objects_by_type()
        rooms = self.rooms()
        if rooms is not None:
            member_room = rooms.pop("member_room")
            member_view = rooms.pop("member_view")
            for client in clients:
                client["room"] = member_room.get(client["member"])
                if client["member"] in member_view:
                    client["view_size"] = member_view[client["member"]]
        return {
            "rooms": rooms,
            "time": time.time(),
            "server": {
                "address": f"{self.server.host}:{getattr(self.server, '_port', None)}",
                "tick": self.ctx.world.tick_count,
                "tick_rate": self.server.tick_rate,
                "connections": connections,
                "bytes_sent": traffic[0],
                "bytes_received": traffic[1],
                "max_send_buffer": getattr(self.server, "max_send_buffer", 0),
                "objects": sum(objects.values()),
                "objects_by_type": objects,
                "stats": stats,
            },
            "clients": clients,
        }

    def members(self) -> frozenset[int]:
        return self.on_server(lambda: frozenset(self.hub.members))

    def disconnect(self, member: int, reason: str) -> bool:
        """Close ``member``'s connection with 1000 and the operator's reason.

        The session sends ``close`` now; the I/O thread (or the event loop) flushes it and
        reports the leave to the game as for any other close. False when no such client is
        connected.
        """
        note = f"disconnected by operator: {reason}"[:MAX_REASON]
        if getattr(self.server, "lock", None) is None:  # an AsyncServer
            return self._disconnect_on_loop(member, note)
        return bool(self.server.close_member(member, CloseCode.NORMAL, note))

    def _disconnect_on_loop(self, member: int, note: str) -> bool:
        """``AsyncServer``: the close runs on its event loop (its sessions are the loop's),
        once no worker is decoding into that session (at most ``LOOP_TIMEOUT``)."""
        loop: asyncio.AbstractEventLoop | None = getattr(self.server, "loop", None)
        if loop is None or loop.is_closed():
            return False
        server, hub = self.server, self.hub

        async def close() -> bool:
            deadline = time.monotonic() + LOOP_TIMEOUT / 2
            while True:
                proto = server.by_member.get(member)
                session = hub.members.get(member)
                if proto is None or session is None or session.state is not State.OPEN:
                    return False
                if not proto.busy:
                    break
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.01)  # a worker has the session for one large frame
            return bool(server.close_member(member, CloseCode.NORMAL, note))

        future = asyncio.run_coroutine_threadsafe(close(), loop)
        try:
            return future.result(LOOP_TIMEOUT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return False


def _address(conn: Any) -> str:
    try:
        sock = getattr(conn, "sock", None)
        if sock is not None:
            peer = sock.getpeername()
        else:
            peer = conn.transport.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}"
    except Exception:  # closing, or an I/O layer this reader does not know
        return "?"


def _running() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def stats_json(stats: ConnectionStats) -> dict[str, Any]:
    """``ConnectionStats`` for a page: its fields, its properties, incidents as objects."""
    row = dataclasses.asdict(stats)
    row["connected"] = stats.connected
    row["send_buffer_fill"] = stats.send_buffer_fill
    row["rpcs_failed_total"] = sum(stats.rpcs_failed.values())
    row["incidents"] = [
        {"time": i.at, "kind": i.kind, "code": None if i.code is None else int(i.code)}
        | {"detail": i.detail}
        for i in stats.incidents
    ]
    return row


def _view_sizes(world: Any) -> dict[int, int]:
    """How many objects each peer of a world holds, from the replication engine's views
    (single C-level copies: ``list()`` of the views and of a view's members, ``len()`` of
    what they hold); empty for an engine without them."""
    views = getattr(world, "_views", None)
    if not isinstance(views, list):
        return {}
    sizes: dict[int, int] = {}
    for view in list(views):
        size = len(view.held)
        for member in list(view.members):
            sizes[member] = size
    return sizes


def _metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """A room's metadata for a page: JSON values, each cut to ``MAX_METADATA_CHARS``."""
    out: dict[str, Any] = {}
    for key, value in list(dict(meta).items())[:20]:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):
            text = repr(type(value).__name__)
        out[str(key)[:60]] = (
            value if len(text) <= MAX_METADATA_CHARS else text[:MAX_METADATA_CHARS] + "…"
        )
    return out


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return repr(value)
