"""The monitor's one interface to a running server: what it reads and the one thing it does.

Sessions and the connection table belong to the I/O thread and are read under the server's
lock (``Server.lock``), briefly: counters are copied, nothing is encoded or decoded while it is
held. An ``AsyncServer``'s belong to its event loop: they are read, and a client disconnected,
by a callback handed to the loop (``call_soon_threadsafe``), the monitor's thread waiting for
its answer (at most ``LOOP_TIMEOUT``). The world belongs to the game thread and is read from
snapshots the game thread takes (``Observer.tick``); only object counts by type are read
directly (a single ``list()`` of the table, which the interpreter performs without running
Python code in between).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from reverb.errors import CloseCode
from reverb.proto.session import State
from reverb.stats import ConnectionStats

__all__ = ["LOOP_TIMEOUT", "MAX_REASON", "ServerView", "stats_json"]

MAX_REASON = 200  # §10.1: a close reason is short; an operator's note is cut to this
LOOP_TIMEOUT = 5.0  # s the monitor waits for an AsyncServer's loop to run its read
T = TypeVar("T")


class ServerView:
    """Reads a ``Server`` (or ``AsyncServer``, reads only) for the monitor."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.hub = server.hub
        self.ctx = server.context

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
        }

    def overview(self) -> dict[str, Any]:
        def read() -> tuple[Any, ...]:
            return self._clients(), dict(self.hub.stats), self.hub.traffic(), self.hub.connections

        clients, stats, traffic, connections = self.on_server(read)
        objects = self._objects_by_type()
        return {
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
        if getattr(self.server, "lock", None) is None:
            return self._disconnect_on_loop(member, note)
        with self.server.lock:
            conn = self.server.by_member.get(member)
            session = self.hub.members.get(member)
            if conn is None or session is None or session.state is not State.OPEN:
                return False
            with conn.lock:  # a worker decoding a large frame into it holds it meanwhile
                session.close(CloseCode.NORMAL, note, time.monotonic())
            self.server.mark_dirty(conn)
        self.server.wake()
        return True

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
            session.close(CloseCode.NORMAL, note, time.monotonic())
            server.guarded(proto, server.pump, proto)
            return True

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


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return repr(value)
