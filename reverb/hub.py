"""What both I/O layers do with sessions, sans I/O: membership ids, call bookkeeping, encoding
broadcasts once per frame limit. The threaded and asyncio layers only move bytes and events."""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import re
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from reverb._future import LightFuture
from reverb.errors import (
    CloseCode,
    ConnectionClosed,
    EncodeError,
    HandshakeFailed,
    InvalidState,
    LocalProtocolError,
    MessageCode,
    RpcCode,
    RpcError,
)
from reverb.options import MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP, MAX_PENDING_CALLS, ServerOptions
from reverb.proto import messages as m
from reverb.proto.framing import DEFAULT_MAX_FRAME_SIZE, encode_frame
from reverb.proto.session import (
    COLUMNS,
    DEFLATE,
    MESSAGES,
    NEEDS_FEATURE,
    RESUME,
    ROOMS,
    Closed,
    HelloAccept,
    HelloRefuse,
    Opened,
    Received,
    Role,
    Session,
    SessionEvent,
    State,
)
from reverb.reconnect import (
    ReconnectEvent,
    Reconnector,
    ReconnectPolicy,
    ReconnectState,
)
from reverb.replication.types import TypeRegistry, contract, contract_mismatch
from reverb.resume import (
    Expired,
    MembershipKeeper,
    NotRun,
    Refusal,
    Refused,
    Replay,
    Wait,
    resumable,
)
from reverb.transport import (
    ClientEvent,
    PeerClosed,
    PeerDropped,
    PeerMessage,
    PeerOpened,
    PeerResumed,
    ServerEvent,
    peer_message,
)

__all__ = [
    "HOUSEKEEPING_INTERVAL",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "MAX_PENDING_CALLS",
    "MAX_UNREAD",
    "SHED_REASONS",
    "UNREAD_REASON",
    "ClientHub",
    "ClientStep",
    "Deadlines",
    "ServerHub",
    "ServerOptions",
    "app_message",
    "sheds",
]

logger = logging.getLogger("reverb")

# §15: frames this large or larger go compressed to a client that asked for "deflate" (a
# 1000-object compact delta of random floats halves at level 1 for ~0.7 ms, once per view);
# smaller ones gain too little.
COMPRESS_MIN = 1024
COMPRESS_LEVEL = 1

# Syncs and events waiting for client_sync(): a game pumping at any frame rate holds a few;
# a program that never pumps is disconnected rather than left to grow without bound.
MAX_UNREAD = 10_000
UNREAD_REASON = "client_sync() not called: too many updates unread"

# §10.1: why a peer that does not read is sent ``close`` 1013, by the limit it went over
SHED_REASONS = {
    "send_buffer": "send buffer over its limit",
    "total_send_buffer": "server send buffers over their limit",
    "send_buffer_per_ip": "send buffers of this address over their limit",
}


# §18: how often a server with held memberships expires them and asks "resume" clients to
# confirm the answers they were written (``ServerHub.next_housekeeping``)
HOUSEKEEPING_INTERVAL = 0.25


class _Scheduled(Protocol):
    deadline: float | None  # its entry in the heap (None: none)


ConnT = TypeVar("ConnT", bound=_Scheduled)


