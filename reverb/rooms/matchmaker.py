"""Matchmaking, sans I/O: find or create a room, reserve a seat, admit, leave, switch, dispose.

Every request names its client (``RoomClient``: membership id and identity) and the time
``now``; every answer is a value (``Joined``, ``Reservation``, ``Left``) or a ``Refused`` with
a ``Refusal`` code (docs/design/rooms.md §2.4). Nothing here reads the clock or touches a
socket: the I/O layer calls ``step(now)`` from its loop and sends ``outgoing()``.

A connection sits in **at most one room** at a time (design §2.1): joining a second room is
refused with ``already_in_room``; ``switch`` moves it atomically — if the new room refuses,
the connection stays where it was. Watching the lobby (``lobby``) is not sitting in a room.

Seat reservation (Colyseus' two-step join): ``reserve_seat`` finds or creates the room and
holds a seat for ``reservation_ttl`` seconds; ``consume`` runs ``on_auth`` and ``on_join``. A
reserved seat counts against ``max_clients``; an expired reservation frees it, and a room
that never got a client is disposed then (``auto_dispose``). ``join_or_create``, ``create``,
``join`` and ``join_by_id`` do both steps at once.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reverb.errors import CloseCode, RpcCode
from reverb.hub import DEFAULT_ROOM
from reverb.proto import messages as m
from reverb.rooms._types import (
    Accept,
    Joined,
    Left,
    Refusal,
    Refused,
    Reject,
    Reservation,
    RoomClient,
)
from reverb.rooms.lobby import LobbyFeed
from reverb.rooms.registry import LocalPresence, LocalRegistry, Presence, RoomRegistry
from reverb.rooms.room import Room
from reverb.rooms.scheduler import TickScheduler

__all__ = ["JoinRequest", "Matchmaker", "RoomOutput"]

logger = logging.getLogger("reverb")

# A seat reserved by matchmaking is held this long for its connection to claim it: long
# enough for a client to open a connection to another process, short enough that an
# abandoned reservation does not keep a full room from filling (Colyseus uses 15 s too).
RESERVATION_TTL = 15.0


@dataclass(frozen=True)
class JoinRequest:
    """One of the four ways to ask for a room (design §2.2); build it with the class methods."""

    mode: str  # "join_or_create" | "create" | "join" | "join_by_id"
    name: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    filter: Mapping[str, Any] = field(default_factory=dict)
    room_id: str = ""

    @classmethod
    def join_or_create(cls, name: str, options: Mapping[str, Any] | None = None) -> JoinRequest:
        return cls("join_or_create", name, dict(options or {}))

    @classmethod
    def create(cls, name: str, options: Mapping[str, Any] | None = None) -> JoinRequest:
        return cls("create", name, dict(options or {}))

    @classmethod
    def join(
        cls,
        name: str,
        filter: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> JoinRequest:
        return cls("join", name, dict(options or {}), dict(filter or {}))

    @classmethod
    def join_by_id(cls, room_id: str, options: Mapping[str, Any] | None = None) -> JoinRequest:
        return cls("join_by_id", options=dict(options or {}), room_id=room_id)


@dataclass(frozen=True)
class RoomOutput:
    """A message of ``room_id`` for ``members`` (all of them clients of that room)."""

    room_id: str
    members: tuple[int, ...]
    message: m.Message


def _matches(room: Room, wanted: Mapping[str, Any]) -> bool:
    meta = room.metadata
    return all(k in meta and meta[k] == v for k, v in wanted.items())


def _room_id() -> str:
    return secrets.token_urlsafe(6)  # 8 characters, 48 random bits


class Matchmaker:
    """The rooms of one server process: definitions, live rooms, seats, ticks, lobby feed."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        registry: RoomRegistry | None = None,
        presence: Presence | None = None,
        reservation_ttl: float = RESERVATION_TTL,
        room_ids: Callable[[], str] = _room_id,
    ) -> None:
        self.registry: RoomRegistry = registry if registry is not None else LocalRegistry()
        self.presence: Presence = presence if presence is not None else LocalPresence()
        self.scheduler = TickScheduler(clock)
        self.lobby = LobbyFeed(self.registry)
        self.reservation_ttl = reservation_ttl
        self.definitions: dict[str, type[Room]] = {}
        self.rooms: dict[str, Room] = {}  # the rooms this process hosts
        self._room_ids = room_ids
        self._created = 0
        self._reservations: dict[str, Reservation] = {}
        self._reserved_by: dict[int, str] = {}  # member -> token
        self._dirty: dict[str, Room] = {}  # rooms whose listing must be published
        # name -> the joinable rooms of that type (insertion order: oldest first), kept by
        # _touch so that matchmaking does not scan full or locked rooms
        self._open: dict[str, dict[str, Room]] = {}
        self._out: list[RoomOutput] = []
        self._just_created = ""  # the room the last reserve_seat created, for Joined.created
        # (member, room_id, reason) of clients removed without asking (a room disposed under
        # them): the service tells them with room_left (protocol §17.5); drained by kicked()
        self._kicked: list[tuple[int, str, str]] = []

    # -- definitions ---------------------------------------------------------------------------

    def define(self, name: str, room_cls: type[Room]) -> type[Room]:
        if name in self.definitions:
            raise ValueError(f"room type {name!r} is already defined")
        if not (isinstance(room_cls, type) and issubclass(room_cls, Room)):
            raise TypeError(f"{room_cls!r} is not a Room subclass")
        self.definitions[name] = room_cls
        return room_cls

    def host(self, room: Room, *, now: float, tick: bool = True) -> Room:
        """Host a room built elsewhere (the server's default room, which adopts the server's
        own context and is ticked by ``server_sync()``'s pacing: ``tick=False``)."""
        if room.room_id in self.rooms:
            raise ValueError(f"room {room.room_id!r} already exists")
        if tick:
            self.scheduler.add(room.room_id, room.tick_rate, lambda t: self._tick(room, t), now)
        self.rooms[room.room_id] = room
        room._changed = self._touch
        room._disposer = lambda: self.dispose(room.room_id)
        self._touch(room)
        self._flush()
        return room

    def kicked(self) -> list[tuple[int, str, str]]:
        """Clients removed from a room without asking since the last call, in order:
        ``(member, room_id, reason)``."""
        out, self._kicked = self._kicked, []
        return out

    # -- one-step joins --------------------------------------------------------------------------

    def join_or_create(
        self, client: RoomClient, name: str, options: Mapping[str, Any] | None = None, *, now: float
    ) -> Joined | Refused:
        """Join the fullest joinable room of type ``name`` whose metadata matches the
        ``filter_by`` keys of ``options``; create one when there is none."""
        return self.request(client, JoinRequest.join_or_create(name, options), now=now)

    def create(
        self, client: RoomClient, name: str, options: Mapping[str, Any] | None = None, *, now: float
    ) -> Joined | Refused:
        return self.request(client, JoinRequest.create(name, options), now=now)

    def join(
        self,
        client: RoomClient,
        name: str,
        filter: Mapping[str, Any] | None = None,
        *,
        options: Mapping[str, Any] | None = None,
        now: float,
    ) -> Joined | Refused:
        """Join an existing joinable room of type ``name`` whose metadata matches ``filter``."""
        return self.request(client, JoinRequest.join(name, filter, options), now=now)

    def join_by_id(
        self,
        client: RoomClient,
        room_id: str,
        options: Mapping[str, Any] | None = None,
        *,
        now: float,
    ) -> Joined | Refused:
        return self.request(client, JoinRequest.join_by_id(room_id, options), now=now)

    def request(self, client: RoomClient, request: JoinRequest, *, now: float) -> Joined | Refused:
        seat = self.reserve_seat(client, request, now=now)
        if isinstance(seat, Refused):
            return seat
        created = self._just_created == seat.room_id
        result = self.consume(client, seat.token, now=now)
        if isinstance(result, Joined) and created:
            return Joined(result.room_id, result.name, result.member, created=True)
        return result

    # -- two-step joins --------------------------------------------------------------------------

    def reserve_seat(
        self, client: RoomClient, request: JoinRequest, *, now: float, switching: bool = False
    ) -> Reservation | Refused:
        """Find or create the room and hold a seat in it for ``reservation_ttl``."""
        self._just_created = ""
        self.expire(now)
        member = client.member
        if not switching and self.presence.seat_of(member) is not None:
            return Refused(Refusal.ALREADY_IN_ROOM, "already in a room: leave it or switch")
        if member in self._reserved_by:
            return Refused(Refusal.ALREADY_IN_ROOM, "a seat is already reserved for you")
        found = self._find(request, now)
        if isinstance(found, Refused):
            self._flush()
            return found
        room = found
        if member in room.clients:
            return Refused(Refusal.ALREADY_IN_ROOM, "already in this room")
        token = secrets.token_urlsafe(12)
        seat = Reservation(
            token, room.room_id, member, now + self.reservation_ttl, dict(request.options)
        )
        self._reservations[token] = seat
        self._reserved_by[member] = token
        room.reserved += 1
        self._touch(room)
        self._flush()
        return seat

    def consume(self, client: RoomClient, token: str, *, now: float) -> Joined | Refused:
        """Claim a reserved seat: ``on_auth``, then ``on_join``."""
        self.expire(now)
        seat = self._reservations.get(token)
        if seat is None or seat.member != client.member:
            return Refused(Refusal.RESERVATION_EXPIRED, "no such seat reservation (expired?)")
        room = self.rooms[seat.room_id]
        verdict = self._authorize(room, client, seat)
        if isinstance(verdict, Refused):
            self._release(seat)
            self._flush()
            return verdict
        if not self.presence.take_seat(client.member, room.room_id):
            self._release(seat)
            self._flush()
            return Refused(Refusal.ALREADY_IN_ROOM, "already in a room: leave it or switch")
        return self._admit(room, client, seat, verdict)

    def cancel(self, token: str) -> bool:
        """Give a reserved seat back (the connection went away before it claimed it)."""
        seat = self._reservations.get(token)
        if seat is None:
            return False
        self._release(seat)
        self._flush()
        return True

    # -- leaving -------------------------------------------------------------------------------

    def leave(self, member: int, *, now: float) -> Left | Refused:
        """The connection asked to leave its room (``on_leave(client, consented=True)``)."""
        return self._leave(member, True, CloseCode.NORMAL, "left", now)

    def drop(self, member: int, code: CloseCode, reason: str, *, now: float) -> Left | None:
        """The connection closed: leave its room unconsented, give back its reservation and
        stop its lobby subscription. Returns the ``Left`` when it was in a room."""
        token = self._reserved_by.get(member)
        if token is not None:
            self._release(self._reservations[token])
        self.lobby.unsubscribe(member)
        result = self._leave(member, False, code, reason, now)
        self._flush()
        return result if isinstance(result, Left) else None

    def switch(self, client: RoomClient, request: JoinRequest, *, now: float) -> Joined | Refused:
        """Move to another room without closing the connection. Refused → it stays put; a
        connection in no room simply joins."""
        current = self.presence.seat_of(client.member)
        if current is None:
            return self.request(client, request, now=now)
        seat = self.reserve_seat(client, request, now=now, switching=True)
        if isinstance(seat, Refused):
            return seat
        created = self._just_created == seat.room_id
        room = self.rooms[seat.room_id]
        if room.room_id == current:  # pragma: no cover - member in room.clients caught above
            self._release(seat)
            return Refused(Refusal.ALREADY_IN_ROOM, "already in this room")
        verdict = self._authorize(room, client, seat)
        if isinstance(verdict, Refused):
            self._release(seat)
            self._flush()
            return verdict
        self._leave(client.member, True, CloseCode.NORMAL, "switched room", now)
        if not self.presence.take_seat(client.member, room.room_id):  # pragma: no cover
            self._release(seat)
            self._flush()
            return Refused(Refusal.ALREADY_IN_ROOM, "already in a room")
        joined = self._admit(room, client, seat, verdict)
        return Joined(joined.room_id, joined.name, joined.member, created=created)

    def dispose(self, room_id: str) -> bool:
        """Dispose a room now (for ``auto_dispose = False`` rooms, or to end a match)."""
        room = self.rooms.get(room_id)
        if room is None:
            return False
        self._dispose(room)
        self._flush()
        return True

    # -- the loop ------------------------------------------------------------------------------

    def step(self, now: float) -> float:
        """Expire reservations and tick the rooms due at ``now``; returns the seconds until
        the next tick is due. Send ``outgoing()`` afterwards."""
        self.expire(now)
        wait = self.scheduler.run_due(now)
        self._flush()
        return wait

    def outgoing(self) -> list[RoomOutput]:
        out, self._out = self._out, []
        return out

    def call(self, member: int, rpc: m.Rpc) -> m.Message:
        """Route a client's ``rpc`` to the room it sits in, and only there."""
        room_id = self.presence.seat_of(member)
        room = self.rooms.get(room_id) if room_id is not None else None
        if room is None:
            return m.RpcErrorReply(id=rpc.id, code=RpcCode.UNKNOWN_OBJECT, message="no such object")
        return room.call(member, rpc)

    def room_of(self, member: int) -> Room | None:
        room_id = self.presence.seat_of(member)
        return self.rooms.get(room_id) if room_id is not None else None

    def expire(self, now: float) -> None:
        """Free every reservation whose time is up."""
        late = [s for s in self._reservations.values() if s.expires <= now]
        for seat in late:
            self._release(seat)
        if late:
            self._flush()

    # -- internals -----------------------------------------------------------------------------

    def _find(self, request: JoinRequest, now: float) -> Room | Refused:
        if request.mode == "join_by_id":
            room = self.rooms.get(request.room_id)
            if room is None or room.disposed:
                return Refused(Refusal.UNKNOWN_ROOM, f"no room {request.room_id!r}")
            return self._check_open(room)
        cls = self.definitions.get(request.name)
        if cls is None:
            return Refused(Refusal.UNKNOWN_ROOM_TYPE, f"no room type {request.name!r}")
        if request.mode == "create":
            return self._make(request.name, cls, request.options, now)
        if request.mode == "join_or_create":
            wanted = {k: request.options[k] for k in cls.filter_by if k in request.options}
        else:
            wanted = dict(request.filter)
        open_rooms = [
            r
            for r in self._open.get(request.name, {}).values()
            if _matches(r, wanted) and not r.locked and not r.full
        ]
        if open_rooms:
            # fill rooms up: the fullest first, then the oldest
            return min(open_rooms, key=lambda r: (-len(r.clients) - r.reserved, r._created))
        if request.mode == "join_or_create":
            return self._make(request.name, cls, request.options, now)
        for room in self.rooms.values():  # only to say why: locked or full
            if room.name == request.name and _matches(room, wanted):
                return self._check_open(room)
        return Refused(Refusal.NO_ROOM, f"no {request.name!r} room to join")

    @staticmethod
    def _check_open(room: Room) -> Room | Refused:
        if room.locked:
            return Refused(Refusal.LOCKED, "the room is locked")
        if room.full:
            return Refused(Refusal.FULL, "the room is full")
        return room

    def _make(
        self, name: str, cls: type[Room], options: Mapping[str, Any], now: float
    ) -> Room | Refused:
        room_id = self._room_ids()
        while room_id in self.rooms or self.registry.get(room_id) is not None:
            room_id = self._room_ids()
        self._created += 1
        room = cls(room_id, name, created=self._created)
        room.metadata.update({k: options[k] for k in cls.filter_by if k in options})
        try:
            room.on_create(dict(options))
        except Exception:
            logger.exception("room type %s: on_create raised", name)
            return Refused(Refusal.CREATE_FAILED, "the room could not be created")
        # a bad tick_rate raises here, before the room is registered anywhere
        self.scheduler.add(room_id, room.tick_rate, lambda t: self._tick(room, t), now)
        self.rooms[room_id] = room
        room._changed = self._touch
        room._disposer = lambda: self.dispose(room_id)
        host = self.rooms.get(DEFAULT_ROOM)
        if host is not None:  # §19.3: a room's "quiet" heartbeat is the server's option
            room.context.world.quiet_interval = host.context.world.quiet_interval
        self._touch(room)
        self._just_created = room_id
        return room

    def _authorize(self, room: Room, client: RoomClient, seat: Reservation) -> Accept | Refused:
        try:
            verdict = room.on_auth(client, dict(seat.options))
        except Exception:
            logger.exception("room %s (%s): on_auth raised", room.room_id, room.name)
            return Refused(Refusal.REJECTED, "rejected")
        if isinstance(verdict, Reject):
            return Refused(Refusal.REJECTED, verdict.reason)
        if isinstance(verdict, Accept):
            return verdict
        logger.error("room %s: on_auth returned %r, not Accept/Reject", room.name, verdict)
        return Refused(Refusal.REJECTED, "rejected")

    def _admit(self, room: Room, client: RoomClient, seat: Reservation, ok: Accept) -> Joined:
        self._drop_reservation(seat)
        room.reserved -= 1
        room.auth[client.member] = ok.auth
        room._admit(client)
        self._touch(room)
        self._flush()
        return Joined(room.room_id, room.name, client.member)

    def _leave(
        self, member: int, consented: bool, code: CloseCode, reason: str, now: float
    ) -> Left | Refused:
        room = self.room_of(member)
        if room is None or member not in room.clients:
            return Refused(Refusal.NOT_IN_ROOM, "not in a room")
        self.presence.release_seat(member, room.room_id)
        room._remove(member, consented, code, reason)
        self._touch(room)
        disposed = self._maybe_dispose(room)
        self._flush()
        return Left(room.room_id, member, disposed)

    def _release(self, seat: Reservation) -> None:
        self._drop_reservation(seat)
        room = self.rooms.get(seat.room_id)
        if room is not None:
            room.reserved -= 1
            self._touch(room)
            self._maybe_dispose(room)

    def _drop_reservation(self, seat: Reservation) -> None:
        del self._reservations[seat.token]
        if self._reserved_by.get(seat.member) == seat.token:
            del self._reserved_by[seat.member]

    def _maybe_dispose(self, room: Room) -> bool:
        if room.auto_dispose and not room.clients and room.reserved == 0 and not room.disposed:
            self._dispose(room)
            return True
        return False

    def _dispose(self, room: Room) -> None:
        for member in room.clients:
            self.presence.release_seat(member, room.room_id)
            self._kicked.append((member, room.room_id, "room disposed"))
        for seat in [s for s in self._reservations.values() if s.room_id == room.room_id]:
            self._drop_reservation(seat)
        room._dispose()
        self.scheduler.remove(room.room_id)
        self.rooms.pop(room.room_id, None)
        self._dirty.pop(room.room_id, None)
        self._open.get(room.name, {}).pop(room.room_id, None)
        self.registry.remove(room.room_id)

    def _tick(self, room: Room, now: float) -> None:
        for members, message in room.tick(now):
            self._out.append(RoomOutput(room.room_id, members, message))

    def _touch(self, room: Room) -> None:
        if room.disposed:
            return
        self._dirty[room.room_id] = room
        open_rooms = self._open.setdefault(room.name, {})
        if room.locked or room.full:
            open_rooms.pop(room.room_id, None)
        else:
            open_rooms[room.room_id] = room

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, {}
        for room in dirty.values():
            self.registry.put(room.listing())
