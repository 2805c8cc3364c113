"""Rooms on the client side (protocol §17), sans I/O: requests, room handles, lobbies.

A client that uses rooms connects with ``Client(..., rooms=True)`` (it asks for the feature
``"rooms"``); it then starts in no room and joins one with ``join_or_create`` / ``create`` /
``join`` / ``join_by_id`` (``switch=True`` to move without leaving first). Each returns a
``RoomHandle``: the room's id and name, and its replicas and events — which are the client
context's, since a connection sits in one room at a time (§17.2): after ``room_left`` they are
despawned, and the next room's arrive with its full sync. ``watch(name)`` returns a ``Lobby``
whose ``rooms`` follow the server's room list live (updated in ``client_sync()``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from reverb.errors import RoomRefused
from reverb.proto import messages as m

if TYPE_CHECKING:
    from reverb.context import ReverbContext

__all__ = ["ROOM_TIMEOUT", "Lobby", "RoomHandle", "RoomInfo", "join_request", "room_result"]

ROOM_TIMEOUT = 10.0  # seconds a room request waits for its answer before RoomTimeout
T = TypeVar("T")
Build = Callable[[int], m.Message]


@dataclass(frozen=True)
class RoomInfo:
    """One room of a listing (§17.3): what a lobby menu shows."""

    room_id: str
    name: str
    clients: int
    max_clients: int | None
    locked: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, listing: Mapping[str, Any]) -> RoomInfo:
        return cls(
            room_id=str(listing.get("room", "")),
            name=str(listing.get("name", "")),
            clients=int(listing.get("clients", 0)),
            max_clients=listing.get("max_clients"),
            locked=bool(listing.get("locked", False)),
            metadata=dict(listing.get("metadata") or {}),
        )

    @property
    def joinable(self) -> bool:
        full = self.max_clients is not None and self.clients >= self.max_clients
        return not self.locked and not full


class RoomHandle:
    """The room a join answered: ``room_id``, ``name``, ``created``; its replicas and events.

    Valid while the client sits in it (``active``); ``leave()`` leaves it."""

    def __init__(self, client: Any, room_id: str, name: str, created: bool) -> None:
        self.client = client
        self.room_id = room_id
        self.name = name
        self.created = created

    def __repr__(self) -> str:
        return f"RoomHandle({self.room_id!r}, {self.name!r}, created={self.created})"

    @property
    def context(self) -> ReverbContext:
        ctx: ReverbContext = self.client.context
        return ctx

    @property
    def active(self) -> bool:
        """Whether the connection is still in this room (as far as received)."""
        return bool(self.client.hub.room == self.room_id)

    @property
    def client_events(self) -> Any:
        return self.context.client_events

    @property
    def objects(self) -> dict[int, Any]:
        return self.context.objects if self.context.room == self.room_id else {}

    def get_all_ro_by_type(self, cls: type[T]) -> list[T]:
        """This room's replicas of ``cls`` (applies what arrived first); empty once left."""
        found = self.context.get_all_ro_by_type(cls)
        return found if self.context.room == self.room_id else []

    def leave(self, timeout: float = ROOM_TIMEOUT) -> Any:
        """Leave this room (``client.leave()``)."""
        return self.client.leave(timeout=timeout)


class Lobby:
    """The live list of rooms (of type ``name``) a client watches (§17.6)."""

    def __init__(self, name: str | None, rooms: list[Any]) -> None:
        self.name = name
        self.rooms: dict[str, RoomInfo] = {}
        self.events: list[tuple[str, RoomInfo]] = []  # every event applied, in order
        for listing in rooms:
            info = RoomInfo.of(listing)
            self.rooms[info.room_id] = info

    def apply(self, event: m.RoomEvent) -> None:
        info = RoomInfo.of(event.room)
        if self.name is not None and info.name != self.name:
            return
        if event.event == "removed":
            self.rooms.pop(info.room_id, None)
        else:
            self.rooms[info.room_id] = info
        self.events.append((event.event, info))

    def __repr__(self) -> str:
        return f"Lobby({self.name!r}, {len(self.rooms)} rooms)"


def join_request(
    mode: str,
    *,
    name: str | None = None,
    options: Mapping[str, Any] | None = None,
    filter: Mapping[str, Any] | None = None,
    room: str | None = None,
    switch: bool = False,
) -> Build:
    """A ``room_join`` for a request id (§17.5)."""
    opts = m.to_wire(dict(options), "room options") if options else m.ABSENT
    filt = m.to_wire(dict(filter), "room filter") if filter else m.ABSENT

    def build(req: int) -> m.Message:
        return m.RoomJoin(
            req=req,
            mode=mode,
            name=m.ABSENT if name is None else name,
            options=opts,
            filter=filt,
            room=m.ABSENT if room is None else room,
            switch=True if switch else m.ABSENT,
        )

    return build


def room_result(client: Any, reply: m.Message) -> Any:
    """What a room request's answer means for the caller: a ``RoomHandle`` for
    ``room_joined``, the ``RoomInfo`` list of a ``room_list_result``, None for ``room_left``;
    ``RoomRefused`` raised for ``room_refused``."""
    if isinstance(reply, m.RoomRefused):
        raise RoomRefused(reply.code, reply.reason)
    if isinstance(reply, m.RoomJoined):
        return RoomHandle(client, reply.room, reply.name, reply.created)
    if isinstance(reply, m.RoomListResult):
        return [RoomInfo.of(r) for r in reply.rooms if isinstance(r, dict)]
    return None