class Deadlines(Generic[ConnT]):
    """When each connection next has something to do, earliest first: the sessions' own
    deadlines (``Session.next_deadline``: handshake, frame, idle, heartbeat, §2.6, §4.6, §9)
    and the I/O layer's (a close to flush). One heap for any number of connections, so a
    deadline is met on time and a connection costs nothing until its time; both I/O layers
    keep one and sleep until ``next_at()``.

    A connection keeps at most one live entry, its ``deadline``: ``schedule`` pushes a new
    one only when it is earlier (a deadline that moved later is found when the old entry
    comes due, then re-scheduled), so receiving bytes costs a comparison."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, ConnT]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, conn: ConnT, when: float | None) -> bool:
        """Make sure ``conn`` comes due no later than ``when`` (None: nothing to add). True
        when ``when`` is now the earliest of all (an I/O layer with a timer re-arms it)."""
        if when is None or (conn.deadline is not None and conn.deadline <= when):
            return False
        conn.deadline = when
        heap = self._heap
        heapq.heappush(heap, (when, next(self._seq), conn))
        return heap[0][2] is conn

    def due(self, now: float) -> list[ConnT]:
        """The connections whose deadline has come (each once; its entry is gone: the I/O
        layer checks it, then schedules it again)."""
        heap = self._heap
        out = []
        while heap and heap[0][0] <= now:
            when, _, conn = heapq.heappop(heap)
            if conn.deadline == when:  # else superseded by an earlier entry, or discarded
                conn.deadline = None
                out.append(conn)
        return out

    def next_at(self) -> float | None:
        """The earliest deadline (None: none)."""
        heap = self._heap
        while heap and heap[0][2].deadline != heap[0][0]:
            heapq.heappop(heap)  # stale
        return heap[0][0] if heap else None

    def clear(self) -> None:
        for _, _, conn in self._heap:
            conn.deadline = None
        self._heap.clear()


def sheds(backlog: int, limit: int, session: Session) -> bool:
    """The slow-consumer rule (§10.1), the same in every I/O layer: a peer whose unsent bytes
    (``backlog``, counted before the output just queued) already exceed ``limit`` as more is
    queued is dropped with ``close`` 1013 (``SHED_REASONS["send_buffer"]``). Memory stays
    under the limit plus one tick, and one large sync to a healthy reader never counts
    against it. Ask it only when output was queued."""
    return backlog > limit and not session.closed


class ServerHub:
    """The server's sessions by membership id, and its counters (``stats``)."""

    def __init__(self, options: ServerOptions, types: TypeRegistry | None = None) -> None:
        self.options = options
        self.types = types
        self.members: dict[int, Session] = {}
        # membership id -> the I/O layer's connection, kept by ``on_event`` when given one
        self.conns: dict[int, Any] = {}
        self.pending: dict[int, int] = {}  # calls handed to the game loop but not yet polled
        self.connections = 0
        self._per_ip: Counter[str] = Counter()
        self._next_member = 1  # §4.3: never reused while the server runs
        # accepted, refused, bytes_sent, bytes_received, and one "limit.*" key per limit hit
        self.stats: Counter[str] = Counter()
        self.observer: Any = None  # reverb.monitor's Observer, when a monitor is running
        # §18: memberships of "resume" clients, held across a drop, and their call ledgers.
        # Its lock: a resume hello is checked where the connection is decoded, replies are
        # recorded where the game sends them (two threads in the threaded layer).
        self.keeper = MembershipKeeper(
            grace=options.resume_grace, policy=options.owned_policy, on_drop=options.on_drop
        )
        self.resume_lock = threading.RLock()
        self._confirming: dict[int, tuple[int, int, float]] = {}  # member: nonce, mark, at

        # §17.2: the contract of the room types' objects, merged into the server's (§4.9)
        self.room_contract: Callable[[], dict[str, Any]] | None = None

    def traffic(self) -> tuple[int, int]:
        """Bytes (sent, received) since the server started, open connections included."""
        sessions = list(self.members.values())
        return (
            self.stats["bytes_sent"] + sum(s.bytes_sent for s in sessions),
            self.stats["bytes_received"] + sum(s.bytes_received for s in sessions),
        )

    def admit(self, ip: str) -> bool:
        """Whether a new connection from ``ip`` fits the connection limits (§11). A
        membership held for a resume (§18.5) keeps its seat."""
        held = len(self.keeper.held()) if self.keeper.stats["dropped"] else 0
        if self.connections + held >= self.options.max_connections:
            reason = "connections"
        elif self._per_ip[ip] >= self.options.max_connections_per_ip:
            reason = "connections_per_ip"
        else:
            return True
        self.stats["refused"] += 1
        self.stats[f"limit.{reason}"] += 1
        logger.warning("refused a connection from %s: limit.%s", ip, reason)
        return False

    def open(self, ip: str, port: int, now: float) -> Session:
        member = self._next_member
        self._next_member += 1
        self.stats["accepted"] += 1
        self.connections += 1
        self._per_ip[ip] += 1
        session = Session(
            Role.SERVER,
            now,
            self.options,
            member=member,
            peer=ip,
            stats=self.stats,
            check_contract=self._check_contract if self.types is not None else None,
            on_hello=self._on_hello,
            on_pong=self._on_pong,
            authenticate=self.options.authenticate,
            features=self.options.features,
        )
        session.name = f"client #{member} ({ip}:{port})"
        return session

    # -- §18: resume ------------------------------------------------------------------------

    def _on_hello(
        self, session: Session, resume: dict[str, Any] | None, now: float
    ) -> HelloAccept | HelloRefuse:
        """A "resume" client's hello: a fresh membership gets a token (§18.2); a resume is
        checked against the held membership (§18.4)."""
        with self.resume_lock:
            if resume is None:
                return HelloAccept(self.keeper.join(session.member, session.identity).reveal())
            verdict = self.keeper.resume(
                resume["member"],
                resume["token"],
                identity=session.identity,
                address=session.peer,
                since_tick=resume["since_tick"],
                waiting=resume["waiting"],
                now=now,
            )
        if isinstance(verdict, Refused):
            self.stats["resume.refused"] += 1
            if verdict.reason is Refusal.RATE_LIMITED:
                self.stats["limit.resume_failures"] += 1
                return HelloRefuse(CloseCode.POLICY, REFUSALS[verdict.reason])
            code = (
                CloseCode.RESUME_BAD_TOKEN
                if verdict.reason is Refusal.BAD_TOKEN
                else CloseCode.RESUME_EXPIRED
            )
            return HelloRefuse(code, REFUSALS[verdict.reason])
        self.stats["resume.resumed"] += 1
        session.name = f"client #{verdict.member} ({session.peer}, resumed)"
        return HelloAccept(verdict.token.reveal(), verdict.member)

    def confirm_ping(self, session: Session, now: float) -> None:
        """§18.6: a ``ping`` whose ``pong`` confirms every answer written before it."""
        if session.state is not State.OPEN:
            return
        with self.resume_lock:
            if session.member in self.keeper:
                mark = self.keeper.ledger(session.member).mark()
                self._confirming[session.member] = (session.ping(now), mark, now)

    def _on_pong(self, session: Session, nonce: int) -> None:
        """§18.6: the client has every answer written on this connection before the ping."""
        with self.resume_lock:
            pending = self._confirming.get(session.member)
            if pending is not None and pending[0] == nonce:
                self._confirming[session.member] = (-1, 0, pending[2])
                if session.member in self.keeper:
                    self.keeper.ledger(session.member).confirm_through(pending[1])

    def remember(self, members: tuple[int, ...], message: m.Message, now: float) -> None:
        """Record the answer of a call in the member's ledger (§18.6), before it is sent:
        a member that dropped meanwhile gets it after its resume. Called by both I/O layers
        with every ``rpc_result``/``rpc_error`` they are asked to send."""
        if not isinstance(message, (m.RpcResult, m.RpcErrorReply)):
            return
        with self.resume_lock:
            for member in members:
                if member not in self.keeper:
                    continue
                ledger = self.keeper.ledger(member)
                if message.id not in ledger.running:
                    continue
                session = self.members.get(member)
                limit = session.peer_max_frame if session is not None else DEFAULT_MAX_FRAME_SIZE
                ledger.finish(
                    message.id,
                    _encode(message, limit)[0],
                    sent=session is not None and session.state is State.OPEN,
                )

    def next_housekeeping(self, now: float) -> float | None:
        """When the I/O layer calls ``housekeeping`` next: while memberships are held or
        "resume" members are connected, every ``HOUSEKEEPING_INTERVAL``; else never (None)."""
        return now + HOUSEKEEPING_INTERVAL if len(self.keeper) else None

    def housekeeping(self, now: float) -> tuple[list[ServerEvent], list[Session]]:
        """§18: expire held memberships whose grace is over (their ``PeerClosed``), and the
        sessions of "resume" clients whose remembered answers await confirmation: the I/O
        layer calls ``confirm_ping`` on each (holding what guards that session) and pumps it.
        Both I/O layers call this from their timers, a few times a second."""
        events: list[ServerEvent] = []
        touched: list[Session] = []
        with self.resume_lock:
            for expired in self.keeper.tick(now):
                if isinstance(expired, Expired):
                    self._confirming.pop(expired.member, None)
                    self.stats["resume.expired"] += 1
                    events.append(
                        PeerClosed(
                            expired.member,
                            CloseCode.ABNORMAL,
                            "resume grace expired",
                            expired.policy.value,
                        )
                    )
            for member, session in self.members.items():
                if member not in self.keeper or session.state is not State.OPEN:
                    continue
                pending = self._confirming.get(member)
                if pending is not None:
                    nonce, _, at = pending
                    if nonce >= 0 and now - at < CONFIRM_TIMEOUT:
                        continue  # its pong is still to come
                    if now - at < CONFIRM_INTERVAL:
                        continue
                if self.keeper.ledger(member).unconfirmed():
                    touched.append(session)
        return events, touched

    def _check_contract(self, theirs: Any) -> str | None:
        assert self.types is not None
        mine = contract(self.types)
        named = theirs.get("types") if isinstance(theirs, dict) else None
        if self.room_contract is not None and isinstance(named, dict):
            # §17.2: room types' objects the client describes must agree; the others are
            # not required (a protocol-1 client knows only the default room's types)
            extra = self.room_contract()["types"]
            mine["types"] = {**{k: v for k, v in extra.items() if k in named}, **mine["types"]}
        return contract_mismatch(mine, theirs)

    def on_event(
        self, session: Session, event: SessionEvent, now: float, conn: Any = None
    ) -> ServerEvent | None:
        """Turn a session's event into one for the game loop (None: nothing to report).

        ``conn``: the I/O layer's connection the session belongs to, kept in ``conns`` from
        its welcome (re-keyed by a resume, §18.4) until its close."""
        member = session.member
        if isinstance(event, Received):
            call = event.message
            if isinstance(call, m.ROOM_REQUESTS):  # §17: to the game loop's room service
                return PeerMessage(member, call)
            if not isinstance(call, (m.Rpc, m.AppMessage)):  # pragma: no cover - §6.2 forbids it
                return None
            if isinstance(call, m.Rpc) and RESUME in session.features and member in self.keeper:
                if not self._ledger_admits(session, call, now):
                    return None
            pending = self.pending.get(member, 0)
            if pending >= self.options.max_pending_calls:
                # §14.3: a client's messages wait for the game loop with its calls, in one queue
                logger.warning("%s has %d calls pending: refused", session.name, pending)
                self.stats["limit.pending_calls"] += 1
                session.note_incident("limit", f"pending_calls: {call.TYPE} refused", now)
                reply: m.Message = (
                    m.RpcErrorReply(
                        id=call.id, code=RpcCode.OVERLOADED, message="too many calls pending"
                    )
                    if isinstance(call, m.Rpc)
                    else m.MessageError(
                        name=call.name,
                        code=MessageCode.OVERLOADED,
                        reason="too many calls and messages pending",
                    )
                )
                self.remember((member,), reply, now)
                session.send(reply, now)
                return None
            self.pending[member] = pending + 1
            return peer_message(member, call)
        if isinstance(event, Opened):
            self.members[member] = session
            if conn is not None:
                if event.resumed:  # §18.4: keyed by the resumed id from now on
                    self.conns.pop(event.replaced, None)
                self.conns[event.member] = conn
            if event.resumed:  # §18.4: the same membership, on a new connection
                logger.info("%s resumed", session.name)
                return PeerResumed(member, event.identity, event.features)
            logger.info("%s connected", session.name)
            return PeerOpened(member, event.identity, event.features)
        if conn is not None and self.conns.get(member) is conn:
            del self.conns[member]
        self.connections -= 1
        self._per_ip[session.peer] -= 1
        if self._per_ip[session.peer] <= 0:
            del self._per_ip[session.peer]
        self.stats["bytes_sent"] += session.bytes_sent
        self.stats["bytes_received"] += session.bytes_received
        if self.members.get(member) is not session:
            return None  # never completed the handshake: the game never heard of it
        if self.observer is not None:  # monitor hook: keeps its last counters and incidents
            self.observer.left(session)
        del self.members[member]
        with self.resume_lock:
            self._confirming.pop(member, None)
            if member in self.keeper:
                if not event.clean and resumable(event.code, event.reason):
                    dropped = self.keeper.drop(member, now)
                    if not any(isinstance(e, Expired) for e in dropped):
                        logger.info(
                            "%s dropped (%d) %s: held for a resume",
                            session.name,
                            event.code,
                            event.reason,
                        )
                        self.stats["resume.dropped"] += 1
                        return PeerDropped(member, event.code, event.reason)
                else:
                    self.keeper.leave(member)  # §18.1: a consented close ends it at once
        logger.info("%s disconnected (%d) %s", session.name, event.code, event.reason)
        return PeerClosed(member, event.code, event.reason, self.options.owned_policy.value)

    def forget(self, member: int, conn: Any) -> None:
        """The I/O layer gave up on ``conn`` without its ``Closed`` event (a close that
        failed twice): forget its membership."""
        if self.conns.get(member) is conn:
            del self.conns[member]
            self.members.pop(member, None)

    def _ledger_admits(self, session: Session, call: m.Rpc, now: float) -> bool:
        """§18.6: whether a "resume" member's call runs now; else it was answered here (a
        remembered answer, or ``not_run``) or its answer is on its way."""
        with self.resume_lock:
            decision = self.keeper.ledger(session.member).receive(call.id)
        if isinstance(decision, Replay):
            self.stats["resume.replayed"] += 1
            session.send_encoded("rpc_result", decision.reply, now, answers=call.id)
            return False
        if isinstance(decision, Wait):
            session.forget_call(call.id)
            return False
        if isinstance(decision, NotRun):
            self.stats["resume.not_run"] += 1
            session.send(
                m.RpcErrorReply(
                    id=call.id, code=RpcCode.NOT_RUN, message="too many unconfirmed answers"
                ),
                now,
            )
            return False
        return True

    def send(self, members: tuple[int, ...], message: m.Message, now: float) -> list[Session]:
        """Queue ``message`` on those sessions, encoded once per frame limit; return them.

        A sync entry too large for one client's ``max_frame`` closes only the clients with
        that limit, with 1009 (§7.5, §10.2); the others get their sync as usual.
        """
        kind = type(message)
        if len(members) == 1 and (kind is m.RpcResult or kind is m.RpcErrorReply):
            session = self.reply(members[0], message, now)  # type: ignore[arg-type]
            if session is not None:
                return [session]
        encoded: dict[tuple[int, bool, bool, bool], list[bytes] | EncodeError] = {}
        # each variant's frames, headers included: built once, shared by every peer that
        # takes that variant (the same bytes objects in every peer's output)
        framed: dict[tuple[int, bool, bool, bool], tuple[list[bytes], list[bytes]]] = {}
        columnar = kind is m.SyncFrame and message.offers_columns  # type: ignore[attr-defined]
        touched = []
        # a reply ends its call: the id may be used again (§8.5)
        answers = message.id if isinstance(message, (m.RpcResult, m.RpcErrorReply)) else None
        code = message.code if isinstance(message, m.RpcErrorReply) else None
        feature = NEEDS_FEATURE.get(type(message))
        # §17.4: the default room's syncs and replies carry "room" to "rooms" connections only
        scoped = type(message) in ROOM_SCOPED and message.room is m.ABSENT  # type: ignore[attr-defined]
        answered = getattr(message, "req", None) if type(message) in ROOM_ANSWERS else None
        if not isinstance(answered, int):
            answered = None
        sessions, observer, kind_name, opened = (
            self.members,
            self.observer,
            message.TYPE,
            State.OPEN,
        )
        for member in members:
            session = sessions.get(member)
            if session is None or session.state is not opened:
                continue
            features = session.features
            if feature is not None and feature not in features:
                continue  # §4.11: nothing of a feature reaches a connection that lacks it
            if answered is not None:
                session.room_answered(answered)
            key = (
                session.peer_max_frame,
                DEFLATE in features,
                scoped and ROOMS in features,
                columnar and COLUMNS in features,  # §20
            )
            shared = framed.get(key)
            if shared is None:
                bodies = self._variant(message, key, encoded)
                if isinstance(bodies, EncodeError):
                    if self._unsendable(session, message, bodies, now):
                        touched.append(session)
                    continue
                shared = framed[key] = (bodies, [encode_frame(body) for body in bodies])
            for whole in shared[1]:
                session.send_framed(kind_name, whole, now, answers=answers, code=code)
            if observer is not None:  # monitor hook: frames sent
                observer.sent(member, message, shared[0], now)
            touched.append(session)
        return touched

    @staticmethod
    def _variant(
        message: m.Message,
        key: tuple[int, bool, bool, bool],
        encoded: dict[tuple[int, bool, bool, bool], list[bytes] | EncodeError],
    ) -> list[bytes] | EncodeError:
        """The bodies of ``message`` for peers of ``key`` (frame limit, deflate, room stamp,
        columns), encoded once per send (the deflated variant from the plain one)."""
        found = encoded.get(key)
        if found is not None:
            return found
        limit, deflate, stamp, cols = key
        plain = encoded.get((limit, False, stamp, cols)) if deflate else None
        try:
            if plain is None:
                variant = message.columnar() if cols else message  # type: ignore[attr-defined]
                plain = _encode(m.in_room(variant, DEFAULT_ROOM) if stamp else variant, limit)
            found = _deflated(plain) if deflate else plain
        except EncodeError as exc:
            found = exc
        encoded[key] = found
        return found

    def _unsendable(
        self, session: Session, message: m.Message, error: EncodeError, now: float
    ) -> bool:
        """``message`` cannot be encoded for ``session``: an app message is not sent to it
        (§14.2, it stays connected; False); a sync entry too large for its ``max_frame``
        closes it with 1009 (§7.5, §10.2; True: it was touched)."""
        if isinstance(message, m.AppMessage):
            # 65536 bytes fit every client (§5.1: no max_frame is smaller)
            logger.error("%s: %s: not sent", session.name, error)
            self.stats["limit.message_too_large"] += 1
            session.note_incident("limit", f"message_too_large: {error}"[:200], now)
            return False
        reason = f"{_entry_name(error)} does not fit the client's max_frame"
        logger.error("%s: closing (%d): %s: %s", session.name, CloseCode.TOO_LARGE, reason, error)
        self.stats["sync_too_large"] += 1
        session.note_incident("limit", f"sync_too_large: {reason}", now)
        session.close(CloseCode.TOO_LARGE, reason, now)
        return True

    def reply(
        self, member: int, message: m.RpcResult | m.RpcErrorReply, now: float
    ) -> Session | None:
        """``send`` of one call's answer to one member, on the common path: an open
        session without "rooms" (§17.4) or "deflate" (§15), an answer within its frame
        limit. The same bytes and bookkeeping as ``send``; None when not on that path
        (``send`` then does it all)."""
        session = self.members.get(member)
        if session is None or session.state is not State.OPEN or message.room is not m.ABSENT:
            return None
        features = session.features
        if features and (ROOMS in features or DEFLATE in features):
            return None
        body = m.encode(message)
        if len(body) > session.peer_max_frame:
            return None  # ``send`` answers ``bad_return`` instead (§8.3)
        code = message.code if type(message) is m.RpcErrorReply else None
        session.send_framed(message.TYPE, encode_frame(body), now, answers=message.id, code=code)
        if self.observer is not None:  # monitor hook: frames sent
            self.observer.sent(member, message, [body], now)
        return session


