"""Values the rooms layer hands out: clients, auth verdicts, join outcomes and refusal codes.

Every outcome is a small frozen dataclass; a refusal is a value, not an exception, so the
caller (one day the session's room messages, docs/design/rooms.md §2) maps it to the wire
without catching anything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Accept",
    "Joined",
    "Left",
    "Refusal",
    "Refused",
    "Reject",
    "Reservation",
    "RoomClient",
]


class Refusal(enum.Enum):
    """Why a matchmaking request was refused (docs/design/rooms.md §2.4 lists them)."""

    UNKNOWN_ROOM_TYPE = "unknown_room_type"  # no room type of that name is defined
    NO_ROOM = "no_room"  # join(name, filter): no joinable room of that type matches
    UNKNOWN_ROOM = "unknown_room"  # join_by_id: no such room (never existed, or disposed)
    FULL = "full"  # clients plus reserved seats reached max_clients
    LOCKED = "locked"  # the room was locked (lock()); join_or_create then creates instead
    ALREADY_IN_ROOM = "already_in_room"  # one game room per connection: leave or switch
    NOT_IN_ROOM = "not_in_room"  # leave() by a connection that is in no room
    REJECTED = "rejected"  # on_auth returned Reject(reason); the reason is for the player
    RESERVATION_EXPIRED = "reservation_expired"  # no live seat reservation with that token
    CREATE_FAILED = "create_failed"  # on_create raised (logged); the room was not created


@dataclass(frozen=True)
class RoomClient:
    """One connection as a room sees it: its membership id (unique per server, §4.3) and the
    identity the server's authenticate hook gave it (§4.8), None without authentication."""

    member: int
    identity: Any = None
    # the features granted to the connection (§4.11): its syncs use them (compact, time, ...)
    features: frozenset[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class Accept:
    """``on_auth`` lets the client in; ``auth`` is kept as ``room.auth[member]``."""

    auth: Any = None


@dataclass(frozen=True)
class Reject:
    """``on_auth`` refuses the client; ``reason`` is shown to the player (never internals)."""

    reason: str = "rejected"


@dataclass(frozen=True)
class Reservation:
    """A seat held in ``room_id`` for ``member`` until ``expires`` (matchmaker time).

    Colyseus' two-step join: matchmaking reserves, the connection then consumes the seat.
    A reserved seat counts against ``max_clients`` until consumed or expired."""

    token: str
    room_id: str
    member: int
    expires: float
    options: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Joined:
    """``member`` is now a client of ``room_id``; ``created`` when this request created it."""

    room_id: str
    name: str
    member: int
    created: bool = False


@dataclass(frozen=True)
class Left:
    """``member`` left ``room_id``; ``disposed`` when the room went with it (auto_dispose)."""

    room_id: str
    member: int
    disposed: bool = False


@dataclass(frozen=True)
class Refused:
    """The request was refused: ``code`` for programs, ``reason`` for people."""

    code: Refusal
    reason: str
