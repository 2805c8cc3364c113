"""What both hubs and both I/O layers share: the deadline heap, the slow-consumer rule and the
limits the I/O layers apply (sans I/O)."""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, Protocol, TypeVar

from reverb.proto.session import (
    Session,
)
from reverb.resume import Refusal

__all__ = [
    "COMPRESS_LEVEL",
    "COMPRESS_MIN",
    "HOUSEKEEPING_IDLE",
    "HOUSEKEEPING_INTERVAL",
    "MAX_UNREAD",
    "REFUSALS",
    "SHED_REASONS",
    "UNREAD_REASON",
    "Deadlines",
    "sheds",
]

# §15: frames this large or larger go compressed to a client that asked for "deflate" (a
# 1000-object compact delta of random floats halves at level 1 for ~0.7 ms, once per view);
# smaller ones gain too little.
COMPRESS_MIN = 1024
COMPRESS_LEVEL = 1

# Syncs and events waiting for client_sync(): a game pumping at any frame rate holds a few;
# a program that never pumps is disconnected rather than left to grow without bound.
MAX_UNREAD = 10_000
UNREAD_REASON = "client_sync() not called: too many updates unread"

# §10.1: why a peer that does not read is sent ``close`` 1013, by the limit it went over
SHED_REASONS = {
    "send_buffer": "send buffer over its limit",
    "total_send_buffer": "server send buffers over their limit",
    "send_buffer_per_ip": "send buffers of this address over their limit",
}


# §18: how often a server with held memberships expires them and asks "resume" clients to
# confirm the answers they were written (``ServerHub.next_housekeeping``)
HOUSEKEEPING_INTERVAL = 0.25
# ... and how often they look again while none is held or connected: a server with no
# "resume" client wakes once a second for it, not four times
HOUSEKEEPING_IDLE = 1.0


class _Scheduled(Protocol):
    deadline: float | None  # its entry in the heap (None: none)


ConnT = TypeVar("ConnT", bound=_Scheduled)


class Deadlines(Generic[ConnT]):
    """When each connection next has something to do, earliest first: the sessions' own
    deadlines (``Session.next_deadline``: handshake, frame, idle, heartbeat, §2.6, §4.6, §9)
    and the I/O layer's (a close to flush). One heap for any number of connections, so a
    deadline is met on time and a connection costs nothing until its time; both I/O layers
    keep one and sleep until ``next_at()``.

    A connection keeps at most one live entry, its ``deadline``: ``schedule`` pushes a new
    one only when it is earlier (a deadline that moved later is found when the old entry
    comes due, then re-scheduled), so receiving bytes costs a comparison."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, ConnT]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, conn: ConnT, when: float | None) -> bool:
        """Make sure ``conn`` comes due no later than ``when`` (None: nothing to add). True
        when ``when`` is now the earliest of all (an I/O layer with a timer re-arms it)."""
        if when is None or (conn.deadline is not None and conn.deadline <= when):
            return False
        conn.deadline = when
        heap = self._heap
        heapq.heappush(heap, (when, next(self._seq), conn))
        return heap[0][2] is conn

    def due(self, now: float) -> list[ConnT]:
        """The connections whose deadline has come (each once; its entry is gone: the I/O
        layer checks it, then schedules it again)."""
        heap = self._heap
        out = []
        while heap and heap[0][0] <= now:
            when, _, conn = heapq.heappop(heap)
            if conn.deadline == when:  # else superseded by an earlier entry, or discarded
                conn.deadline = None
                out.append(conn)
        return out

    def next_at(self) -> float | None:
        """The earliest deadline (None: none)."""
        heap = self._heap
        while heap and heap[0][2].deadline != heap[0][0]:
            heapq.heappop(heap)  # stale
        return heap[0][0] if heap else None

    def clear(self) -> None:
        for _, _, conn in self._heap:
            conn.deadline = None
        self._heap.clear()


def sheds(backlog: int, limit: int, session: Session) -> bool:
    """The slow-consumer rule (§10.1), the same in every I/O layer: a peer whose unsent bytes
    (``backlog``, counted before the output just queued) already exceed ``limit`` as more is
    queued is dropped with ``close`` 1013 (``SHED_REASONS["send_buffer"]``). Memory stays
    under the limit plus one tick, and one large sync to a healthy reader never counts
    against it. Ask it only when output was queued."""
    return backlog > limit and not session.closed


# §18.4: the close reason of each refusal
REFUSALS = {
    Refusal.BAD_TOKEN: "resume refused: bad token",
    Refusal.EXPIRED: "resume refused: expired",
    Refusal.RATE_LIMITED: "too many failed resume attempts",
}
