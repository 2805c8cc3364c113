"""``AsyncClient``: the asyncio twin of ``reverb.Client``."""

from __future__ import annotations

import asyncio
import ssl
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from reverb import _current
from reverb.aio._base import AioLoop, SessionProtocol
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
)
from reverb.replication.types import contract
from reverb.threaded.client import MAX_SEND_BUFFER
from reverb.transport import ClientEvent

if TYPE_CHECKING:
    from reverb.context import ReverbContext

__all__ = ["AsyncClient"]


class AsyncClient(AioLoop):
    """Same options as ``reverb.Client``; ``connect``, ``disconnect`` and ``client_sync``
    are coroutines. ``compute_server`` returns a ``concurrent.futures.Future``: await it with
    ``asyncio.wrap_future``."""

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
        super().__init__(max_send_buffer=MAX_SEND_BUFFER)
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
        self._proto: SessionProtocol | None = None
        self._handshake_done = asyncio.Event()

    @property
    def member(self) -> int | None:
        return self.hub.member

    @property
    def identity(self) -> Any:
        return self.hub.identity

    async def connect(self) -> None:
        if self._proto is not None:
            raise InvalidState("already connected; call disconnect() first")
        self.hub.reset()
        self._handshake_done.clear()
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: SessionProtocol(self),
                    self.ip,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=(self.server_hostname or self.ip) if self.ssl_context else None,
                ),
                self.connect_timeout,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            raise HandshakeFailed(CloseCode.ABNORMAL, f"cannot connect: {exc}") from exc
        self._proto = proto
        if self.context.connection is None:
            self.context.connection = self
        self.start_timer()
        try:
            await asyncio.wait_for(self._handshake_done.wait(), self.connect_timeout + 1.0)
        except asyncio.TimeoutError:
            pass
        member = self.hub.member
        if member is None:
            closed = self.hub.closed
            await self._shutdown()
            code, reason = (closed.code, closed.reason) if closed else (1006, "no welcome in time")
            raise HandshakeFailed(code, reason)
        self.context.client_connected(member)

    async def disconnect(self) -> None:
        if self._proto is None:
            return
        self.abort(CloseCode.NORMAL, "client disconnect")
        await self._shutdown()
        self.context.client_sync()

    async def _shutdown(self) -> None:
        await self.wait_closed(2.0)
        await self.stop_timer()
        self._proto = None

    async def client_sync(self, timeout: float = 0.0) -> int:
        """``ReverbContext.client_sync`` for the event loop."""
        if timeout > 0:
            await self.wait(timeout)
        return self.context.client_sync()

    # -- ClientTransport ---------------------------------------------------------------------

    def call(self, uid: int, method: str, args: list[Any]) -> Future[Any]:
        proto = self._proto
        future = self.hub.call(
            proto.session if proto else None, uid, method, args, time.monotonic()
        )
        if proto is not None:
            self.pump(proto)
        return future

    def abort(self, code: int, reason: str) -> None:
        proto = self._proto
        if proto is not None and proto.session is not None:
            proto.session.close(code, reason[:200], time.monotonic())
            self.pump(proto)

    def poll(self) -> list[ClientEvent]:
        return super().poll()

    # -- protocol callbacks ------------------------------------------------------------------

    def open_session(self, proto: SessionProtocol, transport: asyncio.Transport) -> Session:
        return Session(
            Role.CLIENT,
            time.monotonic(),
            credentials=m.ABSENT if self.credentials is None else self.credentials,
            contract=contract(self.context.types) if self.send_contract else m.ABSENT,
            **self._session_options,
        )

    def on_event(self, proto: SessionProtocol, event: SessionEvent) -> None:
        out = self.hub.on_event(event, lambda resolve: resolve())
        if out is not None:
            self.emit(out)
        if self.hub.member is not None or (proto.session is not None and proto.session.closed):
            self._handshake_done.set()
