"""``Server``: accepts clients on a background I/O thread; the game thread drives it through
``ReverbManager.server_sync()`` (or ``ReverbContext.server_sync()``)."""

from __future__ import annotations

import logging
import socket
import time

from reverb.endpoints import ServerEndpoint
from reverb.errors import CloseCode, InvalidState
from reverb.proto import messages as m
from reverb.proto.session import Opened, SessionEvent
from reverb.stats import ConnectionStats
from reverb.threaded._loop import Conn, IOLoop, Tls
from reverb.transport import PeerMessage, ServerEvent

__all__ = ["Server"]

logger = logging.getLogger("reverb")


class Server(ServerEndpoint, IOLoop):
    """The blocking server: one background thread serves every connection with a selector.
    Options: ``ServerEndpoint``."""

    _listener: socket.socket | None = None
    decode_unlocked = True  # a big frame's decode never holds up the game thread
    # A call that arrives while the game thread waits in server_sync() with nothing queued
    # runs on the I/O thread, the game thread held parked meanwhile: no hand-off, the reply
    # leaves at once. False: every call runs on the game thread (guide §7).
    inline_calls = True
    _parked_until = 0.0  # while the game thread waits in server_sync(): until when

    def traffic(self) -> tuple[int, int]:
        """Bytes (sent, received) since ``start_server()``, live connections included."""
        with self.lock:
            return self.hub.traffic()

    def client_stats(self, member: int) -> ConnectionStats | None:
        """``ServerEndpoint.client_stats``, read under the server's lock (any thread)."""
        with self.lock:
            return super().client_stats(member)

    @property
    def members(self) -> list[int]:
        """Membership ids of the clients connected now."""
        with self.lock:
            return sorted(self.hub.members)

    def start_server(self) -> None:
        """Bind, listen and start the I/O thread. Attaches to the context if it has no
        connection yet (so ``ReverbManager.REVERB_CONNECTION = serv`` is optional)."""
        if self._listener is not None:
            raise InvalidState("the server is already started")
        listener = socket.create_server((self.host, self.requested_port), backlog=128)
        listener.setblocking(False)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self.name = f"reverb-server:{self._port}"
        self.open_selector()
        self.register_listener(listener)
        self.attach()
        self.start_thread()
        logger.info("server listening on %s:%d", self.host, self._port)

    def stop_server(self, timeout: float = 2.0) -> None:
        """Send every client ``close`` 1001, flush briefly, stop the thread, free the port."""
        if self._listener is None:
            return
        with self.lock:
            for conn in self.conns.values():
                with conn.lock:
                    conn.session.close(
                        CloseCode.GOING_AWAY, "server shutting down", time.monotonic()
                    )
                self.mark_dirty(conn)
        self.wake()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.conns:
                    break
            time.sleep(0.01)  # bounded: lets the I/O thread flush the close frames
        self.stop_thread()
        self._listener = None
        self.detach()
        logger.info("server on port %d stopped", self._port)

    def on_stopped(self) -> None:
        if self._listener is not None:
            self._listener.close()

    # -- ServerTransport ---------------------------------------------------------------------

    def send(self, members: tuple[int, ...], message: m.Message) -> None:
        """Queue ``message`` for those members. A connection whose session is busy (the I/O
        thread decoding what it sent) gets it in order once that is done, without waiting.

        An RPC reply or a sync is written to the socket right here, on the game thread, when
        the connection has nothing else waiting (``write_now``): no hand-off to the I/O
        thread, which is woken only for what the socket did not take."""
        answer = type(message) is m.RpcResult or type(message) is m.RpcErrorReply
        if answer and len(self.hub.keeper):
            self.hub.remember(members, message, time.monotonic())  # §18.6, dropped or not
        if answer and len(members) == 1 and self._answer(members[0], message):
            return
        direct_write = answer or isinstance(message, m.Sync)
        wake = False
        with self.lock:
            ready: list[Conn] = []
            try:
                for member in members:
                    conn = self.by_member.get(member)
                    if conn is None:
                        continue
                    if conn.deferred or not conn.lock.acquire(blocking=False):
                        conn.deferred.append(message)
                        self.mark_dirty(conn)
                        wake = True
                        continue
                    ready.append(conn)
                now = time.monotonic()
                direct = tuple(conn.session.member for conn in ready)
                for session in self.hub.send(direct, message, now):
                    conn = self.by_member[session.member]
                    if not (direct_write and self.write_now(conn, now)):
                        self.mark_dirty(conn)
                        wake = True
            finally:
                for conn in ready:
                    conn.lock.release()
        if wake:
            self.wake()

    def _answer(self, member: int, message: m.Message) -> bool:
        """``send`` of one call's answer to one member whose connection is ready (nothing
        deferred, its lock free), written to the socket here when nothing waits before it.
        False: not ready, nothing done (``send`` defers it)."""
        wake = False
        with self.lock:
            conn = self.by_member.get(member)
            if conn is None or conn.deferred or not conn.lock.acquire(blocking=False):
                return False
            try:
                now = time.monotonic()
                # hub.send takes hub.reply's path for it (one encode, no per-member set-up)
                if self.hub.send((member,), message, now) and not self.write_now(conn, now):
                    self.mark_dirty(conn)
                    wake = True
            finally:
                conn.lock.release()
        if wake:
            self.wake()
        return True

    def deliver(self, conn: Conn, message: m.Message, now: float) -> None:
        self.hub.send((conn.session.member,), message, now)

    def poll(self) -> list[ServerEvent]:
        return super().poll()

    def on_polled(self) -> None:
        self.hub.pending.clear()

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
            if not self.hub.admit(addr[0]):
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = Tls(self.ssl_context, server_side=True) if self.ssl_context else None
            conn = Conn(sock, self.hub.open(addr[0], addr[1], now), tls)
            self.by_member[conn.session.member] = conn
            self.register(conn)

    def on_housekeeping(self, now: float) -> None:
        """§18: expire held memberships; ask "resume" clients to confirm answers."""
        if not len(self.hub.keeper):
            return
        events, due = self.hub.housekeeping(now)
        for event in events:
            self.emit(event)
        for session in due:
            conn = self.by_member.get(session.member)
            if conn is None or conn.busy:
                continue
            with conn.lock:
                self.hub.confirm_ping(session, now)
            self.mark_dirty(conn)

    def on_forgotten(self, conn: Conn) -> None:
        self.by_member.pop(conn.session.member, None)
        self.hub.members.pop(conn.session.member, None)

    def wait(self, timeout: float) -> None:
        """The game thread waits inside ``server_sync()``: parked, so that a call arriving
        meanwhile may be answered on the I/O thread (``on_event``). The game thread cannot
        leave ``wait`` while the I/O thread holds the inbox lock, so game code and a call
        never run at once."""
        with self._inbox_cond:
            if not self._inbox:
                self._parked_until = time.monotonic() + timeout
                try:
                    self._inbox_cond.wait(timeout)
                finally:
                    self._parked_until = 0.0

    def on_event(self, conn: Conn, event: SessionEvent) -> None:
        if isinstance(event, Opened) and event.resumed:  # §18.4: keyed by the resumed id
            self.by_member.pop(event.replaced, None)
            self.by_member[event.member] = conn
        with self._inbox_lock:  # the pending-call counts are shared with poll()
            now = time.monotonic()
            out = self.hub.on_event(conn.session, event, now)
            if out is not None:
                if (
                    now < self._parked_until  # parked, and its tick not due: never starved
                    and not self._inbox
                    and self.inline_calls
                    and isinstance(out, PeerMessage)
                    and isinstance(out.message, m.Rpc)
                    and self.context.connection is self
                ):
                    # nothing queued before it, the game thread parked: answer it here
                    self.hub.pending.pop(out.member, None)
                    self.context.answer(out.member, out.message)
                else:
                    self._inbox.append(out)
                    self._inbox_cond.notify_all()
        if conn.session.closed:
            self.by_member.pop(conn.session.member, None)
