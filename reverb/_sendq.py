"""Unsent output of one connection, kept as whole frames until the socket can take them, and
the server-wide send budget (docs/security.md §2; protocol §11). Shared by both I/O layers.

Each layer hands its socket (or asyncio transport) at most about ``WINDOW`` bytes at a time;
the rest waits here as the whole frames the session produced. So a peer that stops reading
costs what is queued here, which the budget counts, and when it is dropped every frame it was
never sent can be discarded while the one it may be half-way through is completed: its
``close`` frame (1013) then follows on a frame boundary (§10.1).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable
from typing import Protocol

__all__ = ["BIG_FRAME", "WINDOW", "FrameSizer", "SendQueue", "over_budget"]

WINDOW = 65536  # bytes handed to a socket at a time; the rest stays queued as whole frames
BIG_FRAME = 65536  # a read completing a larger frame is decoded off the I/O thread / loop;
# never a handshake frame (capped at 65536, §2.7), so the authenticate hook stays on it
FRESH_WINDOW = 0.05  # s: output pushed within this of a first push is one round (one tick's)
_HEADER = struct.Struct(">I")


class SendQueue:
    """Chunks of whole frames (§2.1) in order, each as ``Session.data_to_send`` returned it.

    ``fresh`` counts what was pushed in the latest ``FRESH_WINDOW``: a peer whose backlog is
    no larger than what it was just given keeps up, however large one sync is; only older
    bytes count as stale.
    """

    __slots__ = ("_chunks", "_offset", "fresh", "fresh_at", "size")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # how much of the first chunk was already taken
        self.size = 0
        self.fresh = 0
        self.fresh_at = float("-inf")

    def __bool__(self) -> bool:
        return self.size > 0

    def push(self, data: bytes, now: float) -> None:
        if data:
            self._chunks.append(data)
            self.size += len(data)
            self.written(len(data), now)

    def written(self, size: int, now: float) -> None:
        """``size`` bytes went to the socket directly, past an empty queue: they count as
        fresh output, as if pushed and taken at once."""
        if now - self.fresh_at > FRESH_WINDOW:
            self.fresh, self.fresh_at = 0, now
        self.fresh += size

    def take(self, limit: int = WINDOW) -> bytes:
        """Whole frames from the front, about ``limit`` bytes (at least one frame)."""
        if not self._chunks:
            return b""
        chunk = self._chunks[0]
        start = pos = self._offset
        end = len(chunk)
        while pos < end and pos - start < limit:
            (length,) = _HEADER.unpack_from(chunk, pos)
            pos += _HEADER.size + length
        pos = min(pos, end)
        if pos == end:
            self._chunks.popleft()
            self._offset = 0
        else:
            self._offset = pos
        piece = chunk if start == 0 and pos == end else chunk[start:pos]
        self.size -= len(piece)
        return piece

    def discard(self) -> int:
        """Drop every queued frame (none of it was sent); return how many bytes that was."""
        dropped = self.size
        self._chunks.clear()
        self._offset = 0
        self.size = 0
        self.fresh = 0
        return dropped


class FrameSizer:
    """Follows the frame boundaries of received bytes (§2.1) without buffering any: enough
    to tell whether a read completes a large frame, whose decoding goes
    to a worker thread."""

    __slots__ = ("header", "left", "length")

    def __init__(self) -> None:
        self.header = b""
        self.left = 0  # body bytes still to come of the frame in progress
        self.length = 0

    def feed(self, data: bytes) -> int:
        """The length of the largest frame that ``data`` completes (0 if none)."""
        largest, pos, end = 0, 0, len(data)
        if not self.left and not self.header and end > 4:
            length = int.from_bytes(data[:4], "big")
            if length + 4 == end:  # the usual read: exactly one whole frame
                return length
        while pos < end:
            if not self.left:
                take = min(4 - len(self.header), end - pos)
                self.header += data[pos : pos + take]
                pos += take
                if len(self.header) < 4:
                    break
                self.length = self.left = int.from_bytes(self.header, "big")
                self.header = b""
                if not self.left:
                    continue  # an empty frame: the session refuses it
            take = min(self.left, end - pos)
            pos += take
            self.left -= take
            if not self.left:
                largest = max(largest, self.length)
        return largest


class Backlogged(Protocol):
    """What the budget needs to know of a connection."""

    @property
    def peer_ip(self) -> str: ...

    def backlog(self) -> int:
        """Bytes given to this connection and not yet sent."""
        ...

    def stale(self) -> int:
        """Of those, the bytes older than its latest output."""
        ...


def over_budget(
    conns: Iterable[Backlogged], total_limit: int | None, per_ip_limit: int | None
) -> list[tuple[Backlogged, str]]:
    """The connections to drop, worst offender (largest stale backlog) first, so that the
    total and each address's backlog get back under their limits; with the limit hit
    (``"total_send_buffer"`` or ``"send_buffer_per_ip"``). Only stale bytes make a victim:
    peers that keep up are never dropped, even while one large sync is on its way to them."""
    conns = list(conns)
    backlogs = {id(conn): conn.backlog() for conn in conns}
    per_ip: dict[str, int] = {}
    for conn in conns:
        per_ip[conn.peer_ip] = per_ip.get(conn.peer_ip, 0) + backlogs[id(conn)]
    total = sum(per_ip.values())
    victims: list[tuple[Backlogged, str]] = []
    ranked = sorted((c for c in conns if c.stale() > 0), key=lambda c: c.stale(), reverse=True)
    for conn in ranked:
        ip = conn.peer_ip
        if total_limit is not None and total > total_limit:
            limit = "total_send_buffer"
        elif per_ip_limit is not None and per_ip[ip] > per_ip_limit:
            limit = "send_buffer_per_ip"
        else:
            continue
        victims.append((conn, limit))
        total -= backlogs[id(conn)]
        per_ip[ip] -= backlogs[id(conn)]
    return victims