# §18.4: the close reason of each refusal
REFUSALS = {
    Refusal.BAD_TOKEN: "resume refused: bad token",
    Refusal.EXPIRED: "resume refused: expired",
    Refusal.RATE_LIMITED: "too many failed resume attempts",
}
# §18.6: how often a server asks a "resume" client to confirm the answers it was written
CONFIRM_INTERVAL = 0.5
CONFIRM_TIMEOUT = 5.0  # a pong that never came: ask again

# §17.4: the messages that belong to a room; §17.5: the answers that end a room request
ROOM_SCOPED = frozenset(
    {m.Sync, m.SyncFrame, m.WireSync, m.RpcResult, m.RpcErrorReply, m.AppMessage, m.MessageError}
)
ROOM_ANSWERS = frozenset({m.RoomJoined, m.RoomRefused, m.RoomLeft})
DEFAULT_ROOM = "default"  # §17.1: the room id of the server's own world


def _entry_name(error: EncodeError) -> str:
    """``object uid=N`` from ``encode_sync``'s error, which names the entry that does not fit."""
    found = re.search(r"object uid=\d+", str(error))
    return found.group(0) if found else "an object"


def _deflated(bodies: list[bytes] | EncodeError) -> list[bytes] | EncodeError:
    """§15.2: each body of ``COMPRESS_MIN`` bytes or more as a compressed frame, when that is
    smaller; compressed once per message and shared by every peer that has the feature."""
    if isinstance(bodies, EncodeError):
        return bodies
    out = []
    for body in bodies:
        if len(body) >= COMPRESS_MIN:
            packed = b"\x00" + zlib.compress(body, COMPRESS_LEVEL)
            if len(packed) < len(body):
                body = packed
        out.append(body)
    return out


