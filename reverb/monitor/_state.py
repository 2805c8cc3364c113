"""The monitor's one interface to a running server: what it reads and the one thing it does.

Sessions and the connection table belong to the I/O thread and are read under the server's
lock (``Server.lock``), briefly: counters are copied, nothing is encoded or decoded while it is
held. The world belongs to the game thread and is read from snapshots the game thread takes
(``Observer.tick``); only object counts by type are read directly (a single ``list()`` of the
table, which the interpreter performs without running Python code in between).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from typing import Any

from reverb.errors import CloseCode
from reverb.proto.session import State

__all__ = ["MAX_REASON", "ServerView"]

MAX_REASON = 200  # §10.1: a close reason is short; an operator's note is cut to this


class ServerView:
    """Reads a ``Server`` (or ``AsyncServer``, reads only) for the monitor."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.hub = server.hub
        self.ctx = server.context

    def _locked(self) -> contextlib.AbstractContextManager[Any]:
        lock = getattr(self.server, "lock", None)
        return lock if lock is not None else contextlib.nullcontext()

    def _objects_by_type(self) -> dict[str, int]:
        objects = list(self.ctx.world.objects.values())
        counts: Counter[str] = Counter()
        for obj in objects:
            counts[type(obj).__name__] += 1
        return dict(counts)

    def _clients(self) -> list[dict[str, Any]]:
        """Call with the lock held."""
        clients = []
        for member, session in sorted(self.hub.members.items()):
            conn = self.server.by_member.get(member)
            clients.append(
                {
                    "member": member,
                    "address": _address(conn),
                    "identity": _jsonable(session.identity),
                    "state": session.state.value,
                    "bytes_sent": session.bytes_sent,
                    "bytes_received": session.bytes_received,
                    "send_buffer": _send_buffer(conn),
                    "pending_calls": self.hub.pending.get(member, 0),
                    "max_frame": session.peer_max_frame,
                }
            )
        return clients

    def metrics_state(self) -> dict[str, Any]:
        with self._locked():
            clients = self._clients()
            stats = dict(self.hub.stats)
            traffic = self.hub.traffic()
            connections = self.hub.connections
            pending = sum(self.hub.pending.values())
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
        with self._locked():
            clients = self._clients()
            stats = dict(self.hub.stats)
            traffic = self.hub.traffic()
            connections = self.hub.connections
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
        with self._locked():
            return frozenset(self.hub.members)

    def disconnect(self, member: int, reason: str) -> bool:
        """Close ``member``'s connection with 1000 and the operator's reason (threaded server).

        The session sends ``close`` now; the I/O thread flushes it and reports the leave to
        the game as for any other close. False when no such client is connected.
        """
        if getattr(self.server, "lock", None) is None:
            return False  # asyncio: sessions are the event loop's; not wired yet
        note = f"disconnected by operator: {reason}"[:MAX_REASON]
        with self._locked():
            conn = self.server.by_member.get(member)
            session = self.hub.members.get(member)
            if conn is None or session is None or session.state is not State.OPEN:
                return False
            session.close(CloseCode.NORMAL, note, time.monotonic())
            mark = getattr(self.server, "mark_dirty", None)
            if mark is not None:
                mark(conn)
        wake = getattr(self.server, "wake", None)
        if wake is not None:
            wake()
        return True


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


def _send_buffer(conn: Any) -> int:
    out = getattr(conn, "out", None)
    if out is not None:
        return len(out)
    transport = getattr(conn, "transport", None)
    if transport is not None:
        try:
            return int(transport.get_write_buffer_size())
        except Exception:
            return 0
    return 0


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return repr(value)
