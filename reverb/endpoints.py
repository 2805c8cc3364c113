"""Options and bookkeeping that ``Server``/``AsyncServer`` and ``Client``/``AsyncClient``
share, so that each I/O layer only adds how it moves bytes. Each I/O layer's endpoint
subclasses one of these and *has* a loop (``threaded._loop.IOLoop``, ``aio._base.AioLoop``)
that calls it back through ``transport.ConnectionHandler``; the decisions both layers take
are the hub's (``reverb.hub``)."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from reverb import _current
from reverb.auth import Authenticator
from reverb.errors import InvalidState
from reverb.hub import MAX_UNREAD, UNREAD_REASON, ClientHub, ServerHub
from reverb.options import (
    CLIENT_SEND_BUFFER,
    CONNECT_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_IP,
    MAX_PENDING_CALLS,
    SERVER_SEND_BUFFER,
    SERVER_SEND_BUFFER_PER_IP,
    SERVER_TOTAL_SEND_BUFFER,
    ClientOptions,
    ServerOptions,
)
from reverb.proto import messages as m
from reverb.proto.framing import DEFAULT_MAX_FRAME_SIZE
from reverb.proto.options import (
    FRAME_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_BYTES_PER_SECOND,
    MAX_CALLS_PER_SECOND,
    MAX_HANDSHAKE_FRAME,
    MAX_MESSAGES_PER_SECOND,
    PING_INTERVAL,
    TICK_RATE,
    pick,
)
from reverb.proto.session import FEATURES, GRANTABLE, Role, Session
from reverb.reconnect import ReconnectPolicy
from reverb.replication.types import contract
from reverb.replication.world import QUIET_INTERVAL
from reverb.resume import DEFAULT_GRACE, MemberInfo, OwnedPolicy
from reverb.rooms.client import ROOM_TIMEOUT, Lobby, join_request, room_result
from reverb.stats import ConnectionStats, connection_stats
from reverb.timesync import TIME_PING_INTERVAL, Timekeeper
from reverb.transport import PeerMessage, ServerEvent

if TYPE_CHECKING:
    from reverb.context import ReverbContext
    from reverb.rooms.room import Room

__all__ = [
    "CLIENT_SEND_BUFFER",
    "MAX_UNREAD",
    "SERVER_SEND_BUFFER",
    "SERVER_SEND_BUFFER_PER_IP",
    "SERVER_TOTAL_SEND_BUFFER",
    "UNREAD_REASON",
    "ClientEndpoint",
    "ServerEndpoint",
]


class ServerEndpoint:
    """A server for one context (default: ``ReverbManager``'s).

    ``port=0`` binds a free port; read it back from ``port``. The default host is
    ``127.0.0.1``: pass ``host="0.0.0.0"`` to accept players from other machines.
    ``authenticate`` checks credentials at the handshake (``reverb.auth``); ``ssl_context``
    (server side) serves TLS; ``check_contract`` refuses clients whose registered types or
    exposed methods differ. ``features`` are the optional features it may grant (§4.11;
    default all it implements: ``"compact"``, ``"messages"``). Limits and their defaults:
    docs/guide.md §10, protocol §11. ``client_budget`` (bytes per second, default None:
    unlimited) bounds what each client's syncs may use (guide §17, protocol §16.6).
    ``quiet_interval`` (seconds, default 0.5) is how often a client granted ``"quiet"``
    gets a sync while nothing changes for it (protocol §19.3); leave ``"quiet"`` out of
    ``features`` to send every ``"time"`` client a sync every tick (§13.7).

    Resume (protocol §18, guide "Reconnection and resume"): a "resume" client whose
    connection drops keeps its membership ``resume_grace`` seconds (default 20); ``on_drop(info)``
    may choose per client (``info.member``, ``info.identity``; return seconds, ``0`` for no
    grace, or None for the default; it runs on the I/O side: keep it quick).
    ``owned_objects`` is what a membership's end does to the objects it owned: ``"keep"``
    (default, as before), ``"release"`` (owner None) or ``"destroy"``.
    """

    # Time, from the I/O layer (its monotonic clock, or reverb.memory's stepped one): this
    # module never reads a clock of its own.
    clock: Callable[[], float]

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        tick_rate: float = TICK_RATE,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        frame_timeout: float = FRAME_TIMEOUT,
        ping_interval: float = PING_INTERVAL,
        idle_timeout: float = IDLE_TIMEOUT,
        max_send_buffer: int = SERVER_SEND_BUFFER,
        max_total_send_buffer: int | None = SERVER_TOTAL_SEND_BUFFER,
        max_send_buffer_per_ip: int | None = SERVER_SEND_BUFFER_PER_IP,
        max_pending_calls: int = MAX_PENDING_CALLS,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_ip: int = MAX_CONNECTIONS_PER_IP,
        max_messages_per_second: float = MAX_MESSAGES_PER_SECOND,
        max_calls_per_second: float = MAX_CALLS_PER_SECOND,
        max_handshake_frame: int = MAX_HANDSHAKE_FRAME,
        max_bytes_per_second: float = MAX_BYTES_PER_SECOND,
        authenticate: Authenticator | None = None,
        ssl_context: ssl.SSLContext | None = None,
        check_contract: bool = True,
        features: Collection[str] = GRANTABLE,
        resume_grace: float = DEFAULT_GRACE,
        on_drop: Callable[[MemberInfo], float | None] | None = None,
        owned_objects: OwnedPolicy | str = OwnedPolicy.KEEP,
        rtt_interval: float | None = None,
        context: ReverbContext | None = None,
        client_budget: float | None = None,
        quiet_interval: float = QUIET_INTERVAL,
    ) -> None:
        options = pick(ServerOptions, locals())  # each keyword's meaning: reverb.options
        self.host = host
        self.requested_port = port
        self.tick_rate = options.tick_rate
        self.ssl_context = options.ssl_context
        self.context = context if context is not None else _current.current_context()
        self.hub = ServerHub(options, self.context.types if options.check_contract else None)
        world = self.context.world
        if not world.scheduling:
            world.tick_rate = options.tick_rate
        world.quiet_interval = options.quiet_interval  # §19.3
        if options.client_budget is not None:  # bytes per second per client (§16.6)
            world.set_budget(None, options.client_budget)
        self.stats = self.hub.stats
        # membership id -> the I/O layer's connection (kept by the hub's ``on_event``)
        self.by_member: dict[int, Any] = self.hub.conns
        # each connection's, the server's and each address's unsent bytes (§10.1, guide §10)
        self.max_send_buffer = options.max_send_buffer
        self.max_total_send_buffer = options.max_total_send_buffer
        self.max_send_buffer_per_ip = options.max_send_buffer_per_ip
        # §17: room types, live rooms and the lobby; the default room is this context's world
        from reverb.rooms.service import RoomService

        self.rooms = RoomService(self.context, self.clock)
        self.hub.room_contract = self.rooms.contract
        self._port: int | None = None
        self._setup_io()

    def _setup_io(self) -> None:
        """The I/O layer's own parts, made once the options are in place (its loop and
        inbox): the public keywords are this class's, declared once."""

    @property
    def options(self) -> ServerOptions:
        """What this server was configured with (the monitor may turn RTT pings on)."""
        return self.hub.options

    @property
    def port(self) -> int:
        """The bound port (after ``start_server()``)."""
        if self._port is None:
            raise InvalidState("the server is not started")
        return self._port

    # -- per-connection statistics (docs/monitor.md) --------------------------------------------

    def client_stats(self, member: int) -> ConnectionStats | None:
        """The counters of client ``member``'s connection (``reverb.stats.ConnectionStats``):
        bytes and frames each way, calls and their results by code, messages, round-trip
        time, send buffer, connected since, its last incidents.

        None when no client ``member`` is connected (it left, never was, or has not completed
        its handshake): clients come and go on their own, so a missing one is an answer, not
        an error. ``Server``: from any thread; ``AsyncServer``: on its event loop.

        The round-trip time comes from this server's own pings (§9.1): heartbeats only go to
        a quiet client, so pass ``rtt_interval`` (seconds; a monitor sets 2 s while it runs)
        to ping every client that often and always have a figure.
        """
        session = self.hub.members.get(member)
        if session is None:
            return None
        conn = self.by_member.get(member)
        backlog = getattr(conn, "backlog", None)
        return connection_stats(
            session,
            send_buffer=backlog() if callable(backlog) else 0,
            send_buffer_limit=self.max_send_buffer,
            pending_calls=self.hub.pending.get(member, 0),
            now=self.clock(),
        )

    # A call that arrives while the game waits in server_sync() with nothing queued is
    # answered at once on the I/O side (the I/O thread, the game thread held parked; or the
    # protocol callback): no hand-off, the reply leaves at once. False: every call runs when
    # the game resumes (guide §7).
    inline_calls = True

    def answer_now(self, out: ServerEvent) -> bool:
        """Run the call ``out`` carries now, on the I/O side, when the game may be bypassed
        (``inline_calls``, this server is its context's connection): True when answered.
        Each layer asks only while the game waits with nothing queued before ``out``."""
        if (
            type(out) is PeerMessage
            and type(out.message) is m.Rpc
            and self.inline_calls
            and self.context.connection is self
        ):
            self.hub.pending.pop(out.member, None)
            self.context.answer(out.member, out.message)
            return True
        return False

    # -- messages (§14): the context's, from the game thread ----------------------------------

    def send_message(self, member: int, name: str, data: Any = None) -> bool:
        """``ReverbContext.send_message`` on this server's context: to one client."""
        return self.context.send_message(member, name, data)

    def broadcast(self, name: str, data: Any = None, exclude: Any = ()) -> int:
        """``ReverbContext.broadcast``: to every client that asked for ``"messages"``."""
        return self.context.broadcast(name, data, exclude)

    def send_to_observers(self, obj: Any, name: str, data: Any = None) -> int:
        """``ReverbContext.send_to_observers``: to every client holding ``obj``."""
        return self.context.send_to_observers(obj, name, data)

    def set_budget(
        self, member: int | None, bytes_per_second: float | None, burst: float | None = None
    ) -> None:
        """``ReverbContext.set_budget``: the bytes per second a client's syncs may use."""
        self.context.set_budget(member, bytes_per_second, burst)

    # -- rooms (§17; guide "Rooms and a lobby") -----------------------------------------------

    def define_room(self, name: str, room_cls: type[Room]) -> type[Room]:
        """Define a room type (a ``reverb.rooms.Room`` subclass) that clients asking for the
        feature ``"rooms"`` create and join by ``name``."""
        return self.rooms.define(name, room_cls)

    @property
    def matchmaker(self) -> Any:
        """The ``reverb.rooms.Matchmaker``: live rooms (``rooms``), ``dispose(room_id)``,
        tick statistics (``scheduler.stats()``)."""
        return self.rooms.matchmaker

    def attach(self) -> None:
        """Become the context's connection if it has none (so assigning
        ``ReverbManager.REVERB_CONNECTION`` is optional)."""
        if self.context.connection is None:
            self.context.connection = self
        if self.context.connection is self:
            self.context.rooms = self.rooms

    def detach(self) -> None:
        if self.context.connection is self:
            self.context.connection = None
        if self.context.rooms is self.rooms:
            self.context.rooms = None


