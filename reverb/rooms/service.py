"""The server's rooms on the wire (protocol §17): a ``Matchmaker`` behind a connection.

``RoomService`` is what a server endpoint owns (``server.rooms``); the server's context hands
it every event of a connection that was granted the feature ``"rooms"`` (``handle``), its
calls (``answer``), and lets it tick the rooms between its own ticks (``step``). Connections
without the feature never reach it beyond a seat in the default room's listing: they are
served by the context exactly as before rooms existed (§17.1), byte for byte.

The default room (id ``"default"``) adopts the server's own context: its world is the one
``server_sync()`` ticks, so a ``"rooms"`` client that joins it by id sees the seed's world.
Every other room owns a context of its own and is ticked by the matchmaker's scheduler.
Sans I/O: it sends through the context's connection (``send(members, message)``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reverb.errors import LocalProtocolError, MessageCode, RpcCode
from reverb.hub import DEFAULT_ROOM, ROOM_SCOPED
from reverb.proto import messages as m
from reverb.proto.session import ROOMS
from reverb.replication.types import TypeRegistry, contract
from reverb.rooms._types import Joined, Refusal, Refused, RoomClient
from reverb.rooms.matchmaker import JoinRequest, Matchmaker
from reverb.rooms.registry import LobbyEvent, RoomListing, RoomRemoved
from reverb.rooms.room import Room
from reverb.transport import PeerClosed, PeerMessage, PeerOpened

if TYPE_CHECKING:
    from reverb.context import ReverbContext

__all__ = ["MAX_LISTINGS", "MAX_OPTIONS_BYTES", "DefaultRoom", "RoomService", "listing_json"]

logger = logging.getLogger("reverb")

MAX_LISTINGS = 1000  # §17.3: listings in one room_list_result
MAX_OPTIONS_BYTES = 4096  # §17.5: options / filter of a room_join, encoded


class DefaultRoom(Room):
    """The server's own world as a room (§17.1): never locked, never full, never disposed."""

    auto_dispose = False


def listing_json(listing: RoomListing) -> dict[str, Any]:
    """A listing object as §17.3 defines it."""
    return {
        "room": listing.room_id,
        "name": listing.name,
        "clients": listing.clients,
        "max_clients": listing.max_clients,
        "locked": listing.locked,
        "metadata": dict(listing.metadata),
    }


def _event_json(event: LobbyEvent) -> m.RoomEvent:
    if isinstance(event, RoomRemoved):
        return m.RoomEvent(event="removed", room={"room": event.room_id, "name": event.name})
    kind = "added" if type(event).__name__ == "RoomAdded" else "changed"
    return m.RoomEvent(event=kind, room=listing_json(event.listing))


