"""``Server``: accepts clients on a background I/O thread; the game thread drives it through
``ReverbManager.server_sync()`` (or ``ReverbContext.server_sync()``)."""

from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING, Any

from reverb import _current
from reverb.errors import InvalidState, LocalProtocolError
from reverb.proto import messages as m
from reverb.proto.framing import DEFAULT_MAX_FRAME_SIZE
from reverb.proto.session import (
    FRAME_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    IDLE_TIMEOUT,
    PING_INTERVAL,
    CloseCode,
    Closed,
    Opened,
    Received,
    Role,
    Session,
    SessionEvent,
    State,
)
from reverb.threaded._loop import Conn, IOLoop
from reverb.transport import PeerClosed, PeerMessage, PeerOpened, ServerEvent

if TYPE_CHECKING:
    from reverb.context import ReverbContext

__all__ = ["Server"]

logger = logging.getLogger("reverb")

MAX_SEND_BUFFER = 8 << 20  # §11: seconds of full-rate syncs for a big world; a stalled reader
# is dropped long before it costs real memory
MAX_PENDING_CALLS = 1024  # §11: calls queued for the game loop per connection
MAX_CONNECTIONS = 1024  # file descriptors are finite; a game needing more shards its servers


class Server(IOLoop):
    """A TCP server for one context (default: ``ReverbManager``'s).

    ``Server(port=0)`` binds a free port; read it back from ``server.port``. The default host
    is ``127.0.0.1``: pass ``host="0.0.0.0"`` to accept players from other machines.
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
        context: ReverbContext | None = None,
    ) -> None:
        super().__init__(f"reverb-server:{port}", max_send_buffer=max_send_buffer)
        if tick_rate <= 0:
            raise ValueError("tick_rate must be positive")
        self.host = host
        self.requested_port = port
        self.tick_rate = tick_rate
        self.context = context if context is not None else _current.current_context()
        self._session_options: dict[str, Any] = {
            "tick_rate": tick_rate,
            "max_frame_size": max_frame_size,
            "handshake_timeout": handshake_timeout,
            "frame_timeout": frame_timeout,
            "ping_interval": ping_interval,
            "idle_timeout": idle_timeout,
        }
        self.max_pending_calls = max_pending_calls
        self.max_connections = max_connections
        self._listener: socket.socket | None = None
        self._port: int | None = None
        self._members: dict[int, Conn] = {}
        self._pending: dict[int, int] = {}
        self._next_member = 1
        self.stats = {"accepted": 0, "refused": 0, "bytes_sent": 0, "bytes_received": 0}

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
            return sorted(self._members)

    def start_server(self) -> None:
        """Bind, listen and start the I/O thread. Attaches to the context if it has no
        connection yet (so ``ReverbManager.REVERB_CONNECTION = serv`` is optional)."""
        if self._listener is not None:
            raise InvalidState("the server is already started")
        listener = socket.create_server((self.host, self.requested_port), backlog=128)
        listener.setblocking(False)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self.name = f"reverb-server:{self.port}"
        self.open_selector()
        self.register_listener(listener)
        if self.context.connection is None:
            self.context.connection = self
        self.start_thread()
        logger.info("server listening on %s:%d", self.host, self.port)

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
            time.sleep(0.01)  # bounded: waits for the I/O thread to flush the close frames
        self.stop_thread()
        if self.context.connection is self:
            self.context.connection = None
        self._listener = None
        logger.info("server on port %d stopped", self.port)

    def on_stopped(self) -> None:
        if self._listener is not None:
            self._listener.close()

    # -- ServerTransport ---------------------------------------------------------------------

    def send(self, members: tuple[int, ...], message: m.Message) -> None:
        encoded: dict[int, list[bytes]] = {}
        now = time.monotonic()
        with self.lock:
            for member in members:
                conn = self._members.get(member)
                if conn is None or conn.session.state is not State.OPEN:
                    continue
                limit = conn.session.peer_max_frame
                if limit not in encoded:
                    encoded[limit] = self._encode(message, limit)
                for body in encoded[limit]:
                    conn.session.send_encoded(message.TYPE, body, now)
                self.mark_dirty(conn)
        self.wake()

    @staticmethod
    def _encode(message: m.Message, limit: int) -> list[bytes]:
        if isinstance(message, m.Sync):
            return m.encode_sync(message, limit)
        body = m.encode(message)
        if len(body) > limit and isinstance(message, m.RpcResult):
            logger.error("rpc result of %d bytes exceeds the client's frame limit", len(body))
            error = m.RpcErrorReply(
                id=message.id, code="bad_return", message="the return value is too large"
            )
            return [m.encode(error)]
        if len(body) > limit:  # pragma: no cover - every other message is small
            raise LocalProtocolError(f"{message.TYPE} exceeds the frame limit")
        return [body]

    def on_polled(self) -> None:
        self._pending.clear()

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
            if len(self.conns) >= self.max_connections:
                self.stats["refused"] += 1
                logger.warning("%s: refusing %s: %d connections", self.name, addr, len(self.conns))
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            member = self._next_member
            self._next_member += 1
            self.stats["accepted"] += 1
            session = Session(Role.SERVER, now, member=member, **self._session_options)
            session.name = f"client #{member} ({addr[0]}:{addr[1]})"
            self.register(Conn(sock, session))
            logger.debug("%s: accepted %s", self.name, session.name)

    def on_event(self, conn: Conn, event: SessionEvent) -> None:
        member = conn.session.member
        if isinstance(event, Received):
            if isinstance(event.message, m.Rpc):
                self._queue_call(conn, member, event.message)
        elif isinstance(event, Opened):
            conn.opened = True
            self._members[member] = conn
            logger.info("%s: %s connected", self.name, conn.session.name)
            self.emit(PeerOpened(member))
        elif isinstance(event, Closed):
            self.stats["bytes_sent"] += conn.session.bytes_sent
            self.stats["bytes_received"] += conn.session.bytes_received
            if conn.opened:
                self._members.pop(member, None)
                logger.info(
                    "%s: %s disconnected (%d) %s",
                    self.name,
                    conn.session.name,
                    event.code,
                    event.reason,
                )
                self.emit(PeerClosed(member, event.code, event.reason))

    def _queue_call(self, conn: Conn, member: int, call: m.Rpc) -> None:
        with self._inbox_cond:
            pending = self._pending.get(member, 0)
            if pending < self.max_pending_calls:
                self._pending[member] = pending + 1
                self._inbox.append(PeerMessage(member, call))
                self._inbox_cond.notify_all()
                return
        logger.warning("%s: %s has %d calls pending", self.name, conn.session.name, pending)
        reply = m.RpcErrorReply(id=call.id, code="overloaded", message="too many calls pending")
        conn.session.send(reply, time.monotonic())

    def poll(self) -> list[ServerEvent]:  # narrows IOLoop.poll for the ServerTransport protocol
        return super().poll()
