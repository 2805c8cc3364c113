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

from reverb.endpoints import ClientEndpoint
from reverb.errors import CloseCode, HandshakeFailed, RoomTimeout
from reverb.proto import messages as m
from reverb.proto.session import Session, SessionEvent, State
from reverb.reconnect import ReconnectState
from reverb.stats import ConnectionStats
from reverb.threaded._loop import Conn, Inbox, IOLoop, Tls
from reverb.transport import ClientEvent

__all__ = ["Client"]

logger = logging.getLogger("reverb")


class Client(ClientEndpoint):
    """The blocking client: a background thread owns the socket (its ``IOLoop``, which calls
    it back as a ``LoopHandler``). Options: ``ClientEndpoint``."""

    clock = staticmethod(time.monotonic)  # the endpoint's and the context's time (transport.py)
    _conn: Conn | None = None
    _handshake_done: threading.Event | None = None  # a fresh one at each connect()
    # §18: the thread that reconnects after a drop (``reconnect``), and how to stop it
    _reconnect_thread: threading.Thread | None = None
    _reconnect_stop: threading.Event | None = None
    # Guards publishing the reconnect thread (started on the I/O side) against a disconnect()
    # reading it on the game thread: a thread is published only once it has started. Held
    # only around those few assignments, never while waiting: one for every client is enough.
    _reconnect_guard = threading.Lock()

    def _setup_io(self) -> None:
        self._inbox = Inbox()
        self._io = IOLoop(
            self,
            max_send_buffer=self.max_send_buffer,
            stop_when_idle=True,  # the I/O thread ends once its one connection is gone
        )

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
        with self._io.lock:
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
        self._start(sock, self.new_session())
        handshake_done.wait(self.connect_timeout + 1.0)  # set by on_event
        failure = self.hub.handshake_failure()
        if failure is not None:
            self._shutdown()
            raise failure
        member = self.hub.member
        assert member is not None
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
            with self._io.lock:
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
        with self._io.lock:
            events = self.hub.give_up(CloseCode.NORMAL, "client disconnect")
        for event in events:
            self._inbox.put(event)

    def _start_reconnecting(self) -> None:
        with self._reconnect_guard:
            if self._reconnect_thread is not None and self._reconnect_thread.is_alive():
                return
            stop = threading.Event()
            thread = threading.Thread(
                target=self._reconnect,
                args=(stop,),
                name=f"{self._io.name}-reconnect",
                daemon=True,
            )
            thread.start()  # published started: disconnect() may join it at once
            self._reconnect_stop, self._reconnect_thread = stop, thread

    def _reconnect(self, stop: threading.Event) -> None:
        """The reconnect thread: backs off, then tries, until resumed or given up. The game
        thread never waits for it (calls made meanwhile are queued)."""
        try:
            while not stop.is_set():
                with self._io.lock:
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
                    self._inbox.put(event)
                self._attempt(stop)
        except Exception:  # pragma: no cover - a bug; logged so it is never silent
            logger.exception("%s: reconnecting failed", self._io.name)

    def _attempt(self, stop: threading.Event) -> None:
        """One attempt: TCP, then the resume hello; its outcome reaches the hub as the
        session's events (``Opened`` resumed, or ``Closed``)."""
        try:
            sock = socket.create_connection((self.ip, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            with self._io.lock:
                events = self.hub.attempt_failed(time.monotonic(), f"cannot connect: {exc}")
            for event in events:
                self._inbox.put(event)
            return
        if stop.is_set():
            sock.close()
            return
        self._io.stop_thread()  # the I/O thread of the dropped connection (it ends once idle)
        done = self._handshake_done = threading.Event()
        self._start(sock, self.new_session(resume=True))
        done.wait(self.connect_timeout + 1.0)  # the session's own handshake deadline ends it

    def _start(self, sock: socket.socket, session: Session) -> None:
        """Serve ``sock`` (connected) with ``session`` on a fresh I/O thread."""
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = None
        if self.ssl_context is not None:
            tls = Tls(self.ssl_context, server_side=False, server_hostname=self.tls_hostname)
        io = self._io
        with io.lock:
            self._conn = conn = Conn(sock, session, tls)
        io.open_selector()
        with io.lock:
            io.register(conn)
        io.start_thread()

    def _shutdown(self) -> None:
        conn = self._conn
        io = self._io
        deadline = time.monotonic() + 2.0
        while conn is not None and time.monotonic() < deadline:
            with io.lock:  # bounded wait for the close frame to flush
                if conn.sock not in io.conns:
                    break
            time.sleep(0.005)
        io.stop_thread()
        self._conn = None

    # -- ClientTransport ---------------------------------------------------------------------

    def call(self, uid: int, method: str, args: list[Any]) -> Future[Any]:
        """Queue the call and write it to the socket from this thread when nothing waits
        before it (``write_now``); else the I/O thread is woken to send it."""
        conn = self._conn
        if conn is None:
            return self.hub.call(None, uid, method, args, time.monotonic())
        io = self._io
        with io.lock, conn.lock:
            now = time.monotonic()
            future = self.hub.call(conn.session, uid, method, args, now)
            if io.write_now(conn, now):
                return future
            io.mark_dirty(conn)
        io.wake()
        return future

    def _room_call(
        self, build: Callable[[int], m.Message], timeout: float, finish: Callable[[Any], Any]
    ) -> Any:
        """Send a room request (§17.5) and block until its answer, at most ``timeout``."""
        conn = self._conn
        if conn is None:
            future = self.hub.room_request(None, build, time.monotonic())
        else:
            io = self._io
            with io.lock, conn.lock:
                now = time.monotonic()
                future = self.hub.room_request(conn.session, build, now)
                written = io.write_now(conn, now)
                if not written:
                    io.mark_dirty(conn)
            if not written:
                io.wake()
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
        io = self._io
        with io.lock, conn.lock:
            now = time.monotonic()
            self.hub.send_message(conn.session, name, data, now)
            if io.write_now(conn, now):
                return
            io.mark_dirty(conn)
        io.wake()

    def abort(self, code: int, reason: str) -> None:
        conn = self._conn
        if conn is None:
            return
        io = self._io
        with io.lock:
            conn.session.close(code, reason[:200], time.monotonic())
            io.mark_dirty(conn)
        io.wake()

    def poll(self) -> list[ClientEvent]:
        return self._inbox.take()

    def wait(self, timeout: float) -> None:
        """Block until an event arrives or ``timeout`` passes (the context's blocking loops)."""
        self._inbox.wait(timeout)

    # -- LoopHandler: the I/O thread, the loop's lock held -------------------------------------

    def open_session(self, ip: str, port: int, now: float) -> Session:
        return self.new_session(now, resume=self.hub.resuming)

    def on_event(self, conn: Conn, event: SessionEvent) -> None:
        inbox = self._inbox
        step = self.hub.step(conn.session, event, time.monotonic(), len(inbox), self._io.later)
        if step is None:
            return
        for out in step.events:
            inbox.put(out)
        if step.reconnect:
            self._start_reconnecting()  # §18: after a drop, or after a failed attempt
        if step.settled and self._handshake_done is not None:
            self._handshake_done.set()

    def deliver(self, conn: Conn, message: m.Message, now: float) -> None:  # pragma: no cover
        raise AssertionError("a client never defers what it sends")

    def housekeeping(self, now: float) -> float | None:
        """Nothing to keep: a client has one connection and no held memberships."""
        return None

    def forgotten(self, conn: Conn) -> None:
        """Nothing to forget: the connection ends with the thread (``stop_when_idle``)."""
