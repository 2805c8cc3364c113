"""``AsyncClient``: the asyncio twin of ``reverb.Client``."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import Future
from typing import Any

from reverb._future import LightFuture
from reverb.aio._base import AioInbox, AioLoop, SessionProtocol
from reverb.endpoints import ClientEndpoint
from reverb.errors import CloseCode, HandshakeFailed, InvalidState, RoomTimeout
from reverb.proto import messages as m
from reverb.proto.session import Session, SessionEvent
from reverb.reconnect import ReconnectState
from reverb.stats import ConnectionStats
from reverb.transport import ClientEvent

__all__ = ["AsyncClient", "CallFuture"]


# concurrent.futures' states of a done future
_DONE = frozenset({"CANCELLED", "CANCELLED_AND_NOTIFIED", "FINISHED"})


class CallFuture(LightFuture[Any]):
    """What ``compute_server`` returns on an ``AsyncClient``: ``await`` it in the event loop.

    It is a ``concurrent.futures.Future`` (``done()``, callbacks and ``result()`` from another
    thread work as usual), resolved by the client's loop; its condition is made only if a
    thread needs one (``LightFuture``). Blocking on it from that loop's own thread could
    never end, since the loop would be blocked: ``result()`` and ``exception()`` there raise
    ``InvalidState`` while it is pending, instead of deadlocking.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop

    def __await__(self) -> Generator[Any, None, Any]:
        """Wait in the event loop. The client resolves this future on its loop, so the
        awaiting task is woken directly from there, without ``wrap_future``'s thread-safe
        relay (a self-pipe write and an extra loop iteration per call). Cancelling the
        awaiting task cancels the call: its late reply is then dropped."""
        if self._state not in _DONE:  # read unlocked: a call resolved meanwhile is seen by
            # add_done_callback, which runs the callback at once on a done future
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.add_done_callback(functools.partial(_wake, waiter, threading.get_ident()))
            try:
                yield from waiter
            except asyncio.CancelledError:
                self.cancel()
                raise
        return LightFuture.result(self)  # done: nothing to refuse, nothing to wait for

    def _refuse_blocking(self) -> None:
        if self.done():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self._loop:
            raise InvalidState(
                "this call is answered by the event loop you would block: use "
                "`await obj.compute_server(...)` instead of .result()"
            )

    def result(self, timeout: float | None = None) -> Any:
        self._refuse_blocking()
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._refuse_blocking()
        return super().exception(timeout)


