"""``ReverbContext``: one side's objects, types, events and connection, as an instance.

Everything the seed's class-level ``ReverbManager`` offers is a method here; the manager is a
façade over a default context, and tests or rooms can run several contexts in one process.
A context is driven by the game thread: ``server_sync()`` on a server, ``client_sync()`` (or
``get_all_ro_by_type()``) on a client. Those calls are where RPC handlers and event handlers
run, so game code never races them.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import logging
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

from reverb import _current
from reverb.errors import EncodeError, InvalidState, RemoteProtocolError, RpcCode, RpcError
from reverb.events import CLIENT_EVENTS, SERVER_EVENTS, EventRegistry
from reverb.hub import app_message
from reverb.interpolation import Hooks, InterpolationManager, RenderTimeline
from reverb.messaging import MessageRegistry
from reverb.proto import messages as m
from reverb.proto.session import MESSAGES, Closed, Received
from reverb.reconnect import ConnectionLost, Reconnected, Reconnecting, ResumeFailed
from reverb.replication.interest import Interest, Policy
from reverb.replication.types import TypeRegistry
from reverb.replication.world import ClientWorld, Despawned, ServerWorld, Spawned
from reverb.stats import ConnectionStats
from reverb.transport import (
    ClientTransport,
    PeerClosed,
    PeerDropped,
    PeerMessage,
    PeerOpened,
    PeerResumed,
    ServerTransport,
)

__all__ = ["DEFAULT_TICK_RATE", "ReverbContext", "ReverbSide"]

logger = logging.getLogger("reverb")

DEFAULT_TICK_RATE = 30.0  # Hz: the common rate of action games' server ticks
# Pacing (guide §3). Ticks follow a fixed schedule, one period apart, so the rate never
# exceeds ``tick_rate``. A tick counts as due TICK_SLACK of a period before its scheduled time,
# so a game loop that already runs at the tick rate ticks on every frame despite its timing
# jitter. A loop that fell behind by less than MAX_CATCH_UP periods (a slow frame) ticks on
# each of its next steps until it is back on schedule; further behind, the schedule restarts
# from now instead of ticking in a long burst.
TICK_SLACK = 0.5
MAX_CATCH_UP = 4
T = TypeVar("T")


class ReverbSide(enum.Enum):
    SERVER = "server"
    CLIENT = "client"


class ReverbContext:
    """A server's world or a client's replica table, with its types, events and connection."""

    def __init__(
        self,
        side: ReverbSide | None = None,
        *,
        interpolation_snap_speed: float | None = None,
        interpolation_max_extrapolation: float | None = None,
        interpolation_max_ticks: float = 10.0,
    ) -> None:
        self.side = side
        self.types = TypeRegistry()
        self.server_events = EventRegistry(SERVER_EVENTS, "server")
        self.client_events = EventRegistry(CLIENT_EVENTS, "client")
        self.server_messages = MessageRegistry("server")  # §14: handlers of clients' messages
        self.client_messages = MessageRegistry("client")  # ... and of the server's
        self._messaging: set[int] = set()  # members granted "messages" (§14.1), as joined
        self._dropped: set[int] = set()  # §18: members held for a resume (not synced)
        self.world = ServerWorld(self.types)
        self.replicas = ClientWorld(self.types, bind=self._bind)
        # a ServerTransport or ClientTransport (reverb.transport); typed Any until the I/O
        # layers compose their endpoint instead of inheriting it (REDESIGN move 5)
        self.connection: Any = None
        self._next_tick = 0.0
        self.observer: Any = None  # reverb.monitor's Observer, when a monitor is running
        # Rooms (protocol §17): on a server, the endpoint's RoomService while it is this
        # context's connection; on a client, the room it sits in and the lobbies it watches
        self.rooms: Any = None
        self.room_types: dict[str, type] = {}  # name -> Room subclass (define_room)
        self.room: str | None = None
        self.room_tick_rate: float | None = None  # the room's, from room_joined (§17.5)
        self.lobbies: dict[str | None, Any] = {}
        # Smooth movement (guide, "Smooth movement"; protocol §13): change hooks fired after
        # each tick, and snapshot buffers of the replicas whose type declares
        # ``__reverb_interpolate__``, keyed by uid (made at each connection's welcome).
        self.hooks = Hooks()
        self.interpolation: InterpolationManager[int] | None = None
        self._interpolation_options = (
            interpolation_snap_speed,
            interpolation_max_extrapolation,
            interpolation_max_ticks,
        )
        self._observed: dict[type, bool] = {}
        self._rendered: dict[int, Mapping[str, object]] = {}

    @property
    def strict_sync(self) -> bool:
        """Development aid: when True, ``server_sync()`` raises the ``EncodeError`` of a
        field that cannot be encoded instead of withholding that object (guide §3)."""
        return self.world.strict

    @strict_sync.setter
    def strict_sync(self, strict: bool) -> None:
        self.world.strict = strict

    # -- set-up ------------------------------------------------------------------------------

    def register(self, cls: type[T], name: str | None = None) -> type[T]:
        """Register a ``ReverbObject`` subclass under ``name`` (default: its class name)."""
        self.types.register(cls, name)
        return cls

    def define_room(self, name: str, room_cls: type[T]) -> type[T]:
        """Define a room type (a ``reverb.rooms.Room`` subclass) that clients connected with
        ``rooms=True`` create and join by ``name`` (guide "Rooms and a lobby", §17). The
        server's own world stays the default room, so a server that defines none is
        unchanged."""
        from reverb.rooms.room import Room  # rooms build on contexts: imported when used

        if name in self.room_types or name == "default":
            raise ValueError(f"room type {name!r} is already defined")
        if not (isinstance(room_cls, type) and issubclass(room_cls, Room)):
            raise TypeError(f"{room_cls!r} is not a reverb.rooms.Room subclass")
        self.room_types[name] = room_cls
        return room_cls

    @contextlib.contextmanager
    def activate(self) -> Iterator[ReverbContext]:
        """Within the block, objects built in this thread join this context, not the default."""
        token = _current.activate(self)
        try:
            yield self
        finally:
            _current.deactivate(token)

    @property
    def objects(self) -> dict[int, Any]:
        """uid -> object: the world on a server, the replicas on a client."""
        return self.replicas.objects if self.side is ReverbSide.CLIENT else self.world.objects

    def get_all_ro_by_type(self, cls: type[T]) -> list[T]:
        """Every object of ``cls`` (subclasses included). On a client, applies pending syncs
        first, so a loop calling it sees whole ticks, never a half-applied one."""
        if self.side is ReverbSide.CLIENT:
            self.client_sync()
        return [obj for obj in self.objects.values() if isinstance(obj, cls)]

    # -- objects (server) --------------------------------------------------------------------

    def add(self, obj: Any) -> int:
        if self.side is not ReverbSide.SERVER:
            raise InvalidState(
                "objects are spawned on the server: set ReverbManager.REVERB_SIDE = "
                f"ReverbSide.SERVER first (side is {self.side})"
            )
        if obj.uid is not None:
            raise InvalidState("UIDs are assigned by the server; leave uid=None")
        uid = self.world.add(obj, obj._reverb_args)
        self._bind(obj)
        obj.on_init_from_server()
        return uid

    def remove(self, uid: int) -> None:
        """Despawn the object ``uid`` (server only)."""
        if self.side is not ReverbSide.SERVER:
            raise InvalidState("only the server despawns objects")
        obj = self.world.remove(uid)
        obj._reverb_ctx = None
        obj.on_destroy_from_server()

    def teleport(self, obj: Any) -> None:
        """Mark ``obj``'s next update as a teleport: interpolating clients snap to it instead
        of sliding (protocol §13.5). Server only."""
        if self.side is not ReverbSide.SERVER:
            raise InvalidState("only the server teleports objects")
        self.world.teleport(obj.uid)

    # -- interest management (server; guide "Who sees what", protocol §16) ------------------

    def _server_world(self, what: str) -> ServerWorld:
        if self.side is not ReverbSide.SERVER:
            raise InvalidState(f"only the server {what}")
        return self.world

    def set_interest(self, policy: Policy) -> None:
        """Decide which objects each client sees with ``policy`` (``Grid(60) | OwnerOnly()``,
        ``Team()``, ...); the default is ``Everyone()``. Overrides, groups and foci set so
        far are kept. Takes effect at the next tick."""
        self._server_world("sets the interest policy").set_interest(policy)

    @property
    def interest(self) -> Interest:
        """The server's visibility state (``visible(member)``, ``refresh(uid)``, ``reset``)."""
        return self._server_world("has interest management").interest

    def show_to(self, obj: Any, member: int) -> None:
        """``member`` sees ``obj`` whatever the policy says (unless hidden from it)."""
        self._server_world("shows objects").show_to(obj.uid, member)

    def hide_from(self, obj: Any, member: int) -> None:
        """``member`` never sees ``obj``: beats ``show_to`` and every policy."""
        self._server_world("hides objects").hide_from(obj.uid, member)

    def set_focus(self, member: int, obj: Any, radius: float | None = None) -> None:
        """The object ``member``'s ``Grid`` range is centred on (None: no focus), and
        optionally its own radius."""
        uid = None if obj is None else obj.uid
        self._server_world("sets foci").set_focus(member, uid, radius)

    def set_groups(self, member: int, groups: Iterable[Any]) -> None:
        """The groups ``member`` belongs to, for ``Team`` policies."""
        self._server_world("sets groups").interest.set_groups(member, groups)

    def set_budget(
        self, member: int | None, bytes_per_second: float | None, burst: float | None = None
    ) -> None:
        """The bytes per second ``member``'s syncs may use (None: unlimited, the default),
        with a ``burst`` allowance (default: one second's worth); ``member=None`` sets the
        default of every client not given its own. Under the budget, the changes with the
        highest accumulated priority go first (``__reverb_priority__``), the others later,
        coalesced (protocol §16.6)."""
        self._server_world("sets budgets").set_budget(member, bytes_per_second, burst)

    def refresh_interest(self, obj: Any) -> None:
        """Re-decide who sees ``obj`` at the next tick (a ``Hook``'s inputs changed)."""
        self._server_world("refreshes interest").interest.refresh(obj.uid)

    def _bind(self, obj: Any) -> None:
        obj._reverb_ctx = self

    def owns(self, obj: Any) -> bool:
        conn = self.connection
        return (
            self.side is ReverbSide.CLIENT
            and conn is not None
            and conn.member is not None
            and obj.belonging_membership == conn.member
        )

    def call(self, obj: Any, name: str, args: tuple[Any, ...]) -> Future[Any]:
        if self.side is ReverbSide.SERVER:
            future: Future[Any] = Future()
            try:
                future.set_result(getattr(obj, name)(*args))
            except Exception as exc:
                future.set_exception(exc)
            return future
        info = self.types.of(obj)
        if name not in info.exposed:
            future = Future()
            future.set_exception(
                RpcError(f"{info.name} exposes no method {name!r}", RpcCode.NOT_EXPOSED)
            )
            return future
        conn: ClientTransport | None = self.connection
        if conn is None:
            raise InvalidState("not connected: call Client.connect() first")
        try:  # the arguments' name is built only for the error (to_wire is deterministic)
            wire_args = m.to_wire(list(args), "arguments")
        except EncodeError:
            wire_args = m.to_wire(list(args), f"{info.name}.{name} arguments")
        return conn.call(obj.uid, name, wire_args)

    # -- the server's loop -------------------------------------------------------------------

    def server_sync(self) -> None:
        """Keep the tick rate, run queued RPCs and events, and send this tick's changes.

        Blocks until the next tick is due (running RPCs as they arrive meanwhile), so the
        seed's ``while True: server_sync()`` neither burns a core nor floods the network.
        """
        conn: ServerTransport | None = self.connection
        _refuse_async(conn, "server_sync()", "await server.server_sync()")
        if conn is None:  # no server yet: tick on the real clock, sleeping in between
            while (wait := self.server_step(time.monotonic())) > 0:
                time.sleep(wait)
            return
        wait_for = getattr(conn, "wait", None)  # waiting is the I/O layer's (transport.py)
        if wait_for is None:
            raise InvalidState(
                f"server_sync() blocks, but {type(conn).__name__} is stepped, not waited on: "
                "advance its network (MemoryNetwork.step) instead"
            )
        clock = conn.clock
        while (wait := self.server_step(clock())) > 0:
            wait_for(wait)

    def server_step(self, now: float) -> float:
        """Serve what arrived, and tick if a tick is due at ``now``.

        Returns 0.0 when it ticked, else the seconds until the next tick is due. The I/O
        layers' ``server_sync`` loops on it, waiting in between.
        """
        if self.side is ReverbSide.CLIENT:
            raise InvalidState("server_sync() runs on the server; clients call client_sync()")
        self.serve()
        rooms = self.rooms
        conn: ServerTransport | None = self.connection
        period = 1.0 / (conn.tick_rate if conn is not None else DEFAULT_TICK_RATE)
        due = self._next_tick - TICK_SLACK * period
        if now < due:
            if rooms is not None:  # §17: the other rooms tick on their own schedules
                return max(min(due - now, float(rooms.step(now))), 1e-4)
            return due - now
        late = now - self._next_tick  # the first tick restarts the schedule too
        self._next_tick += period
        if late >= MAX_CATCH_UP * period:
            self._next_tick = now + period
        if self.observer is not None:  # monitor hook: times the tick, snapshots the world
            self.observer.tick(self, now)
        else:
            self.tick(now)
        return 0.0

    def serve(self) -> None:
        """Handle what the connection has received: joins, leaves and RPCs."""
        conn: ServerTransport | None = self.connection
        if conn is None:
            return
        rooms = self.rooms
        for event in conn.poll():
            if rooms is not None and rooms.handle(event):
                continue  # a room matter of a "rooms" connection (§17)
            if isinstance(event, PeerMessage):
                if isinstance(event.message, m.Rpc):
                    self.answer(event.member, event.message)
                elif isinstance(event.message, m.AppMessage):  # §14.4, in arrival order
                    error = self.server_messages.handle_server(event.member, event.message)
                    if error is not None:
                        conn.send((event.member,), error)
            elif isinstance(event, PeerOpened):
                if MESSAGES in event.features:
                    self._messaging.add(event.member)
                self.world.peer_joined(event.member, event.features)
                self.server_events.fire("client_connected", event.member, event.identity)
            elif isinstance(event, PeerClosed):
                self._messaging.discard(event.member)
                self._dropped.discard(event.member)
                self.world.peer_left(event.member)
                self._owned_objects(event.member, event.owned)
                self.server_events.fire(
                    "client_disconnected", event.member, event.code, event.reason
                )
            elif isinstance(event, PeerDropped):  # §18.5: held; not synced meanwhile
                self._messaging.discard(event.member)
                self._dropped.add(event.member)
                self.world.peer_paused(event.member)
                self.server_events.fire("client_dropped", event.member, event.code, event.reason)
            elif isinstance(event, PeerResumed):  # §18.4: a full snapshot at the next tick
                if MESSAGES in event.features:
                    self._messaging.add(event.member)
                if event.member in self._dropped:
                    self._dropped.discard(event.member)
                    self.world.peer_resumed(event.member)
                else:  # pragma: no cover - a resume is always preceded by its drop
                    self.world.peer_joined(event.member, event.features)
                self.server_events.fire("client_resumed", event.member)

    def _owned_objects(self, member: int, policy: str) -> None:
        """§18.5: what a membership's end does to the objects it owned: ``"keep"`` (as
        before resume existed: they stay, owned by the gone member), ``"release"`` (owner
        None) or ``"destroy"`` (despawned)."""
        if policy == "keep":
            return
        owned = [
            uid
            for uid, obj in self.world.objects.items()
            if getattr(obj, "belonging_membership", None) == member
        ]
        for uid in owned:
            if policy == "destroy":
                self.remove(uid)
            else:
                self.world.objects[uid].belonging_membership = None

    def answer(self, member: int, rpc: m.Rpc) -> None:
        """Run one call for ``member`` and send the reply (§8). ``serve`` calls it for each
        call received; a server's I/O layer calls it directly for a call that arrives while
        the game thread waits inside ``server_sync()`` with nothing else queued, so the reply
        leaves without a hand-off (never while game code runs: the game thread is parked)."""
        if self.rooms is not None and self.rooms.answer(member, rpc):
            return  # a "rooms" connection's call runs in the room it names (§17.4)
        if self.observer is not None:  # monitor hook: times and logs the call
            reply = self.observer.call(self.world, member, rpc)
        else:
            reply = self.world.call(member, rpc)
        conn: ServerTransport | None = self.connection
        if conn is not None:
            conn.send((member,), reply)

    # -- messages (§14) -----------------------------------------------------------------------

    def send_message(self, *args: Any, **kwargs: Any) -> bool:
        """Send a named message with a JSON payload (docs/protocol.md §14).

        On a server: ``send_message(member, name, data=None)`` to one client; on a client:
        ``send_message(name, data=None)`` to the server. Ordered with the syncs of the same
        connection: sent before ``server_sync()`` it precedes that tick's sync, sent after it
        follows (§14.5). Returns whether it was queued: a server does not send it to a member
        that is not connected or did not ask for ``"messages"`` (§14.1). Raises ``ValueError``
        for a bad name, ``EncodeError`` for data JSON cannot carry (§3.4); a client raises
        ``InvalidState`` when not connected or when the server did not grant ``"messages"``.
        """
        client_call = self.side is None and bool(args) and isinstance(args[0], str)
        if self.side is ReverbSide.CLIENT or client_call:
            name, data = _client_args(*args, **kwargs)
            conn: ClientTransport | None = self.connection
            if conn is None:
                raise InvalidState(
                    f"cannot send message {name!r}: not connected (call connect() first)"
                )
            conn.send_message(name, data)
            return True
        member, name, data = _server_args(*args, **kwargs)
        return bool(self._send_app(name, data, (member,)))

    def broadcast(self, name: str, data: Any = None, exclude: Any = ()) -> int:
        """Server: send a message to every connected client that asked for ``"messages"``,
        but those in ``exclude`` (membership ids). Returns how many it was queued for."""
        excluded = {exclude} if isinstance(exclude, int) else set(exclude)
        return self._send_app(name, data, tuple(sorted(self._messaging - excluded)))

    def send_to_observers(self, obj: Any, name: str, data: Any = None) -> int:
        """Server: send a message to every client that holds ``obj`` (a ``ReverbObject`` or
        a uid) as of the last tick — it was spawned on them and not despawned since (§14.6).
        An object added since the last ``server_sync()`` has no observers yet."""
        uid = obj if isinstance(obj, int) else obj.uid
        if uid is None:
            raise InvalidState("the object is not in the world (it has no uid)")
        members = self.world.observers(uid) & self._messaging
        return self._send_app(name, data, tuple(sorted(members)))

    def client_stats(self, member: int) -> ConnectionStats | None:
        """Server: client ``member``'s connection counters (``reverb.stats.ConnectionStats``),
        or None when no such client is connected; ``Server.client_stats``. A client reads
        its own as ``clt.stats``."""
        stats = getattr(self.connection, "client_stats", None)
        if stats is None:
            raise InvalidState(
                "client_stats() asks a server about one of its clients (this context has "
                f"no server connection; side is {self.side}); a client reads clt.stats"
            )
        result: ConnectionStats | None = stats(member)
        return result

    def _send_app(self, name: str, data: Any, members: tuple[int, ...]) -> int:
        if self.side is not ReverbSide.SERVER:
            raise InvalidState(
                "messages to clients are sent by the server (side is "
                f"{self.side}); a client sends with send_message(name, data)"
            )
        message = app_message(name, data)
        targets = tuple(member for member in members if member in self._messaging)
        conn: ServerTransport | None = self.connection
        if conn is not None and targets:
            conn.send(targets, message)
        return len(targets) if conn is not None else 0

    def tick(self, now: float) -> None:
        """Send every peer what changed since its last sync (no waiting, no pacing).

        An object whose state cannot be encoded is withheld from every peer and reported once
        through the ``sync_error`` event (with ``strict_sync``: raised, and nothing is sent).
        """
        out = self.world.tick(now)
        conn: ServerTransport | None = self.connection
        if conn is not None:
            for members, message in out:
                conn.send(members, message)
        errors, self.world.sync_errors = self.world.sync_errors, []
        for obj, error in errors:
            self.server_events.fire("sync_error", obj, error)

    # -- the client's loop -------------------------------------------------------------------

    def client_sync(self, timeout: float = 0.0) -> int:
        """Apply what the server sent and fire client events; returns how many events.

        With ``timeout`` > 0, first waits up to that long for something to arrive.
        """
        conn: ClientTransport | None = self.connection
        if conn is None:
            return 0
        if timeout > 0:
            _refuse_async(conn, "client_sync(timeout)", "await client.client_sync(timeout)")
            _wait(conn, timeout)
        events = conn.poll()
        for event in events:
            if isinstance(event, Received):
                self._client_message(conn, event.message, event.at)
            elif isinstance(event, Closed):
                if not getattr(conn, "keep_replicas", False):
                    self._despawn_all()
                self.client_events.fire("disconnected", event.code, event.reason)
            elif isinstance(event, ConnectionLost):  # §18: reconnecting follows
                self.client_events.fire("connection_lost", event.code, event.reason)
            elif isinstance(event, Reconnecting):
                self.client_events.fire("reconnecting", event.attempt)
            elif isinstance(event, Reconnected):
                self.replicas.resumed()  # the same replicas; a reconciling snapshot follows
                self.client_events.fire("reconnected", event.member)
            elif isinstance(event, ResumeFailed):
                self.client_events.fire("resume_failed", event.reason)
        return len(events)

    def _despawn_all(self) -> None:
        self._rendered = {}
        if self.interpolation is not None:
            for uid in list(self.replicas.objects):
                self.interpolation.untrack(uid)
        for change in self.replicas.reset():
            change.obj.on_destroy_from_client()
            change.obj._reverb_ctx = None
            self.client_events.fire("object_despawned", change.obj, "destroyed")

    def _room_message(self, message: m.Message) -> None:
        """§17 on a client: the room it is in, its replicas, the lobbies it watches."""
        if isinstance(message, m.RoomJoined):
            self._despawn_all()  # a new room: a new world, from its full sync (§17.4)
            self.room = message.room
            if isinstance(message.tick_rate, (int, float)) and message.tick_rate > 0:
                self.room_tick_rate = float(message.tick_rate)  # smooth at the room's rate
                self._new_interpolation(self.room_tick_rate)
            self.client_events.fire("room_joined", message.room, message.name)
        elif isinstance(message, m.RoomLeft):
            if message.room == self.room:
                self.room = None
                self._despawn_all()
            reason = message.reason if isinstance(message.reason, str) else "left"
            self.client_events.fire("room_left", message.room, message.consented, reason)
        elif isinstance(message, m.RoomEvent):
            for lobby in list(self.lobbies.values()):
                lobby.apply(message)
            self.client_events.fire("room_event", message.event, message.room)

    def _client_message(self, conn: ClientTransport, message: m.Message, at: float) -> None:
        if isinstance(message, m.Sync):
            if message.room is not m.ABSENT and message.room != self.room:
                return  # §17.4: a late sync of a room this client has left
            self.replicas.observe = self._observes if self._observing() else None
            try:
                changes = self.replicas.apply(message)
            except RemoteProtocolError as exc:
                logger.error("invalid sync from the server (%d): %s", exc.code, exc)
                conn.abort(exc.code, str(exc))
                return
            if changes is None:
                return
            self._interpolate_tick(conn, message, at, changes)
            for change in changes:
                if isinstance(change, Spawned):
                    change.obj.on_init_from_client()
                    self.client_events.fire("object_spawned", change.obj, change.reentered)
                elif isinstance(change, Despawned):
                    if change.reason == "destroyed":  # §16.3: not for an object out of view
                        change.obj.on_destroy_from_client()
                    change.obj._reverb_ctx = None
                    self.client_events.fire("object_despawned", change.obj, change.reason)
            for obj, name, old, new in self.replicas.changes:
                self.hooks.record(obj, name, old, new)
            self.replicas.changes = []
            self.hooks.fire()  # after the tick and its spawn/despawn events, before synced
            self.client_events.fire("synced", message.tick)
        elif isinstance(message, m.RpcErrorReply):
            self.client_events.fire("rpc_error", RpcError(message.message, message.code))
        elif isinstance(message, m.ROOM_REPLIES):
            self._room_message(message)
        elif isinstance(message, m.AppMessage):  # §14.5: in the order the server sent them
            if message.room is not m.ABSENT and message.room != self.room:
                return  # §17.4: a late message of a room this client has left
            self.client_messages.handle_client(message)
        elif isinstance(message, m.MessageError):  # §14.4
            logger.warning(
                "the server refused message %r (%s): %s", message.name, message.code, message.reason
            )
            self.client_events.fire("message_error", message.name, message.code, message.reason)

    def client_connected(self, member: int) -> None:
        """Called by a client connection once its handshake completed."""
        self._despawn_all()  # replicas kept from a previous connection (keep_replicas=True)
        self.room = None  # §17.2: a "rooms" connection starts in no room
        self.lobbies = {}
        self.room_tick_rate = None
        self._new_interpolation(getattr(self.connection, "tick_rate", 0.0) or DEFAULT_TICK_RATE)
        self.client_events.fire("connected", member)

    def _new_interpolation(self, rate: float) -> None:
        snap_speed, max_extrapolation, max_ticks = self._interpolation_options
        self.interpolation = InterpolationManager(
            tick_interval=1.0 / rate,
            max_extrapolation=max_extrapolation,
            snap_speed=snap_speed,
            timeline=RenderTimeline(tick_interval=1.0 / rate, max_ticks=max_ticks),
        )

    # -- smooth movement (client) -------------------------------------------------------------

    def on_change(self, field: str, callback: Callable[[Any, Any, Any], object]) -> None:
        """Call ``callback(obj, old, new)`` after each tick in which ``field`` of a replica
        changed (on the game thread, inside ``client_sync()``)."""
        self.hooks.on(field, callback)

    def _observing(self) -> bool:
        return self.hooks.listening or any(map(self._observes, self.types.classes()))

    def _observes(self, cls: type) -> bool:
        """Whether changes of ``cls``'s replicas are recorded: it interpolates or has hooks."""
        if self.hooks.listening:  # a ctx.on_change listener hears every class
            return True
        found = self._observed.get(cls)
        if found is None:
            info = self.types.info(cls)
            found = bool(info is not None and info.interpolate) or self.hooks.has_methods(cls)
            self._observed[cls] = found
        return found

    def _interpolate_tick(
        self, conn: ClientTransport, sync: m.Sync, at: float, changes: list[Any]
    ) -> None:
        """Push this tick's states of interpolated replicas into their buffers (§13)."""
        manager = self.interpolation
        if manager is None:
            return
        if isinstance(sync.time, m.Absent):  # no "time": the tick's nominal time (§13.1)
            rate = self.room_tick_rate or getattr(conn, "tick_rate", 0.0) or DEFAULT_TICK_RATE
            stamp = sync.tick / rate
        else:
            stamp = sync.time
        for change in changes:
            obj = change.obj
            info = self.types.info(type(obj))
            if info is None or not info.interpolate:
                continue
            if isinstance(change, Spawned):
                manager.track(obj.uid, info.interpolate)
                values = {name: getattr(obj, name, None) for name in _names(info.interpolate)}
                manager.push(obj.uid, stamp, values)
            else:
                manager.untrack(obj.uid)
                self._rendered.pop(obj.uid, None)
        moved: dict[int, dict[str, object]] = {}
        for obj, name, _, new in self.replicas.changes:
            if obj.uid in manager:
                moved.setdefault(obj.uid, {})[name] = new
        snapped = self.replicas.snapped
        for uid, values in moved.items():
            manager.push(uid, stamp, values, teleport=uid in snapped)
        manager.observe_sync(stamp, at)

    def render_time(self, now: float | None = None) -> float:
        """The server time interpolated replicas are shown at, for local time ``now``
        (default: the connection's clock)."""
        now = self._now() if now is None else now
        manager = self.interpolation
        return now if manager is None else manager.render_time(now)

    def interpolate(self, now: float | None = None) -> dict[Any, dict[str, object]]:
        """Sample every interpolated replica once for this frame (call after ``client_sync``);
        each result is also kept as ``obj.rendered``. Keys are the replicas."""
        manager = self.interpolation
        if manager is None:
            return {}
        now = self._now() if now is None else now
        sampled = manager.interpolate(now)
        objects = self.replicas.objects
        out = {objects[uid]: values for uid, values in sampled.items() if uid in objects}
        self._rendered = {uid: types.MappingProxyType(v) for uid, v in sampled.items()}
        return out

    def interpolated(self, obj: Any, name: str, now: float | None = None) -> object:
        """``name`` of the replica ``obj`` at ``render_time(now)`` (its exact value stays
        ``getattr(obj, name)``)."""
        if self.side is ReverbSide.SERVER:
            raise InvalidState("interpolation is for replicas, on a client")
        info = self.types.info(type(obj))
        declared = _names(info.interpolate) if info is not None else ()
        if name not in declared:
            raise ValueError(
                f"{type(obj).__qualname__} does not interpolate {name!r}; "
                f"__reverb_interpolate__ declares {list(declared)}"
            )
        manager = self.interpolation
        if manager is None or obj.uid not in manager:
            return getattr(obj, name)
        now = self._now() if now is None else now
        return manager.sample(obj.uid, manager.render_time(now)).get(name, getattr(obj, name))

    def _now(self) -> float:
        """The connection's time (the I/O layer's clock); the real one with no connection."""
        conn = self.connection
        return conn.clock() if conn is not None else time.monotonic()

    def rendered(self, obj: Any) -> Mapping[str, object]:
        """What the last ``interpolate()`` rendered for ``obj`` (empty before it)."""
        return self._rendered.get(obj.uid, _EMPTY)

    def claim_client_side(self) -> None:
        """Called by ``connect()``: a context with no side becomes a client's (decision 9)."""
        if self.side is None:
            self.side = ReverbSide.CLIENT
        elif self.side is ReverbSide.SERVER:
            raise InvalidState(
                "this context is a server's (REVERB_SIDE is ReverbSide.SERVER): a client in "
                "the same process needs its own context, e.g. Client(..., context=ReverbContext())"
            )


