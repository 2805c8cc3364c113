"""Where rooms are and who sits in them, behind two small interfaces.

``RoomRegistry`` holds one ``RoomListing`` per live room (what a lobby shows and what
matchmaking searches); ``Presence`` holds which room each connection sits in. The
matchmaker talks only to these Protocols, so a Redis-backed pair can replace the in-process
``LocalRegistry`` / ``LocalPresence`` (docs/design/rooms.md §4):

- every write is a whole listing keyed by room id (a Redis hash per room, a sorted set per
  room type), so writes are idempotent and need no read-modify-write;
- ``take_seat`` is the one operation that must be atomic (Redis: ``SET seat:<member> <room>
  NX``), because two processes may seat the same connection at once;
- change notifications go through ``subscribe``: in process a direct call, with Redis a
  pub/sub channel whose messages are turned into the same ``RoomAdded`` / ``RoomChanged``
  / ``RoomRemoved`` values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "LobbyEvent",
    "LocalPresence",
    "LocalRegistry",
    "Presence",
    "RoomAdded",
    "RoomChanged",
    "RoomListing",
    "RoomRegistry",
    "RoomRemoved",
]


@dataclass(frozen=True)
class RoomListing:
    """A room as the lobby and matchmaking see it. ``process`` names the server process
    that hosts it (one process today: ``"local"``)."""

    room_id: str
    name: str
    clients: int
    max_clients: int | None
    locked: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)
    reserved: int = 0  # seats reserved and not yet consumed (they count as taken)
    process: str = "local"
    created: int = 0  # creation order: ties in matchmaking go to the older room

    @property
    def full(self) -> bool:
        return self.max_clients is not None and self.clients + self.reserved >= self.max_clients

    @property
    def joinable(self) -> bool:
        return not self.locked and not self.full

    def matches(self, filter: Mapping[str, Any]) -> bool:
        """Every key of ``filter`` is in the metadata with an equal value."""
        meta = self.metadata
        return all(k in meta and meta[k] == v for k, v in filter.items())


@dataclass(frozen=True)
class RoomAdded:
    listing: RoomListing


@dataclass(frozen=True)
class RoomChanged:
    listing: RoomListing


@dataclass(frozen=True)
class RoomRemoved:
    room_id: str
    name: str


LobbyEvent = RoomAdded | RoomChanged | RoomRemoved
Listener = Callable[[LobbyEvent], None]


class RoomRegistry(Protocol):
    """Which rooms exist, with their listings; notifies subscribers of every change."""

    def put(self, listing: RoomListing) -> None:
        """Add or replace the listing of ``listing.room_id``."""

    def remove(self, room_id: str) -> None:
        """Forget a room; unknown ids are ignored."""

    def get(self, room_id: str) -> RoomListing | None: ...

    def listings(self, name: str | None = None) -> list[RoomListing]:
        """Every listing (of type ``name``), in creation order."""

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with each change from now on; returns the unsubscribe call."""


class Presence(Protocol):
    """Which room each connection (membership id) sits in: at most one (§2.1 of the design)."""

    def seat_of(self, member: int) -> str | None: ...

    def take_seat(self, member: int, room_id: str) -> bool:
        """Seat ``member`` in ``room_id`` unless it is seated somewhere: atomic."""

    def release_seat(self, member: int, room_id: str) -> None:
        """Unseat ``member`` if it sits in ``room_id``."""


class LocalRegistry:
    """``RoomRegistry`` in this process: a dict and a list of listeners."""

    def __init__(self) -> None:
        self._rooms: dict[str, RoomListing] = {}
        self._listeners: list[Listener] = []

    def put(self, listing: RoomListing) -> None:
        old = self._rooms.get(listing.room_id)
        if old == listing:
            return  # nothing a lobby could see changed
        self._rooms[listing.room_id] = listing
        self._notify(RoomAdded(listing) if old is None else RoomChanged(listing))

    def remove(self, room_id: str) -> None:
        old = self._rooms.pop(room_id, None)
        if old is not None:
            self._notify(RoomRemoved(room_id, old.name))

    def get(self, room_id: str) -> RoomListing | None:
        return self._rooms.get(room_id)

    def listings(self, name: str | None = None) -> list[RoomListing]:
        rooms: Iterable[RoomListing] = self._rooms.values()
        return [r for r in rooms if name is None or r.name == name]

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, event: LobbyEvent) -> None:
        for listener in list(self._listeners):
            listener(event)


class LocalPresence:
    """``Presence`` in this process."""

    def __init__(self) -> None:
        self._seats: dict[int, str] = {}

    def seat_of(self, member: int) -> str | None:
        return self._seats.get(member)

    def take_seat(self, member: int, room_id: str) -> bool:
        if member in self._seats:
            return False
        self._seats[member] = room_id
        return True

    def release_seat(self, member: int, room_id: str) -> None:
        if self._seats.get(member) == room_id:
            del self._seats[member]
