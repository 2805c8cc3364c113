"""One connection's protocol state machine, sans I/O (docs/protocol.md §4, §6, §9, §10).

Feed it bytes with ``receive_data``, the end of the stream with ``receive_eof`` and the time with
``check_timeouts``; take what it produced with ``events`` and ``data_to_send``. Remote garbage
never raises: it becomes a ``close`` frame to send and a ``Closed`` event (websockets/wsproto).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import zlib
from collections import Counter, deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from reverb.auth import Accept, Authenticator, Reject
from reverb.errors import (
    CloseCode,
    InvalidState,
    LocalProtocolError,
    MessageCode,
    RemoteProtocolError,
    RpcCode,
)
from reverb.proto import messages as m
from reverb.proto.framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, encode_frame
from reverb.proto.options import BURST_SECONDS, SessionOptions
from reverb.timesync import Timekeeper

__all__ = [
    "CloseCode",
    "Closed",
    "HelloAccept",
    "HelloRefuse",
    "Incident",
    "Opened",
    "Received",
    "Role",
    "Session",
    "SessionEvent",
    "State",
    "received",
]

logger = logging.getLogger("reverb")

MIN_MAX_FRAME = 65536  # §5.1: below this a snapshot part could not hold one ordinary object
# §4.11: what a Reverb client asks for and a Reverb server grants by default.
MESSAGES = "messages"  # §14: named application messages, both ways
TIME = "time"  # §13: server time on welcome, syncs and pongs; a sync every tick
INTEREST = "interest"  # §16: despawn reasons (sync.left)
QUIET = "quiet"  # §19: with "time", no empty sync for an idle tick but a follow-up and heartbeats
# §20: update entries of the same shape as column blocks; granted only with "compact"
COLUMNS = "columns"
FEATURES = ("compact", TIME, MESSAGES, INTEREST, QUIET, COLUMNS)
# §15: asked for only when a client opts in (it costs CPU on both ends to save bandwidth)
DEFLATE = "deflate"
# §18: session resume, asked for by a client that reconnects by itself (Client(reconnect=...))
RESUME = "resume"
MAX_RESUME_TOKEN = 64  # §18.3: a token is 43 characters; more is not a Reverb token
MAX_RESUME_WAITING = 1024  # §18.3: the ids of the calls in flight, at most max_pending_calls
# §17: rooms and matchmaking; asked for only by a client that uses rooms (Client(rooms=True)):
# without it a connection lands in the default room exactly as a protocol-1 client does
ROOMS = "rooms"
GRANTABLE = (*FEATURES, DEFLATE, ROOMS, RESUME)  # what a Reverb server grants when asked
MAX_FEATURES = 16  # §4.11: a hello names a handful of features; more is not a client's doing
MAX_FEATURE_NAME = 32
# Per-connection diagnostics (docs/monitor.md): the last incidents (limits hit, protocol
# errors, the close) and the pings whose pongs are awaited, both bounded.
MAX_INCIDENTS = 32
MAX_PINGS_TIMED = 8
RTT_GAIN, RTT_VAR_GAIN = 1 / 8, 1 / 4  # RFC 6298's smoothing


class Role(enum.Enum):
    SERVER = "server"
    CLIENT = "client"


class State(enum.Enum):
    HANDSHAKE = "HANDSHAKE"
    OPEN = "OPEN"
    CLOSED = "CLOSED"


# §6.2: the messages each role may receive in each state. A missing entry is a protocol error.
RECEIVABLE: dict[tuple[Role, State], frozenset[type[m.Message]]] = {
    (Role.SERVER, State.HANDSHAKE): frozenset({m.Hello, m.Close}),
    (Role.SERVER, State.OPEN): frozenset(
        {m.Rpc, m.Ping, m.Pong, m.Close, m.AppMessage, *m.ROOM_REQUESTS}
    ),
    (Role.CLIENT, State.HANDSHAKE): frozenset({m.Welcome, m.Close}),
    (Role.CLIENT, State.OPEN): frozenset(
        {m.Sync, m.RpcResult, m.RpcErrorReply, m.Ping, m.Pong, m.Close}
        | {m.AppMessage, m.MessageError, *m.ROOM_REPLIES}
    ),
}
# §14.1: legal in OPEN only on a connection where this feature was granted.
NEEDS_FEATURE: dict[type[m.Message], str] = {
    m.AppMessage: MESSAGES,
    m.MessageError: MESSAGES,
    **{kind: ROOMS for kind in (*m.ROOM_REQUESTS, *m.ROOM_REPLIES)},  # §17.2
}
_PEER = {Role.SERVER: Role.CLIENT, Role.CLIENT: Role.SERVER}
_SERVER_OPEN = RECEIVABLE[(Role.SERVER, State.OPEN)]
_CLIENT_OPEN = RECEIVABLE[(Role.CLIENT, State.OPEN)]


@dataclass(frozen=True)
class Opened:
    """The handshake completed; ``member`` is this connection's membership id."""

    member: int
    tick_rate: float
    identity: Any = None
    features: frozenset[str] = frozenset()  # granted in the handshake (§4.11)
    # §18: this welcome resumed ``member``; ``replaced`` is the id the connection had before
    resumed: bool = False
    replaced: int = 0
    resume_token: str | None = field(default=None, repr=False)  # never logged (§18.2)


