"""What the asyncio server and client share: a protocol per connection feeding its session,
an inbox with an event to wait on, and the sessions' deadlines.

``AsyncServer`` and ``AsyncClient`` each *have* an ``AioLoop``, which calls them back through
``transport.ConnectionHandler`` (``open_session``, ``on_event``, ``deliver``).

Deadlines: each session says when it next has something to do (``Session.next_deadline``);
they are kept in a heap (``hub.Deadlines``, as in the threaded layer) with one
``call_later`` timer for the earliest, so a deadline fires on time however many connections
there are, and receiving bytes never costs more than a comparison (§2.6, §4.6, §9).

Output: the transport is handed at most about ``WINDOW`` bytes at a time (its write-buffer
limits pause us); the rest waits in the connection's ``SendQueue`` as whole frames, which the
send budget counts and a dropped slow reader's ``close`` 1013 can follow (§10.1).

An unexpected exception while serving one connection closes it with 1011 "internal error"
(logged, counted in ``stats["internal_error"]``); the others keep being served (issue 8,
decision 1).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from reverb._memory import TRIM_AFTER, Trimmer
from reverb._sendq import BIG_FRAME, WINDOW, FrameSizer, SendQueue, over_budget
from reverb.errors import CloseCode
from reverb.hub import SHED_REASONS, Deadlines, sheds
from reverb.proto import messages as m
from reverb.proto.session import Session, State
from reverb.transport import ConnectionHandler

__all__ = ["AioInbox", "AioLoop", "SessionProtocol"]

logger = logging.getLogger("reverb")

CLOSE_LINGER = 1.0  # s to flush a close frame to a peer before dropping it anyway
_EPSILON = 0.001  # s past a deadline, so that the session agrees it is due


# One read takes at most this much, into the loop's one buffer (``AioLoop.read_view``).
READ_SIZE = 65536


class SessionProtocol(asyncio.BufferedProtocol):
    """Moves bytes between one transport and one session.

    Reads land in the owner's one buffer (``get_buffer``), shared by its connections since
    a transport fills it and hands it back (``buffer_updated``) before anything else runs,
    and only the bytes read are copied out. A plain ``Protocol`` gets a fresh ``recv`` of
    256 KiB per read, which glibc serves with ``mmap``/``mremap``/``munmap`` (three system
    calls per read, per call on the RPC path) whenever its mmap threshold is still at the
    default 128 KiB."""

    def __init__(self, owner: AioLoop) -> None:
        self.owner = owner
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        self.queue = SendQueue()
        self.paused = False
        self.deadline: float | None = None  # this protocol's entry in the owner's heap
        self.linger: asyncio.TimerHandle | None = None
        self.peer_ip = ""
        self.sizer = FrameSizer()
        self.busy = False  # a worker thread is decoding into the session: hands off
        self.lost = False  # the connection ended while busy: finish once handed back
        self.deferred: deque[m.Message] = deque()  # sent to it while busy

    # -- what the send budget needs ----------------------------------------------------------

    def backlog(self) -> int:
        transport = self.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return self.queue.size + buffered

    def stale(self) -> int:
        return max(0, self.backlog() - self.queue.fresh)

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WINDOW)
        try:
            peer = transport.get_extra_info("peername")
            host, port = (peer[0], peer[1]) if peer else ("", 0)
            self.session = self.owner.handler.open_session(host, port, time.monotonic())
        except Exception:
            logger.exception("opening a session failed")
            transport.abort()
            return
        if self.session is None:  # refused by a connection limit
            transport.abort()
            return
        self.peer_ip = self.session.peer
        self.owner.protocols.add(self)
        self.owner.guarded(self, self.owner.pump, self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.owner.read_view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.owner.read_view[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None:
            return
        owner = self.owner
        if owner.offload is not None and self.sizer.feed(data) > BIG_FRAME:
            owner.guarded(self, self._offload, data)
            return
        try:  # ``owner.guarded(self, self._receive, data)``, inlined: every read takes it
            session.receive_data(data, time.monotonic())
            owner.pump(self)
        except Exception:
            owner.failed(self)

    def _offload(self, data: bytes) -> None:
        """Decode a read completing a large frame on the worker thread: the loop (the game
        and every other connection) keeps running; this one is not read meanwhile."""
        assert self.session is not None and self.transport is not None
        assert self.owner.offload is not None
        self.busy = True
        self.transport.pause_reading()
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(
            self.owner.offload, self.session.receive_data, data, time.monotonic()
        )
        done.add_done_callback(self._decoded)

    def _decoded(self, done: asyncio.Future[None]) -> None:
        self.busy = False
        if done.cancelled() or done.exception() is not None:
            if not done.cancelled():
                exc = done.exception()
                logger.error("internal error", exc_info=exc)
            self.owner.internal_error(self)
        elif self.lost:
            self.connection_lost(None)
            return
        else:
            self.owner.guarded(self, self.owner.pump, self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _receive(self, data: bytes) -> None:
        assert self.session is not None
        self.session.receive_data(data, time.monotonic())
        self.owner.pump(self)

    def eof_received(self) -> bool:
        if self.session is not None:
            self.owner.guarded(self, self._eof)
        return False

    def _eof(self) -> None:
        assert self.session is not None
        self.session.receive_eof()
        self.owner.pump(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.owner.guarded(self, self.owner.pump, self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:  # the worker has the session: finish when it hands it back
            self.lost = True
            return
        self.owner.protocols.discard(self)
        self.owner.freed(self, self.queue.discard())
        self.deadline = None
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None
        if self.session is not None:
            self.session.abort(CloseCode.ABNORMAL, "connection lost")
            self.owner.guarded(self, self.owner.pump, self)


class AioInbox:
    """Events for the game task: the loop's callbacks ``put`` them, the endpoint's
    ``poll()`` takes them all, ``wait`` suspends until one comes. ``waiters``: the tasks
    suspended in ``wait`` (a server answers a call inline while its game task waits)."""

    __slots__ = ("events", "waiters")

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.waiters: list[asyncio.Future[None]] = []  # the tasks in ``wait``

    def __len__(self) -> int:
        return len(self.events)

    def put(self, event: Any) -> None:
        self.events.append(event)
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:  # each waiting task resumes in the loop's next iteration
            _resolve(waiter)

    def take(self) -> list[Any]:
        events, self.events = self.events, []
        return events

    async def wait(self, timeout: float) -> bool:
        """Until something is put or ``timeout`` passes; False when something was there
        already (returned at once, without yielding to the loop). One bare future and one
        timer: an event (an RPC) resumes the waiting game task one loop iteration later,
        not the three that ``wait_for`` on an ``asyncio.Event`` takes."""
        if self.events:
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiters.append(waiter)
        timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if waiter in self.waiters:  # timed out or cancelled: not resolved by ``put``
                self.waiters.remove(waiter)
        return True


class AioLoop:
    """The connections of an ``AsyncServer`` or ``AsyncClient`` (its ``handler``): their
    protocols, output, send budget and deadlines, on the running event loop."""

    def __init__(
        self,
        handler: ConnectionHandler[SessionProtocol],
        *,
        max_send_buffer: int,
        max_total_send_buffer: int | None = None,
        max_send_buffer_per_ip: int | None = None,
    ) -> None:
        self.handler = handler
        self.max_send_buffer = max_send_buffer
        self.max_total_send_buffer = max_total_send_buffer
        self.max_send_buffer_per_ip = max_send_buffer_per_ip
        # a server decodes large frames on this thread (see SessionProtocol._offload)
        self.offload: concurrent.futures.ThreadPoolExecutor | None = None
        self.protocols: set[SessionProtocol] = set()
        self.read_view = memoryview(bytearray(READ_SIZE))  # every connection's reads
        self._deadlines: Deadlines[SessionProtocol] = Deadlines()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._timing = False
        self._backlog = 0  # bytes queued over every connection (transport buffers aside)
        self._backlog_per_ip: Counter[str] = Counter()
        self._budget_scheduled = False
        self._trimmer = Trimmer()
        self._trim_scheduled = False

    # -- connections -------------------------------------------------------------------------

    def guarded(self, proto: SessionProtocol, func: Callable[..., object], *args: Any) -> None:
        """``func(*args)``; an exception closes only ``proto``, with 1011 (decision 1)."""
        try:
            func(*args)
        except Exception:
            self.failed(proto)

    def failed(self, proto: SessionProtocol) -> None:
        """In an ``except`` block: log the exception, close ``proto`` with 1011."""
        name = proto.session.name if proto.session is not None else "a connection"
        logger.exception("%s: internal error", name)
        self.internal_error(proto)

    def internal_error(self, proto: SessionProtocol) -> None:
        session, transport = proto.session, proto.transport
        if session is not None:
            session.stats["internal_error"] += 1
        try:
            if session is not None and not session.closed:
                session.close(CloseCode.INTERNAL_ERROR, "internal error", time.monotonic())
            self.pump(proto)
        except Exception:  # failing again: give up on this connection, never on the loop
            logger.exception("could not close a failed connection cleanly")
            if transport is not None:
                transport.abort()

    def pump(self, proto: SessionProtocol) -> None:
        """Move the session's output towards the transport and its events to the handler.

        The same slow-consumer rule as the threaded layer (``hub.sheds``): a peer that does
        not read is dropped with ``close`` 1013, sent after the frame in progress (§10.1)."""
        session, transport = proto.session, proto.transport
        if session is None or transport is None or proto.busy:
            return  # a busy one is pumped when the worker hands it back
        if proto.deferred:
            now = time.monotonic()
            while proto.deferred and session.state is State.OPEN:
                self.handler.deliver(proto, proto.deferred.popleft(), now)
            proto.deferred.clear()
        backlog = proto.queue.size + transport.get_write_buffer_size()  # proto.backlog()
        data = self._take(proto)
        events = session.events()
        late = False
        if events:
            on_event = self.handler.on_event
            for event in events:
                on_event(proto, event)
            late = self._take(proto)  # what the handler queued (a close)
        if (data or late) and sheds(backlog, self.max_send_buffer, session):
            logger.warning("%s does not read; %d bytes unsent", session.name, backlog)
            self.shed(proto, "send_buffer")
            return
        if proto.queue:
            self._write(proto)
        if session.closed:
            if proto not in self.protocols:
                return  # the connection is gone already
            if not proto.queue and not transport.is_closing():
                transport.close()  # flushes what the transport holds, then closes
            if proto.linger is None:  # the peer may never take it: abort after a while
                proto.linger = asyncio.get_running_loop().call_later(CLOSE_LINGER, transport.abort)
        else:
            self.schedule(proto)

    def write_now(self, proto: SessionProtocol) -> bool:
        """Hand the session's output straight to the transport when nothing waits before it
        (no queued frames, not paused, not busy, nothing deferred, the session open, the send
        buffer within its limit): what ``pump`` would do, without its bookkeeping, for
        RPC answers and syncs (more than ``WINDOW`` bytes still go through the queue).
        False: nothing was done, ``pump`` must run (it also handles the rest)."""
        session, transport = proto.session, proto.transport
        if (
            session is None
            or transport is None
            or proto.busy
            or proto.deferred
            or proto.queue
            or proto.paused
            or session.state is not State.OPEN
            or transport.is_closing()
            or transport.get_write_buffer_size() > self.max_send_buffer
        ):
            return False
        data = session.data_to_send()
        if len(data) > WINDOW:  # more than one socket's worth: paced from the queue
            proto.queue.push(data, time.monotonic())
            self.account(proto, len(data))
            self._write(proto)
        elif data:
            proto.queue.written(len(data), time.monotonic())
            transport.write(data)  # may pause us (high-water mark: WINDOW)
        return True

    def flush(self, proto: SessionProtocol) -> None:
        """``write_now``, else ``pump``."""
        if not self.write_now(proto):
            self.pump(proto)

    def _take(self, proto: SessionProtocol) -> bool:
        assert proto.session is not None and proto.transport is not None
        data = proto.session.data_to_send()
        if data and not proto.transport.is_closing():
            proto.queue.push(data, time.monotonic())
            self.account(proto, len(data))
        return bool(data)

    def _write(self, proto: SessionProtocol) -> None:
        transport = proto.transport
        assert transport is not None and proto.session is not None
        closing = proto.session.closed  # the rest, a close frame last, goes out at once
        while proto.queue and (closing or not proto.paused) and not transport.is_closing():
            piece = proto.queue.take()
            self.account(proto, -len(piece))
            transport.write(piece)  # may pause us (high-water mark: WINDOW)

    def shed(self, proto: SessionProtocol, limit: str) -> None:
        """Drop a peer that does not read: discard every frame not yet handed to the
        transport, queue ``close`` 1013, flush for at most ``CLOSE_LINGER``."""
        session, transport = proto.session, proto.transport
        assert session is not None and transport is not None
        session.data_to_send()  # never begun: discarded
        self.freed(proto, proto.queue.discard())
        session.limit_hit(limit, CloseCode.SLOW_CONSUMER, SHED_REASONS[limit], time.monotonic())
        self.pump(proto)

    # -- the send budget ---------------------------------------------------------------------

    def freed(self, proto: SessionProtocol, discarded: int) -> None:
        """A dropped connection's queue was discarded: account for it, and give the memory
        back to the system soon (at most once a second)."""
        self.account(proto, -discarded)
        self._trimmer.freed += discarded
        if self._trimmer.freed >= TRIM_AFTER and not self._trim_scheduled:
            self._trim_scheduled = True
            asyncio.get_running_loop().call_later(0.1, self._trim)

    def _trim(self) -> None:
        self._trim_scheduled = False
        if not self._trimmer.maybe_trim() and self._trimmer.freed >= TRIM_AFTER:
            self._trim_scheduled = True
            asyncio.get_running_loop().call_later(1.0, self._trim)

    def account(self, proto: SessionProtocol, delta: int) -> None:
        if not delta:
            return
        self._backlog += delta
        ip = proto.peer_ip
        self._backlog_per_ip[ip] += delta
        if self._backlog_per_ip[ip] <= 0:
            del self._backlog_per_ip[ip]
        over = (
            self.max_total_send_buffer is not None and self._backlog > self.max_total_send_buffer
        ) or (
            self.max_send_buffer_per_ip is not None
            and self._backlog_per_ip[ip] > self.max_send_buffer_per_ip
        )
        if delta > 0 and over and not self._budget_scheduled:
            self._budget_scheduled = True
            asyncio.get_running_loop().call_soon(self._enforce_budget)

    def _enforce_budget(self) -> None:
        self._budget_scheduled = False
        live = [
            p
            for p in self.protocols
            if p.session is not None and not p.session.closed and not p.busy
        ]
        for victim, limit in over_budget(
            live, self.max_total_send_buffer, self.max_send_buffer_per_ip
        ):
            assert isinstance(victim, SessionProtocol) and victim.session is not None
            logger.warning(
                "%s does not read; %d bytes unsent: over the %s budget",
                victim.session.name,
                victim.backlog(),
                "server's" if limit == "total_send_buffer" else "address's",
            )
            self.guarded(victim, self.shed, victim, limit)

    # -- deadlines ---------------------------------------------------------------------------

    def schedule(self, proto: SessionProtocol) -> None:
        """Make sure the heap holds an entry no later than the session's next deadline."""
        session = proto.session
        if not self._timing or session is None:
            return
        when = session.next_deadline()
        if self._deadlines.schedule(proto, when) and when is not None and when < self._timer_at:
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        delay = max(0.0, when + _EPSILON - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        now = time.monotonic()
        for proto in self._deadlines.due(now):
            if proto in self.protocols:
                self.guarded(proto, self._due, proto, now)
        next_at = self._deadlines.next_at()
        if next_at is not None:
            self._arm(next_at)

    def _due(self, proto: SessionProtocol, now: float) -> None:
        assert proto.session is not None
        if proto.busy:
            return  # re-scheduled by the pump once the worker hands it back
        proto.session.check_timeouts(now)
        self.pump(proto)  # re-schedules the session while it is open

    def start_timer(self) -> None:
        self._timing = True
        for proto in list(self.protocols):
            self.schedule(proto)

    async def stop_timer(self) -> None:
        self._timing = False
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, float("inf")
        self._deadlines.clear()

    async def wait_closed(self, timeout: float) -> None:
        """Wait (bounded) until every connection has gone."""
        deadline = time.monotonic() + timeout
        while self.protocols and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for proto in list(self.protocols):
            if proto.transport is not None:
                proto.transport.abort()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
