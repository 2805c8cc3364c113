"""A server's hub, sans I/O: membership ids (§4.3), admission limits, the resume keeper (§18),
call bookkeeping, and each broadcast encoded once per frame limit and feature set."""

from __future__ import annotations

import logging
import re
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

from reverb.errors import (
    CloseCode,
    EncodeError,
    LocalProtocolError,
    MessageCode,
    RpcCode,
)
from reverb.hub.common import COMPRESS_LEVEL, COMPRESS_MIN, HOUSEKEEPING_INTERVAL, REFUSALS
from reverb.options import ServerOptions
from reverb.proto import messages as m
from reverb.proto.framing import DEFAULT_MAX_FRAME_SIZE, encode_frame
from reverb.proto.session import (
    COLUMNS,
    DEFLATE,
    NEEDS_FEATURE,
    RESUME,
    ROOMS,
    HelloAccept,
    HelloRefuse,
    Opened,
    Received,
    Role,
    Session,
    SessionEvent,
    State,
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
    PeerClosed,
    PeerDropped,
    PeerMessage,
    PeerOpened,
    PeerResumed,
    ServerEvent,
    peer_message,
)

__all__ = [
    "CONFIRM_INTERVAL",
    "CONFIRM_TIMEOUT",
    "DEFAULT_ROOM",
    "ROOM_ANSWERS",
    "ROOM_SCOPED",
    "ServerHub",
]

logger = logging.getLogger("reverb")


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
