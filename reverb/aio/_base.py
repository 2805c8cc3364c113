"""What the asyncio server and client share: a protocol per connection feeding its session,
an inbox with an event to wait on, and a task that applies the sessions' deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from reverb.proto.session import CloseCode, Session, SessionEvent

__all__ = ["AioLoop", "SessionProtocol"]

logger = logging.getLogger("reverb")

CHECK_INTERVAL = 0.05  # s between timeout checks, as in the threaded layer


class SessionProtocol(asyncio.Protocol):
    """Moves bytes between one transport and one session."""

    def __init__(self, owner: AioLoop) -> None:
        self.owner = owner
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.session = self.owner.open_session(self, transport)
        if self.session is None:  # refused by a connection limit
            transport.abort()
            return
        self.owner.protocols.add(self)
        self.owner.pump(self)

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.receive_data(data, time.monotonic())
            self.owner.pump(self)

    def eof_received(self) -> bool:
        if self.session is not None:
            self.session.receive_eof()
            self.owner.pump(self)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.protocols.discard(self)
        if self.session is not None:
            self.session.abort(CloseCode.ABNORMAL, "connection lost")
            self.owner.pump(self)


class AioLoop:
    """Base of ``AsyncServer`` and ``AsyncClient``."""

    def __init__(self, *, max_send_buffer: int) -> None:
        self.max_send_buffer = max_send_buffer
        self.protocols: set[SessionProtocol] = set()
        self._inbox: list[Any] = []
        self._arrived = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None

    def open_session(self, proto: SessionProtocol, transport: asyncio.Transport) -> Session | None:
        """A session for a new connection, or None to refuse it."""
        raise NotImplementedError

    def on_event(self, proto: SessionProtocol, event: SessionEvent) -> None:
        raise NotImplementedError

    def emit(self, event: Any) -> None:
        self._inbox.append(event)
        self._arrived.set()

    def poll(self) -> list[Any]:
        events, self._inbox = self._inbox, []
        self._arrived.clear()
        return events

    async def wait(self, timeout: float) -> None:
        if not self._inbox:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout)

    def pump(self, proto: SessionProtocol) -> None:
        session, transport = proto.session, proto.transport
        if session is None or transport is None:
            return
        backlog = transport.get_write_buffer_size()  # same rule as the threaded layer's pump
        data = session.data_to_send()
        if data and not transport.is_closing():
            transport.write(data)
        for event in session.events():
            self.on_event(proto, event)
        late = session.data_to_send()  # what the event handlers queued (a close)
        if late and not transport.is_closing():
            transport.write(late)
        if (data or late) and backlog > self.max_send_buffer:
            logger.warning("%s does not read: dropped", session.name)
            session.stats["limit.send_buffer"] += 1
            session.abort(CloseCode.SLOW_CONSUMER, "send buffer over its limit")
            for event in session.events():
                self.on_event(proto, event)
            transport.abort()
        elif session.closed and not transport.is_closing():
            transport.close()  # flushes what is buffered, then closes

    def start_timer(self) -> None:
        self._timer = asyncio.get_running_loop().create_task(self._check_timeouts())

    async def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None

    async def _check_timeouts(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            now = time.monotonic()
            for proto in list(self.protocols):
                if proto.session is not None:
                    proto.session.check_timeouts(now)
                    self.pump(proto)

    async def wait_closed(self, timeout: float) -> None:
        """Wait (bounded) until every connection has gone."""
        deadline = time.monotonic() + timeout
        while self.protocols and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for proto in list(self.protocols):
            if proto.transport is not None:
                proto.transport.abort()
