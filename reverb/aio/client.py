"""``AsyncClient``: the asyncio twin of ``reverb.Client``."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future
from typing import Any

from reverb.aio._base import AioLoop, SessionProtocol
from reverb.endpoints import MAX_UNREAD, UNREAD_REASON, ClientEndpoint
from reverb.errors import HandshakeFailed, InvalidState
from reverb.proto.session import CloseCode, Session, SessionEvent
from reverb.transport import ClientEvent

__all__ = ["AsyncClient"]


class AsyncClient(ClientEndpoint, AioLoop):
    """The asyncio twin of ``reverb.Client`` (same options: ``ClientEndpoint``); ``connect``,
    ``disconnect`` and ``client_sync`` are coroutines. ``compute_server`` returns a
    ``concurrent.futures.Future``: await it with ``asyncio.wrap_future``."""

    _proto: SessionProtocol | None = None
    _handshake_done: asyncio.Event | None = None  # a fresh one at each connect()

    async def connect(self) -> None:
        if self._proto is not None:
            raise InvalidState("already connected; call disconnect() first")
        handshake_done = self._handshake_done = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: SessionProtocol(self),
                    self.ip,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=self.tls_hostname,
                ),
                self.connect_timeout,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            raise HandshakeFailed(CloseCode.ABNORMAL, f"cannot connect: {exc}") from exc
        self._proto = proto
        self.start_timer()
        try:
            await asyncio.wait_for(handshake_done.wait(), self.connect_timeout + 1.0)
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
        return self.new_session()

    def on_event(self, proto: SessionProtocol, event: SessionEvent) -> None:
        out = self.hub.on_event(event, lambda resolve: resolve())
        if out is not None:
            self.emit(out)
            session = proto.session
            if len(self._inbox) > MAX_UNREAD and session is not None and not session.closed:
                session.limit_hit("unread", CloseCode.POLICY, UNREAD_REASON, time.monotonic())
        done = self.hub.member is not None or (proto.session is not None and proto.session.closed)
        if done and self._handshake_done is not None:
            self._handshake_done.set()