def _encode(message: m.Message, limit: int) -> list[bytes]:
    if isinstance(message, m.Sync):
        return m.encode_sync(message, limit)
    body = m.encode(message)
    if len(body) > limit and isinstance(message, m.AppMessage):
        raise EncodeError(
            f"message {message.name!r} of {len(body)} bytes exceeds the client's max_frame "
            f"of {limit}"
        )
    if len(body) > limit and isinstance(message, m.RpcResult):
        logger.error("rpc result of %d bytes exceeds the client's frame limit", len(body))
        error = m.RpcErrorReply(
            id=message.id, code=RpcCode.BAD_RETURN, message="the return value is too large"
        )
        return [m.encode(error)]
    if len(body) > limit:  # pragma: no cover - every other message is small
        raise LocalProtocolError(f"{message.TYPE} exceeds the frame limit")
    return [body]


class ClientStep(NamedTuple):
    """What a client's I/O layer does after one session event (``ClientHub.step``)."""

    events: list[ClientEvent]  # for the game loop's inbox, in order
    reconnect: bool  # the connection dropped and the client resumes (§18): start reconnecting
    settled: bool  # the handshake is over (welcome or close): ``connect()`` may return


class ClientHub:
    """A client's calls in flight and what it learnt in the handshake.

    With a ``ReconnectPolicy`` (§18) it also keeps a ``Reconnector``: across a drop the
    membership id, the token, the calls in flight (re-sent after the resume with their ids)
    and the calls made meanwhile (queued) survive; the I/O layer reconnects when
    ``resuming`` and reports each attempt's outcome through ``on_events``."""

    max_unread = MAX_UNREAD  # events the game may leave unread before it is disconnected

    def __init__(self, reconnect: ReconnectPolicy | None = None) -> None:
        self.member: int | None = None
        self.identity: Any = None
        self.tick_rate = 0.0
        self.features: frozenset[str] = frozenset()  # granted in the handshake (§4.11)
        self.closed: Closed | None = None
        self._calls: dict[int, Future[Any]] = {}
        self._next_call = 0
        self.reconnector = (
            Reconnector(reconnect) if reconnect is not None and reconnect.enabled else None
        )
        # §17: the room this connection is in, as received (rpc calls name it), and the room
        # requests waiting for their answer, by req (their own id space)
        self.room: str | None = None
        self._room_reqs: dict[int, Future[Any]] = {}
        self._next_req = 0

    @property
    def resuming(self) -> bool:
        """A drop is being recovered: waiting to reconnect, or an attempt under way."""
        rc = self.reconnector
        return rc is not None and rc.state in (ReconnectState.WAITING, ReconnectState.CONNECTING)

    def reset(self) -> None:
        self.member = None
        self.features = frozenset()
        self.closed = None
        self.room = None

    def room_request(
        self,
        session: Session | None,
        build: Callable[[int], m.Message],
        now: float,
        future: Future[Any] | None = None,
    ) -> Future[Any]:
        """Queue a room request (§17.5) built for a fresh ``req``; the future resolves with
        the answering message (``room_joined``, ``room_refused``, ``room_left`` or
        ``room_list_result``), or None at once for a ``room_unwatch``."""
        if future is None:
            future = Future()
        if session is None or session.state is not State.OPEN:
            closed = self.closed
            code, reason = (
                (closed.code, closed.reason) if closed else (CloseCode.ABNORMAL, "not connected")
            )
            future.set_exception(ConnectionClosed(code, reason))
            return future
        if ROOMS not in session.features:
            future.set_exception(
                InvalidState(
                    "rooms need the 'rooms' feature: connect with Client(..., rooms=True) to a "
                    "server that grants it (docs/protocol.md §17.2)"
                )
            )
            return future
        req = self._next_req
        self._next_req += 1
        message = build(req)
        if isinstance(message, m.RoomUnwatch):
            future.set_result(None)
        else:
            self._room_reqs[req] = future
        session.send(message, now)
        return future

    def resume_hello(self) -> dict[str, Any]:
        """The ``hello.resume`` of the attempt under way (§18.3)."""
        assert self.reconnector is not None
        return self.reconnector.resume_hello()

    def send_message(self, session: Session | None, name: str, data: Any, now: float) -> None:
        """Queue a ``message`` (§14.2) on ``session``. Raises ``InvalidState`` when not
        connected or when the server did not grant ``"messages"``, ``ValueError`` for a bad
        name, ``EncodeError`` for data JSON cannot carry (§3.4) and ``LocalProtocolError``
        when it does not fit the server's ``max_frame``: nothing is sent then."""
        message = app_message(name, data)
        if session is not None and ROOMS in session.features:  # §17.4: for the room it is in
            message = m.AppMessage(name=message.name, data=message.data, room=self.room or "")
        if session is None or session.state is not State.OPEN:
            closed = self.closed
            why = f"closed ({closed.code}) {closed.reason}" if closed else "not connected"
            if self.resuming:
                why = "reconnecting (messages are at most once across a drop, §18.7)"
            raise InvalidState(f"cannot send message {name!r}: the connection is {why}")
        if MESSAGES not in session.features:
            raise InvalidState(
                f"cannot send message {name!r}: the server did not grant the 'messages' "
                "feature (an older server, or one that disabled it; docs/protocol.md §14.1)"
            )
        session.send(message, now)

    def call(
        self,
        session: Session | None,
        uid: int,
        method: str,
        args: list[Any],
        now: float,
        future: Future[Any] | None = None,
    ) -> Future[Any]:
        """Queue an ``rpc`` on ``session``; return the future its reply resolves (``future``
        when given, so an I/O layer's own kind of future is resolved without a relay; else
        a ``LightFuture``, whose condition is made only if a thread blocks on it).
        While reconnecting (§18) the call is queued and sent after the resume."""
        if future is None:
            future = LightFuture()
        rc = self.reconnector
        is_open = session is not None and session.state is State.OPEN
        if rc is not None and (self.resuming or (is_open and rc.state is ReconnectState.CONNECTED)):
            book = rc.calls
            outgoing = book.new(uid, method, tuple(args))
            self._calls[outgoing.id] = future
            if is_open and not self.resuming:
                assert session is not None
                book.sent(outgoing)
                session.send(m.Rpc(id=outgoing.id, uid=uid, method=method, args=args), now)
            else:
                book.queue(outgoing)  # §18.6: it has not left; sent after the resume
            return future
        if session is None or not is_open:
            closed = self.closed
            code, reason = (
                (closed.code, closed.reason) if closed else (CloseCode.ABNORMAL, "not connected")
            )
            future.set_exception(ConnectionClosed(code, reason))
            return future
        assert session is not None
        call_id = self._next_call
        self._next_call += 1
        self._calls[call_id] = future
        if ROOMS in session.features:  # §17.4: the call names its room
            room = self.room or ""
            session.send(m.Rpc(id=call_id, uid=uid, method=method, args=args, room=room), now)
        else:  # the bytes of ``encode(Rpc(...))``, without building the message
            session.send_encoded("rpc", m.encode_rpc(call_id, uid, method, args), now)
        return future

    def step(
        self,
        session: Session | None,
        event: SessionEvent,
        now: float,
        unread: int,
        later: Callable[[Callable[[], None]], None] | None = None,
    ) -> ClientStep | None:
        """One session event of a client, whatever its I/O layer: what the layer does next.

        Futures are resolved through ``later`` (the threaded layer runs them once its locks
        are released), or at once when it is None (the event loop's client, whose calls are
        awaited on that thread: an ``rpc_result`` then resolves its call here, §8.4, and
        None is returned: nothing else to do). ``unread``: the events already waiting for
        the game; a game that leaves more than ``max_unread`` unread is closed with 1008
        (the session's ``close`` is queued here). None: nothing for the layer to do."""
        if later is None:
            if (
                type(event) is Received
                and type(event.message) is m.RpcResult
                and self.reconnector is None
            ):
                result = event.message
                future = self._calls.pop(result.id, None)
                if future is None:
                    logger.warning("reply to unknown call id %d ignored", result.id)
                else:
                    _settle(future, result.value, None)
                return None
            later = _now
        outs = self.on_events(event, later, session, now)
        if (
            outs
            and unread + len(outs) > self.max_unread
            and session is not None
            and not session.closed
        ):
            session.limit_hit("unread", CloseCode.POLICY, UNREAD_REASON, now)
        if isinstance(event, Closed):
            return ClientStep(outs, self.resuming, True)
        if outs or isinstance(event, Opened):
            return ClientStep(outs, False, isinstance(event, Opened))
        return None

    def handshake_failure(self, silent: str = "no welcome in time") -> HandshakeFailed | None:
        """Why ``connect()`` failed (None: it did not, the welcome came): the close the
        handshake ended with, else ``silent``."""
        if self.member is not None:
            return None
        closed = self.closed
        if closed is None:
            return HandshakeFailed(CloseCode.ABNORMAL, silent)
        return HandshakeFailed(closed.code, closed.reason)

    def on_event(
        self, event: SessionEvent, later: Callable[[Callable[[], None]], None]
    ) -> ClientEvent | None:
        """Resolve futures (through ``later``); return the event for the game loop, if any."""
        out = self.on_events(event, later, None, 0.0)
        return out[-1] if out else None

    def on_events(
        self,
        event: SessionEvent,
        later: Callable[[Callable[[], None]], None],
        session: Session | None,
        now: float,
    ) -> list[ClientEvent]:
        """``on_event`` for layers that reconnect (§18): ``session`` is the one the event
        came from (calls are re-sent on it after a resume); several events may result."""
        rc = self.reconnector
        if isinstance(event, Received):
            message = event.message
            if isinstance(message, m.ROOM_REPLIES):
                reply = self._room_reply(event, message, later)
                return [reply] if reply is not None else []
            if isinstance(message, m.Sync) and message.final and rc is not None:
                rc.applied(message.tick)
            if not isinstance(message, (m.RpcResult, m.RpcErrorReply)):
                return [event]
            future = self._calls.pop(message.id, None)
            if rc is not None:
                rc.calls.answered(message.id)
            if future is None:
                logger.warning("reply to unknown call id %d ignored", message.id)
                return []
            if isinstance(message, m.RpcResult):
                later(functools.partial(_settle, future, message.value, None))
                return []
            later(functools.partial(_settle, future, None, RpcError(message.message, message.code)))
            return [event]
        if isinstance(event, Opened):
            self.features = event.features
            self.identity = event.identity
            self.tick_rate = event.tick_rate
            if rc is not None and rc.state is ReconnectState.CONNECTING:
                if event.resumed and event.member == rc.member and event.resume_token:
                    self.member = event.member
                    out: list[ClientEvent] = list(
                        rc.resumed(event.member, event.resume_token, full=True)
                    )
                    if session is not None:  # §18.6: in flight first, then the queued
                        for call in rc.calls.to_send_after_resume():
                            rc.calls.sent(call)
                            session.send(
                                m.Rpc(
                                    id=call.id,
                                    uid=call.uid,
                                    method=call.method,
                                    args=list(call.args),
                                ),
                                now,
                            )
                    return out
                # a server that answered a resume hello with a fresh welcome broke §18.4
                logger.error("the server did not resume the membership: starting afresh")
                self._abandon(later, ConnectionClosed(CloseCode.ABNORMAL, "not resumed"))
                out = list(rc.refused("not resumed"))
                self.member = event.member
                rc.welcomed(event.member, event.resume_token)
                return out
            self.member = event.member
            if rc is not None:
                rc.welcomed(event.member, event.resume_token)
            return []
        return self._closed(event, later, now)

    def _closed(
        self, event: Closed, later: Callable[[Callable[[], None]], None], now: float
    ) -> list[ClientEvent]:
        rc = self.reconnector
        out: list[ReconnectEvent] = []
        if rc is not None and rc.state is ReconnectState.CONNECTED:
            out = rc.lost(
                now,
                event.code,
                event.reason,
                consented=not resumable(event.code, event.reason),
            )
            if _state(rc) is ReconnectState.WAITING:
                logger.info("connection lost (%d) %s: reconnecting", event.code, event.reason)
                return list(out)
        elif rc is not None and rc.state is ReconnectState.CONNECTING:
            if event.code in _REFUSED and event.reason in REFUSALS.values():
                out = rc.refused(event.reason.removeprefix("resume refused: "))
            else:
                out = rc.attempt_failed(now)
                if _state(rc) is ReconnectState.WAITING:
                    return []
        self.closed = event
        closed = ConnectionClosed(event.code, event.reason)
        self._abandon(later, closed)
        for pending in self._room_reqs.values():
            later(functools.partial(_settle, pending, None, closed))
        self._room_reqs = {}
        logger.info("disconnected (%d) %s", event.code, event.reason)
        if self.member is None:
            return list(out)
        return [*out, event]

    def attempt_failed(self, now: float, reason: str) -> list[ClientEvent]:
        """A reconnection attempt did not reach the server (refused, timed out)."""
        rc = self.reconnector
        if rc is None or rc.state is not ReconnectState.CONNECTING:
            return []
        out = rc.attempt_failed(now)
        if _state(rc) is ReconnectState.WAITING:
            return []
        event = Closed(CloseCode.ABNORMAL, reason, by_peer=False)
        self.closed = event
        self._abandon(None, ConnectionClosed(CloseCode.ABNORMAL, reason))
        return [*out, event]

    def give_up(self, code: int, reason: str) -> list[ClientEvent]:
        """The game closed the client while it was reconnecting: the end (``disconnected``)."""
        rc = self.reconnector
        if rc is None or not self.resuming:
            return []
        rc.close()
        event = Closed(code, reason, by_peer=False)
        self.closed = event
        self._abandon(None, ConnectionClosed(code, reason))
        return [event]

    def _abandon(
        self, later: Callable[[Callable[[], None]], None] | None, closed: ConnectionClosed
    ) -> None:
        """Fail every pending call: in flight with ``closed`` (outcome unknown), queued
        ones (never sent) with ``not_run`` (§18.6)."""
        calls, self._calls = self._calls, {}
        never: set[int] = set()
        if self.reconnector is not None:
            _, queued = self.reconnector.calls.abandon()
            never = {c.id for c in queued}
        for call_id, pending in calls.items():
            error: BaseException = (
                RpcError("the call did not run: the resume failed", RpcCode.NOT_RUN)
                if call_id in never
                else closed
            )
            settle = functools.partial(_settle, pending, None, error)
            if later is None:
                settle()
            else:
                later(settle)

    def _room_reply(
        self, event: Received, message: m.Message, later: Callable[[Callable[[], None]], None]
    ) -> ClientEvent | None:
        """§17: track the room, resolve the request it answers; joins, leaves and lobby
        events go on to the game loop (the context despawns, fires events, updates lobbies)."""
        if isinstance(message, m.RoomJoined):
            self.room = message.room
        elif isinstance(message, m.RoomLeft) and message.room == self.room:
            self.room = None
        req = getattr(message, "req", None)
        if type(req) is int and not isinstance(message, m.RoomEvent):
            future = self._room_reqs.pop(req, None)
            if future is not None:
                later(functools.partial(_settle, future, message, None))
        if isinstance(message, (m.RoomJoined, m.RoomLeft, m.RoomEvent)):
            return event
        return None