@dataclass(frozen=True)
class HelloAccept:
    """A server's ``on_hello`` hook: welcome the client, with this resume token (§18.2);
    ``member`` set: the hello resumed that membership (§18.4)."""

    token: str | None = field(default=None, repr=False)
    member: int | None = None


@dataclass(frozen=True)
class HelloRefuse:
    """A server's ``on_hello`` hook: refuse the hello with this close (§18.4)."""

    code: int
    reason: str


@dataclass(frozen=True)
class Received:
    """An application message arrived (rpc on a server; sync and rpc replies on a client).
    ``at`` is the local time it arrived (the ``now`` of ``receive_data``)."""

    message: m.Message
    at: float = field(default=0.0, compare=False)


_new = object.__new__


def received(message: m.Message, at: float) -> Received:
    """``Received(message, at)``, built without the frozen dataclass's ``__init__`` (one per
    message received: the RPC path's hot spot); the same instance."""
    made: Received = _new(Received)
    made.__dict__.update(message=message, at=at)
    return made


@dataclass(frozen=True)
class Closed:
    """The session ended. ``by_peer`` is true when the peer sent the close or dropped TCP."""

    code: int
    reason: str
    by_peer: bool
    # the peer sent a ``close`` (a consented end, §18.1); False for EOF, a reset, a timeout
    clean: bool = field(default=False, compare=False)


SessionEvent = Opened | Received | Closed


@dataclass(frozen=True)
class Incident:
    """Something that went wrong on one connection, kept for diagnostics (a bounded ring,
    ``Session.incidents``). ``kind``: ``limit`` (§11), ``protocol_error`` (§10.2),
    ``internal_error`` or ``closed`` (the close, either side's, with its code and reason).
    ``at`` is the session's clock (monotonic in the I/O layers)."""

    at: float
    kind: str
    detail: str
    code: int | None = None


