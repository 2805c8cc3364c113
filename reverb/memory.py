"""An in-memory transport pair driven by a stepped clock: Reverb without sockets or threads.

``MemoryServer`` and ``MemoryClient`` implement the transport contract (``reverb.transport``)
over the same sans-I/O ``Session`` and ``ServerHub``/``ClientHub`` as the threaded and asyncio
layers; a ``MemoryNetwork`` moves the bytes between them. Nothing here reads the real clock:
time is a ``Clock`` that only moves when ``step()`` (or ``clock.advance()``) moves it, so a
test of a whole game — several clients, latency, a dropped connection — is deterministic and
runs in milliseconds. This is the game author's pytest kit (docs/guide.md §14)::

    server = ReverbContext(ReverbSide.SERVER)
    net = MemoryNetwork(server)
    alice = net.connect(ReverbContext())
    net.step(1 / 30)    # the server ticks, alice receives and applies the sync

Each link is a reliable, ordered byte stream, like TCP: latency delays its bytes, ``drop()``
loses the whole connection (both sides see 1006, as when a cable is pulled), and nothing is
ever lost or reordered within a connection.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from reverb.endpoints import MAX_UNREAD, UNREAD_REASON
from reverb.errors import HandshakeFailed, InvalidState
from reverb.hub import ClientHub, ServerHub, ServerOptions
from reverb.proto import messages as m
from reverb.proto.framing import DEFAULT_MAX_FRAME_SIZE
from reverb.proto.session import (
    FRAME_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    IDLE_TIMEOUT,
    PING_INTERVAL,
    CloseCode,
    Opened,
    Role,
    Session,
    State,
)
from reverb.replication.types import contract
from reverb.transport import ClientEvent, ClientTransport, ServerEvent, ServerTransport

if TYPE_CHECKING:
    from reverb.context import ReverbContext

__all__ = ["Clock", "Link", "MemoryClient", "MemoryNetwork", "MemoryServer"]

logger = logging.getLogger("reverb")

_EOF = b""  # in a link's queue: the sender's side of the stream ended (after its close)


class Clock:
    """Virtual monotonic time in seconds; it moves only when ``advance`` is called."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self.now += seconds
        return self.now


class MemoryServer:
    """The server side: a ``ServerHub`` whose sessions are fed by ``MemoryNetwork`` links.

    Takes the same limits as ``Server(...)`` (``ServerOptions``' keywords)."""

    def __init__(
        self,
        context: ReverbContext,
        clock: Clock,
        *,
        check_contract: bool = True,
        **options: Any,
    ) -> None:
        self.context = context
        self.clock = clock
        self.hub = ServerHub(ServerOptions(**options), context.types if check_contract else None)
        self.stats = self.hub.stats
        self._inbox: list[ServerEvent] = []

    # -- ServerTransport ---------------------------------------------------------------------

    @property
    def tick_rate(self) -> float:
        return self.hub.options.tick_rate

    def poll(self) -> list[ServerEvent]:
        events, self._inbox = self._inbox, []
        self.hub.pending.clear()  # the game loop has taken the calls
        return events

    def send(self, members: tuple[int, ...], message: m.Message) -> None:
        self.hub.send(members, message, self.clock())

    # -- what the network calls --------------------------------------------------------------

    @property
    def members(self) -> list[int]:
        """Membership ids of the clients connected now."""
        return sorted(self.hub.members)

    def accept(self, ip: str, port: int) -> Session | None:
        """A new connection from ``ip``; None when the connection limits refuse it."""
        if not self.hub.admit(ip):
            return None
        return self.hub.open(ip, port, self.clock())

    def handle(self, session: Session) -> None:
        for event in session.events():
            out = self.hub.on_event(session, event, self.clock())
            if out is not None:
                self._inbox.append(out)


