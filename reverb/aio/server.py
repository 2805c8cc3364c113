"""``AsyncServer``: the asyncio twin of ``reverb.Server``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time

from reverb.aio._base import AioLoop, SessionProtocol
from reverb.endpoints import ServerEndpoint
from reverb.errors import CloseCode, InvalidState
from reverb.proto import messages as m
from reverb.proto.session import Opened, Session, SessionEvent
from reverb.transport import PeerMessage, ServerEvent

__all__ = ["AsyncServer"]

logger = logging.getLogger("reverb")

RESUME_CHECK = 0.25  # s between expiry checks of held memberships (§18.5)


class AsyncServer(ServerEndpoint, AioLoop):
    """The asyncio twin of ``reverb.Server`` (same options: ``ServerEndpoint``);
    ``start_server``, ``stop_server`` and ``server_sync`` are coroutines."""

    _server: asyncio.Server | None = None
    _resume_timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop | None = None  # the loop it serves on, once started
    # A call that arrives while the game task waits in server_sync() with nothing queued is
    # answered in the protocol callback, no loop iteration later. False: every call runs
    # when the game task resumes (guide §7).
    inline_calls = True

    async def start_server(self) -> None:
        if self._server is not None:
            raise InvalidState("the server is already started")
        loop = self.loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SessionProtocol(self),
            self.host,
            self.requested_port,
            backlog=128,
            ssl=self.ssl_context,
            # §4.10: the handshake deadline covers the TLS handshake too
            ssl_handshake_timeout=self.hub.options.handshake_timeout if self.ssl_context else None,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self.offload = concurrent.futures.ThreadPoolExecutor(1, f"reverb-decode:{self._port}")
        self.attach()
        self.start_timer()
        self._resume_timer = loop.call_later(RESUME_CHECK, self._resume_tick)
        logger.info("async server listening on %s:%d", self.host, self._port)

    async def stop_server(self, timeout: float = 2.0) -> None:
        if self._server is None:
            return
        self._server.close()
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None
        now = time.monotonic()
        for proto in list(self.protocols):
            if proto.session is not None and not proto.busy:
                proto.session.close(CloseCode.GOING_AWAY, "server shutting down", now)
                self.guarded(proto, self.pump, proto)
        await self.wait_closed(timeout)
        await self.stop_timer()
        if self.offload is not None:
            self.offload.shutdown(wait=True)  # at most one frame being decoded
            self.offload = None
        self._server = None
        self.detach()

    def _resume_tick(self) -> None:
        """§18: expire held memberships; ask "resume" clients to confirm answers."""
        self._resume_timer = asyncio.get_running_loop().call_later(RESUME_CHECK, self._resume_tick)
        if not len(self.hub.keeper):
            return
        now = time.monotonic()
        events, due = self.hub.housekeeping(now)
        for event in events:
            self.emit(event)
        for session in due:
            proto = self.by_member.get(session.member)
            if proto is None or proto.busy:
                continue
            self.hub.confirm_ping(session, now)
            self.guarded(proto, self.pump, proto)

    async def server_sync(self) -> None:
        """``ReverbContext.server_sync`` for the event loop: awaits instead of blocking.

        Always yields to the event loop at least once, so a game whose ticks run late still
        lets the loop accept connections and read sockets between ticks.
        """
        while (wait := self.context.server_step(time.monotonic())) > 0:
            await self.wait(wait)
        await asyncio.sleep(0)

    # -- ServerTransport ---------------------------------------------------------------------

    def send(self, members: tuple[int, ...], message: m.Message) -> None:
        """Queue ``message`` for those members; one whose session a worker thread is
        decoding into gets it, in order, once that is done."""
        answer = type(message) is m.RpcResult or type(message) is m.RpcErrorReply
        if answer and len(self.hub.keeper):
            self.hub.remember(members, message, time.monotonic())  # §18.6, dropped or not
        if answer and len(members) == 1:  # one call's answer to a ready connection: at once
            proto = self.by_member.get(members[0])
            if proto is not None and not (proto.busy or proto.deferred):
                if self.hub.send(members, message, time.monotonic()):
                    try:  # ``self.guarded(proto, self.flush, proto)``, inlined
                        if not self.write_now(proto):
                            self.pump(proto)
                    except Exception:
                        self.failed(proto)
                return
        ready = []
        for member in members:
            proto = self.by_member.get(member)
            if proto is not None and (proto.busy or proto.deferred):
                proto.deferred.append(message)
            else:
                ready.append(member)
        # an answer goes to the transport at once when nothing waits before it
        flush = self.flush if answer else self.pump
        for session in self.hub.send(tuple(ready), message, time.monotonic()):
            proto = self.by_member[session.member]
            self.guarded(proto, flush, proto)

    def deliver(self, proto: SessionProtocol, message: m.Message) -> None:
        assert proto.session is not None
        self.hub.send((proto.session.member,), message, time.monotonic())

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
        self.by_member[session.member] = proto
        return session

    def on_event(self, proto: SessionProtocol, event: SessionEvent) -> None:
        assert proto.session is not None
        if isinstance(event, Opened) and event.resumed:  # §18.4: keyed by the resumed id
            self.by_member.pop(event.replaced, None)
            self.by_member[event.member] = proto
        out = self.hub.on_event(proto.session, event, time.monotonic())
        if out is None:
            pass
        elif (
            self._waiters  # the game task is suspended in server_sync(): nothing queued
            and self.inline_calls
            and isinstance(out, PeerMessage)
            and isinstance(out.message, m.Rpc)
            and self.context.connection is self
        ):
            self.hub.pending.pop(out.member, None)
            self.context.answer(out.member, out.message)  # now, not a loop iteration later
        else:
            self.emit(out)
        if proto.session.closed:
            self.by_member.pop(proto.session.member, None)
