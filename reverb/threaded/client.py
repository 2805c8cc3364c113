"""``Client``: one connection to a server, served by a background I/O thread.

Replies to ``compute_server`` resolve their futures on the I/O thread. Syncs and events wait
in an inbox until the game thread calls ``client_sync()`` or ``get_all_ro_by_type()``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from reverb.endpoints import MAX_UNREAD, UNREAD_REASON, ClientEndpoint
from reverb.errors import CloseCode, HandshakeFailed, RoomTimeout
from reverb.proto import messages as m
from reverb.proto.session import Closed, Opened, SessionEvent, State
from reverb.reconnect import ReconnectState
from reverb.stats import ConnectionStats
from reverb.threaded._loop import Conn, IOLoop, Tls
from reverb.transport import ClientEvent

__all__ = ["Client"]

logger = logging.getLogger("reverb")


class Client(ClientEndpoint, IOLoop):
    """The blocking client: a background thread owns the socket. Options: ``ClientEndpoint``."""

    _conn: Conn | None = None
    stop_when_idle = True  # the I/O thread ends once its one connection is gone
    _handshake_done: threading.Event | None = None  # a fresh one at each connect()
    # §18: the thread that reconnects after a drop (``reconnect``), and how to stop it
    _reconnect_thread: threading.Thread | None = None
    _reconnect_stop: threading.Event | None = None
    # Guards publishing the reconnect thread (started on the I/O side) against a disconnect()
    # reading it on the game thread: a thread is published only once it has started. Held
    # only around those few assignments, never while waiting: one for every client is enough.
    _reconnect_guard = threading.Lock()

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.session.state is State.OPEN

    @property
    def stats(self) -> ConnectionStats:
        """This connection's counters (``reverb.stats.ConnectionStats``; any thread): bytes
        and frames each way, calls and their results by code, syncs applied, messages,
        round-trip time, send buffer, connected since, its last incidents. After a close,
        the closed connection's final figures until the next ``connect()``."""
        with self.lock:
            conn = self._conn
            return self.connection_stats(conn.backlog() if conn is not None else 0)

    def connect(self) -> None:
        """Connect and complete the handshake; raises ``HandshakeFailed`` if refused or slow.

        Fires the client's ``connected`` event. Attaches to the context if it has no
        connection yet (so ``ReverbManager.REVERB_CONNECTION = clt`` is optional), and makes
        a context with no side a client's. A client whose connection was closed (by either
        side) may connect again: it gets a new membership id and a fresh snapshot.
        """
        self._stop_reconnecting()
        old = self._conn
        self.before_connect(old is not None and not old.session.closed)
        if old is not None:
            self._shutdown()  # the I/O thread of the closed connection
            self.after_close()
        try:
            sock = socket.create_connection((self.ip, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise HandshakeFailed(CloseCode.ABNORMAL, f"cannot connect: {exc}") from exc
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handshake_done = self._handshake_done = threading.Event()
        tls = None
        if self.ssl_context is not None:
            tls = Tls(self.ssl_context, server_side=False, server_hostname=self.tls_hostname)
        self._conn = Conn(sock, self.new_session(), tls)
        self.open_selector()
        with self.lock:
            self.register(self._conn)
        self.start_thread()
        handshake_done.wait(self.connect_timeout + 1.0)  # set by on_event
        member = self.hub.member
        if member is None:
            closed = self.hub.closed
            self._shutdown()
            code, reason = (
                (closed.code, closed.reason)
                if closed
                else (CloseCode.ABNORMAL, "no welcome in time")
            )
            raise HandshakeFailed(code, reason)
        logger.info("connected to %s:%d as client #%d", self.ip, self.port, member)
        self.context.client_connected(member)

    def disconnect(self) -> None:
        """Send ``close`` 1000, stop the I/O thread and fire ``disconnected``. While
        reconnecting (§18): stop trying; pending calls fail, ``disconnected`` fires."""
        if self._conn is None:
            return
        self._stop_reconnecting()
        rc = self.hub.reconnector
        if rc is not None and rc.state is ReconnectState.CONNECTED:
            with self.lock:
                rc.close()  # a consented end: no reconnection
        self.abort(CloseCode.NORMAL, "client disconnect")
        self._shutdown()
        self.context.client_sync()

    # -- reconnection (§18) ------------------------------------------------------------------

    def _stop_reconnecting(self) -> None:
        """End the reconnection under way, if any: the attempt's connection is closed, the
        reconnect thread joined, and the client is closed (``disconnected`` is queued)."""
        with self._reconnect_guard:
            thread, stop = self._reconnect_thread, self._reconnect_stop
        if thread is None or stop is None:
            return
        stop.set()
        conn = self._conn
        if conn is not None and not conn.session.closed:
            self.abort(CloseCode.NORMAL, "client disconnect")
        thread.join(self.connect_timeout + 2.0)
        self._reconnect_thread = None
        with self.lock:
            events = self.hub.give_up(CloseCode.NORMAL, "client disconnect")
        for event in events:
            self.emit(event)

    def _start_reconnecting(self) -> None:
        with self._reconnect_guard:
            if self._reconnect_thread is not None and self._reconnect_thread.is_alive():
                return
            stop = threading.Event()
            thread = threading.Thread(
                target=self._reconnect, args=(stop,), name=f"{self.name}-reconnect", daemon=True
            )
            thread.start()  # published started: disconnect() may join it at once
            self._reconnect_stop, self._reconnect_thread = stop, thread

    def _reconnect(self, stop: threading.Event) -> None:
        """The reconnect thread: backs off, then tries, until resumed or given up. The game
        thread never waits for it (calls made meanwhile are queued)."""
        try:
            while not stop.is_set():
                with self.lock:
                    rc = self.hub.reconnector
                    if rc is None or rc.state is not ReconnectState.WAITING:
                        return
                    now = time.monotonic()
                    events = rc.poll(now)
                    delay = rc.next_try - now
                if not events:
                    stop.wait(max(delay, 0.001))
                    continue
                for event in events:
                    self.emit(event)
                self._attempt(stop)
        except Exception:  # pragma: no cover - a bug; logged so it is never silent
            logger.exception("%s: reconnecting failed", self.name)

    def _attempt(self, stop: threading.Event) -> None:
        """One attempt: TCP, then the resume hello; its outcome reaches the hub as the
        session's events (``Opened`` resumed, or ``Closed``)."""
        try:
            sock = socket.create_connection((self.ip, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            with self.lock:
                events = self.hub.attempt_failed(time.monotonic(), f"cannot connect: {exc}")
            for event in events:
                self.emit(event)
            return
        if stop.is_set():
            sock.close()
            return
        self.stop_thread()  # the I/O thread of the dropped connection (it ends once idle)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = None
        if self.ssl_context is not None:
            tls = Tls(self.ssl_context, server_side=False, server_hostname=self.tls_hostname)
        done = self._handshake_done = threading.Event()
        with self.lock:
            self._conn = Conn(sock, self.new_session(resume=True), tls)
        self.open_selector()
        with self.lock:
            self.register(self._conn)
        self.start_thread()
        done.wait(self.connect_timeout + 1.0)  # the session's own handshake deadline ends it

    def _shutdown(self) -> None:
        conn = self._conn
        deadline = time.monotonic() + 2.0
        while conn is not None and time.monotonic() < deadline:
            with self.lock:  # bounded wait for the close frame to flush
                if conn.sock not in self.conns:
                    break
            time.sleep(0.005)
        self.stop_thread()
        self._conn = None

    # -- ClientTransport ---------------------------------------------------------------------

    def call(self, uid: int, method: str, args: list[Any]) -> Future[Any]:
        """Queue the call and write it to the socket from this thread when nothing waits
        before it (``write_now``); else the I/O thread is woken to send it."""
        conn = self._conn
        if conn is None:
            return self.hub.call(None, uid, method, args, time.monotonic())
        with self.lock, conn.lock:
            now = time.monotonic()
            future = self.hub.call(conn.session, uid, method, args, now)
            if self.write_now(conn, now):
                return future
            self.mark_dirty(conn)
        self.wake()
        return future

    def _room_call(
        self, build: Callable[[int], m.Message], timeout: float, finish: Callable[[Any], Any]
    ) -> Any:
        """Send a room request (§17.5) and block until its answer, at most ``timeout``."""
        conn = self._conn
        if conn is None:
            future = self.hub.room_request(None, build, time.monotonic())
        else:
            with self.lock, conn.lock:
                now = time.monotonic()
                future = self.hub.room_request(conn.session, build, now)
                written = self.write_now(conn, now)
                if not written:
                    self.mark_dirty(conn)
            if not written:
                self.wake()
        try:
            reply = future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise RoomTimeout(f"no answer to the room request within {timeout} s") from None
        return finish(reply)

    def send_message(self, name: str, data: Any = None) -> None:
        """Send a named message to the server (§14); written from this thread when nothing
        waits before it, like ``call``. Raises as ``ReverbContext.send_message``."""
        conn = self._conn
        if conn is None:
            self.hub.send_message(None, name, data, time.monotonic())
            return
        with self.lock, conn.lock:
            now = time.monotonic()
            self.hub.send_message(conn.session, name, data, now)
            if self.write_now(conn, now):
                return
            self.mark_dirty(conn)
        self.wake()

    def abort(self, code: int, reason: str) -> None:
        conn = self._conn
        if conn is None:
            return
        with self.lock:
            conn.session.close(code, reason[:200], time.monotonic())
            self.mark_dirty(conn)
        self.wake()

    def poll(self) -> list[ClientEvent]:
        return super().poll()

    # -- I/O thread --------------------------------------------------------------------------

    def on_accept(self, now: float) -> None:  # pragma: no cover - a client has no listener
        raise AssertionError("a client has no listener")

    def on_event(self, conn: Conn, event: SessionEvent) -> None:
        outs = self.hub.on_events(event, self.later, conn.session, time.monotonic())
        for out in outs:
            self.emit(out)
        if outs and len(self._inbox) > MAX_UNREAD and not conn.session.closed:
            conn.session.limit_hit("unread", CloseCode.POLICY, UNREAD_REASON, time.monotonic())
        if isinstance(event, Closed) and self.hub.resuming:
            self._start_reconnecting()  # §18: after a drop, or after a failed attempt
        if isinstance(event, (Opened, Closed)) and self._handshake_done is not None:
            self._handshake_done.set()
