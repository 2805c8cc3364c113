"""What both I/O layers do with sessions, sans I/O: membership ids, call bookkeeping, encoding
broadcasts once per frame limit. The threaded and asyncio layers only move bytes and events."""

from __future__ import annotations

import functools
import logging
import re
import zlib
from collections import Counter
from collections.abc import Callable, Collection
from concurrent.futures import Future
from typing import Any

from reverb.auth import Authenticator
from reverb.errors import (
    CloseCode,
    ConnectionClosed,
    EncodeError,
    InvalidState,
    LocalProtocolError,
    MessageCode,
    RpcCode,
    RpcError,
)
from reverb.proto import messages as m
from reverb.proto.framing import DEFAULT_MAX_FRAME_SIZE, encode_frame
from reverb.proto.session import (
    DEFLATE,
    FRAME_TIMEOUT,
    GRANTABLE,
    HANDSHAKE_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_BYTES_PER_SECOND,
    MAX_CALLS_PER_SECOND,
    MAX_HANDSHAKE_FRAME,
    MAX_MESSAGES_PER_SECOND,
    MESSAGES,
    NEEDS_FEATURE,
    PING_INTERVAL,
    ROOMS,
    Closed,
    Opened,
    Received,
    Role,
    Session,
    SessionEvent,
    State,
)
from reverb.replication.types import TypeRegistry, contract, contract_mismatch
from reverb.transport import ClientEvent, PeerClosed, PeerMessage, PeerOpened, ServerEvent

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "MAX_PENDING_CALLS",
    "ClientHub",
    "ServerHub",
    "ServerOptions",
    "app_message",
]

logger = logging.getLogger("reverb")

MAX_PENDING_CALLS = 1024  # §11: calls queued for the game loop per connection
MAX_CONNECTIONS = 1024  # file descriptors are finite; a game needing more shards its servers
# Households and campuses share addresses behind NAT, so this is generous; it stops one host
# from taking every slot.
MAX_CONNECTIONS_PER_IP = 256
# §15: frames this large or larger go compressed to a client that asked for "deflate" (a
# 1000-object compact delta of random floats halves at level 1 for ~0.7 ms, once per view);
# smaller ones gain too little.
COMPRESS_MIN = 1024
COMPRESS_LEVEL = 1


class ServerOptions:
    """Per-connection limits shared by every session a server opens (§11)."""

    def __init__(
        self,
        *,
        tick_rate: float = 30.0,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        frame_timeout: float = FRAME_TIMEOUT,
        ping_interval: float = PING_INTERVAL,
        idle_timeout: float = IDLE_TIMEOUT,
        max_pending_calls: int = MAX_PENDING_CALLS,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_ip: int = MAX_CONNECTIONS_PER_IP,
        max_messages_per_second: float = MAX_MESSAGES_PER_SECOND,
        max_calls_per_second: float = MAX_CALLS_PER_SECOND,
        max_handshake_frame: int = MAX_HANDSHAKE_FRAME,
        max_bytes_per_second: float = MAX_BYTES_PER_SECOND,
        authenticate: Authenticator | None = None,
        features: Collection[str] = GRANTABLE,
    ) -> None:
        if tick_rate <= 0:
            raise ValueError("tick_rate must be positive")
        self.tick_rate = tick_rate
        self.max_pending_calls = max_pending_calls
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.session: dict[str, Any] = {
            "tick_rate": tick_rate,
            "max_frame_size": max_frame_size,
            "handshake_timeout": handshake_timeout,
            "frame_timeout": frame_timeout,
            "ping_interval": ping_interval,
            "idle_timeout": idle_timeout,
            "max_messages_per_second": max_messages_per_second,
            "max_calls_per_second": max_calls_per_second,
            "max_handshake_frame": max_handshake_frame,
            "max_bytes_per_second": max_bytes_per_second,
            "authenticate": authenticate,
            "features": tuple(features),  # what it may grant (§4.11)
        }


