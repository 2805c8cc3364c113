"""A client's hub, sans I/O: calls in flight and their futures, what the handshake granted,
room requests (§17.5), resuming after a drop (§18), and what each session event means for
the I/O layer (``ClientHub.step``)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any, NamedTuple

from reverb._future import LightFuture
from reverb.errors import (
    CloseCode,
    ConnectionClosed,
    HandshakeFailed,
    InvalidState,
    RpcCode,
    RpcError,
)
from reverb.hub.common import MAX_UNREAD, REFUSALS, UNREAD_REASON
from reverb.proto import messages as m
from reverb.proto.session import (
    MESSAGES,
    ROOMS,
    Closed,
    Opened,
    Received,
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
from reverb.resume import (
    resumable,
)
from reverb.transport import (
    ClientEvent,
)

__all__ = [
    "ClientHub",
    "ClientStep",
    "app_message",
]

logger = logging.getLogger("reverb")


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