class RoomService:
    """Room types, live rooms and the lobby of one server, driven by its game loop."""

    def __init__(self, context: ReverbContext, clock: Callable[[], float]) -> None:
        self.context = context
        self.clock = clock  # the I/O layer's (the memory network's stepped clock in tests)
        self.matchmaker = Matchmaker(clock)
        # the room types are the context's (ReverbContext.define_room, ReverbManager's)
        self.matchmaker.definitions = context.room_types
        self.default = self.matchmaker.host(
            DefaultRoom(DEFAULT_ROOM, "default", context=context), now=clock(), tick=False
        )
        self._clients: dict[int, RoomClient] = {}  # the "rooms" connections

    def define(self, name: str, room_cls: type[Room]) -> type[Room]:
        """Define a room type clients can create and join by ``name`` (guide "Rooms")."""
        return self.context.define_room(name, room_cls)

    def contract(self) -> dict[str, Any]:
        """The contract (§4.9) of every room type's objects: a client's ``hello.contract``
        describes the default room's types and these (§17.2)."""
        registry = TypeRegistry()
        for room_cls in self.matchmaker.definitions.values():
            for cls in room_cls.object_types:
                if registry.info(cls) is None:
                    try:
                        registry.register(cls)
                    except LocalProtocolError:  # two rooms with objects of one name: the first
                        continue
        return contract(registry)

    # -- from the context ----------------------------------------------------------------------

    def handle(self, event: Any, now: float | None = None) -> bool:
        """Take ``event`` if it is a room matter; False leaves it to the context as before."""
        if now is None:
            now = self.clock()
        if isinstance(event, PeerMessage):
            message = event.message
            if isinstance(message, m.ROOM_REQUESTS):
                self._request(event.member, message, now)
                return True
            if isinstance(message, m.Rpc) and event.member in self._clients:
                self.answer(event.member, message)
                return True
            if isinstance(message, m.AppMessage) and event.member in self._clients:
                self._message(event.member, message)
                return True
            return False
        if isinstance(event, PeerOpened):
            client = RoomClient(event.member, event.identity, event.features)
            if ROOMS in event.features:  # §17.2: in no room until it joins one
                self._clients[event.member] = client
                return True
            # a protocol-1 connection: the context seats it in its world as always; the
            # default room's listing counts it
            self.default.clients[event.member] = client
            self.matchmaker.presence.take_seat(event.member, DEFAULT_ROOM)
            self.default.changed()
            return False
        if isinstance(event, PeerClosed):
            if self._clients.pop(event.member, None) is not None:
                self.matchmaker.drop(event.member, event.code, event.reason, now=now)  # type: ignore[arg-type]
                self._flush()
                return True
            if self.default.clients.pop(event.member, None) is not None:
                self.matchmaker.presence.release_seat(event.member, DEFAULT_ROOM)
                self.default.changed()
            return False
        return False

    def answer(self, member: int, rpc: m.Rpc) -> bool:
        """Run a ``"rooms"`` connection's call in the room it names, if it sits there (§17.4);
        False for any other connection's call (the context answers it as before)."""
        if member not in self._clients:
            return False
        room = self.matchmaker.room_of(member)
        named = rpc.room if isinstance(rpc.room, str) else ""
        reply: m.Message
        if room is None or room.room_id != named:
            # never another room's objects, and nothing says whether they exist (§17.4)
            reply = m.RpcErrorReply(
                id=rpc.id, code=RpcCode.UNKNOWN_OBJECT, message="no such object"
            )
        elif self.context.observer is not None and member in room.clients:
            # a monitor runs (reverb.monitor): it times and logs the call, with its room
            reply = self.context.observer.call(room.context.world, member, rpc, room.room_id)
        else:
            reply = room.call(member, rpc)
        self._send((member,), m.in_room(reply, named))
        return True

    def _message(self, member: int, message: m.AppMessage) -> None:
        """A "rooms" connection's message: handled by the room it names if it sits there
        (§17.4); else ``message_error`` ``unknown_message``."""
        room = self.matchmaker.room_of(member)
        named = message.room if isinstance(message.room, str) else ""
        error: m.Message | None
        if room is None or room.room_id != named:
            error = m.MessageError(
                name=message.name, code=MessageCode.UNKNOWN_MESSAGE, reason="not in that room"
            )
        else:
            error = room.context.server_messages.handle_server(member, message)
        if error is not None:
            self._send((member,), m.in_room(error, named))

    def step(self, now: float) -> float:
        """Tick the rooms that are due and send what they and the lobby produced; returns
        the seconds until a room is due next (``math.inf``: none)."""
        mm = self.matchmaker
        if not mm.scheduler and not mm.lobby.subscribers and not self._clients:
            return math.inf
        wait = mm.step(now)
        self._flush()
        return wait

    # -- internals ------------------------------------------------------------------------------

    def _send(self, members: tuple[int, ...], message: m.Message) -> None:
        conn = self.context.connection
        if conn is not None and members:
            conn.send(members, message)

    def _flush(self) -> None:
        """Send the rooms' syncs, the server-initiated leaves and the lobby's events."""
        mm = self.matchmaker
        for out in mm.outgoing():
            self._send(out.members, m.in_room(out.message, out.room_id))
        for member, room_id, reason in mm.kicked():
            if member in self._clients:
                self._send((member,), m.RoomLeft(room=room_id, consented=False, reason=reason))
        for member, event in mm.lobby.events_to_send():
            if member in self._clients:
                self._send((member,), _event_json(event))

    def _request(self, member: int, message: m.Message, now: float) -> None:
        client = self._clients.get(member)
        if client is None:  # pragma: no cover - §6.2: only "rooms" connections get here
            return
        mm = self.matchmaker
        reply: m.Message | None
        if isinstance(message, m.RoomJoin):
            reply = self._join(client, message, now)
        elif isinstance(message, m.RoomLeave):
            left = mm.leave(member, now=now)
            if isinstance(left, Refused):
                reply = m.RoomRefused(req=message.req, code=left.code.value, reason=left.reason)
            else:
                reply = m.RoomLeft(room=left.room_id, consented=True, req=message.req)
        elif isinstance(message, (m.RoomList, m.RoomWatch)):
            name = message.name if isinstance(message.name, str) else None
            if isinstance(message, m.RoomWatch):
                listings = mm.lobby.subscribe(member, name)
            else:
                listings = mm.registry.listings(name)
            rooms = [listing_json(r) for r in listings[:MAX_LISTINGS]]
            truncated = True if len(listings) > MAX_LISTINGS else m.ABSENT
            reply = m.RoomListResult(req=message.req, rooms=rooms, truncated=truncated)
        else:  # RoomUnwatch: no answer (§17.6)
            mm.lobby.unsubscribe(member)
            reply = None
        if reply is not None:
            self._send((member,), reply)
        self._flush()

    def _join(self, client: RoomClient, join: m.RoomJoin, now: float) -> m.Message:
        mm = self.matchmaker
        options = join.options if isinstance(join.options, dict) else {}
        filter_ = join.filter if isinstance(join.filter, dict) else {}
        if len(m.encode(m.RoomListResult(req=0, rooms=[options, filter_]))) > MAX_OPTIONS_BYTES:
            return m.RoomRefused(
                req=join.req, code=Refusal.REJECTED.value, reason="options too large"
            )
        name = join.name if isinstance(join.name, str) else ""
        before = mm.room_of(client.member)
        switching = join.switch is True
        result: Joined | Refused
        if join.mode == "reservation":
            if before is not None:
                result = Refused(Refusal.ALREADY_IN_ROOM, "already in a room: leave it first")
            else:
                result = mm.consume(client, str(join.token), now=now)
        else:
            if join.mode == "join_by_id":
                request = JoinRequest.join_by_id(str(join.room), options)
            elif join.mode == "join":
                request = JoinRequest.join(name, filter_, options)
            else:
                request = JoinRequest(join.mode, name, dict(options))
            if switching and before is not None:
                if join.mode == "join_by_id" and join.room == before.room_id:
                    result = Refused(Refusal.ALREADY_IN_ROOM, "already in this room")
                else:
                    result = mm.switch(client, request, now=now)
            else:
                result = mm.request(client, request, now=now)
        if isinstance(result, Refused):
            return m.RoomRefused(req=join.req, code=result.code.value, reason=result.reason)
        joined = mm.rooms.get(result.room_id)
        if joined is not None and joined.context.connection is None:
            joined.context.connection = _RoomLink(self, joined)  # the room's sends (§17.4)
        if before is not None and before.room_id != result.room_id:
            # §17.5: the old room's room_left comes first; nothing of it follows
            self._send(
                (client.member,),
                m.RoomLeft(room=before.room_id, consented=True, reason="switched room"),
            )
        rate = joined.tick_rate if joined is not None else 0.0
        if joined is self.default:  # the server's own world ticks at the server's rate
            rate = getattr(self.context.connection, "tick_rate", rate)
        return m.RoomJoined(
            req=join.req,
            room=result.room_id,
            name=result.name,
            created=result.created,
            tick_rate=float(rate) if rate else m.ABSENT,
        )


class _RoomLink:
    """A room's context's connection: what its game code sends (``room.send``,
    ``room.broadcast``, ``send_message``) goes out through the server, stamped with the room."""

    def __init__(self, service: RoomService, room: Room) -> None:
        self._service = service
        self._room = room

    @property
    def tick_rate(self) -> float:
        return float(self._room.tick_rate)

    def poll(self) -> list[Any]:
        return []

    def send(self, members: tuple[int, ...], message: m.Message) -> None:
        if type(message) in ROOM_SCOPED:
            message = m.in_room(message, self._room.room_id)
        self._service._send(members, message)