class ServerHub:
    """The server's sessions by membership id, and its counters (``stats``)."""

    def __init__(self, options: ServerOptions, types: TypeRegistry | None = None) -> None:
        self.options = options
        self.types = types
        self.members: dict[int, Session] = {}
        self.pending: dict[int, int] = {}  # calls handed to the game loop but not yet polled
        self.connections = 0
        self._per_ip: Counter[str] = Counter()
        self._next_member = 1  # §4.3: never reused while the server runs
        # accepted, refused, bytes_sent, bytes_received, and one "limit.*" key per limit hit
        self.stats: Counter[str] = Counter()
        self.observer: Any = None  # reverb.monitor's Observer, when a monitor is running
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
        """Whether a new connection from ``ip`` fits the connection limits (§11)."""
        if self.connections >= self.options.max_connections:
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
            member=member,
            peer=ip,
            stats=self.stats,
            check_contract=self._check_contract if self.types is not None else None,
            **self.options.session,
        )
        session.name = f"client #{member} ({ip}:{port})"
        return session

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

    def on_event(self, session: Session, event: SessionEvent, now: float) -> ServerEvent | None:
        """Turn a session's event into one for the game loop (None: nothing to report)."""
        member = session.member
        if isinstance(event, Received):
            call = event.message
            if isinstance(call, m.ROOM_REQUESTS):  # §17: to the game loop's room service
                return PeerMessage(member, call)
            if not isinstance(call, (m.Rpc, m.AppMessage)):  # pragma: no cover - §6.2 forbids it
                return None
            pending = self.pending.get(member, 0)
            if pending >= self.options.max_pending_calls:
                # §14.3: a client's messages wait for the game loop with its calls, in one queue
                logger.warning("%s has %d calls pending: refused", session.name, pending)
                self.stats["limit.pending_calls"] += 1
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
                session.send(reply, now)
                return None
            self.pending[member] = pending + 1
            return PeerMessage(member, call)
        if isinstance(event, Opened):
            self.members[member] = session
            logger.info("%s connected", session.name)
            return PeerOpened(member, event.identity, event.features)
        self.connections -= 1
        self._per_ip[session.peer] -= 1
        if self._per_ip[session.peer] <= 0:
            del self._per_ip[session.peer]
        self.stats["bytes_sent"] += session.bytes_sent
        self.stats["bytes_received"] += session.bytes_received
        if self.members.pop(member, None) is None:
            return None  # never completed the handshake: the game never heard of it
        logger.info("%s disconnected (%d) %s", session.name, event.code, event.reason)
        return PeerClosed(member, event.code, event.reason)

    def send(self, members: tuple[int, ...], message: m.Message, now: float) -> list[Session]:
        """Queue ``message`` on those sessions, encoded once per frame limit; return them.

        A sync entry too large for one client's ``max_frame`` closes only the clients with
        that limit, with 1009 (§7.5, §10.2); the others get their sync as usual.
        """
        encoded: dict[tuple[int, bool, bool], list[bytes] | EncodeError] = {}
        framed: dict[tuple[int, bool, bool], list[bytes]] = {}  # the same, with headers: shared
        touched = []
        # a reply ends its call: the id may be used again (§8.5)
        answers = message.id if isinstance(message, (m.RpcResult, m.RpcErrorReply)) else None
        feature = NEEDS_FEATURE.get(type(message))
        # §17.4: the default room's syncs and replies carry "room" to "rooms" connections only
        scoped = type(message) in ROOM_SCOPED and message.room is m.ABSENT  # type: ignore[attr-defined]
        answered = getattr(message, "req", None) if type(message) in ROOM_ANSWERS else None
        for member in members:
            session = self.members.get(member)
            if session is None or session.state is not State.OPEN:
                continue
            if feature is not None and feature not in session.features:
                continue  # §4.11: nothing of a feature reaches a connection that lacks it
            if isinstance(answered, int):
                session.room_answered(answered)
            stamp = scoped and ROOMS in session.features
            key = (session.peer_max_frame, DEFLATE in session.features, stamp)
            if key not in encoded:
                plain = encoded.get((key[0], False, stamp)) if key[1] else None
                try:
                    if plain is None:
                        plain = _encode(
                            m.in_room(message, DEFAULT_ROOM) if stamp else message, key[0]
                        )
                    encoded[key] = _deflated(plain) if key[1] else plain
                except EncodeError as exc:
                    encoded[key] = exc
            bodies = encoded[key]
            if isinstance(bodies, EncodeError) and isinstance(message, m.AppMessage):
                # §14.2: not sent to this client (logged, counted); it stays connected.
                # 65536 bytes fit every client (§5.1: no max_frame is smaller)
                logger.error("%s: %s: not sent", session.name, bodies)
                self.stats["limit.message_too_large"] += 1
                continue
            if isinstance(bodies, EncodeError):
                reason = f"{_entry_name(bodies)} does not fit the client's max_frame"
                logger.error(
                    "%s: closing (%d): %s: %s", session.name, CloseCode.TOO_LARGE, reason, bodies
                )
                self.stats["sync_too_large"] += 1
                session.close(CloseCode.TOO_LARGE, reason, now)
            else:
                frames = framed.get(key)
                if frames is None:
                    frames = framed[key] = [encode_frame(body) for body in bodies]
                for whole in frames:
                    session.send_framed(message.TYPE, whole, now, answers=answers)
                if self.observer is not None:  # monitor hook: frames sent
                    self.observer.sent(member, message, bodies, now)
            touched.append(session)
        return touched


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


