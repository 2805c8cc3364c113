"""``Server``: accepts clients on a background I/O thread; the game thread drives it through
``ReverbManager.server_sync()`` (or ``ReverbContext.server_sync()``)."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import TYPE_CHECKING

from reverb import _current
from reverb.auth import Authenticator
from reverb.errors import InvalidState
from reverb.hub import (
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_IP,
    MAX_PENDING_CALLS,
    ServerHub,
    ServerOptions,
)
from reverb.proto import messages as m
from reverb.proto.framing import DEFAULT_MAX_FRAME_SIZE
from reverb.proto.session import (
    FRAME_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_CALLS_PER_SECOND,
    MAX_MESSAGES_PER_SECOND,
    PING_INTERVAL,
    CloseCode,
    SessionEvent,
)
from reverb.threaded._loop import Conn, IOLoop, Tls
from reverb.transport import ServerEvent

if TYPE_CHECKING:
    from reverb.context import ReverbContext

__all__ = ["Server"]

logger = logging.getLogger("reverb")

# §11: seconds of full-rate syncs of a big world; a stalled reader is dropped long before it
# costs real memory.
MAX_SEND_BUFFER = 8 << 20


class Server(IOLoop):
    """A TCP server for one context (default: ``ReverbManager``'s).

    ``Server(port=0)`` binds a free port; read it back from ``server.port``. The default host
    is ``127.0.0.1``: pass ``host="0.0.0.0"`` to accept players from other machines.
    ``authenticate`` checks credentials at the handshake (``reverb.auth``); ``ssl_context``
    (server side) serves TLS; ``check_contract`` refuses clients whose registered types or
    exposed methods differ. Limits and their defaults: docs/guide.md §10.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        tick_rate: float = 30.0,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        frame_timeout: float = FRAME_TIMEOUT,
        ping_interval: float = PING_INTERVAL,
        idle_timeout: float = IDLE_TIMEOUT,
        max_send_buffer: int = MAX_SEND_BUFFER,
        max_pending_calls: int = MAX_PENDING_CALLS,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_ip: int = MAX_CONNECTIONS_PER_IP,
        max_messages_per_second: float = MAX_MESSAGES_PER_SECOND,
        max_calls_per_second: float = MAX_CALLS_PER_SECOND,
        authenticate: Authenticator | None = None,
        ssl_context: ssl.SSLContext | None = None,
        check_contract: bool = True,
        context: ReverbContext | None = None,
    ) -> None:
        super().__init__(f"reverb-server:{port}", max_send_buffer=max_send_buffer)
        self.host = host
        self.requested_port = port
        self.tick_rate = tick_rate
        self.ssl_context = ssl_context
        self.context = context if context is not None else _current.current_context()
        self.hub = ServerHub(
            ServerOptions(
                tick_rate=tick_rate,
                max_frame_size=max_frame_size,
                handshake_timeout=handshake_timeout,
                frame_timeout=frame_timeout,
                ping_interval=ping_interval,
                idle_timeout=idle_timeout,
                max_pending_calls=max_pending_calls,
                max_connections=max_connections,
                max_connections_per_ip=max_connections_per_ip,
                max_messages_per_second=max_messages_per_second,
                max_calls_per_second=max_calls_per_second,
                authenticate=authenticate,
            ),
            self.context.types if check_contract else None,
        )
        self.stats = self.hub.stats
        self._listener: socket.socket | None = None
        self._port: int | None = None
        self._conn_of: dict[int, Conn] = {}

    @property
    def port(self) -> int:
        """The bound port (after ``start_server()``)."""
        if self._port is None:
            raise InvalidState("the server is not started")
        return self._port

    @property
    def members(self) -> list[int]:
        """Membership ids of the clients connected now."""
        with self.lock:
            return sorted(self.hub.members)

    def start_server(self) -> None:
        """Bind, listen and start the I/O thread. Attaches to the context if it has no
        connection yet (so ``ReverbManager.REVERB_CONNECTION = serv`` is optional)."""
        if self._listener is not None:
            raise InvalidState("the server is already started")
        listener = socket.create_server((self.host, self.requested_port), backlog=128)
        listener.setblocking(False)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self.name = f"reverb-server:{self._port}"
        self.open_selector()
        self.register_listener(listener)
        if self.context.connection is None:
            self.context.connection = self
        self.start_thread()
        logger.info("server listening on %s:%d", self.host, self._port)

    def stop_server(self, timeout: float = 2.0) -> None:
        """Send every client ``close`` 1001, flush briefly, stop the thread, free the port."""
        if self._listener is None:
            return
        with self.lock:
            for conn in self.conns.values():
                conn.session.close(CloseCode.GOING_AWAY, "server shutting down", time.monotonic())
                self.mark_dirty(conn)
        self.wake()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.conns:
                    break
            time.sleep(0.01)  # bounded: lets the I/O thread flush the close frames
        self.stop_thread()
        self._listener = None
        if self.context.connection is self:
            self.context.connection = None
        logger.info("server on port %d stopped", self._port)

    def on_stopped(self) -> None:
        if self._listener is not None:
            self._listener.close()

    # -- ServerTransport ---------------------------------------------------------------------

    def send(self, members: tuple[int, ...], message: m.Message) -> None:
        with self.lock:
            for session in self.hub.send(members, message, time.monotonic()):
                self.mark_dirty(self._conn_of[session.member])
        self.wake()

    def poll(self) -> list[ServerEvent]:
        return super().poll()

    def on_polled(self) -> None:
        self.hub.pending.clear()

    # -- I/O thread --------------------------------------------------------------------------

    def on_accept(self, now: float) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: keep serving the connections we have
                logger.error("%s: accept failed: %s", self.name, exc)
                return
            if not self.hub.admit(addr[0]):
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = Tls(self.ssl_context, server_side=True) if self.ssl_context else None
            conn = Conn(sock, self.hub.open(addr[0], addr[1], now), tls)
            self._conn_of[conn.session.member] = conn
            self.register(conn)

    def on_event(self, conn: Conn, event: SessionEvent) -> None:
        with self._inbox_cond:  # the pending-call counts are shared with poll()
            out = self.hub.on_event(conn.session, event, time.monotonic())
            if out is not None:
                self._inbox.append(out)
                self._inbox_cond.notify_all()
        if conn.session.closed:
            self._conn_of.pop(conn.session.member, None)
