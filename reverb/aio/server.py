"""``AsyncServer``: the asyncio twin of ``reverb.Server``."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING

from reverb import _current
from reverb.aio._base import AioLoop, SessionProtocol
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
    Session,
    SessionEvent,
)
from reverb.threaded.server import MAX_SEND_BUFFER
from reverb.transport import ServerEvent

if TYPE_CHECKING:
    from reverb.context import ReverbContext

__all__ = ["AsyncServer"]

logger = logging.getLogger("reverb")


class AsyncServer(AioLoop):
    """Same options as ``reverb.Server``; ``start_server``, ``stop_server`` and
    ``server_sync`` are coroutines."""

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
        super().__init__(max_send_buffer=max_send_buffer)
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
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._proto_of: dict[int, SessionProtocol] = {}

    @property
    def port(self) -> int:
        if self._port is None:
            raise InvalidState("the server is not started")
        return self._port

    async def start_server(self) -> None:
        if self._server is not None:
            raise InvalidState("the server is already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SessionProtocol(self),
            self.host,
            self.requested_port,
            backlog=128,
            ssl=self.ssl_context,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        if self.context.connection is None:
            self.context.connection = self
        self.start_timer()
        logger.info("async server listening on %s:%d", self.host, self._port)

    async def stop_server(self, timeout: float = 2.0) -> None:
        if self._server is None:
            return
        self._server.close()
        now = time.monotonic()
        for proto in list(self.protocols):
            if proto.session is not None:
                proto.session.close(CloseCode.GOING_AWAY, "server shutting down", now)
                self.pump(proto)
        await self.wait_closed(timeout)
        await self.stop_timer()
        self._server = None
        if self.context.connection is self:
            self.context.connection = None

    async def server_sync(self) -> None:
        """``ReverbContext.server_sync`` for the event loop: awaits instead of blocking."""
        while (wait := self.context.server_step(time.monotonic())) > 0:
            await self.wait(wait)

    # -- ServerTransport ---------------------------------------------------------------------

    def send(self, members: tuple[int, ...], message: m.Message) -> None:
        for session in self.hub.send(members, message, time.monotonic()):
            self.pump(self._proto_of[session.member])

    def poll(self) -> list[ServerEvent]:
        events = super().poll()
        self.hub.pending.clear()
        return events

    # -- protocol callbacks ------------------------------------------------------------------

    def open_session(self, proto: SessionProtocol, transport: asyncio.Transport) -> Session | None:
        host, port = transport.get_extra_info("peername")[:2]
        if not self.hub.admit(host):
            return None
        session = self.hub.open(host, port, time.monotonic())
        self._proto_of[session.member] = proto
        return session

    def on_event(self, proto: SessionProtocol, event: SessionEvent) -> None:
        assert proto.session is not None
        out = self.hub.on_event(proto.session, event, time.monotonic())
        if out is not None:
            self.emit(out)
        if proto.session.closed:
            self._proto_of.pop(proto.session.member, None)
