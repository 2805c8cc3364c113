"""``AsyncServer``: the asyncio twin of ``reverb.Server``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time

from reverb.aio._base import AioInbox, AioLoop, SessionProtocol
from reverb.endpoints import ServerEndpoint
from reverb.errors import CloseCode, InvalidState
from reverb.hub import HOUSEKEEPING_IDLE, HOUSEKEEPING_INTERVAL
from reverb.proto import messages as m
from reverb.proto.session import Session, SessionEvent, State
from reverb.transport import ServerEvent

__all__ = ["AsyncServer"]

logger = logging.getLogger("reverb")


class AsyncServer(ServerEndpoint):
    """The asyncio twin of ``reverb.Server`` (same options: ``ServerEndpoint``);
    ``start_server``, ``stop_server`` and ``server_sync`` are coroutines. Its connections
    are its ``AioLoop``'s, which calls it back as a ``ConnectionHandler``. A call that
    arrives while the game task waits in ``server_sync()`` with nothing queued is answered
    in the protocol callback, no loop iteration later (``inline_calls``)."""

    clock = staticmethod(time.monotonic)  # the endpoint's and the context's time (transport.py)
    _server: asyncio.Server | None = None
    _resume_timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop | None = None  # the loop it serves on, once started

    def _setup_io(self) -> None:
        self._inbox = AioInbox()
        self._io = AioLoop(
            self,
            max_send_buffer=self.max_send_buffer,
            max_total_send_buffer=self.max_total_send_buffer,
            max_send_buffer_per_ip=self.max_send_buffer_per_ip,
        )

    async def start_server(self) -> None:
        if self._server is not None:
            raise InvalidState("the server is already started")
        loop = self.loop = asyncio.get_running_loop()
        io = self._io
        self._server = await loop.create_server(
            lambda: SessionProtocol(io),
            self.host,
            self.requested_port,
            backlog=128,
            ssl=self.ssl_context,
            # §4.10: the handshake deadline covers the TLS handshake too
            ssl_handshake_timeout=self.hub.options.handshake_timeout if self.ssl_context else None,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        io.offload = concurrent.futures.ThreadPoolExecutor(1, f"reverb-decode:{self._port}")
        self.attach()
        io.start_timer()
        self._resume_timer = loop.call_later(HOUSEKEEPING_INTERVAL, self._resume_tick)
        logger.info("async server listening on %s:%d", self.host, self._port)

    async def stop_server(self, timeout: float = 2.0) -> None:
        if self._server is None:
            return
        self._server.close()
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None
        now = time.monotonic()
        io = self._io
        for proto in list(io.protocols):
            if proto.session is not None and not proto.busy:
                proto.session.close(CloseCode.GOING_AWAY, "server shutting down", now)
                io.guarded(proto, io.pump, proto)
        await io.wait_closed(timeout)
        await io.stop_timer()
        if io.offload is not None:
            io.offload.shutdown(wait=True)  # at most one frame being decoded
            io.offload = None
        self._server = None
        self.detach()

    def _resume_tick(self) -> None:
        """§18: expire held memberships; ask "resume" clients to confirm answers."""
        now = time.monotonic()
        wanted = self.hub.next_housekeeping(now)  # None: nothing held, no "resume" client
        self._resume_timer = asyncio.get_running_loop().call_later(
            HOUSEKEEPING_IDLE if wanted is None else wanted - now, self._resume_tick
        )
        if wanted is None:
            return
        events, due = self.hub.housekeeping(now)
        for event in events:
            self._inbox.put(event)
        io = self._io
        for session in due:
            proto = self.by_member.get(session.member)
            if proto is None or proto.busy:
                continue
            self.hub.confirm_ping(session, now)
            io.guarded(proto, io.pump, proto)

    async def server_sync(self) -> None:
        """``ReverbContext.server_sync`` for the event loop: awaits instead of blocking.

        Always yields to the event loop at least once, so a game whose ticks run late still
        lets the loop accept connections and read sockets between ticks: while waiting for
        the tick, else once after it (one loop iteration per tick, not two, on time).
        """
        yielded = False
        while (wait := self.context.server_step(time.monotonic())) > 0:
            yielded = await self._inbox.wait(wait) or yielded
        if not yielded:
            await asyncio.sleep(0)

    async def wait(self, timeout: float) -> None:
        """Until an event arrives or ``timeout`` passes (a coroutine: the context's blocking
        loops refuse this server and say to await ``server_sync()``)."""
        await self._inbox.wait(timeout)

    def close_member(self, member: int, code: int, reason: str) -> bool:
        """Close client ``member``'s connection with ``code``, on the event loop's thread:
        its session sends ``close`` now and the leave is reported as for any other close.
        False when no such client is connected, or while a worker decodes a large frame
        into its session (try again)."""
        proto = self.by_member.get(member)
        session = self.hub.members.get(member)
        if proto is None or session is None or session.state is not State.OPEN or proto.busy:
            return False
        session.close(code, reason, time.monotonic())
        self._io.guarded(proto, self._io.pump, proto)
        return True

    # -- ServerTransport ---------------------------------------------------------------------

    def send(self, members: tuple[int, ...], message: m.Message) -> None:
        """Queue ``message`` for those members; one whose session a worker thread is
        decoding into gets it, in order, once that is done."""
        answer = type(message) is m.RpcResult or type(message) is m.RpcErrorReply
        if answer and len(self.hub.keeper):
            self.hub.remember(members, message, time.monotonic())  # §18.6, dropped or not
        io = self._io
        if answer and len(members) == 1:  # one call's answer to a ready connection: at once
            proto = self.by_member.get(members[0])
            if proto is not None and not (proto.busy or proto.deferred):
                if self.hub.send(members, message, time.monotonic()):
                    try:  # ``io.guarded(proto, io.flush, proto)``, inlined
                        if not io.write_now(proto):
                            io.pump(proto)
                    except Exception:
                        io.failed(proto)
                return
        ready = []
        for member in members:
            proto = self.by_member.get(member)
            if proto is not None and (proto.busy or proto.deferred):
                proto.deferred.append(message)
            else:
                ready.append(member)
        # to the transport at once when nothing waits before it (``io.flush``, inlined: a
        # sync takes this path once per client); else ``pump`` does the bookkeeping
        by_member, write_now = self.by_member, io.write_now
        for session in self.hub.send(tuple(ready), message, time.monotonic()):
            proto = by_member[session.member]
            try:
                if not write_now(proto):
                    io.pump(proto)
            except Exception:
                io.failed(proto)

    def poll(self) -> list[ServerEvent]:
        events = self._inbox.take()
        self.hub.pending.clear()
        return events

    # -- ConnectionHandler: the loop's protocol callbacks --------------------------------------

    def open_session(self, ip: str, port: int, now: float) -> Session | None:
        if not self.hub.admit(ip):
            return None
        return self.hub.open(ip, port, now)

    def on_event(self, proto: SessionProtocol, event: SessionEvent) -> None:
        assert proto.session is not None
        out = self.hub.on_event(proto.session, event, time.monotonic(), proto)
        # the game task suspended in server_sync(), nothing queued: answered now, not a loop
        # iteration later
        if out is not None and not (self._inbox.waiters and self.answer_now(out)):
            self._inbox.put(out)

    def deliver(self, proto: SessionProtocol, message: m.Message, now: float) -> None:
        assert proto.session is not None
        self.hub.send((proto.session.member,), message, now)
