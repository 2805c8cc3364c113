"""``Server``: accepts clients on a background I/O thread; the game thread drives it through
``ReverbManager.server_sync()`` (or ``ReverbContext.server_sync()``)."""

from __future__ import annotations

import logging
import socket
import threading
import time

from reverb.endpoints import ServerEndpoint
from reverb.errors import CloseCode, InvalidState
from reverb.proto import messages as m
from reverb.proto.session import Session, SessionEvent, State
from reverb.stats import ConnectionStats
from reverb.threaded._loop import Conn, Inbox, IOLoop
from reverb.transport import ServerEvent

__all__ = ["Server"]

logger = logging.getLogger("reverb")


class Server(ServerEndpoint):
    """The blocking server: one background thread serves every connection with a selector
    (its ``IOLoop``, which calls it back as a ``LoopHandler``). Options: ``ServerEndpoint``.
    A call that arrives while the game thread waits in ``server_sync()`` with nothing queued
    runs on the I/O thread, the game thread held parked meanwhile (``inline_calls``)."""

    clock = staticmethod(time.monotonic)  # the endpoint's and the context's time (transport.py)
    _listener: socket.socket | None = None
    _parked_until = 0.0  # while the game thread waits in server_sync(): until when

    def _setup_io(self) -> None:
        self._inbox = Inbox()
        self._io = IOLoop(
            self,
            max_send_buffer=self.max_send_buffer,
            max_total_send_buffer=self.max_total_send_buffer,
            max_send_buffer_per_ip=self.max_send_buffer_per_ip,
            decode_unlocked=True,  # a big frame's decode never holds up the game thread
        )

    @property
    def lock(self) -> threading.RLock:
        """What guards the sessions and the hub (the I/O loop's lock): hold it to read them
        from another thread (the monitor does)."""
        return self._io.lock

    def traffic(self) -> tuple[int, int]:
        """Bytes (sent, received) since ``start_server()``, live connections included."""
        with self._io.lock:
            return self.hub.traffic()

    def client_stats(self, member: int) -> ConnectionStats | None:
        """``ServerEndpoint.client_stats``, read under the server's lock (any thread)."""
        with self._io.lock:
            return super().client_stats(member)

    @property
    def members(self) -> list[int]:
        """Membership ids of the clients connected now."""
        with self._io.lock:
            return sorted(self.hub.members)

    def close_member(self, member: int, code: int, reason: str) -> bool:
        """Close client ``member``'s connection with ``code`` (from any thread): its session
        sends ``close`` now, the I/O thread flushes it and reports the leave as for any
        other close. False when no such client is connected."""
        io = self._io
        with io.lock:
            conn = self.by_member.get(member)
            session = self.hub.members.get(member)
            if conn is None or session is None or session.state is not State.OPEN:
                return False
            with conn.lock:  # a worker decoding a large frame into it holds it meanwhile
                session.close(code, reason, time.monotonic())
            io.mark_dirty(conn)
        io.wake()
        return True

    def start_server(self) -> None:
        """Bind, listen and start the I/O thread. Attaches to the context if it has no
        connection yet (so ``ReverbManager.REVERB_CONNECTION = serv`` is optional)."""
        if self._listener is not None:
            raise InvalidState("the server is already started")
        listener = socket.create_server((self.host, self.requested_port), backlog=128)
        listener.setblocking(False)
        self._listener = listener
        self._port = listener.getsockname()[1]
        io = self._io
        io.name = f"reverb-server:{self._port}"
        io.open_selector()
        io.listen(listener, self.ssl_context)
        self.attach()
        io.start_thread()
        logger.info("server listening on %s:%d", self.host, self._port)

    def stop_server(self, timeout: float = 2.0) -> None:
        """Send every client ``close`` 1001, flush briefly, stop the thread, free the port."""
        if self._listener is None:
            return
        io = self._io
        with io.lock:
            for conn in io.conns.values():
                with conn.lock:
                    conn.session.close(
                        CloseCode.GOING_AWAY, "server shutting down", time.monotonic()
                    )
                io.mark_dirty(conn)
        io.wake()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with io.lock:
                if not io.conns:
                    break
            time.sleep(0.01)  # bounded: lets the I/O thread flush the close frames
        io.stop_thread()  # closes the listener
        self._listener = None
        self.detach()
        logger.info("server on port %d stopped", self._port)

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
        io = self._io
        with io.lock:
            ready: list[Conn] = []
            direct: list[int] = []
            by_member = self.by_member
            try:
                for member in members:
                    conn = by_member.get(member)
                    if conn is None:
                        continue
                    if conn.deferred or not conn.lock.acquire(blocking=False):
                        conn.deferred.append(message)
                        io.mark_dirty(conn)
                        wake = True
                        continue
                    ready.append(conn)
                    direct.append(member)
                now = time.monotonic()
                write_now = io.write_now
                for session in self.hub.send(tuple(direct), message, now):
                    conn = by_member[session.member]
                    if not (direct_write and write_now(conn, now)):
                        io.mark_dirty(conn)
                        wake = True
            finally:
                for conn in ready:
                    conn.lock.release()
        if wake:
            io.wake()

    def _answer(self, member: int, message: m.Message) -> bool:
        """``send`` of one call's answer to one member whose connection is ready (nothing
        deferred, its lock free), written to the socket here when nothing waits before it.
        False: not ready, nothing done (``send`` defers it)."""
        wake = False
        io = self._io
        with io.lock:
            conn = self.by_member.get(member)
            if conn is None or conn.deferred or not conn.lock.acquire(blocking=False):
                return False
            try:
                now = time.monotonic()
                # hub.send takes hub.reply's path for it (one encode, no per-member set-up)
                if self.hub.send((member,), message, now) and not io.write_now(conn, now):
                    io.mark_dirty(conn)
                    wake = True
            finally:
                conn.lock.release()
        if wake:
            io.wake()
        return True

    def poll(self) -> list[ServerEvent]:
        inbox = self._inbox
        with inbox.lock:  # the pending-call counts are shared with ``on_event``
            events, inbox.events = inbox.events, []
            self.hub.pending.clear()
        return events

    def wait(self, timeout: float) -> None:
        """The game thread waits inside ``server_sync()``: parked, so that a call arriving
        meanwhile may be answered on the I/O thread (``on_event``). The game thread cannot
        leave ``wait`` while the I/O thread holds the inbox lock, so game code and a call
        never run at once."""
        inbox = self._inbox
        with inbox.cond:
            if not inbox.events:
                self._parked_until = time.monotonic() + timeout
                try:
                    inbox.cond.wait(timeout)
                finally:
                    self._parked_until = 0.0

    # -- LoopHandler: the I/O thread, the loop's lock held -------------------------------------

    def open_session(self, ip: str, port: int, now: float) -> Session | None:
        if not self.hub.admit(ip):
            return None
        return self.hub.open(ip, port, now)

    def on_event(self, conn: Conn, event: SessionEvent) -> None:
        inbox = self._inbox
        with inbox.lock:  # the pending-call counts are shared with poll()
            now = time.monotonic()
            out = self.hub.on_event(conn.session, event, now, conn)
            if out is not None and not (
                # parked, its tick not due (never starved), nothing queued before it
                now < self._parked_until and not inbox.events and self.answer_now(out)
            ):
                inbox.events.append(out)
                inbox.cond.notify_all()

    def deliver(self, conn: Conn, message: m.Message, now: float) -> None:
        self.hub.send((conn.session.member,), message, now)

    def housekeeping(self, now: float) -> float | None:
        """§18: expire held memberships; ask "resume" clients to confirm answers."""
        if not len(self.hub.keeper):
            return None
        events, due = self.hub.housekeeping(now)
        for event in events:
            self._inbox.put(event)
        for session in due:
            conn = self.by_member.get(session.member)
            if conn is None or conn.busy:
                continue
            with conn.lock:
                self.hub.confirm_ping(session, now)
            self._io.mark_dirty(conn)
        return self.hub.next_housekeeping(now)

    def forgotten(self, conn: Conn) -> None:
        self.hub.forget(conn.session.member, conn)