class AsyncClient(ClientEndpoint):
    """The asyncio twin of ``reverb.Client`` (same options: ``ClientEndpoint``); ``connect``,
    ``disconnect`` and ``client_sync`` are coroutines. ``compute_server`` returns a
    ``CallFuture``: ``value = await obj.compute_server(obj.move, 1)``. Its connection is its
    ``AioLoop``'s, which calls it back as a ``ConnectionHandler``."""

    clock = staticmethod(time.monotonic)  # the endpoint's and the context's time (transport.py)
    _proto: SessionProtocol | None = None
    _loop: asyncio.AbstractEventLoop | None = None  # the loop of the last connect()
    _handshake_done: asyncio.Event | None = None  # a fresh one at each connect()
    _reconnect_task: asyncio.Task[None] | None = None  # §18: reconnecting after a drop

    def _setup_io(self) -> None:
        self._inbox = AioInbox()
        self._io = AioLoop(self, max_send_buffer=self.max_send_buffer)

    @property
    def stats(self) -> ConnectionStats:
        """``Client.stats``: this connection's counters (read on the event loop's thread)."""
        proto = self._proto
        return self.connection_stats(proto.backlog() if proto is not None else 0)

    async def connect(self) -> None:
        """``Client.connect`` for the event loop (side, reconnecting: the same rules)."""
        await self._stop_reconnecting()
        old = self._proto
        self.before_connect(old is not None and not (old.session is None or old.session.closed))
        if old is not None:
            await self._shutdown()
            self.after_close()
        handshake_done = self._handshake_done = asyncio.Event()
        loop = self._loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: SessionProtocol(self._io),
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
        self._io.start_timer()
        try:
            await asyncio.wait_for(handshake_done.wait(), self.connect_timeout + 1.0)
        except asyncio.TimeoutError:
            pass
        failure = self.hub.handshake_failure()
        if failure is not None:
            await self._shutdown()
            raise failure
        member = self.hub.member
        assert member is not None
        self.context.client_connected(member)

    async def disconnect(self) -> None:
        if self._proto is None:
            return
        await self._stop_reconnecting()
        rc = self.hub.reconnector
        if rc is not None and rc.state is ReconnectState.CONNECTED:
            rc.close()  # a consented end: no reconnection
        self.abort(CloseCode.NORMAL, "client disconnect")
        await self._shutdown()
        self.context.client_sync()

    async def _shutdown(self) -> None:
        await self._io.wait_closed(2.0)
        await self._io.stop_timer()
        self._proto = None

    # -- reconnection (§18) ------------------------------------------------------------------

    async def _stop_reconnecting(self) -> None:
        task = self._reconnect_task
        if task is None:
            return
        self._reconnect_task = None
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        proto = self._proto
        if proto is not None and proto.session is not None and not proto.session.closed:
            self.abort(CloseCode.NORMAL, "client disconnect")
        for event in self.hub.give_up(CloseCode.NORMAL, "client disconnect"):
            self._inbox.put(event)

    async def _reconnect(self) -> None:
        """Back off, then try, until resumed or given up; the game task never waits for it
        (calls made meanwhile are queued)."""
        try:
            while True:
                rc = self.hub.reconnector
                if rc is None or rc.state is not ReconnectState.WAITING:
                    return
                now = time.monotonic()
                events = rc.poll(now)
                if not events:
                    await asyncio.sleep(max(rc.next_try - now, 0.001))
                    continue
                for event in events:
                    self._inbox.put(event)
                await self._attempt()
        except asyncio.CancelledError:
            raise
        except Exception:  # pragma: no cover - a bug; logged so it is never silent
            logging.getLogger("reverb").exception("reconnecting failed")

    async def _attempt(self) -> None:
        done = self._handshake_done = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: SessionProtocol(self._io),
                    self.ip,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=self.tls_hostname,
                ),
                self.connect_timeout,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            for event in self.hub.attempt_failed(time.monotonic(), f"cannot connect: {exc}"):
                self._inbox.put(event)
            return
        self._proto = proto
        try:  # the session's own handshake deadline ends a silent attempt
            await asyncio.wait_for(done.wait(), self.connect_timeout + 1.0)
        except asyncio.TimeoutError:
            pass

    async def client_sync(self, timeout: float = 0.0) -> int:
        """``ReverbContext.client_sync`` for the event loop."""
        if timeout > 0:
            await self._inbox.wait(timeout)
        return self.context.client_sync()

    async def wait(self, timeout: float) -> None:
        """Until an event arrives or ``timeout`` passes (a coroutine, as ``AsyncServer``'s)."""
        await self._inbox.wait(timeout)

    # -- ClientTransport ---------------------------------------------------------------------

    def call(self, uid: int, method: str, args: list[Any]) -> Future[Any]:
        proto = self._proto
        future = CallFuture(self._loop if self._loop is not None else asyncio.get_event_loop())
        session = proto.session if proto else None
        self.hub.call(session, uid, method, args, time.monotonic(), future)
        if proto is not None:
            self._io.flush(proto)  # written to the transport now, in this loop iteration
        return future

    def _room_call(
        self, build: Callable[[int], m.Message], timeout: float, finish: Callable[[Any], Any]
    ) -> Any:
        """Send a room request (§17.5) now; the awaitable waits for its answer, at most
        ``timeout``."""
        proto = self._proto
        future = CallFuture(self._loop if self._loop is not None else asyncio.get_event_loop())
        session = proto.session if proto else None
        self.hub.room_request(session, build, time.monotonic(), future)
        if proto is not None:
            self._io.pump(proto)

        async def answer() -> Any:
            try:
                reply = await asyncio.wait_for(_awaited(future), timeout)
            except asyncio.TimeoutError:
                raise RoomTimeout(f"no answer to the room request within {timeout} s") from None
            return finish(reply)

        return answer()

    def send_message(self, name: str, data: Any = None) -> None:
        """Send a named message to the server (§14); raises as
        ``ReverbContext.send_message``."""
        proto = self._proto
        session = proto.session if proto else None
        self.hub.send_message(session, name, data, time.monotonic())
        if proto is not None:
            self._io.pump(proto)

    def abort(self, code: int, reason: str) -> None:
        proto = self._proto
        if proto is not None and proto.session is not None:
            proto.session.close(code, reason[:200], time.monotonic())
            self._io.pump(proto)

    def poll(self) -> list[ClientEvent]:
        return self._inbox.take()

    # -- ConnectionHandler: the loop's protocol callbacks --------------------------------------

    def open_session(self, ip: str, port: int, now: float) -> Session:
        return self.new_session(now, resume=self.hub.resuming)

    def on_event(self, proto: SessionProtocol, event: SessionEvent) -> None:
        inbox = self._inbox
        step = self.hub.step(proto.session, event, time.monotonic(), len(inbox.events))
        if step is None:
            return  # e.g. a call's result: its future resolved here, nothing for the game
        for out in step.events:
            inbox.put(out)
        if step.reconnect:
            task = self._reconnect_task
            if task is None or task.done():  # §18: after a drop
                self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())
        if step.settled and self._handshake_done is not None:
            self._handshake_done.set()

    def deliver(self, proto: SessionProtocol, message: m.Message, now: float) -> None:
        raise AssertionError("a client never defers what it sends")  # pragma: no cover


async def _awaited(future: CallFuture) -> Any:
    return await future


def _wake(waiter: asyncio.Future[None], thread: int, call: Future[Any]) -> None:
    """Resume the task awaiting ``call`` (it awaited on ``thread``, running ``waiter``'s
    loop): at once on that thread (the usual case: the client resolves calls there), else
    through ``call_soon_threadsafe``. The thread is compared, not the running loop, which
    ``asyncio.get_running_loop`` finds at the cost of a system call (``getpid``)."""
    loop = waiter.get_loop()
    if loop.is_closed():
        return
    if threading.get_ident() == thread:
        _resolve(waiter)
    else:
        loop.call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