class ClientHub:
    """A client's calls in flight and what it learnt in the handshake."""

    def __init__(self) -> None:
        self.member: int | None = None
        self.identity: Any = None
        self.tick_rate = 0.0
        self.features: frozenset[str] = frozenset()  # granted in the handshake (§4.11)
        self.closed: Closed | None = None
        self._calls: dict[int, Future[Any]] = {}
        self._next_call = 0
        # §17: the room this connection is in, as received (rpc calls name it), and the room
        # requests waiting for their answer, by req (their own id space)
        self.room: str | None = None
        self._room_reqs: dict[int, Future[Any]] = {}
        self._next_req = 0

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
        when given, so an I/O layer's own kind of future is resolved without a relay)."""
        if future is None:
            future = Future()
        if session is None or session.state is not State.OPEN:
            closed = self.closed
            code, reason = (
                (closed.code, closed.reason) if closed else (CloseCode.ABNORMAL, "not connected")
            )
            future.set_exception(ConnectionClosed(code, reason))
            return future
        call_id = self._next_call
        self._next_call += 1
        self._calls[call_id] = future
        room = (self.room or "") if ROOMS in session.features else m.ABSENT  # §17.4
        session.send(m.Rpc(id=call_id, uid=uid, method=method, args=args, room=room), now)
        return future

    def on_event(
        self, event: SessionEvent, later: Callable[[Callable[[], None]], None]
    ) -> ClientEvent | None:
        """Resolve futures (through ``later``); return the event for the game loop, if any."""
        if isinstance(event, Received):
            message = event.message
            if isinstance(message, m.ROOM_REPLIES):
                return self._room_reply(event, message, later)
            if not isinstance(message, (m.RpcResult, m.RpcErrorReply)):
                return event
            future = self._calls.pop(message.id, None)
            if future is None:
                logger.warning("reply to unknown call id %d ignored", message.id)
                return None
            if isinstance(message, m.RpcResult):
                later(functools.partial(_settle, future, message.value, None))
                return None
            later(functools.partial(_settle, future, None, RpcError(message.message, message.code)))
            return event
        if isinstance(event, Opened):
            self.member = event.member
            self.features = event.features
            self.identity = event.identity
            self.tick_rate = event.tick_rate
            return None
        self.closed = event
        calls, self._calls = self._calls, {}
        closed = ConnectionClosed(event.code, event.reason)
        for pending in [*calls.values(), *self._room_reqs.values()]:
            later(functools.partial(_settle, pending, None, closed))
        self._room_reqs = {}
        logger.info("disconnected (%d) %s", event.code, event.reason)
        return event if self.member is not None else None

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
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