class MemoryClient:
    """The client side of one link: the ``Client(...)`` API a game uses, minus the socket.

    ``connect()`` and ``disconnect()`` behave as ``Client``'s (same events, same reconnect
    rules); the handshake completes as the network delivers it (at once with no latency).
    """

    def __init__(
        self,
        network: MemoryNetwork,
        context: ReverbContext,
        *,
        ip: str = "127.0.0.1",
        connect_timeout: float = HANDSHAKE_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        frame_timeout: float = FRAME_TIMEOUT,
        ping_interval: float = PING_INTERVAL,
        idle_timeout: float = IDLE_TIMEOUT,
        credentials: Any = None,
        send_contract: bool = True,
        keep_replicas: bool = False,
        latency: float = 0.0,
    ) -> None:
        self.network = network
        self.context = context
        self.ip = ip
        self.credentials = credentials
        self.send_contract = send_contract
        self.keep_replicas = keep_replicas
        self.latency = latency
        self.hub = ClientHub()
        self.link: Link | None = None
        self._session_options: dict[str, Any] = {
            "max_frame_size": max_frame_size,
            "frame_timeout": frame_timeout,
            "ping_interval": ping_interval,
            "idle_timeout": idle_timeout,
            "handshake_timeout": connect_timeout,
        }
        self._inbox: list[ClientEvent] = []

    @property
    def member(self) -> int | None:
        return self.hub.member

    @property
    def identity(self) -> Any:
        return self.hub.identity

    @property
    def session(self) -> Session | None:
        return self.link.client if self.link is not None else None

    @property
    def connected(self) -> bool:
        session = self.session
        return session is not None and session.state is State.OPEN

    def connect(self) -> None:
        """Open a new link to the network's server (a closed client may connect again).

        Raises ``HandshakeFailed`` when the server refuses at once; with latency the
        handshake completes during later ``step()``s (watch the ``connected`` event)."""
        old = self.session
        if old is not None and not old.closed:
            raise InvalidState("already connected; call disconnect() first")
        self.context.claim_client_side()
        if old is not None and self.context.connection is self:
            self.context.client_sync()  # what the old connection left: despawns, disconnected
        self.hub.reset()
        if self.context.connection is None:
            self.context.connection = self
        session = Session(
            Role.CLIENT,
            self.network.clock(),
            credentials=m.ABSENT if self.credentials is None else self.credentials,
            contract=contract(self.context.types) if self.send_contract else m.ABSENT,
            **self._session_options,
        )
        self.link = self.network.open_link(self, session)
        if session.closed and self.hub.member is None:
            closed = self.hub.closed
            code, reason = (closed.code, closed.reason) if closed else (1006, "refused")
            raise HandshakeFailed(code, reason)

    def disconnect(self) -> None:
        """Send ``close`` 1000, deliver it, and fire ``disconnected``."""
        if self.session is None:
            return
        self.abort(CloseCode.NORMAL, "client disconnect")
        self.context.client_sync()

    # -- ClientTransport ---------------------------------------------------------------------

    def poll(self) -> list[ClientEvent]:
        events, self._inbox = self._inbox, []
        return events

    def call(self, uid: int, method: str, args: list[Any]) -> Future[Any]:
        future = self.hub.call(self.session, uid, method, args, self.network.clock())
        if self.link is not None:
            self.network.pump(self.link)
        return future

    def abort(self, code: int, reason: str) -> None:
        session = self.session
        if session is not None and self.link is not None:
            session.close(code, reason[:200], self.network.clock())
            self.network.pump(self.link)

    # -- what the network calls --------------------------------------------------------------

    def handle(self, session: Session) -> None:
        for event in session.events():
            out = self.hub.on_event(event, lambda resolve: resolve())
            if out is not None:
                self._inbox.append(out)
                if len(self._inbox) > MAX_UNREAD and not session.closed:
                    session.limit_hit(
                        "unread", CloseCode.POLICY, UNREAD_REASON, self.network.clock()
                    )
            if isinstance(event, Opened):
                self.context.client_connected(event.member)


class Link:
    """One connection: a client session, a server session and the bytes between them."""

    def __init__(
        self, client: Session, server: Session | None, latency: float, endpoint: MemoryClient
    ) -> None:
        self.client = client
        self.server = server
        self.latency = latency
        self.endpoint = endpoint
        self.up: deque[tuple[float, bytes]] = deque()  # client -> server: (arrives at, data)
        self.down: deque[tuple[float, bytes]] = deque()
        self.client_eof_sent = False
        self.server_eof_sent = False
        self.bytes_up = 0
        self.bytes_down = 0

    @property
    def done(self) -> bool:
        return self.client.closed and (self.server is None or self.server.closed)


