"""``Client``: one connection to a server, served by a background I/O thread.

Replies to ``compute_server`` resolve their futures on the I/O thread. Syncs and events wait
in an inbox until the game thread calls ``client_sync()`` or ``get_all_ro_by_type()``.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from reverb import _current
from reverb.errors import HandshakeFailed, InvalidState
from reverb.hub import ClientHub
from reverb.proto import messages as m
from reverb.proto.framing import DEFAULT_MAX_FRAME_SIZE
from reverb.proto.session import (
    FRAME_TIMEOUT,
    IDLE_TIMEOUT,
    PING_INTERVAL,
    CloseCode,
    Role,
    Session,
    SessionEvent,
    State,
)
from reverb.replication.types import contract
from reverb.threaded._loop import Conn, IOLoop, Tls
from reverb.transport import ClientEvent

if TYPE_CHECKING:
    from reverb.context import ReverbContext

__all__ = ["Client"]

logger = logging.getLogger("reverb")

MAX_SEND_BUFFER = 1 << 20  # a client only sends calls; a megabyte unsent means a dead link


class Client(IOLoop):
    """A connection to a Reverb server for one context (default: ``ReverbManager``'s).

    ``credentials`` (any JSON value) go to the server's authenticate hook; ``ssl_context``
    (client side) speaks TLS, checking the certificate against ``server_hostname`` (default:
    ``ip``); ``send_contract`` sends this program's types and RPCs so that a server with
    different ones refuses it with an explanation (close 3001).
    """

    def __init__(
        self,
        ip: str = "127.0.0.1",
        port: int = 8080,
        *,
        connect_timeout: float = 5.0,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        frame_timeout: float = FRAME_TIMEOUT,
        ping_interval: float = PING_INTERVAL,
        idle_timeout: float = IDLE_TIMEOUT,
        credentials: Any = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        send_contract: bool = True,
        context: ReverbContext | None = None,
    ) -> None:
        super().__init__(f"reverb-client:{ip}:{port}", max_send_buffer=MAX_SEND_BUFFER)
        self.ip = ip
        self.port = port
        self.connect_timeout = connect_timeout
        self.credentials = credentials
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.send_contract = send_contract
        self.context = context if context is not None else _current.current_context()
        self.hub = ClientHub()
        self._session_options: dict[str, Any] = {
            "max_frame_size": max_frame_size,
            "frame_timeout": frame_timeout,
            "ping_interval": ping_interval,
            "idle_timeout": idle_timeout,
            "handshake_timeout": connect_timeout,
        }
        self._conn: Conn | None = None
        self._handshake_done = threading.Event()

    @property
    def member(self) -> int | None:
        """This connection's membership id, from the server's ``welcome``."""
        return self.hub.member

    @property
    def identity(self) -> Any:
        """Who the server's authenticate hook says this client is (None without one)."""
        return self.hub.identity

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.session.state is State.OPEN

    def connect(self) -> None:
        """Connect and complete the handshake; raises ``HandshakeFailed`` if refused or slow.

        Fires the client's ``connected`` event. Attaches to the context if it has no
        connection yet (so ``ReverbManager.REVERB_CONNECTION = clt`` is optional).
        """
        if self._conn is not None:
            raise InvalidState("already connected; call disconnect() first")
        try:
            sock = socket.create_connection((self.ip, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise HandshakeFailed(CloseCode.ABNORMAL, f"cannot connect: {exc}") from exc
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.hub.reset()
        self._handshake_done.clear()
        session = Session(
            Role.CLIENT,
            time.monotonic(),
            credentials=m.ABSENT if self.credentials is None else self.credentials,
            contract=contract(self.context.types) if self.send_contract else m.ABSENT,
            **self._session_options,
        )
        tls = None
        if self.ssl_context is not None:
            hostname = self.server_hostname or self.ip
            tls = Tls(self.ssl_context, server_side=False, server_hostname=hostname)
        self._conn = Conn(sock, session, tls)
        if self.context.connection is None:
            self.context.connection = self
        self.open_selector()
        with self.lock:
            self.register(self._conn)
        self.start_thread()
        self._handshake_done.wait(self.connect_timeout + 1.0)
        member = self.hub.member
        if member is None:
            closed = self.hub.closed
            self._shutdown()
            code, reason = (closed.code, closed.reason) if closed else (1006, "no welcome in time")
            raise HandshakeFailed(code, reason)
        logger.info("connected to %s:%d as client #%d", self.ip, self.port, member)
        self.context.client_connected(member)

    def disconnect(self) -> None:
        """Send ``close`` 1000, stop the I/O thread and fire ``disconnected``."""
        if self._conn is None:
            return
        self.abort(CloseCode.NORMAL, "client disconnect")
        self._shutdown()
        self.context.client_sync()

    def _shutdown(self) -> None:
        conn = self._conn
        deadline = time.monotonic() + 2.0
        while conn is not None and time.monotonic() < deadline:
            with self.lock:  # bounded wait for the close frame to flush
                if conn.sock not in self.conns:
                    break
            time.sleep(0.005)
        self.stop_thread()
        self._conn = None

    # -- ClientTransport ---------------------------------------------------------------------

    def call(self, uid: int, method: str, args: list[Any]) -> Future[Any]:
        conn = self._conn
        with self.lock:
            session = conn.session if conn is not None else None
            future = self.hub.call(session, uid, method, args, time.monotonic())
            if conn is not None:
                self.mark_dirty(conn)
        self.wake()
        return future

    def abort(self, code: int, reason: str) -> None:
        conn = self._conn
        if conn is None:
            return
        with self.lock:
            conn.session.close(code, reason[:200], time.monotonic())
            self.mark_dirty(conn)
        self.wake()

    def poll(self) -> list[ClientEvent]:
        return super().poll()

    # -- I/O thread --------------------------------------------------------------------------

    def on_accept(self, now: float) -> None:  # pragma: no cover - a client has no listener
        raise AssertionError("a client has no listener")

    def on_event(self, conn: Conn, event: SessionEvent) -> None:
        out = self.hub.on_event(event, self.later)
        if out is not None:
            self.emit(out)
        if self.hub.member is not None or conn.session.closed:
            self._handshake_done.set()
        if conn.session.closed:
            self._running = False