class Session:
    """A server's or a client's view of one connection."""

    def __init__(
        self,
        role: Role,
        now: float,
        options: SessionOptions | None = None,
        *,
        member: int = 0,
        authenticate: Authenticator | None = None,
        check_contract: Callable[[Any], str | None] | None = None,
        credentials: Any = m.ABSENT,
        contract: dict[str, Any] | m.Absent = m.ABSENT,
        features: Collection[str] | None = None,
        timekeeper: Timekeeper | None = None,
        resume: dict[str, Any] | None = None,
        on_hello: Callable[[Session, dict[str, Any] | None, float], HelloAccept | HelloRefuse]
        | None = None,
        on_pong: Callable[[Session, int], None] | None = None,
        peer: str = "",
        stats: Counter[str] | None = None,
        name: str = "",
        **limits: Any,
    ) -> None:
        # the limits (§11): ``options``, with any given by name in ``limits`` replaced
        if options is None:
            options = SessionOptions(**limits)
        elif limits:
            options = dataclasses.replace(options, **limits)
        max_frame_size = options.max_frame_size
        self.role = role
        self.member = member
        self.tick_rate = options.tick_rate
        self.max_frame_size = max_frame_size
        self.peer_max_frame = DEFAULT_MAX_FRAME_SIZE
        self.name = name or f"{role.value} #{member}"
        self._decoder = FrameDecoder(
            # §2.7: small frames only until the server has sent welcome
            max_frame_size=min(max_frame_size, options.max_handshake_frame)
            if role is Role.SERVER
            else max_frame_size
        )
        self._state = State.HANDSHAKE
        self._legal = RECEIVABLE[(role, State.HANDSHAKE)]  # §6.2, for the current state
        self._out: list[bytes] = []
        self._events: list[SessionEvent] = []
        self._handshake_deadline = now + options.handshake_timeout
        self._frame_timeout = options.frame_timeout
        self._frame_started: float | None = None
        self._ping_interval = options.ping_interval
        self._idle_timeout = options.idle_timeout
        self._last_received = now
        self._last_ping = now
        self._last_sent = now
        self._nonce = 0
        self._in_flight: set[int] = set()  # §8.5: ids of calls received and not yet answered
        self._room_reqs: set[int] = set()  # §17.5: room_join/room_leave reqs not yet answered
        self.bytes_sent = 0
        self.bytes_received = 0
        # Per-connection counters (docs/monitor.md, ``ConnectionStats``): frames by message
        # type each way, and the codes of the rpc_error replies (sent by a server, received
        # by a client). Counted here so that both I/O layers and both sides agree.
        self.frames_sent = 0
        self.frames_received = 0
        self.sent_by_kind: Counter[str] = Counter()
        self.received_by_kind: Counter[str] = Counter()
        self.rpc_errors: Counter[str] = Counter()
        self.incidents: deque[Incident] = deque(maxlen=MAX_INCIDENTS)
        self.opened_at: float | None = None  # when the handshake completed
        self.closed_at: float | None = None  # when it ended (its last activity, see _finish)
        # §9.1: the round trip of this side's own pings, timed by their nonce. With
        # ``rtt_interval`` set, a ping also goes out every that many seconds to time it (a
        # Reverb server does so while a monitor runs); otherwise only heartbeats are timed.
        self.rtt_interval = options.rtt_interval
        self.rtt: float | None = None  # smoothed (RFC 6298), seconds
        self.rtt_jitter = 0.0
        self.rtt_min: float | None = None
        self.rtt_last: float | None = None
        self.rtt_samples = 0
        self.rtt_total = 0.0
        self._pings_out: dict[int, float] = {}
        self._last_probe = now
        self.identity: Any = None
        # §4.11: a client's are those it asks for, a server's those it may grant; once OPEN,
        # the features granted on this connection.
        if features is None:
            features = GRANTABLE if role is Role.SERVER else FEATURES
        self.offered = tuple(features)
        self.features: frozenset[str] = frozenset()
        self._inflate = False  # §15: this client was granted "deflate"
        # §13: a client's server-clock estimate and clock pings (None: no clock pings)
        self.timekeeper = timekeeper if role is Role.CLIENT else None
        self._sync_time: tuple[int, float] | None = None  # §13.3: the last sync's tick, time
        self._sync_room: str | m.Absent = m.ABSENT  # §17.4: ticks are per room
        self.peer = peer
        self.stats: Counter[str] = stats if stats is not None else Counter()
        self._authenticate = authenticate
        self._check_contract = check_contract
        self._on_hello = on_hello  # §18: the server's resume bookkeeping (reverb.hub)
        self._on_pong = on_pong
        self.resume_token: str | None = None  # §18.2: the last token the server gave (client)
        self.resumed = False  # §18.4: this connection resumed a membership
        self._messages = _Bucket(options.max_messages_per_second, now)
        self._calls = _Bucket(options.max_calls_per_second, now)
        # §11.2: 2 s' worth, and never less than one largest frame with its header
        rate = options.max_bytes_per_second
        self._bytes = _Bucket(rate, now, capacity=max(max_frame_size + 4.0, rate * BURST_SECONDS))
        if role is Role.CLIENT:
            hello = m.Hello(
                version=m.PROTOCOL_VERSION,
                max_frame=max_frame_size,
                auth=credentials,
                contract=contract,
                features=list(self.offered) if self.offered else m.ABSENT,
                resume=resume if resume is not None else m.ABSENT,
            )
            self._send(hello, now)

    # -- state -------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is State.CLOSED

    def _set_state(self, state: State) -> None:
        logger.debug("%s: %s -> %s", self.name, self._state.value, state.value)
        self._state = state
        self._legal = RECEIVABLE.get((self.role, state), frozenset())

    # -- outputs -----------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes to write to the socket, in order; empties the output."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def events(self) -> list[SessionEvent]:
        """What happened since the last call, in order; empties the list."""
        events, self._events = self._events, []
        return events

    # -- inputs ------------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Handle bytes from the peer. Never raises: whatever goes wrong closes this session
        (remote garbage with its §10.2 code, anything else with 1011, decision of issue 8)."""
        if self._state is State.CLOSED or not data:
            return
        self.bytes_received += len(data)
        self._last_received = now
        if self.role is Role.SERVER and not self._bytes.take(now, len(data)):
            # §11.2: counted as bytes arrive, before any of them is buffered or decoded
            self.limit_hit("byte_rate", CloseCode.POLICY, "byte rate limit exceeded", now)
            return
        completed = False
        try:
            body = self._decoder.whole(data)
            if body is not None:  # the usual read: one whole frame, nothing buffered
                completed = True
                self._frame(body, now)
                if self.closed:
                    return
            else:
                self._decoder.add(data)
            while body is None and (body := self._decoder.next_frame()) is not None:
                completed = True
                self._frame(body, now)
                if self.closed:
                    return
                body = None
        except RemoteProtocolError as exc:
            logger.warning("%s: protocol violation (%d): %s", self.name, exc.code, exc)
            self.note_incident("protocol_error", str(exc)[:200], now, exc.code)
            if (
                exc.code == CloseCode.TOO_LARGE
                and self._decoder.max_frame_size < self.max_frame_size
            ):
                self.stats["limit.handshake_frame"] += 1
            elif exc.code == CloseCode.TOO_LARGE:
                self.stats["frame_too_large"] += 1
            else:
                self.stats["protocol_error"] += 1
            self._fail(exc.code, str(exc), now)
            return
        except Exception:  # a bug of ours (or of a hook): this connection only pays for it
            logger.exception("%s: internal error while handling its input", self.name)
            self.stats["internal_error"] += 1
            self.note_incident("internal_error", "internal error while handling its input", now)
            self.close(CloseCode.INTERNAL_ERROR, "internal error", now)
            return
        if not self._decoder.in_frame:
            self._frame_started = None
        elif completed or self._frame_started is None:
            self._frame_started = now

    def receive_eof(self) -> None:
        if self._state is State.CLOSED:
            return
        where = " inside a frame" if self._decoder.in_frame else ""
        self._finish(CloseCode.ABNORMAL, f"connection ended without close{where}", by_peer=True)

    def check_timeouts(self, now: float) -> None:
        """Apply the handshake, frame, idle deadlines and send a ping when due (§2.6, §4.6, §9).

        Heartbeats depend only on what was *received* (§9.2): a ping goes out when nothing
        arrived for ``ping_interval`` (and no ping went out meanwhile), so a peer that only
        answers pings always has something to answer well before ``idle_timeout``.
        """
        if self._state is State.CLOSED:
            return
        if self._state is State.HANDSHAKE and now >= self._handshake_deadline:
            self.limit_hit("handshake_timeout", CloseCode.POLICY, "handshake timeout", now)
        elif self._frame_started is not None and now - self._frame_started >= self._frame_timeout:
            self.limit_hit("frame_timeout", CloseCode.POLICY, "frame not completed in time", now)
        elif self._state is State.OPEN and now - self._last_received >= self._idle_timeout:
            self.limit_hit("idle_timeout", CloseCode.POLICY, "idle timeout", now)
        elif self._state is State.OPEN and now >= self._next_ping():
            self._last_ping = now
            self._ping(now, scheduled=False)
        elif (
            self._state is State.OPEN
            and self.rtt_interval is not None
            and now >= self._last_probe + self.rtt_interval
        ):
            self._ping(now, scheduled=False)  # §9.1: a ping to time the round trip
        clock = self.timekeeper
        if clock is not None and self._state is State.OPEN:
            due = clock.ping_due()
            if due is not None and now >= due:
                self._ping(now, scheduled=True)  # §13.6: a clock ping

    def ping(self, now: float) -> int:
        """Send a ``ping`` now (always legal, §9); returns its nonce (§18.6 uses its pong)."""
        self._ping(now, scheduled=False)
        return self._nonce

    def forget_call(self, call_id: int) -> None:
        """The call ``call_id`` needs no answer on this connection (§18.6: its answer was
        already written here): it no longer counts as in flight (§8.5)."""
        self._in_flight.discard(call_id)

    def _ping(self, now: float, *, scheduled: bool) -> None:
        self._nonce += 1
        self._send(m.Ping(nonce=self._nonce), now)
        self._last_probe = now
        self._pings_out[self._nonce] = now
        if len(self._pings_out) > MAX_PINGS_TIMED:  # unanswered ones: forget the oldest
            del self._pings_out[next(iter(self._pings_out))]
        if self.timekeeper is not None:
            self.timekeeper.ping_sent(self._nonce, now, scheduled=scheduled)

    def _next_ping(self) -> float:
        # §9.2: after P without receiving (at most one ping per P), or as a keep-alive after P
        # without sending (the peer's own pings may wait behind a backlog of ours).
        silent = max(self._last_received, self._last_ping)
        return min(silent, self._last_sent) + self._ping_interval

    def next_deadline(self) -> float | None:
        """The earliest time ``check_timeouts`` has something to do, or None when closed."""
        if self._state is State.CLOSED:
            return None
        if self._state is State.HANDSHAKE:
            return self._handshake_deadline
        # _next_ping, inlined; comparisons rather than min/max calls (every read and answer
        # asks for it)
        received = self._last_received
        silent = received if received > self._last_ping else self._last_ping
        if self._last_sent < silent:
            silent = self._last_sent
        when = received + self._idle_timeout
        ping = silent + self._ping_interval
        if ping < when:
            when = ping
        if self.timekeeper is not None and (due := self.timekeeper.ping_due()) is not None:
            when = min(when, due)
        if self.rtt_interval is not None:
            when = min(when, self._last_probe + self.rtt_interval)
        if self._frame_started is not None:
            when = min(when, self._frame_started + self._frame_timeout)
        return when

    # -- application calls -------------------------------------------------------------------

    def send(self, message: m.Message, now: float) -> None:
        """Queue an application message; it must be legal for the peer to receive now (§6.2)."""
        if self._state is not State.OPEN:
            raise InvalidState(f"cannot send {message.TYPE} in state {self._state.value}")
        if type(message) not in RECEIVABLE[(_PEER[self.role], self._state)]:
            raise LocalProtocolError(f"a {self.role.value} may not send {message.TYPE} (§6.2)")
        feature = NEEDS_FEATURE.get(type(message))
        if feature is not None and feature not in self.features:
            raise InvalidState(
                f"cannot send {message.TYPE}: the feature {feature!r} was not granted on this "
                "connection (§4.11, §14.1)"
            )
        answers = message.id if isinstance(message, (m.RpcResult, m.RpcErrorReply)) else None
        code = message.code if isinstance(message, m.RpcErrorReply) else None
        self.send_encoded(message.TYPE, m.encode(message), now, answers=answers, code=code)

    def send_encoded(
        self,
        kind: str,
        body: bytes,
        now: float,
        *,
        answers: int | None = None,
        code: str | None = None,
    ) -> None:
        """Queue an already-encoded message body (a broadcast encodes once for every peer).

        ``answers`` is the id of the call an ``rpc_result``/``rpc_error`` answers: that id is
        free for the client to use again (§8.5); ``code``, an ``rpc_error``'s, is counted in
        ``rpc_errors``."""
        if self._state is not State.OPEN:
            raise InvalidState(f"cannot send {kind} in state {self._state.value}")
        if len(body) > self.peer_max_frame:
            raise LocalProtocolError(
                f"{kind} of {len(body)} bytes exceeds the peer's limit of {self.peer_max_frame}"
            )
        if answers is not None:
            self._in_flight.discard(answers)
        if code is not None:
            self.rpc_errors[code] += 1
        self.sent_by_kind[kind] += 1
        self._queue(body, now)

    def send_framed(
        self,
        kind: str,
        frame: bytes,
        now: float,
        *,
        answers: int | None = None,
        code: str | None = None,
    ) -> None:
        """``send_encoded`` for a body already framed (§2.1, header included): a broadcast
        frames once, and every peer's output holds the same bytes object."""
        if self._state is not State.OPEN:
            raise InvalidState(f"cannot send {kind} in state {self._state.value}")
        if len(frame) - 4 > self.peer_max_frame:
            raise LocalProtocolError(
                f"{kind} of {len(frame) - 4} bytes exceeds the peer's limit of "
                f"{self.peer_max_frame}"
            )
        if answers is not None:
            self._in_flight.discard(answers)
        if code is not None:
            self.rpc_errors[code] += 1
        self.sent_by_kind[kind] += 1
        self.frames_sent += 1
        self._out.append(frame)
        self.bytes_sent += len(frame)
        self._last_sent = now

    def _check_room_request(self, message: m.Message) -> None:
        """§17.4, §17.5 on a "rooms" connection: an ``rpc`` names its room; a ``room_join`` /
        ``room_leave`` whose ``req`` is still unanswered is a protocol error."""
        if isinstance(message, (m.Rpc, m.AppMessage)) and message.room is m.ABSENT:
            raise RemoteProtocolError(
                f"{message.TYPE} without 'room' on a rooms connection (§17.4)",
                CloseCode.PROTOCOL_ERROR,
            )
        if isinstance(message, (m.RoomJoin, m.RoomLeave)):
            if message.req in self._room_reqs:
                raise RemoteProtocolError(
                    f"room request req {message.req} already in flight", CloseCode.PROTOCOL_ERROR
                )
            self._room_reqs.add(message.req)

    def room_answered(self, req: int) -> None:
        """A ``room_joined`` / ``room_refused`` / ``room_left`` answered ``req`` (§17.5)."""
        self._room_reqs.discard(req)

    @property
    def calls_in_flight(self) -> frozenset[int]:
        """Ids of the calls received on this (server) session and not answered yet (§8.5)."""
        return frozenset(self._in_flight)

    def close(self, code: int, reason: str, now: float) -> None:
        """Send ``close`` and end the session (§10.1). Does nothing if already closed."""
        if self._state is State.CLOSED:
            return
        self._send(m.Close(code=code, reason=reason), now)
        self._finish(code, reason, by_peer=False)

    def limit_hit(self, limit: str, code: int, reason: str, now: float) -> None:
        """Close because a limit was hit: logged with the peer and counted in ``stats`` (§11)."""
        logger.warning("%s: %s: closing (%d)", self.name, reason, code)
        self.stats[f"limit.{limit}"] += 1
        self.note_incident("limit", f"{limit}: {reason}", now, code)
        self.close(code, reason, now)

    def note_incident(self, kind: str, detail: str, now: float, code: int | None = None) -> None:
        """Keep ``Incident(now, kind, detail, code)`` in ``incidents`` (the last
        ``MAX_INCIDENTS``); the hub notes the limits it enforces for this connection."""
        self.incidents.append(Incident(now, kind, detail, code))

    def rtt_sample(self, rtt: float) -> None:
        """Add one round-trip time (seconds) to the smoothed estimate (RFC 6298 gains)."""
        self.rtt_samples += 1
        self.rtt_total += rtt
        self.rtt_last = rtt
        if self.rtt_min is None or rtt < self.rtt_min:
            self.rtt_min = rtt
        if self.rtt is None:
            self.rtt, self.rtt_jitter = rtt, rtt / 2
        else:
            self.rtt_jitter += RTT_VAR_GAIN * (abs(rtt - self.rtt) - self.rtt_jitter)
            self.rtt += RTT_GAIN * (rtt - self.rtt)

    def abort(self, code: int, reason: str) -> None:
        """End the session without sending anything (the transport is unusable or dropped)."""
        if self._state is not State.CLOSED:
            self._finish(code, reason, by_peer=False)

    # -- internals ---------------------------------------------------------------------------

    def _queue(self, body: bytes, now: float) -> None:
        frame = encode_frame(body)
        self.frames_sent += 1
        self._out.append(frame)
        self.bytes_sent += len(frame)
        self._last_sent = now

    def _send(self, message: m.Message, now: float) -> None:
        self.sent_by_kind[message.TYPE] += 1
        if isinstance(message, m.RpcErrorReply):
            self.rpc_errors[message.code] += 1
        self._queue(m.encode(message), now)

    def _refuse_over_rate(self, what: str, refusal: m.Message, now: float) -> None:
        """§11: the calls' bucket is empty: log, count and answer ``refusal``; the connection
        stays open."""
        logger.warning("%s: call rate limit exceeded: %s refused", self.name, what)
        self.stats["limit.call_rate"] += 1
        self.note_incident("limit", f"call_rate: {what} refused", now)
        self._send(refusal, now)

    def _fail(self, code: int, reason: str, now: float) -> None:
        self.close(code, reason[:200], now)

    def _finish(self, code: int, reason: str, *, by_peer: bool, clean: bool = False) -> None:
        # the time of its last activity: an abort or an EOF comes without a clock reading
        at = max(self._last_received, self._last_sent, self._last_probe)
        self.closed_at = at
        who = "by the peer" if by_peer else "by this side"
        self.note_incident("closed", f"{who}: {reason}" if reason else who, at, code)
        self._set_state(State.CLOSED)
        self._events.append(Closed(code=code, reason=reason, by_peer=by_peer, clean=clean))

    def _receive(self, message: m.Message, now: float) -> None:
        kind = type(message)
        if kind is m.RpcResult and self._legal is _CLIENT_OPEN:
            # the client's common case (§8.4): legal in OPEN, needs no feature, nothing more
            # to check here; the same counting and event as the general path below
            self.received_by_kind["rpc_result"] += 1
            self._events.append(received(message, now))
            return
        if m.MESSAGE_TYPES[message.TYPE] not in self._legal:
            raise RemoteProtocolError(
                f"{message.TYPE} is not allowed in state {self._state.value}",
                CloseCode.PROTOCOL_ERROR,
            )
        self.received_by_kind[message.TYPE] += 1
        if kind is m.Rpc and self._legal is _SERVER_OPEN:
            self._receive_rpc(message, now)  # type: ignore[arg-type]
            return
        feature = NEEDS_FEATURE.get(type(message))
        if feature is not None and feature not in self.features:
            raise RemoteProtocolError(
                f"{message.TYPE} without the {feature!r} feature (§14.1)",
                CloseCode.PROTOCOL_ERROR,
            )
        if self.role is Role.SERVER and not self._messages.take(now):
            self.limit_hit("message_rate", CloseCode.POLICY, "message rate limit exceeded", now)
            return
        if isinstance(message, m.AppMessage) and self.role is Role.SERVER:
            # §14.3: messages share the calls' budget (§11)
            if not self._calls.take(now):
                self._refuse_over_rate(
                    f"message {message.name!r}",
                    m.MessageError(
                        name=message.name,
                        code=MessageCode.RATE_LIMITED,
                        reason="too many messages",
                    ),
                    now,
                )
                return
        if self.role is Role.SERVER and ROOMS in self.features:
            self._check_room_request(message)
        if isinstance(message, m.Rpc):
            if message.id in self._in_flight:
                raise RemoteProtocolError(
                    f"rpc id {message.id} already in flight", CloseCode.PROTOCOL_ERROR
                )
            if not self._calls.take(now):
                self._refuse_over_rate(
                    f"call {message.id}",
                    m.RpcErrorReply(
                        id=message.id, code=RpcCode.RATE_LIMITED, message="too many calls"
                    ),
                    now,
                )
                return
            self._in_flight.add(message.id)
        if isinstance(message, m.Close):
            logger.info("%s: peer closed (%d) %s", self.name, message.code, message.reason)
            self._finish(message.code, message.reason, by_peer=True, clean=True)
        elif isinstance(message, m.Ping):
            # §13.4: a server stamps its pongs to a "time" client with its clock, at once
            stamp = now if self.role is Role.SERVER and TIME in self.features else m.ABSENT
            self._send(m.Pong(nonce=message.nonce, time=stamp), now)
        elif isinstance(message, m.Pong):
            # its arrival already counted as traffic in receive_data; a client takes a sample
            sent = self._pings_out.pop(message.nonce, None)
            if sent is not None:
                self.rtt_sample(now - sent)
            if self.role is Role.CLIENT:
                told = self._server_time(message.time, "pong")  # §13.4
                if self.timekeeper is not None:
                    self.timekeeper.pong(message.nonce, told, now)
            elif self._on_pong is not None:
                self._on_pong(self, message.nonce)  # §18.6: answers written before it arrived
        elif isinstance(message, m.Hello):
            self._receive_hello(message, now)
        elif isinstance(message, m.Welcome):
            self.member = message.member
            self.tick_rate = float(message.tick_rate)
            self.peer_max_frame = message.max_frame
            self.identity = None if isinstance(message.identity, m.Absent) else message.identity
            # §4.11: a feature the client did not ask for is not granted
            granted = _features(message.features, "welcome")
            self.features = frozenset(self.offered).intersection(granted)
            self._inflate = DEFLATE in self.features
            told = self._server_time(message.time, "welcome")
            if self.timekeeper is not None:
                self.timekeeper.opened(now, self.tick_rate, TIME in self.features, told)
            self.name = f"client #{message.member}"
            if RESUME in self.features:  # §18.2
                token = message.resume_token
                self.resume_token = None if isinstance(token, m.Absent) else token
                self.resumed = message.resumed is True
            self._set_state(State.OPEN)
            self.opened_at = now
            self._events.append(
                Opened(
                    member=message.member,
                    tick_rate=self.tick_rate,
                    identity=self.identity,
                    features=self.features,
                    resumed=self.resumed,
                    resume_token=self.resume_token,
                )
            )
        else:
            if isinstance(message, m.Sync) and TIME in self.features:
                self._check_sync_time(message, now)
            elif isinstance(message, m.RpcErrorReply):
                self.rpc_errors[message.code] += 1
            self._events.append(received(message, now))

    def _receive_rpc(self, message: m.Rpc, now: float) -> None:
        """A server's ``rpc`` in OPEN (§8.1): the checks of the general path, in its order
        (message rate, "rooms" naming, duplicate id, call rate), then the event."""
        if not self._messages.take(now):
            self.limit_hit("message_rate", CloseCode.POLICY, "message rate limit exceeded", now)
            return
        if ROOMS in self.features:
            self._check_room_request(message)
        if message.id in self._in_flight:
            raise RemoteProtocolError(
                f"rpc id {message.id} already in flight", CloseCode.PROTOCOL_ERROR
            )
        if not self._calls.take(now):
            self._refuse_over_rate(
                f"call {message.id}",
                m.RpcErrorReply(id=message.id, code=RpcCode.RATE_LIMITED, message="too many calls"),
                now,
            )
            return
        self._in_flight.add(message.id)
        self._events.append(received(message, now))

    def _server_time(self, value: float | m.Absent, where: str) -> float | None:
        """§13: with "time" granted, the server time a message must carry (else 1002)."""
        if TIME not in self.features:
            return None
        if isinstance(value, m.Absent) or value < 0:
            raise RemoteProtocolError(
                f"{where}.time must be a number >= 0 with the feature 'time' (§13)",
                CloseCode.PROTOCOL_ERROR,
            )
        return value

    def _check_sync_time(self, sync: m.Sync, now: float) -> None:
        """§13.3: every part carries ``time``, equal within a tick, increasing with it."""
        stamp = self._server_time(sync.time, "sync")
        assert stamp is not None
        last = self._sync_time
        if sync.room != self._sync_room:  # §17.4: another room's ticks, a new sequence
            self._sync_room, last = sync.room, None
        if last is not None and (
            (sync.tick == last[0] and stamp != last[1])
            or (sync.tick > last[0] and stamp <= last[1])
        ):
            raise RemoteProtocolError(
                f"sync.time {stamp} of tick {sync.tick} does not follow {last[1]} of tick "
                f"{last[0]} (§13.3)",
                CloseCode.PROTOCOL_ERROR,
            )
        self._sync_time = (sync.tick, stamp)
        if sync.final and self.timekeeper is not None:
            self.timekeeper.sync(sync.tick, stamp, now)

    def _receive_hello(self, hello: m.Hello, now: float) -> None:
        if hello.version != m.PROTOCOL_VERSION:
            self._fail(
                CloseCode.UNSUPPORTED_VERSION,
                f"unsupported protocol version {hello.version}; "
                f"this server speaks {m.PROTOCOL_VERSION}",
                now,
            )
            return
        if not isinstance(hello.max_frame, m.Absent):
            if hello.max_frame < MIN_MAX_FRAME:
                raise RemoteProtocolError(
                    f"max_frame below the minimum of {MIN_MAX_FRAME}", CloseCode.PROTOCOL_ERROR
                )
            self.peer_max_frame = hello.max_frame
        asked = _features(hello.features, "hello")
        granted = [f for f in self.offered if f in asked]
        if COLUMNS in granted and "compact" not in granted:  # §20.1
            granted.remove(COLUMNS)
        if self._check_contract is not None and not isinstance(hello.contract, m.Absent):
            mismatch = self._check_contract(hello.contract)
            if mismatch is not None:
                logger.warning("%s: contract mismatch: %s", self.name, mismatch)
                self.stats["contract_mismatch"] += 1
                self.close(CloseCode.CONTRACT_MISMATCH, f"contract mismatch: {mismatch}"[:400], now)
                return
        identity: Any = m.ABSENT
        if self._authenticate is not None:
            verdict = self._run_authenticate(hello)
            if isinstance(verdict, Reject):
                logger.warning("%s: authentication rejected: %s", self.name, verdict.reason)
                self.stats["auth_rejected"] += 1
                self.close(CloseCode.UNAUTHORIZED, verdict.reason[:200], now)
                return
            identity = self.identity = verdict.identity
        resume = None if isinstance(hello.resume, m.Absent) else _resume_form(hello.resume)
        if resume is not None and RESUME not in asked:
            raise RemoteProtocolError(
                "hello.resume without the 'resume' feature in hello.features (§18.3)",
                CloseCode.PROTOCOL_ERROR,
            )
        if resume is not None and (RESUME not in granted or self._on_hello is None):
            # §18.4: a server that does not grant "resume" holds nothing to resume
            self.stats["resume.refused"] += 1
            self.close(CloseCode.RESUME_EXPIRED, "resume refused: expired", now)
            return
        token: str | None = None
        replaced = 0
        if self._on_hello is not None and RESUME in granted:
            answer = self._on_hello(self, resume, now)
            if isinstance(answer, HelloRefuse):
                self.close(answer.code, answer.reason, now)
                return
            token = answer.token
            if answer.member is not None:  # §18.4: this connection continues that membership
                replaced, self.member = self.member, answer.member
                self.resumed = True
        self.features = frozenset(granted)
        self._set_state(State.OPEN)
        self.opened_at = now
        self._decoder.max_frame_size = self.max_frame_size  # §2.7: the handshake cap ends here
        self._send(
            m.Welcome(
                version=m.PROTOCOL_VERSION,
                member=self.member,
                tick_rate=self.tick_rate,
                max_frame=self.max_frame_size,
                identity=identity,
                features=granted if granted else m.ABSENT,
                time=now if TIME in granted else m.ABSENT,  # §13.2
                resume_token=token if token is not None else m.ABSENT,  # §18.2
                resumed=True if self.resumed else m.ABSENT,  # §18.4
            ),
            now,
        )
        self._events.append(
            Opened(
                member=self.member,
                tick_rate=self.tick_rate,
                identity=self.identity,
                features=self.features,
                resumed=self.resumed,
                replaced=replaced,
            )
        )

    def _frame(self, body: bytes, now: float) -> None:
        """One received frame body: counted, inflated (§15), decoded and handled."""
        self.frames_received += 1
        if self._inflate and body[:1] == b"\x00":
            body = self._inflated(body)
        self._receive(m.decode(body), now)

    def _inflated(self, body: bytes) -> bytes:
        """§15.2: a compressed frame's message, never larger than this client's max_frame."""
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(memoryview(body)[1:], self.max_frame_size + 1)
        except zlib.error as exc:
            raise RemoteProtocolError(
                f"compressed frame is not a zlib stream: {exc}", CloseCode.INVALID_PAYLOAD
            ) from None
        if len(out) > self.max_frame_size:
            raise RemoteProtocolError(
                f"compressed frame inflates beyond max_frame ({self.max_frame_size})",
                CloseCode.TOO_LARGE,
            )
        if not inflater.eof or inflater.unused_data:
            raise RemoteProtocolError(
                "compressed frame is not exactly one whole zlib stream", CloseCode.INVALID_PAYLOAD
            )
        self.stats["inflated_frames"] += 1
        return out

    def _run_authenticate(self, hello: m.Hello) -> Accept | Reject:
        assert self._authenticate is not None
        credentials = None if isinstance(hello.auth, m.Absent) else hello.auth
        try:
            verdict = self._authenticate(credentials, self.peer)
            if isinstance(verdict, Accept):
                m.to_wire(verdict.identity, "identity")
                return verdict
            if isinstance(verdict, Reject):
                return verdict
            raise TypeError(f"authenticate returned {verdict!r}, not Accept or Reject")
        except Exception:  # a broken hook (or an unencodable identity) rejects, never crashes
            logger.exception("%s: the authenticate hook failed", self.name)
            return Reject("authentication error")