def _now(resolve: Callable[[], None]) -> None:
    """``later`` of a layer that resolves futures at once."""
    resolve()


def _state(rc: Reconnector) -> ReconnectState:
    """The state now (read through a call: mypy narrows ``rc.state`` across the calls that
    change it)."""
    return rc.state


_REFUSED = (CloseCode.RESUME_BAD_TOKEN, CloseCode.RESUME_EXPIRED, CloseCode.POLICY)


def app_message(name: str, data: Any) -> m.AppMessage:
    """A ``message`` to send (§14.2): ``ValueError`` for a bad name, ``EncodeError`` for
    data JSON cannot carry (§3.4)."""
    if type(name) is not str or not 0 < len(name) <= m.MAX_MESSAGE_NAME:
        raise ValueError(
            f"a message name is a string of 1 to {m.MAX_MESSAGE_NAME} characters, not {name!r}"
        )
    m.to_wire(name, "message name")  # a lone surrogate has no UTF-8 form
    return m.AppMessage(name=name, data=m.to_wire(data, f"message {name!r} data"))


def _settle(future: Future[Any], value: Any, error: BaseException | None) -> None:
    """Resolve a call's future unless the caller cancelled it (a cancelled ``await`` of an
    asyncio call cancels it): a late reply must never raise in the I/O layer."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
    except InvalidStateError:  # already done: cancelled by its caller
        pass
