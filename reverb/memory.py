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

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from reverb.endpoints import ClientEndpoint, ServerEndpoint
from reverb.errors import CloseCode, HandshakeFailed
from reverb.proto import messages as m
from reverb.proto.session import Opened, Session, State
from reverb.transport import ClientEvent, ClientTransport, ServerEvent, ServerTransport

if TYPE_CHECKING:
    from reverb.context import ReverbContext

__all__ = ["Clock", "Link", "MemoryClient", "MemoryNetwork", "MemoryServer"]

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


class MemoryServer(ServerEndpoint):
    """The server side: the ``ServerEndpoint`` options and ``ServerHub`` of ``Server(...)``,
    its sessions fed by a ``MemoryNetwork``'s links. ``host``, ``port``, ``ssl_context``
    and the send-buffer limits are accepted for symmetry and have no effect here."""

    def __init__(self, clock: Clock, **options: Any) -> None:
        self.clock = clock  # before the endpoint's: its rooms tick on the stepped clock (§17)
        super().__init__(**options)
        self._port = 0
        self._inbox: list[ServerEvent] = []

    # -- ServerTransport ---------------------------------------------------------------------

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


class MemoryClient(ClientEndpoint):
    """The client side of one link: ``Client(...)``'s options and API, minus the socket.

    ``connect()`` and ``disconnect()`` behave as ``Client``'s (same events, same reconnect
    rules), except that the handshake completes as the network delivers it: at once with no
    latency, else during later ``step()``s (the ``connected`` event tells). ``ip`` is the
    address the server sees (its per-address limits count it); ``latency`` is one way, in
    seconds.
    """

    def __init__(self, network: MemoryNetwork, *, latency: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        self.network = network
        self.clock = network.clock
        self.latency = latency
        self.link: Link | None = None
        self._inbox: list[ClientEvent] = []

    @property
    def session(self) -> Session | None:
        return self.link.client if self.link is not None else None

    @property
    def connected(self) -> bool:
        session = self.session
        return session is not None and session.state is State.OPEN

    def connect(self) -> None:
        """Open a new link to the network's server (a closed client may connect again).

        Raises ``HandshakeFailed`` when the server refuses before any latency applies."""
        old = self.session
        self.before_connect(old is not None and not old.closed)
        if old is not None:
            self.after_close()
        session = self.new_session(self.network.clock())
        self.link = self.network.open_link(self, session)
        if session.closed and self.hub.member is None:
            closed = self.hub.closed
            code, reason = (
                (closed.code, closed.reason) if closed else (CloseCode.ABNORMAL, "refused")
            )
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

    def _room_call(
        self, build: Callable[[int], m.Message], timeout: float, finish: Callable[[Any], Any]
    ) -> Future[Any]:
        """A room request (§17.5): nothing blocks on a stepped network, so the result is a
        future that resolves (with a ``RoomHandle``, or ``RoomRefused``) as it is delivered."""
        answer = self.hub.room_request(self.session, build, self.network.clock())
        out: Future[Any] = Future()

        def done(reply: Future[Any]) -> None:
            try:
                out.set_result(finish(reply.result()))
            except BaseException as exc:  # the refusal or the closed connection, for the caller
                out.set_exception(exc)

        answer.add_done_callback(done)
        if self.link is not None:
            self.network.pump(self.link)
        return out

    def send_message(self, name: str, data: Any = None) -> None:
        self.hub.send_message(self.session, name, data, self.network.clock())
        if self.link is not None:
            self.network.pump(self.link)

    def abort(self, code: int, reason: str) -> None:
        session = self.session
        if session is not None and self.link is not None:
            session.close(code, reason[:200], self.network.clock())
            self.network.pump(self.link)

    # -- what the network calls --------------------------------------------------------------

    def handle(self, session: Session) -> None:
        """The session's events, decided by ``ClientHub.step`` as in the other layers: calls
        resolved at once, the rest for the game, a game leaving too many unread closed."""
        now = self.network.clock()
        for event in session.events():
            step = self.hub.step(session, event, now, len(self._inbox))
            if step is not None:
                self._inbox.extend(step.events)
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
        self.server = MemoryServer(self.clock, context=server_context, **server_options)
        self.server.attach()
        self.links: list[Link] = []
        self._ports = 0

    def connect(self, context: ReverbContext, **options: Any) -> MemoryClient:
        """A new ``MemoryClient`` for ``context``, connected (``Client(...)``'s keywords,
        plus ``latency`` in seconds, one way, default the network's)."""
        options.setdefault("latency", self.latency)
        client = MemoryClient(self, context=context, **options)
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
        self.pump_all()  # what arrived by now counts before any timeout is judged
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
