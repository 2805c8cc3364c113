"""The selector loop shared by the threaded server and client.

One background thread owns the sockets. ``lock`` guards the connections and the hub's
bookkeeping; each connection's ``lock`` guards its session (the sans-I/O core). The game thread
takes ``lock`` (then a connection's) to queue messages; the I/O thread takes both to move
output and events. A server decodes what it received holding only the connection's lock, so a
large frame being decoded never holds up the game thread (its messages for that one connection
wait in ``deferred`` meanwhile). Lock order: ``lock`` before any connection's. Events for the
game thread go through an ``Inbox`` that the endpoint's ``poll()`` empties and ``wait()``
blocks on.

``Server`` and ``Client`` each *have* an ``IOLoop``; the loop calls them back through
``LoopHandler`` (``transport.ConnectionHandler`` plus two threaded-only calls).

An unexpected exception while serving one connection closes that connection with 1011
"internal error" (logged with its traceback, counted in ``stats["internal_error"]``); the
loop keeps serving the others (issue 8, decision 1).
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Protocol

from reverb._memory import Trimmer
from reverb._sendq import BIG_FRAME, WINDOW, FrameSizer, SendQueue, over_budget
from reverb.errors import CloseCode
from reverb.hub import HOUSEKEEPING_IDLE, SHED_REASONS, Deadlines, sheds
from reverb.proto import messages as m
from reverb.proto.session import Session as _Session
from reverb.proto.session import State
from reverb.transport import ConnectionHandler

__all__ = ["Conn", "IOLoop", "Inbox", "LoopHandler", "Tls"]

logger = logging.getLogger("reverb")

READ_SIZE = 65536
# Deadlines: each connection is checked when its session next has something to do
# (``Session.next_deadline``) or its close must be flushed by (``close_by``), from one heap
# (``hub.Deadlines``, as in the asyncio layer): the thread sleeps until the earliest, and a
# connection costs nothing until its time, however many there are.
# s: the longest sleep (the handler's housekeeping runs at least this often)
QUIET_CHECK_MAX = HOUSEKEEPING_IDLE
CHECK_INTERVAL = 0.05  # s between passes while memory freed from dropped peers waits to be trimmed
_EPSILON = 0.001  # s past a deadline, so that the session agrees it is due
CLOSE_LINGER = 1.0  # s to flush a close frame to a peer before dropping it anyway


class Conn:
    """A socket, its session, its unsent bytes and, with TLS, the TLS engine between them.

    ``out`` holds bytes handed to the socket (ciphertext with TLS), at most about
    ``WINDOW`` plus one frame; ``queue`` the session's further output, as whole frames."""

    __slots__ = (
        "busy",
        "close_by",
        "deadline",
        "deferred",
        "eof",
        "lock",
        "mask",
        "out",
        "queue",
        "session",
        "sizer",
        "sock",
        "tls",
    )

    def __init__(self, sock: socket.socket, session: _Session, tls: Tls | None = None) -> None:
        self.sock = sock
        self.session = session
        self.tls = tls
        self.out = bytearray()
        self.queue = SendQueue()
        self.lock = threading.RLock()
        self.deferred: deque[m.Message] = deque()  # sent while the session was busy decoding
        self.sizer = FrameSizer()
        self.busy = False  # the decode worker has its session: not read, not pumped meanwhile
        self.mask = selectors.EVENT_READ
        self.eof = False
        self.close_by: float | None = None
        self.deadline: float | None = None  # its entry in the loop's ``Deadlines``

    @property
    def peer_ip(self) -> str:
        return self.session.peer

    def backlog(self) -> int:
        return len(self.out) + self.queue.size

    def stale(self) -> int:
        return max(0, self.backlog() - self.queue.fresh)


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