class ClientEndpoint:
    """A connection to a Reverb server for one context (default: ``ReverbManager``'s).

    ``credentials`` (any JSON value) go to the server's authenticate hook; ``ssl_context``
    (client side) speaks TLS, checking the certificate against ``server_hostname`` (default:
    ``ip``); ``send_contract`` sends this program's types and RPCs so that a server with
    different ones refuses it with an explanation (close 3001).

    When the connection ends, the replicas are despawned (``object_despawned`` for each,
    before ``disconnected``) unless ``keep_replicas=True``, which keeps them until the next
    ``connect()``. A closed client may ``connect()`` again: it gets a new membership id and
    a fresh snapshot. ``connect()`` makes a context with no side a client's. ``features``
    are those it asks for (§4.11; default ``"compact"`` and ``"messages"``; ``()`` speaks
    plain protocol 1).

    ``reconnect=True`` (or a ``reconnect.ReconnectPolicy``) asks for ``"resume"`` (protocol
    §18): after a drop the client reconnects by itself with backoff and jitter and resumes its
    membership (same member id, ownership and replica objects; calls exactly once), firing
    ``connection_lost``, ``reconnecting``, ``reconnected`` or ``resume_failed``. Off by
    default: a drop is then a disconnect, as before.

    ``compression=True`` also asks for compressed syncs (feature ``"deflate"``, protocol
    §15): a half to a quarter of the bytes of a large sync, for some CPU on both ends. Worth
    it on slow or metered links; on a LAN it only costs.
    """

    # Time, from the I/O layer (its monotonic clock, or reverb.memory's stepped one): this
    # module never reads a clock of its own.
    clock: Callable[[], float]

    def __init__(
        self,
        ip: str = "127.0.0.1",
        port: int = 8080,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        frame_timeout: float = FRAME_TIMEOUT,
        ping_interval: float = PING_INTERVAL,
        idle_timeout: float = IDLE_TIMEOUT,
        credentials: Any = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        send_contract: bool = True,
        keep_replicas: bool = False,
        features: Collection[str] = FEATURES,
        compression: bool = False,
        time_sync: bool = True,
        time_ping_interval: float = TIME_PING_INTERVAL,
        reconnect: bool | ReconnectPolicy = False,
        rooms: bool = False,
        context: ReverbContext | None = None,
    ) -> None:
        options = pick(ClientOptions, locals())  # each keyword's meaning: reverb.options
        self.options = options
        self.ip = ip
        self.port = port
        self.compression = options.compression
        self.keep_replicas = options.keep_replicas
        self.connect_timeout = options.connect_timeout
        self.credentials = options.credentials
        self.ssl_context = options.ssl_context
        self.server_hostname = options.server_hostname
        self.send_contract = options.send_contract
        self.context = context if context is not None else _current.current_context()
        # §18: reconnect by itself and resume the membership (asks for "resume")
        self.reconnect_policy = options.reconnect_policy
        self.hub = ClientHub(self.reconnect_policy)
        # §4.11: "compact", "time", "messages", "interest", "quiet", "columns" by default
        self.asked = options.asked()
        self.timekeeper = Timekeeper(ping_interval=options.time_ping_interval)
        self._stats_session: Session | None = None  # the last connection's, for ``stats``
        self._applied_before = 0  # ticks the replica table had applied before it
        self.max_send_buffer = CLIENT_SEND_BUFFER
        self._setup_io()

    def _setup_io(self) -> None:
        """The I/O layer's own parts, made once the options are in place (its loop and
        inbox): the public keywords are this class's, declared once."""

    @property
    def member(self) -> int | None:
        """This connection's membership id, from the server's ``welcome``."""
        return self.hub.member

    @property
    def identity(self) -> Any:
        """Who the server's authenticate hook says this client is (None without one)."""
        return self.hub.identity

    @property
    def features(self) -> frozenset[str]:
        """The features the server granted this connection (§4.11), e.g. ``"messages"``."""
        return self.hub.features

    # -- time and smooth movement (guide, "Smooth movement"; protocol §13) --------------------

    @property
    def tick_rate(self) -> float:
        """The server's tick rate in Hz, from ``welcome`` (0.0 before it)."""
        return self.hub.tick_rate

    @property
    def rtt(self) -> float:
        """Smoothed round-trip time in seconds (0.0 before the first pong)."""
        return self.timekeeper.rtt

    @property
    def rtt_jitter(self) -> float:
        """Mean deviation of the round-trip time, seconds."""
        return self.timekeeper.rtt_jitter

    def connection_stats(self, send_buffer: int = 0, now: float | None = None) -> ConnectionStats:
        """``stats`` with the I/O layer's send buffer (each layer reads it its own way)."""
        session = self._stats_session
        if session is None:  # never connected: nothing counted
            return ConnectionStats.unconnected(CLIENT_SEND_BUFFER)
        return connection_stats(
            session,
            send_buffer=send_buffer,
            send_buffer_limit=CLIENT_SEND_BUFFER,
            syncs_applied=self.context.replicas.applied - self._applied_before,
            now=now,
        )

    @property
    def clock_ready(self) -> bool:
        """True once the server clock estimate rests on 3 pongs (needs "time", §13)."""
        return self.timekeeper.ready

    def server_time(self, now: float | None = None) -> float:
        """The server's clock (§13.1) at local monotonic time ``now``; never decreasing.
        Before any sample, or without "time" granted: ``now``."""
        return self.timekeeper.server_time(self.clock() if now is None else now)

    def server_tick(self, now: float | None = None) -> float | None:
        """The fractional server tick at ``now``, or None before a timed sync."""
        return self.timekeeper.server_tick(self.clock() if now is None else now)

    def render_time(self, now: float | None = None) -> float:
        """The server time interpolated replicas are shown at, for local time ``now``."""
        return self.context.render_time(now)

    @property
    def interpolation_delay(self) -> float:
        """How far behind the newest expected sync replicas are rendered, seconds."""
        manager = self.context.interpolation
        return 0.0 if manager is None else manager.timeline.delay

    def before_connect(self, connected: bool) -> None:
        """Checks shared by both layers' ``connect()`` (decision 9)."""
        if connected:
            raise InvalidState("already connected; call disconnect() first")
        self.context.claim_client_side()

    def after_close(self) -> None:
        """A closed connection is being replaced: deliver what it left (its ``disconnected``
        event, the despawns) now, so none of it reaches the game after the new welcome."""
        if self.context.connection is self:
            self.context.client_sync()

    # -- rooms (§17; guide "Rooms and a lobby"): needs Client(..., rooms=True) ------------------
    # Each request has a deadline (``timeout``, RoomTimeout after it); a refusal raises
    # RoomRefused. The threaded Client blocks and returns the result; AsyncClient returns an
    # awaitable (``handle = await client.join_or_create("battle")``).

    def join_or_create(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        switch: bool = False,
        timeout: float = ROOM_TIMEOUT,
    ) -> Any:
        """Join the fullest joinable room of type ``name`` (matching ``options`` on the
        type's ``filter_by`` keys), or create one: a ``RoomHandle``."""
        build = join_request("join_or_create", name=name, options=options, switch=switch)
        return self._room_call(build, timeout, self._room_result)

    def create(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        switch: bool = False,
        timeout: float = ROOM_TIMEOUT,
    ) -> Any:
        """Create a room of type ``name`` and join it: a ``RoomHandle``."""
        build = join_request("create", name=name, options=options, switch=switch)
        return self._room_call(build, timeout, self._room_result)

    def join(
        self,
        name: str,
        filter: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        switch: bool = False,
        timeout: float = ROOM_TIMEOUT,
    ) -> Any:
        """Join an existing room of type ``name`` whose metadata matches ``filter``."""
        build = join_request("join", name=name, options=options, filter=filter, switch=switch)
        return self._room_call(build, timeout, self._room_result)

    def join_by_id(
        self,
        room_id: str,
        options: Mapping[str, Any] | None = None,
        *,
        switch: bool = False,
        timeout: float = ROOM_TIMEOUT,
    ) -> Any:
        """Join the room ``room_id`` (``"default"``: the server's own world)."""
        build = join_request("join_by_id", room=room_id, options=options, switch=switch)
        return self._room_call(build, timeout, self._room_result)

    def consume_seat(self, token: str, *, timeout: float = ROOM_TIMEOUT) -> Any:
        """Take a seat a matchmaker reserved for this connection (``reserve_seat`` on the
        server; §17.5 mode ``reservation``): a ``RoomHandle``, or ``reservation_expired``."""

        def build(req: int) -> m.Message:
            return m.RoomJoin(req=req, mode="reservation", token=token)

        return self._room_call(build, timeout, self._room_result)

    def leave(self, *, timeout: float = ROOM_TIMEOUT) -> Any:
        """Leave the current room (its replicas are despawned); refused ``not_in_room``."""
        return self._room_call(m.RoomLeave, timeout, self._room_result)

    def list_rooms(self, name: str | None = None, *, timeout: float = ROOM_TIMEOUT) -> Any:
        """The live rooms (of type ``name``) once: a list of ``RoomInfo``."""

        def build(req: int) -> m.Message:
            return m.RoomList(req=req, name=m.ABSENT if name is None else name)

        return self._room_call(build, timeout, self._room_result)

    def watch(self, name: str | None = None, *, timeout: float = ROOM_TIMEOUT) -> Any:
        """Watch the room list (of type ``name``): a ``Lobby`` whose ``rooms`` follow the
        server's live, updated in ``client_sync()`` (event ``room_event`` each change)."""

        def build(req: int) -> m.Message:
            return m.RoomWatch(req=req, name=m.ABSENT if name is None else name)

        def finish(reply: m.Message) -> Lobby:
            if not isinstance(reply, m.RoomListResult):  # pragma: no cover - §17.6
                raise InvalidState(f"room_watch answered with {reply.TYPE}")
            lobby = Lobby(name, reply.rooms)
            self.context.lobbies = {name: lobby}  # one subscription per connection (§17.6)
            return lobby

        return self._room_call(build, timeout, finish)

    def unwatch(self) -> Any:
        """Stop watching the room list."""
        self.context.lobbies = {}
        return self._room_call(m.RoomUnwatch, ROOM_TIMEOUT, lambda reply: None)

    def _room_result(self, reply: m.Message) -> Any:
        return room_result(self, reply)

    def _room_call(
        self, build: Callable[[int], m.Message], timeout: float, finish: Callable[[Any], Any]
    ) -> Any:  # pragma: no cover - each I/O layer implements it
        raise NotImplementedError

    @property
    def tls_hostname(self) -> str | None:
        return (self.server_hostname or self.ip) if self.ssl_context is not None else None

    @property
    def resuming(self) -> bool:
        """True while the client reconnects after a drop (``reconnect``, §18)."""
        return self.hub.resuming

    def new_session(self, now: float | None = None, *, resume: bool = False) -> Session:
        """A client session whose ``hello`` carries the credentials and the contract; ``now``
        defaults to the I/O layer's ``clock``.
        ``resume``: the hello of a reconnection attempt (§18.3), the membership kept."""
        if not resume:
            self.hub.reset()
        if self.context.connection is None:
            self.context.connection = self
        self.timekeeper = Timekeeper(ping_interval=self.options.time_ping_interval)
        session = Session(
            Role.CLIENT,
            self.clock() if now is None else now,
            self.options,
            features=self.asked,
            timekeeper=self.timekeeper,
            credentials=m.ABSENT if self.credentials is None else self.credentials,
            contract=contract(self.context.types) if self.send_contract else m.ABSENT,
            resume=self.hub.resume_hello() if resume else None,
        )
        self._stats_session = session
        self._applied_before = self.context.replicas.applied
        return session