def _client_args(name: str, data: Any = None) -> tuple[str, Any]:
    return name, data


def _server_args(member: int, name: str, data: Any = None) -> tuple[int, str, Any]:
    if type(member) is not int:
        raise TypeError(
            f"on a server, send_message(member, name, data=None) takes a membership id "
            f"first, not {member!r}"
        )
    return member, name, data


_EMPTY: Mapping[str, object] = types.MappingProxyType({})


def _names(declared: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(item if isinstance(item, str) else item.name for item in declared)


def _refuse_async(conn: Any, call: str, instead: str) -> None:
    """The blocking loops cannot drive an asyncio connection: say so instead of spinning."""
    if inspect.iscoroutinefunction(getattr(conn, "wait", None)):
        raise InvalidState(
            f"{call} blocks, but this context's connection is an asyncio one "
            f"({type(conn).__name__}): use {instead}"
        )


def _wait(conn: Any, timeout: float) -> None:
    """Block until something arrives or ``timeout`` passes. Waiting is the I/O layer's
    (``wait`` is not part of the transport contract); a connection that cannot block, such
    as ``reverb.memory``'s, which is stepped instead, just lets the time pass."""
    wait = getattr(conn, "wait", None)
    if wait is not None:
        wait(timeout)
    else:
        time.sleep(timeout)