class Inbox:
    """Events for the game thread: the I/O side ``put``s them, the endpoint's ``poll()``
    takes them all (holding ``lock``), ``wait`` blocks until one comes."""

    __slots__ = ("cond", "events", "lock")

    def __init__(self) -> None:
        self.events: list[Any] = []
        # the condition's lock, held directly where nothing waits or is notified
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)

    def __len__(self) -> int:
        return len(self.events)

    def put(self, event: Any) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def take(self) -> list[Any]:
        with self.lock:
            events, self.events = self.events, []
        return events

    def wait(self, timeout: float) -> None:
        with self.cond:
            if not self.events:
                self.cond.wait(timeout)


class LoopHandler(ConnectionHandler[Conn], Protocol):
    """What an ``IOLoop`` calls back on its endpoint, on the I/O thread with ``lock`` held
    (``on_event`` and ``deliver`` with the connection's lock too)."""

    def housekeeping(self, now: float) -> float | None:
        """Periodic work (§18: held memberships, answers to confirm); returns when it is
        wanted next (None: at the latest ``QUIET_CHECK_MAX`` later)."""

    def forgotten(self, conn: Conn) -> None:
        """``conn`` was removed without its ``Closed`` event being handled (the last resort
        after a close that failed)."""


class IOLoop:
    """Runs ``select`` in a thread for its handler (a ``Server`` or ``Client``).

    ``decode_unlocked``: decode holding only the connection's lock, a large frame on a
    worker thread (the server). ``stop_when_idle``: end the thread when the last connection
    has been dropped (the client)."""

    def __init__(
        self,
        handler: LoopHandler,
        *,
        max_send_buffer: int,
        max_total_send_buffer: int | None = None,
        max_send_buffer_per_ip: int | None = None,
        name: str = "reverb",
        decode_unlocked: bool = False,
        stop_when_idle: bool = False,
    ) -> None:
        self.handler = handler
        self.name = name
        self.decode_unlocked = decode_unlocked
        self.stop_when_idle = stop_when_idle
        self.max_send_buffer = max_send_buffer
        self.max_total_send_buffer = max_total_send_buffer
        self.max_send_buffer_per_ip = max_send_buffer_per_ip
        self.lock = threading.RLock()
        self.conns: dict[socket.socket, Conn] = {}
        self._sel: selectors.BaseSelector
        self._wake_r: socket.socket
        self._wake_w: socket.socket
        self._dirty: set[Conn] = set()
        self._later: list[Callable[[], None]] = []
        self._listener: socket.socket | None = None
        self._tls_server: ssl.SSLContext | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._next_check = 0.0  # when the handler's housekeeping is due
        self._deadlines: Deadlines[Conn] = Deadlines()
        self._backlog = 0  # bytes unsent over every connection (``Conn.backlog``)
        self._backlog_per_ip: Counter[str] = Counter()
        self._budget_check = False
        self._trimmer = Trimmer()
        self._work: queue.SimpleQueue[tuple[Conn, bytes, float] | None] = queue.SimpleQueue()
        self._worked: list[tuple[Conn, bool]] = []  # (conn, failed), handed back by the worker
        self._worked_lock = threading.Lock()
        self._worker: threading.Thread | None = None

    # -- the game thread's side --------------------------------------------------------------

    def mark_dirty(self, conn: Conn) -> None:
        """Call with ``lock`` held after queueing output on ``conn``'s session."""
        self._dirty.add(conn)

    def write_now(self, conn: Conn, now: float) -> bool:
        """From the game thread, holding ``lock`` and ``conn.lock``: hand ``conn``'s output
        straight to its socket when nothing of it waits before (no backlog, no session being
        decoded, no TLS), so an RPC reply goes out without waking the I/O thread. True when
        all of it went; else what is left is queued for the I/O thread, which the caller
        must ``mark_dirty`` and ``wake``. Never blocks: the socket is non-blocking."""
        session = conn.session
        if (
            conn.tls is not None
            or conn.busy
            or conn.eof
            or conn.out
            or conn.queue
            or conn.deferred
            or session.state is not State.OPEN
            or conn.sock not in self.conns
        ):
            return False
        data = session.data_to_send()
        if not data:
            return True
        if len(data) > WINDOW:  # more than one socket's worth: the I/O thread paces it
            conn.queue.push(data, now)
            self._account(conn, len(data))
            return False
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # the I/O thread meets the error again and drops the connection
            sent = 0
        if sent == len(data):
            return True
        conn.out += data[sent:]  # at most WINDOW bytes: ``out`` keeps its bound
        self._account(conn, len(data) - sent)
        return False

    def wake(self) -> None:
        if self._thread is None:
            return
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (the loop is already awake) or closed (it has stopped)
            pass

    # -- the I/O thread ----------------------------------------------------------------------

    def later(self, func: Callable[[], None]) -> None:
        """Run ``func`` on the I/O thread once the lock is released (future callbacks)."""
        self._later.append(func)

    def open_selector(self) -> None:
        """A fresh selector and wake-up pair: each start of the thread gets its own."""
        self._sel = selectors.DefaultSelector()
        self._deadlines.clear()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)

    def start_thread(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if self.decode_unlocked:
            self._worker = threading.Thread(
                target=self._decode_worker, name=f"{self.name}-decode", daemon=True
            )
            self._worker.start()

    def stop_thread(self, timeout: float = 5.0) -> None:
        self._running = False
        self.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():  # pragma: no cover - would be a bug
                logger.error("%s: I/O thread did not stop within %.1f s", self.name, timeout)
        if self._worker is not None and self._worker is not threading.current_thread():
            self._work.put(None)
            self._worker.join(timeout)
            self._worker = None

    def _decode_worker(self) -> None:
        """Feeds sessions the reads that complete a large frame, holding only that
        connection's lock: the I/O thread keeps serving everyone else meanwhile."""
        while (item := self._work.get()) is not None:
            conn, data, now = item
            failed = False
            try:
                with conn.lock:
                    conn.session.receive_data(data, now)
            except Exception:
                logger.exception("%s: %s: internal error", self.name, conn.session.name)
                failed = True
            with self._worked_lock:
                self._worked.append((conn, failed))
            self.wake()

    def _take_back(self, now: float) -> None:
        """Connections the worker is done with: read them again, pump their output."""
        with self._worked_lock:
            worked, self._worked = self._worked, []
        for conn, failed in worked:
            conn.busy = False
            if conn.sock not in self.conns:
                continue
            with self.lock:
                if failed:
                    self._internal_error(conn, now)
                else:
                    self._guarded(conn, now, self.pump, conn, now)
                if conn.sock in self.conns:
                    self._set_mask(conn)

    def register(self, conn: Conn) -> None:
        self.conns[conn.sock] = conn
        self._sel.register(conn.sock, selectors.EVENT_READ, conn)
        self._dirty.add(conn)

    def listen(self, sock: socket.socket, ssl_context: ssl.SSLContext | None = None) -> None:
        """Accept connections on ``sock`` (non-blocking; served with TLS when
        ``ssl_context``), each with the session ``handler.open_session`` gives it; the
        listener is closed when the thread ends."""
        self._listener, self._tls_server = sock, ssl_context
        self._sel.register(sock, selectors.EVENT_READ, "listener")

    def _accept(self, now: float) -> None:
        listener = self._listener
        assert listener is not None
        while True:
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: keep serving the connections we have
                logger.error("%s: accept failed: %s", self.name, exc)
                return
            session = self.handler.open_session(addr[0], addr[1], now)
            if session is None:  # refused by a connection limit
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = Tls(self._tls_server, server_side=True) if self._tls_server else None
            self.register(Conn(sock, session, tls))

    def _run(self) -> None:
        try:
            while self._running:
                wake_at = self._next_check
                next_at = self._deadlines.next_at()
                if next_at is not None and next_at + _EPSILON < wake_at:
                    wake_at = next_at + _EPSILON
                timeout = wake_at - time.monotonic()
                if self._dirty:  # output queued with no wake (a connection just registered)
                    timeout = 0.0
                elif self._trimmer.freed and timeout > CHECK_INTERVAL:
                    timeout = CHECK_INTERVAL
                ready = self._sel.select(max(timeout, 0.0))
                now = time.monotonic()
                if self._worked:
                    self._take_back(now)
                for key, mask in ready:
                    if key.data is None:
                        self._drain_wake()
                    elif key.data == "listener":
                        with self.lock:
                            self._accept(now)
                    else:
                        self._serve(key.data, mask, now)
                with self.lock:
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
                    self._guarded(conn, time.monotonic(), self._shut, conn)
                later, self._later = self._later, []
            for func in later:
                func()
            for sock in (self._wake_r, self._wake_w):
                sock.close()
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            self._sel.close()

    def _shut(self, conn: Conn) -> None:
        self.drop(conn, CloseCode.GOING_AWAY, "connection shut down")

    def _serve(self, conn: Conn, mask: int, now: float) -> None:
        """One ready socket: read (decoding outside ``lock`` when ``decode_unlocked``, a
        large frame on the worker), then move output and events; write what it can take."""
        if mask & selectors.EVENT_READ and conn.sock in self.conns and not conn.busy:
            if self.decode_unlocked:
                data = self._guarded(conn, now, self._receive, conn)
                if data is None:
                    pass
                elif data and conn.sizer.feed(data) > BIG_FRAME:
                    conn.busy = True  # until the worker hands it back: not read, not pumped
                    self._set_mask(conn)
                    self._work.put((conn, data, now))
                else:  # ``_guarded`` around each step, inlined: every read takes this path
                    try:
                        self._feed(conn, data, now)
                        with self.lock:
                            if conn.sock in self.conns:
                                self.pump(conn, now)
                    except Exception:
                        self._failed(conn, now)
            else:
                with self.lock:
                    data = self._guarded(conn, now, self._receive, conn)
                    if data is not None and self._guarded(conn, now, self._feed, conn, data, now):
                        self._guarded(conn, now, self.pump, conn, now)
        if mask & selectors.EVENT_WRITE:
            with self.lock:
                if conn.sock in self.conns:
                    self._guarded(conn, now, self._flush, conn, now)

    def _guarded(self, conn: Conn, now: float, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)``, closing ``conn`` with 1011 if it raises (decision 1). Returns
        what ``func`` returned, or None after a failure."""
        try:
            return func(*args)
        except Exception:
            self._failed(conn, now)
            return None

    def _failed(self, conn: Conn, now: float) -> None:
        """In an ``except`` block: log the exception, close ``conn`` with 1011."""
        logger.exception("%s: %s: internal error", self.name, conn.session.name)
        with self.lock:
            self._internal_error(conn, now)

    def _internal_error(self, conn: Conn, now: float) -> None:
        conn.session.stats["internal_error"] += 1
        if conn.sock not in self.conns:
            return
        try:
            with conn.lock:
                if not conn.session.closed:
                    conn.session.close(CloseCode.INTERNAL_ERROR, "internal error", now)
            self.pump(conn, now)
        except Exception:  # failing again: give up on this connection, never on the loop
            logger.exception("%s: %s: could not close cleanly", self.name, conn.session.name)
            self._forget(conn)

    def _forget(self, conn: Conn) -> None:
        """Remove ``conn`` without running any of its handlers (the last resort)."""
        self.conns.pop(conn.sock, None)
        self._account(conn, -conn.backlog())
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        self.handler.forgotten(conn)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _housekeeping(self, now: float) -> None:
        if now >= self._next_check:
            wanted = self.handler.housekeeping(now)
            latest = now + QUIET_CHECK_MAX
            self._next_check = latest if wanted is None else min(max(wanted, now), latest)
        for conn in self._deadlines.due(now):
            if conn.sock in self.conns:
                self._guarded(conn, now, self._check, conn, now)
        if self._dirty:
            dirty, self._dirty = self._dirty, set()
            for conn in dirty:
                if conn.sock in self.conns:
                    self._guarded(conn, now, self.pump, conn, now)
        if self._budget_check:
            self._budget_check = False
            self._enforce_budget(now)
        if self._trimmer.freed:
            self._trimmer.maybe_trim(now)

    def _check(self, conn: Conn, now: float) -> None:
        """``conn``'s deadline came: apply the session's, drop it if its close was not
        flushed in time; it is pumped (and scheduled again) in this pass."""
        if conn.busy:
            return  # checked and scheduled once the worker hands it back
        with conn.lock:
            conn.session.check_timeouts(now)
        if conn.close_by is not None and now >= conn.close_by:
            self.drop(conn, CloseCode.ABNORMAL, "close not flushed in time")
        else:
            self._dirty.add(conn)

    def _receive(self, conn: Conn) -> bytes | None:
        """Plaintext received (b"" at the end of the stream), or None: nothing to do."""
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            data = b""
        if conn.tls is None:
            return data
        try:
            with conn.lock:
                plain = conn.tls.receive(data)
                replies = conn.tls.send(b"")  # handshake replies, held-back plaintext
        except ssl.SSLError as exc:
            with self.lock:
                self._tls_failed(conn, exc)
            return None
        if replies:
            conn.out += replies
            self._account(conn, len(replies))
            with self.lock:
                self._dirty.add(conn)  # flushed by the next housekeeping pass
        if not data:
            return b""
        return plain or None

    def _feed(self, conn: Conn, data: bytes, now: float) -> bool:
        """Give the session what was received; True (``pump`` has something to do)."""
        with conn.lock:
            if data:
                conn.session.receive_data(data, now)
            else:
                conn.eof = True
                conn.session.receive_eof()
        return True

    def pump(self, conn: Conn, now: float) -> None:
        """Move the session's output towards the socket and its events to the handler.

        A peer that does not read is dropped by the slow-consumer rule (``hub.sheds``): it is
        sent ``close`` 1013 after the frame it may be half-way through; every frame not
        begun is discarded (§10.1).
        """
        if conn.busy:  # the worker has its session; pumped when handed back
            self._dirty.add(conn)
            return
        with conn.lock:
            session = conn.session
            if conn.deferred:
                while conn.deferred and session.state is State.OPEN:
                    self.handler.deliver(conn, conn.deferred.popleft(), now)
                conn.deferred.clear()
            backlog = conn.backlog()
            sent = self._take_output(conn)
            events = session.events()
            if events:
                on_event = self.handler.on_event
                for event in events:
                    on_event(conn, event)
                sent = self._take_output(conn) or sent  # what the handler queued (a close)
            if conn.sock not in self.conns:
                return
            if sent and sheds(backlog, self.max_send_buffer, session):
                logger.warning(
                    "%s: %s does not read; %d bytes unsent", self.name, session.name, backlog
                )
                self.shed(conn, "send_buffer", now)
                return
        self._flush(conn, now)

    def shed(self, conn: Conn, limit: str, now: float) -> None:
        """Drop a peer that does not read: discard every frame not yet begun, queue
        ``close`` 1013 after the one in progress, and flush it for at most
        ``CLOSE_LINGER`` (the peer may still take it)."""
        with conn.lock:
            conn.session.data_to_send()  # never begun: discarded
            dropped = conn.queue.discard()
            self._account(conn, -dropped)
            self._trimmer.freed += dropped
            conn.session.limit_hit(limit, CloseCode.SLOW_CONSUMER, SHED_REASONS[limit], now)
            conn.close_by = now + CLOSE_LINGER
            self.pump(conn, now)

    def _account(self, conn: Conn, delta: int) -> None:
        if not delta:
            return
        self._backlog += delta
        ip = conn.peer_ip
        self._backlog_per_ip[ip] += delta
        if self._backlog_per_ip[ip] <= 0:
            del self._backlog_per_ip[ip]
        if delta > 0 and (
            (self.max_total_send_buffer is not None and self._backlog > self.max_total_send_buffer)
            or (
                self.max_send_buffer_per_ip is not None
                and self._backlog_per_ip[ip] > self.max_send_buffer_per_ip
            )
        ):
            self._budget_check = True

    def _enforce_budget(self, now: float) -> None:
        """Over the server-wide or an address's send budget: drop the worst offenders."""
        live = [c for c in self.conns.values() if not c.busy and not c.session.closed]
        for victim, limit in over_budget(
            live, self.max_total_send_buffer, self.max_send_buffer_per_ip
        ):
            assert isinstance(victim, Conn)
            logger.warning(
                "%s: %s does not read; %d bytes unsent: over the %s budget",
                self.name,
                victim.session.name,
                victim.backlog(),
                "server's" if limit == "total_send_buffer" else "address's",
            )
            self._guarded(victim, now, self.shed, victim, limit, now)

    def _take_output(self, conn: Conn) -> bool:
        """Queue the session's output; True if there was any."""
        data = conn.session.data_to_send()
        if not data:
            return False
        if conn.eof or conn.sock not in self.conns:
            return True
        conn.queue.push(data, time.monotonic())
        self._account(conn, len(data))
        return bool(data)

    def _tls_failed(self, conn: Conn, exc: ssl.SSLError) -> None:
        logger.warning("%s: %s: TLS failed: %s", self.name, conn.session.name, exc)
        conn.session.stats["tls_failure"] += 1
        self.drop(conn, CloseCode.TLS_FAILURE, "TLS failure")

    def _flush(self, conn: Conn, now: float) -> None:
        while True:
            if conn.queue and (len(conn.out) < WINDOW or conn.session.closed):
                piece = conn.queue.take()
                if conn.tls is not None:
                    try:
                        ciphertext = conn.tls.send(piece)
                    except ssl.SSLError as exc:
                        self._tls_failed(conn, exc)
                        return
                    self._account(conn, len(ciphertext) - len(piece))
                    piece = ciphertext
                conn.out += piece
            if not conn.out:
                break
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._account(conn, -conn.backlog())
                conn.out = bytearray()
                conn.queue.discard()
                conn.eof = True
                break
            self._account(conn, -sent)
            if sent == len(conn.out):
                conn.out = bytearray()  # a fresh one: a cleared bytearray keeps its memory
            else:
                del conn.out[:sent]
                break  # the socket is full
        if conn.session.state is State.CLOSED and not conn.busy:
            if not conn.out and not conn.queue:
                self.drop(conn, CloseCode.ABNORMAL, "")
                return
            if conn.close_by is None:
                conn.close_by = now + CLOSE_LINGER
            self._deadlines.schedule(conn, conn.close_by)
        else:
            self._deadlines.schedule(conn, conn.session.next_deadline())
        self._set_mask(conn)

    def _set_mask(self, conn: Conn) -> None:
        """Read unless the worker has the session; write while bytes wait."""
        mask = (0 if conn.busy else selectors.EVENT_READ) | (
            selectors.EVENT_WRITE if conn.out else 0
        )
        if mask == conn.mask:
            return
        if not mask:
            self._sel.unregister(conn.sock)
        elif not conn.mask:
            self._sel.register(conn.sock, mask, conn)
        else:
            self._sel.modify(conn.sock, mask, conn)
        conn.mask = mask

    def drop(self, conn: Conn, code: int, reason: str) -> None:
        """Close the socket now; the session reports ``Closed`` if it had not already."""
        if self.conns.pop(conn.sock, None) is None:
            return
        self._account(conn, -conn.backlog())
        self._trimmer.freed += conn.backlog()
        conn.out = bytearray()
        conn.queue.discard()
        try:
            with conn.lock:
                conn.session.abort(code, reason)
                for event in conn.session.events():
                    self.handler.on_event(conn, event)
        finally:
            self._release(conn)

    def _release(self, conn: Conn) -> None:
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):  # pragma: no cover
            pass
        conn.sock.close()