def _features(value: list[Any] | m.Absent, where: str) -> list[str]:
    """§4.11: an absent list is empty; anything but up to 16 short strings is 1002."""
    if isinstance(value, m.Absent):
        return []
    if (
        len(value) > MAX_FEATURES
        or not all(type(f) is str for f in value)
        or any(len(f) > MAX_FEATURE_NAME for f in value)
    ):
        raise RemoteProtocolError(
            f"{where}.features must be at most {MAX_FEATURES} strings "
            f"of at most {MAX_FEATURE_NAME} characters",
            CloseCode.PROTOCOL_ERROR,
        )
    return value


def _resume_form(value: Any) -> dict[str, Any]:
    """§18.3: ``hello.resume`` as a dict with a member id, a token, a tick or null and the
    ids of the calls in flight; anything else is 1002 "malformed resume"."""
    ok = isinstance(value, dict)
    if ok:
        member, token = value.get("member"), value.get("token")
        since, waiting = value.get("since_tick"), value.get("waiting", [])
        ok = (
            type(member) is int
            and 0 < member <= m.MAX_SAFE_INT
            and type(token) is str
            and 0 < len(token) <= MAX_RESUME_TOKEN
            and (since is None or (type(since) is int and 0 <= since <= m.MAX_SAFE_INT))
            and type(waiting) is list
            and len(waiting) <= MAX_RESUME_WAITING
            and all(type(i) is int and 0 <= i <= m.MAX_SAFE_INT for i in waiting)
        )
    if not ok:
        raise RemoteProtocolError("malformed resume (§18.3)", CloseCode.PROTOCOL_ERROR)
    return {
        "member": value["member"],
        "token": value["token"],
        "since_tick": value.get("since_tick"),
        "waiting": list(value.get("waiting", [])),
    }


class _Bucket:
    """A token bucket: ``rate`` per second, holding at most ``capacity`` (by default
    ``BURST_SECONDS`` worth, at least 1)."""

    __slots__ = ("_at", "_capacity", "_rate", "_tokens")

    def __init__(self, rate: float, now: float, *, capacity: float | None = None) -> None:
        self._rate = rate
        self._capacity = capacity if capacity is not None else max(1.0, rate * BURST_SECONDS)
        self._tokens = self._capacity
        self._at = now

    def take(self, now: float, amount: float = 1.0) -> bool:
        if now > self._at:  # refilled up to capacity (a comparison: three buckets per call)
            tokens = self._tokens + (now - self._at) * self._rate
            self._tokens = self._capacity if tokens > self._capacity else tokens
            self._at = now
        if self._tokens < amount:
            return False
        self._tokens -= amount
        return True
