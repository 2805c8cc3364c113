"""The selector loop shared by the threaded server and client.

One background thread owns the sockets. One lock guards the sessions (the sans-I/O cores):
the I/O thread takes it to feed received bytes, the game thread to queue messages. Events for
the game thread go through an inbox that ``poll()`` empties and ``wait()`` blocks on.
"""

from __future__ import annotations

import logging
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from reverb.proto.session import CloseCode, SessionEvent, State
from reverb.proto.session import Session as _Session

__all__ = ["Conn", "IOLoop", "Tls"]

logger = logging.getLogger("reverb")

READ_SIZE = 65536
CHECK_INTERVAL = 0.05  # s between timeout checks: the precision of every deadline
CLOSE_LINGER = 1.0  # s to flush a close frame to a peer before dropping it anyway


class Conn:
    """A socket, its session, its unsent bytes and, with TLS, the TLS engine between them."""

    __slots__ = ("close_by", "eof", "mask", "out", "session", "sock", "tls")

    def __init__(self, sock: socket.socket, session: _Session, tls: Tls | None = None) -> None:
        self.sock = sock
        self.session = session
        self.tls = tls
        self.out = bytearray()
        self.mask = selectors.EVENT_READ
        self.eof = False
        self.close_by: float | None = None


class Tls:
    """TLS over memory buffers (``ssl.SSLObject``): ciphertext from the socket goes in,
    plaintext for the session comes out, and the other way round."""

    __slots__ = ("incoming", "obj", "outgoing", "pending", "ready")

    def __init__(
        self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None
    ) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(
            self.incoming, self.outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self.ready = False
        self.pending = bytearray()  # plaintext queued before the TLS handshake completed

    def receive(self, data: bytes) -> bytes:
        """Feed ciphertext (b"" at EOF); return the plaintext it completes. Raises SSLError."""
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()
        if not self.ready:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.ready = True
        chunks = []
        while True:
            try:
                chunk = self.obj.read(READ_SIZE)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def send(self, plain: bytes) -> bytes:
        """Encrypt ``plain`` (held back until the handshake completes); return ciphertext,
        handshake messages included. Raises SSLError."""
        if not self.ready:
            self.pending += plain
            plain = b""
            try:
                self.obj.do_handshake()
                self.ready = True
            except ssl.SSLWantReadError:
                return self.outgoing.read()
        if self.pending:
            plain, self.pending = bytes(self.pending) + plain, bytearray()
        if plain:
            self.obj.write(plain)
        return self.outgoing.read()


class IOLoop:
    """Runs ``select`` in a thread; subclasses react to session events in ``on_event``."""

    stop_when_idle = False  # end the thread when the last connection has been dropped

    def __init__(self, *, max_send_buffer: int, name: str = "reverb") -> None:
        self.name = name
        self.max_send_buffer = max_send_buffer
        self.lock = threading.Lock()
        self.conns: dict[socket.socket, Conn] = {}
        self._sel: selectors.BaseSelector
        self._wake_r: socket.socket
        self._wake_w: socket.socket
        self._dirty: set[Conn] = set()
        self._later: list[Callable[[], None]] = []
        self._inbox: list[Any] = []
        self._inbox_cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._running = False
        self._next_check = 0.0

    # -- the game thread's side --------------------------------------------------------------

    def poll(self) -> list[Any]:
        with self._inbox_cond:
            events, self._inbox = self._inbox, []
            self.on_polled()
        return events

    def wait(self, timeout: float) -> None:
        with self._inbox_cond:
            if not self._inbox:
                self._inbox_cond.wait(timeout)

    def on_polled(self) -> None:
        """Called with the inbox lock held, right after the inbox was emptied."""

    def mark_dirty(self, conn: Conn) -> None:
        """Call with ``lock`` held after queueing output on ``conn``'s session."""
        self._dirty.add(conn)

    def wake(self) -> None:
        if self._thread is None:
            return
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (the loop is already awake) or closed (it has stopped)
            pass

    # -- the I/O thread ----------------------------------------------------------------------

    def emit(self, event: Any) -> None:
        with self._inbox_cond:
            self._inbox.append(event)
            self._inbox_cond.notify_all()

    def later(self, func: Callable[[], None]) -> None:
        """Run ``func`` on the I/O thread once the lock is released (future callbacks)."""
        self._later.append(func)

    def open_selector(self) -> None:
        """A fresh selector and wake-up pair: each start of the thread gets its own."""
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)

    def start_thread(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop_thread(self, timeout: float = 5.0) -> None:
        self._running = False
        self.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():  # pragma: no cover - would be a bug
                logger.error("%s: I/O thread did not stop within %.1f s", self.name, timeout)

    def register(self, conn: Conn) -> None:
        self.conns[conn.sock] = conn
        self._sel.register(conn.sock, selectors.EVENT_READ, conn)
        self._dirty.add(conn)

    def register_listener(self, sock: socket.socket) -> None:
        self._sel.register(sock, selectors.EVENT_READ, "listener")

    def on_event(self, conn: Conn, event: SessionEvent) -> None:
        raise NotImplementedError

    def on_accept(self, now: float) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            while self._running:
                ready = self._sel.select(CHECK_INTERVAL)
                now = time.monotonic()
                with self.lock:
                    for key, mask in ready:
                        if key.data is None:
                            self._drain_wake()
                        elif key.data == "listener":
                            self.on_accept(now)
                        else:
                            conn = key.data
                            if mask & selectors.EVENT_READ and conn.sock in self.conns:
                                self._read(conn, now)
                            if mask & selectors.EVENT_WRITE and conn.sock in self.conns:
                                self._flush(conn, now)
                    self._housekeeping(now)
                    later, self._later = self._later, []
                    if self.stop_when_idle and not self.conns:
                        self._running = False
                for func in later:
                    func()
        except Exception:  # pragma: no cover - a bug; logged so it is never silent
            logger.exception("%s: I/O loop crashed", self.name)
        finally:
            with self.lock:
                for conn in list(self.conns.values()):
                    self.drop(conn, CloseCode.GOING_AWAY, "connection shut down")
                later, self._later = self._later, []
            for func in later:
                func()
            for sock in (self._wake_r, self._wake_w):
                sock.close()
            self.on_stopped()
            self._sel.close()

    def on_stopped(self) -> None:
        """Called on the I/O thread as it ends, after every connection was dropped."""

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _housekeeping(self, now: float) -> None:
        if now >= self._next_check:
            self._next_check = now + CHECK_INTERVAL
            for conn in list(self.conns.values()):
                conn.session.check_timeouts(now)
                if conn.close_by is not None and now >= conn.close_by:
                    self.drop(conn, CloseCode.ABNORMAL, "close not flushed in time")
                else:
                    self._dirty.add(conn)
        dirty, self._dirty = self._dirty, set()
        for conn in dirty:
            if conn.sock in self.conns:
                self.pump(conn, now)

    def _read(self, conn: Conn, now: float) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if conn.tls is not None:
            try:
                plain = conn.tls.receive(data)
                conn.out += conn.tls.send(b"")  # handshake replies, held-back plaintext
            except ssl.SSLError as exc:
                self._tls_failed(conn, exc)
                return
            if plain:
                conn.session.receive_data(plain, now)
        elif data:
            conn.session.receive_data(data, now)
        if not data:
            conn.eof = True
            conn.session.receive_eof()
        self.pump(conn, now)

    def pump(self, conn: Conn, now: float) -> None:
        """Move the session's output to the socket and its events to ``on_event``.

        A peer is dropped when bytes it has not read already exceed ``max_send_buffer`` as
        more arrive: memory stays under the limit plus one tick, and one large sync to a
        healthy reader never counts against it.
        """
        session = conn.session
        backlog = len(conn.out)
        sent = self._take_output(conn)
        for event in session.events():
            self.on_event(conn, event)
        sent = self._take_output(conn) or sent  # what the event handlers queued (a close)
        if conn.sock not in self.conns:
            return
        if sent and backlog > self.max_send_buffer:
            logger.warning(
                "%s: %s does not read; %d bytes unsent: dropped", self.name, session.name, backlog
            )
            conn.out.clear()
            session.stats["limit.send_buffer"] += 1
            self.drop(conn, CloseCode.SLOW_CONSUMER, "send buffer over its limit")
            return
        self._flush(conn, now)

    def _take_output(self, conn: Conn) -> bool:
        """Append the session's output (encrypted with TLS) to ``conn.out``; True if any."""
        data = conn.session.data_to_send()
        if conn.eof or conn.sock not in self.conns:
            return bool(data)
        if conn.tls is not None:
            try:
                data = conn.tls.send(data)
            except ssl.SSLError as exc:
                self._tls_failed(conn, exc)
                return False
        conn.out += data
        return bool(data)

    def _tls_failed(self, conn: Conn, exc: ssl.SSLError) -> None:
        logger.warning("%s: %s: TLS failed: %s", self.name, conn.session.name, exc)
        conn.session.stats["tls_failure"] += 1
        self.drop(conn, CloseCode.TLS_FAILURE, "TLS failure")

    def _flush(self, conn: Conn, now: float) -> None:
        while conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                conn.out.clear()
                conn.eof = True
                break
            del conn.out[:sent]
        if conn.session.state is State.CLOSED:
            if not conn.out:
                self.drop(conn, CloseCode.ABNORMAL, "")
                return
            if conn.close_by is None:
                conn.close_by = now + CLOSE_LINGER
        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        if mask != conn.mask:
            conn.mask = mask
            self._sel.modify(conn.sock, mask, conn)

    def drop(self, conn: Conn, code: int, reason: str) -> None:
        """Close the socket now; the session reports ``Closed`` if it had not already."""
        if self.conns.pop(conn.sock, None) is None:
            return
        conn.session.abort(code, reason)
        for event in conn.session.events():
            self.on_event(conn, event)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):  # pragma: no cover
            pass
        conn.sock.close()
