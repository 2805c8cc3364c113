"""``Room``: a room type's behaviour and one room's own world.

Subclass it to define a room type, then ``Matchmaker.define("battle", Battle)``::

    class Battle(Room):
        object_types = (Ship,)
        tick_rate = 20.0
        max_clients = 4

        def on_create(self, options):
            self.set_metadata(mode=options.get("mode", "duel"))

        def on_auth(self, client, options):
            return Accept() if client.identity else Reject("log in first")

        def on_join(self, client):
            self.spawn(Ship, 0, 0, owner=client.member)

Each room owns a ``ReverbContext`` (``room.context``) of its own: its world, UIDs (they start at
1 in every room, so a UID means something only together with the room id), ownership, server
events and exposed methods. Nothing is shared between two rooms but the membership ids, which
are the server's. Hooks run on the game thread, in the order ``on_create`` → (``on_auth`` →
``on_join``)* → ``on_leave``* → ``on_dispose``; an exception in ``on_join``, ``on_leave``,
``on_tick`` or ``on_dispose`` is logged and the room carries on (``on_create`` and ``on_auth``
raising refuse the request instead).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from reverb.context import DEFAULT_TICK_RATE, ReverbContext, ReverbSide
from reverb.errors import CloseCode, RpcCode
from reverb.proto import messages as m
from reverb.proto.session import MESSAGES
from reverb.rooms._types import Accept, Reject, RoomClient
from reverb.rooms.registry import RoomListing

__all__ = ["Outgoing", "Room"]

logger = logging.getLogger("reverb")

T = TypeVar("T")
Outgoing = list[tuple[tuple[int, ...], m.Message]]


class Room:
    """A room type (subclass) and one live room (instance)."""

    # -- the room type: class attributes a subclass overrides ---------------------------------
    object_types: ClassVar[tuple[type, ...]] = ()  # ReverbObject subclasses its world holds
    tick_rate: float = DEFAULT_TICK_RATE  # Hz; an instance may change it in on_create
    # None: no limit. An instance may change it in on_create; later, call changed() after
    # changing it so that matchmaking and the lobby see the new limit.
    max_clients: int | None = None
    auto_dispose: bool = True  # dispose when the last client leaves
    # option keys copied into the metadata at creation; join_or_create matches them (§2.2)
    filter_by: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, room_id: str, name: str, *, created: int = 0, context: ReverbContext | None = None
    ) -> None:
        self.room_id = room_id
        self.name = name
        # a room of its own by default; the default room of a protocol-1 server adopts the
        # server's existing context instead (docs/design/rooms.md §3.1)
        self.context = context if context is not None else ReverbContext(ReverbSide.SERVER)
        for cls in self.object_types:
            self.context.register(cls)
        self.clients: dict[int, RoomClient] = {}
        self.auth: dict[int, Any] = {}  # member -> Accept.auth
        self.metadata: dict[str, Any] = {}
        self.locked = False
        self.disposed = False
        self.reserved = 0  # maintained by the matchmaker
        self._created = created
        self._changed: Callable[[Room], None] | None = None  # the matchmaker's listener
        self._disposer: Callable[[], object] | None = None  # the matchmaker's dispose

    # -- hooks (override) ----------------------------------------------------------------------

    def on_create(self, options: dict[str, Any]) -> None:
        """The room was just made for a create / join_or_create request's ``options``."""

    def on_auth(self, client: RoomClient, options: dict[str, Any]) -> Accept | Reject:
        """Decide whether ``client`` may join with ``options``. Default: accept."""
        return Accept()

    def on_join(self, client: RoomClient) -> None:
        """``client`` is in: its seat is taken and it will get a full sync next tick."""

    def on_leave(self, client: RoomClient, consented: bool) -> None:
        """``client`` left: ``consented`` when it asked to (leave/switch), False when its
        connection dropped or the room was disposed under it."""

    def on_tick(self, now: float) -> None:
        """Game logic, before each tick's sync is built (Colyseus' simulation interval)."""

    def on_dispose(self) -> None:
        """Last call: the room's objects are still there and are despawned right after."""

    # -- helpers for hooks ---------------------------------------------------------------------

    def lock(self) -> None:
        """Refuse further joins (``locked``); lobby listings show it."""
        self._set_locked(True)

    def unlock(self) -> None:
        self._set_locked(False)

    def dispose(self) -> None:
        """End this room now (e.g. the match is over): every client gets ``room_left`` with
        reason ``"room disposed"`` (``on_leave(consented=False)``), then ``on_dispose``."""
        if self._disposer is not None and not self.disposed:
            self._disposer()

    def set_metadata(self, **values: Any) -> None:
        """Merge ``values`` into the listing's metadata (JSON values; the lobby sends them)."""
        self.metadata.update(values)
        self.changed()

    def send(self, member: int, name: str, data: Any = None) -> bool:
        """Send a named message (protocol §14) to one client of this room."""
        return self.context.send_message(member, name, data)

    def broadcast(self, name: str, data: Any = None, exclude: Any = ()) -> int:
        """Send a named message to every client of this room (that asked for "messages")."""
        return self.context.broadcast(name, data, exclude)

    def on_message(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register ``handler(sender, data)`` for the clients' messages ``name`` in this room
        (``@self.on_message("chat")`` in ``on_create``)."""
        return self.context.server_messages.on(name)

    def spawn(self, cls: Callable[..., T], *args: Any, owner: int | None = None) -> T:
        """Build a replicated object in this room's world (``owner``: a membership id)."""
        with self.context.activate():
            return cls(*args, belonging_membership=owner)

    def despawn(self, obj: Any) -> None:
        self.context.remove(obj.uid)

    @property
    def objects(self) -> dict[int, Any]:
        return self.context.world.objects

    @property
    def full(self) -> bool:
        limit = self.max_clients
        return limit is not None and len(self.clients) + self.reserved >= limit

    def listing(self) -> RoomListing:
        return RoomListing(
            room_id=self.room_id,
            name=self.name,
            clients=len(self.clients),
            max_clients=self.max_clients,
            locked=self.locked,
            metadata=dict(self.metadata),
            reserved=self.reserved,
            created=self._created,
        )

    def changed(self) -> None:
        """Publish the listing again (the matchmaker calls this after every change)."""
        if self._changed is not None and not self.disposed:
            self._changed(self)

    # -- driven by the matchmaker and the scheduler ---------------------------------------------

    def tick(self, now: float) -> Outgoing:
        """Run ``on_tick`` and build this tick's syncs: ``[(members, message)]``, the members
        being this room's clients only."""
        _guard(self, "on_tick", self.on_tick, now)
        world = self.context.world
        out: Outgoing = world.tick(now)
        errors, world.sync_errors = world.sync_errors, []
        for obj, error in errors:
            self.context.server_events.fire("sync_error", obj, error)
        return out

    def call(self, member: int, rpc: m.Rpc) -> m.Message:
        """Run an ``rpc`` from ``member`` against this room's objects only (§8.2 checks).
        A caller that is not a client of this room is answered ``unknown_object``: it can
        neither reach nor probe another room's objects."""
        if member not in self.clients:
            return m.RpcErrorReply(id=rpc.id, code=RpcCode.UNKNOWN_OBJECT, message="no such object")
        return self.context.world.call(member, rpc)

    def _admit(self, client: RoomClient) -> None:
        self.clients[client.member] = client
        if MESSAGES in client.features:  # §14.1: its messages are this room's (§17.4)
            self.context._messaging.add(client.member)
        self.context.world.peer_joined(client.member, client.features)
        self.context.server_events.fire("client_connected", client.member, client.identity)
        _guard(self, "on_join", self.on_join, client)

    def _remove(self, member: int, consented: bool, code: CloseCode, reason: str) -> RoomClient:
        client = self.clients.pop(member)
        self.auth.pop(member, None)
        self.context._messaging.discard(member)
        self.context.world.peer_left(member)
        self.context.server_events.fire("client_disconnected", member, int(code), reason)
        _guard(self, "on_leave", self.on_leave, client, consented)
        return client

    def _dispose(self) -> None:
        for member in list(self.clients):
            self._remove(member, False, CloseCode.GOING_AWAY, "room disposed")
        _guard(self, "on_dispose", self.on_dispose)
        for uid in list(self.context.world.objects):
            self.context.remove(uid)
        self.disposed = True

    def _set_locked(self, locked: bool) -> None:
        if self.locked != locked:
            self.locked = locked
            self.changed()


def _guard(room: Room, hook: str, func: Callable[..., object], *args: Any) -> None:
    try:
        func(*args)
    except Exception:
        logger.exception("room %s (%s): %s raised", room.room_id, room.name, hook)