class MemoryNetwork:
    """One server context and any number of client contexts, joined in memory.

    ``step(seconds)`` is one frame of the whole game: time advances, every session's timers
    run, bytes due by then are delivered, the server serves and ticks (``server_step``),
    and every client context applies what it received (``client_sync``).
    """

    def __init__(
        self,
        server_context: ReverbContext,
        *,
        clock: Clock | None = None,
        latency: float = 0.0,
        **server_options: Any,
    ) -> None:
        self.clock = clock if clock is not None else Clock()
        self.latency = latency
        self.context = server_context
        self.server = MemoryServer(server_context, self.clock, **server_options)
        if server_context.connection is None:
            server_context.connection = self.server
        self.links: list[Link] = []
        self._ports = 0

    def connect(self, context: ReverbContext, **options: Any) -> MemoryClient:
        """A new ``MemoryClient`` for ``context``, connected (``Client(...)``'s keywords,
        plus ``latency`` in seconds, one way, default the network's)."""
        options.setdefault("latency", self.latency)
        client = MemoryClient(self, context, **options)
        client.connect()
        return client

    def open_link(self, endpoint: MemoryClient, session: Session) -> Link:
        self._ports += 1
        server_session = self.server.accept(endpoint.ip, self._ports)
        link = Link(session, server_session, endpoint.latency, endpoint)
        self.links.append(link)
        if server_session is None:  # refused: the socket is closed before anything is read
            link.down.append((self.clock(), _EOF))
        self.pump(link)
        return link

    def drop(self, client: MemoryClient) -> None:
        """Lose the client's connection without a close on either side (1006 on both)."""
        link = client.link
        if link is None:
            return
        link.up.clear()
        link.down.clear()
        for session in (link.client, link.server):
            if session is not None:
                session.receive_eof()
        self._handle(link)

    def step(self, seconds: float = 0.0, *, sync_clients: bool = True) -> None:
        """Advance the clock by ``seconds`` and run one frame of every side."""
        now = self.clock.advance(seconds)
        for link in self.links:
            link.client.check_timeouts(now)
            if link.server is not None:
                link.server.check_timeouts(now)
        self.pump_all()
        self.context.server_step(now)
        self.pump_all()
        if sync_clients:
            for link in list(self.links):
                ctx = link.endpoint.context
                if ctx.connection is link.endpoint and link.endpoint.link is link:
                    ctx.client_sync()
            self.pump_all()
        self.links = [link for link in self.links if not _finished(link)]

    def run(self, seconds: float, frame: float = 1 / 60) -> None:
        """``step(frame)`` until ``seconds`` have passed."""
        end = self.clock.now + seconds
        while self.clock.now + frame <= end + 1e-9:
            self.step(frame)

    def pump_all(self) -> None:
        for link in list(self.links):
            self.pump(link)

    def pump(self, link: Link) -> None:
        """Move what both sides want to send, and deliver every byte due by now."""
        now = self.clock()
        while True:
            moved = self._take(link, now)
            moved |= self._deliver(link, now)
            self._handle(link)
            if not moved:
                return

    def _take(self, link: Link, now: float) -> bool:
        moved = False
        data = link.client.data_to_send()
        if data:
            link.up.append((now + link.latency, data))
            link.bytes_up += len(data)
            moved = True
        if link.client.closed and not link.client_eof_sent:
            link.client_eof_sent = True
            link.up.append((now + link.latency, _EOF))
            moved = True
        if link.server is not None:
            data = link.server.data_to_send()
            if data:
                link.down.append((now + link.latency, data))
                link.bytes_down += len(data)
                moved = True
            if link.server.closed and not link.server_eof_sent:
                link.server_eof_sent = True
                link.down.append((now + link.latency, _EOF))
                moved = True
        return moved

    def _deliver(self, link: Link, now: float) -> bool:
        moved = False
        while link.up and link.up[0][0] <= now:
            _, data = link.up.popleft()
            if link.server is not None:
                _feed(link.server, data, now)
            moved = True
        while link.down and link.down[0][0] <= now:
            _, data = link.down.popleft()
            _feed(link.client, data, now)
            moved = True
        return moved

    def _handle(self, link: Link) -> None:
        if link.server is not None:
            self.server.handle(link.server)
        link.endpoint.handle(link.client)


def _feed(session: Session, data: bytes, now: float) -> None:
    if data is _EOF or not data:
        session.receive_eof()
    else:
        session.receive_data(data, now)


def _finished(link: Link) -> bool:
    return link.done and not link.up and not link.down


if TYPE_CHECKING:  # mypy --strict checks that both sides honour the contract

    def _contract(server: MemoryServer, client: MemoryClient) -> None:
        _s: ServerTransport = server
        _c: ClientTransport = client
