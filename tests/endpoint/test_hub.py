"""reverb/hub/, pure: the decisions both I/O layers share, tested without any I/O.

Sessions are opened by the hub and fed frames at chosen times; the hub's outputs (events for
the game loop, frames queued on sessions, counters) are what is asserted.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

import pytest

from reverb.errors import ConnectionClosed, RpcError
from reverb.hub import (
    HOUSEKEEPING_INTERVAL,
    ClientHub,
    Deadlines,
    ServerHub,
    ServerOptions,
    sheds,
)
from reverb.proto import messages as m
from reverb.proto.session import CloseCode, Closed, Opened, Received, Session, State
from reverb.transport import PeerClosed, PeerMessage, PeerOpened
from tests.proto.helpers import client, frame, frames, sent

EOF_REASON = "connection ended without close"

# -- ServerHub -----------------------------------------------------------------------------


def hub(**options: Any) -> ServerHub:
    return ServerHub(ServerOptions(**options))


def feed(h: ServerHub, session: Session, data: bytes, now: float = 0.0) -> list[Any]:
    """Give the session bytes; hand its events to the hub; return what the game would get."""
    session.receive_data(data, now)
    return [out for e in session.events() if (out := h.on_event(session, e, now)) is not None]


def join(h: ServerHub, ip: str = "10.0.0.1", max_frame: int | None = None) -> Session:
    session = h.open(ip, 1000, 0.0)
    hello = m.Hello(version=1) if max_frame is None else m.Hello(version=1, max_frame=max_frame)
    (opened,) = feed(h, session, frame(hello))
    assert opened == PeerOpened(session.member, None)
    sent(session)  # the welcome
    return session


def leave(h: ServerHub, session: Session) -> list[Any]:
    session.receive_eof()
    return [out for e in session.events() if (out := h.on_event(session, e, 0.0)) is not None]


def test_admit_refuses_past_the_connection_limit_and_counts_it() -> None:
    h = hub(max_connections=2)
    join(h, "10.0.0.1")
    join(h, "10.0.0.2")
    assert not h.admit("10.0.0.3")
    assert h.stats["refused"] == 1 and h.stats["limit.connections"] == 1


def test_admit_refuses_past_the_per_ip_limit_only_for_that_address() -> None:
    h = hub(max_connections_per_ip=2)
    join(h)
    join(h)
    assert not h.admit("10.0.0.1")
    assert h.admit("10.0.0.9")
    assert h.stats["limit.connections_per_ip"] == 1


def test_a_closed_connection_frees_its_slot_and_its_address_slot() -> None:
    h = hub(max_connections=1, max_connections_per_ip=1)
    first = join(h)
    assert not h.admit("10.0.0.1")
    assert leave(h, first) == [PeerClosed(first.member, CloseCode.ABNORMAL, EOF_REASON)]
    assert h.connections == 0
    assert h.admit("10.0.0.1")


def test_a_session_closed_in_its_handshake_frees_its_slot_but_is_never_reported() -> None:
    h = hub(max_connections=1)
    session = h.open("10.0.0.1", 1000, 0.0)
    assert leave(h, session) == []  # the game never heard of it
    assert h.connections == 0 and h.members == {}


def test_membership_ids_are_never_reused() -> None:
    h = hub()
    seen = []
    for _ in range(5):
        session = join(h)
        seen.append(session.member)
        leave(h, session)
    unfinished = h.open("10.0.0.1", 1000, 0.0)
    leave(h, unfinished)
    seen.append(join(h).member)
    assert len(set(seen)) == len(seen) == 6
    assert seen == sorted(seen)
    assert unfinished.member not in seen  # a failed handshake uses up its id too


def rpc(i: int) -> m.Rpc:
    return m.Rpc(id=i, uid=1, method="f", args=[])


def test_pending_calls_past_the_cap_are_refused_overloaded_until_the_game_polls() -> None:
    h = hub(max_pending_calls=2)
    session = join(h)
    out = feed(h, session, frames(rpc(0), rpc(1), rpc(2)))
    assert out == [PeerMessage(session.member, rpc(0)), PeerMessage(session.member, rpc(1))]
    (refused,) = sent(session)
    assert refused == m.RpcErrorReply(id=2, code="overloaded", message="too many calls pending")
    assert h.stats["limit.pending_calls"] == 1
    h.pending.clear()  # what the I/O layers do when the game loop polls
    assert feed(h, session, frame(rpc(3))) == [PeerMessage(session.member, rpc(3))]


def test_the_pending_cap_is_per_connection() -> None:
    h = hub(max_pending_calls=1)
    a, b = join(h), join(h)
    assert len(feed(h, a, frame(rpc(0)))) == 1
    assert len(feed(h, b, frame(rpc(0)))) == 1


def test_send_skips_closed_unknown_and_handshaking_sessions() -> None:
    h = hub()
    live, gone = join(h), join(h)
    handshaking = h.open("10.0.0.1", 1000, 0.0)
    gone.close(CloseCode.NORMAL, "bye", 0.0)  # closed, its Closed event not handled yet
    sent(gone)
    members = (live.member, gone.member, handshaking.member, 999)
    touched = h.send(members, m.Sync(tick=1, full=True, final=True), 0.0)
    assert touched == [live]
    assert [x.TYPE for x in sent(live)] == ["sync"]  # a decoded sync may be a WireSync
    assert sent(gone) == [] and sent(handshaking) == []


def big_sync(size: int) -> m.Sync:
    entry = m.SpawnEntry(uid=5, type="Ship", owner=None, args=[], fields={"blob": "x" * size})
    small = m.SpawnEntry(uid=6, type="Ship", owner=None, args=[], fields={"x": 1})
    return m.Sync(tick=1, full=True, final=True, spawn=(entry, small))


def test_an_entry_too_big_for_one_clients_max_frame_closes_only_that_client_1009(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = hub()
    small, large = join(h, max_frame=65536), join(h)
    with caplog.at_level(logging.ERROR, logger="reverb"):
        touched = h.send((small.member, large.member), big_sync(100_000), 0.0)
    assert touched == [small, large]
    reason = "object uid=5 does not fit the client's max_frame"
    assert small.closed
    assert sent(small) == [m.Close(code=CloseCode.TOO_LARGE, reason=reason)]
    assert not large.closed
    (got,) = sent(large)
    assert isinstance(got, m.Sync) and [e.uid for e in got.spawn] == [5, 6]
    assert h.stats["sync_too_large"] == 1
    assert any(reason in r.getMessage() for r in caplog.records)


def test_a_broadcast_is_encoded_once_per_frame_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import reverb.hub.server as hub_module

    calls: list[int] = []
    real = hub_module._encode

    def counting(message: m.Message, limit: int) -> list[bytes]:
        calls.append(limit)
        return real(message, limit)

    monkeypatch.setattr(hub_module, "_encode", counting)
    h = hub()
    sessions = [join(h) for _ in range(3)] + [join(h, max_frame=70_000) for _ in range(2)]
    h.send(tuple(s.member for s in sessions), m.Sync(tick=1, full=True, final=True), 0.0)
    assert sorted(calls) == [70_000, h.options.max_frame_size]


def test_a_reply_frees_its_call_id_and_a_duplicate_in_flight_id_closes_1002() -> None:
    h = hub()
    session = join(h)
    feed(h, session, frame(rpc(7)))
    assert session.calls_in_flight == {7}
    feed(h, session, frame(rpc(7)))
    assert session.closed
    assert sent(session) == [
        m.Close(code=CloseCode.PROTOCOL_ERROR, reason="rpc id 7 already in flight")
    ]
    other = join(h)
    feed(h, other, frame(rpc(7)))
    h.send((other.member,), m.RpcResult(id=7, value=1), 0.0)
    assert other.calls_in_flight == frozenset()
    assert feed(h, other, frame(rpc(7))) == [PeerMessage(other.member, rpc(7))]


def test_a_result_too_big_for_the_clients_frame_becomes_bad_return() -> None:
    h = hub()
    session = join(h, max_frame=65536)
    feed(h, session, frame(rpc(1)))
    h.send((session.member,), m.RpcResult(id=1, value="x" * 70_000), 0.0)
    assert sent(session) == [
        m.RpcErrorReply(id=1, code="bad_return", message="the return value is too large")
    ]
    assert not session.closed


def test_traffic_counts_live_and_closed_sessions() -> None:
    h = hub()
    a, b = join(h), join(h)
    before = h.traffic()
    assert before == (a.bytes_sent + b.bytes_sent, a.bytes_received + b.bytes_received)
    leave(h, a)
    assert h.traffic() == before
    assert h.members == {b.member: b}


# -- ClientHub -----------------------------------------------------------------------------


def now_later() -> tuple[list[Any], Any]:
    queue: list[Any] = []
    return queue, queue.append


def opened_client() -> tuple[ClientHub, Session]:
    h = ClientHub()
    session = client(opened=True)
    h.on_event(Opened(member=7, tick_rate=20.0), lambda f: f())
    return h, session


def test_the_welcome_sets_member_identity_and_tick_rate_and_is_not_an_event() -> None:
    h = ClientHub()
    assert h.on_event(Opened(member=7, tick_rate=20.0, identity="ann"), lambda f: f()) is None
    assert (h.member, h.identity, h.tick_rate) == (7, "ann", 20.0)


def test_call_ids_count_up_and_each_reply_resolves_its_own_future() -> None:
    h, session = opened_client()
    futures = [h.call(session, 1, "f", [i], 0.0) for i in range(3)]
    assert [x.id for x in sent(session) if isinstance(x, m.Rpc)] == [0, 1, 2]
    run, later = now_later()
    assert h.on_event(Received(m.RpcResult(id=1, value="b")), later) is None
    assert h.on_event(Received(m.RpcResult(id=0, value="a")), later) is None
    for resolve in run:
        resolve()
    assert [f.done() for f in futures] == [True, True, False]
    assert futures[0].result() == "a" and futures[1].result() == "b"


def test_futures_resolve_only_through_later() -> None:
    """The threaded layer resolves futures after releasing its lock: ``later`` defers."""
    h, session = opened_client()
    future = h.call(session, 1, "f", [], 0.0)
    run, later = now_later()
    h.on_event(Received(m.RpcResult(id=0, value=1)), later)
    assert not future.done()
    run[0]()
    assert future.result() == 1


def test_an_error_reply_fails_the_future_and_is_also_an_event() -> None:
    h, session = opened_client()
    future = h.call(session, 1, "f", [], 0.0)
    reply = m.RpcErrorReply(id=0, code="rejected", message="no")
    assert h.on_event(Received(reply), lambda f: f()) == Received(reply)  # fires rpc_error
    with pytest.raises(RpcError) as info:
        future.result(0)
    assert info.value.code == "rejected"


def test_a_reply_to_an_unknown_id_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    h, _ = opened_client()
    with caplog.at_level(logging.WARNING, logger="reverb"):
        assert h.on_event(Received(m.RpcResult(id=42, value=1)), lambda f: f()) is None
    assert "unknown call id 42" in caplog.text


def test_an_answered_id_is_not_answered_twice() -> None:
    h, session = opened_client()
    future = h.call(session, 1, "f", [], 0.0)
    h.on_event(Received(m.RpcResult(id=0, value=1)), lambda f: f())
    assert h.on_event(Received(m.RpcResult(id=0, value=2)), lambda f: f()) is None
    assert future.result(0) == 1


def test_close_fails_every_call_in_flight_with_connection_closed() -> None:
    h, session = opened_client()
    futures = [h.call(session, 1, "f", [], 0.0) for _ in range(2)]
    closed = Closed(code=CloseCode.GOING_AWAY, reason="bye", by_peer=True)
    assert h.on_event(closed, lambda f: f()) == closed
    for future in futures:
        with pytest.raises(ConnectionClosed) as info:
            future.result(0)
        assert info.value.code == CloseCode.GOING_AWAY


def test_a_call_after_close_fails_at_once_with_the_close_code() -> None:
    h, session = opened_client()
    h.on_event(Closed(code=CloseCode.POLICY, reason="idle timeout", by_peer=True), lambda f: f())
    session.abort(CloseCode.POLICY, "idle timeout")
    future = h.call(session, 1, "f", [], 0.0)
    with pytest.raises(ConnectionClosed) as info:
        future.result(0)
    assert (info.value.code, info.value.reason) == (CloseCode.POLICY, "idle timeout")
    never = ClientHub().call(None, 1, "f", [], 0.0)
    with pytest.raises(ConnectionClosed) as info:
        never.result(0)
    assert info.value.code == CloseCode.ABNORMAL


def test_a_close_before_the_welcome_is_not_a_game_event() -> None:
    h = ClientHub()
    closed = Closed(code=CloseCode.UNAUTHORIZED, reason="no", by_peer=True)
    assert h.on_event(closed, lambda f: f()) is None
    assert h.closed == closed  # what connect() raises HandshakeFailed with


def test_a_late_reply_to_a_cancelled_call_raises_nowhere() -> None:
    h, session = opened_client()
    future: Future[Any] = h.call(session, 1, "f", [], 0.0)
    assert future.cancel()
    h.on_event(Received(m.RpcResult(id=0, value=1)), lambda f: f())
    h.on_event(Closed(code=1000, reason="", by_peer=True), lambda f: f())
    assert future.cancelled()


def test_reset_forgets_the_membership_for_a_new_connection() -> None:
    h, _ = opened_client()
    h.on_event(Closed(code=1000, reason="", by_peer=True), lambda f: f())
    h.reset()
    assert h.member is None and h.closed is None


def test_a_session_state_is_what_the_hub_checks_before_calling() -> None:
    h = ClientHub()
    session = client()  # still in its handshake
    assert session.state is State.HANDSHAKE
    with pytest.raises(ConnectionClosed):
        h.call(session, 1, "f", [], 0.0).result(0)


# -- the decisions every I/O layer takes the same way ---------------------------------------


def test_on_event_keeps_the_member_to_connection_map_from_welcome_to_close() -> None:
    h = hub()
    session = h.open("10.0.0.1", 1000, 0.0)
    conn = object()
    session.receive_data(frame(m.Hello(version=1)), 0.0)
    assert h.conns == {}  # not before the welcome: the game never heard of it
    [h.on_event(session, e, 0.0, conn) for e in session.events()]
    assert h.conns == {session.member: conn}
    session.receive_eof()
    [h.on_event(session, e, 0.0, conn) for e in session.events()]
    assert h.conns == {}


def test_a_late_close_of_a_replaced_connection_leaves_the_new_one_mapped() -> None:
    h = hub()
    session = join(h)
    new = object()
    h.conns[session.member] = new  # a resume mapped the member to its new connection (§18.4)
    session.receive_eof()
    [h.on_event(session, e, 0.0, object()) for e in session.events()]  # the old one closes
    assert h.conns == {session.member: new}


def test_forget_drops_a_connection_given_up_on_without_its_close() -> None:
    h = hub()
    session = h.open("10.0.0.1", 1000, 0.0)
    conn = object()
    session.receive_data(frame(m.Hello(version=1)), 0.0)
    [h.on_event(session, e, 0.0, conn) for e in session.events()]
    h.forget(session.member, object())  # another connection: nothing
    assert session.member in h.members
    h.forget(session.member, conn)
    assert h.conns == {} and h.members == {}


def test_step_resolves_a_result_at_once_and_leaves_nothing_to_do() -> None:
    h, session = opened_client()
    future = h.call(session, 1, "move", [], 0.0)
    assert h.step(session, Received(m.RpcResult(id=0, value=5)), 0.0, 0) is None
    assert future.result(0) == 5


def test_step_with_later_defers_the_resolution() -> None:
    h, session = opened_client()
    future = h.call(session, 1, "move", [], 0.0)
    queue, later = now_later()
    assert h.step(session, Received(m.RpcResult(id=0, value=5)), 0.0, 0, later) is None
    assert not future.done()
    queue[0]()
    assert future.result(0) == 5


def test_step_hands_a_sync_to_the_game_and_closes_a_game_that_never_reads() -> None:
    h, session = opened_client()
    sync = Received(m.Sync(tick=1, full=True, final=True))
    step = h.step(session, sync, 0.0, 0)
    assert step is not None and step.events == [sync] and not step.settled
    assert not session.closed
    h.max_unread = 3
    h.step(session, sync, 1.0, 3)  # the fourth unread
    assert session.closed and session.stats["limit.unread"] == 1  # 1008 (§10.2)


def test_step_settles_the_handshake_at_the_welcome_and_at_a_close() -> None:
    h = ClientHub()
    session = client()
    step = h.step(session, Opened(member=3, tick_rate=20.0), 0.0, 0)
    assert step is not None and step.settled and step.events == [] and not step.reconnect
    closed = Closed(code=1000, reason="bye", by_peer=True)
    step = h.step(session, closed, 0.0, 0)
    assert step is not None and step.settled and step.events == [closed]
    assert not step.reconnect  # no reconnect policy


def test_handshake_failure_is_the_close_or_no_welcome_in_time() -> None:
    h = ClientHub()
    failure = h.handshake_failure()
    assert failure is not None and (failure.code, failure.reason) == (
        CloseCode.ABNORMAL,
        "no welcome in time",
    )
    h.on_event(Closed(code=CloseCode.CONTRACT_MISMATCH, reason="types differ", by_peer=True), _now)
    failure = h.handshake_failure()
    assert failure is not None and failure.code == CloseCode.CONTRACT_MISMATCH
    h.reset()
    h.on_event(Opened(member=7, tick_rate=20.0), _now)
    assert h.handshake_failure() is None


def test_sheds_a_peer_over_its_send_buffer_only_while_it_is_open() -> None:
    session = client(opened=True)
    assert not sheds(100, 100, session)
    assert sheds(101, 100, session)
    session.close(1000, "bye", 0.0)
    assert not sheds(101, 100, session)


def test_housekeeping_is_wanted_only_while_memberships_are_kept() -> None:
    h = hub()
    assert h.next_housekeeping(1.0) is None
    session = h.open("10.0.0.1", 1000, 0.0)
    feed(h, session, frame(m.Hello(version=1, features=["resume"])))
    assert h.next_housekeeping(1.0) == 1.0 + HOUSEKEEPING_INTERVAL


def _now(resolve: Any) -> None:
    resolve()


class _Conn:
    def __init__(self) -> None:
        self.deadline: float | None = None


def test_deadlines_keep_one_live_entry_per_connection_the_earliest() -> None:
    d: Deadlines[_Conn] = Deadlines()
    a, b = _Conn(), _Conn()
    assert d.schedule(a, 5.0)  # the earliest
    assert not d.schedule(b, 7.0)
    assert not d.schedule(a, 6.0)  # later: the entry at 5 stays, found due then
    assert a.deadline == 5.0
    assert d.schedule(b, 1.0)  # earlier: a new entry, the old one superseded
    assert d.next_at() == 1.0
    assert d.due(0.5) == []
    assert d.due(5.0) == [b, a]
    assert (a.deadline, b.deadline) == (None, None)
    assert d.next_at() is None  # b's superseded entry at 7 is skipped
    assert not d.schedule(a, None)


def test_deadlines_clear_forgets_every_entry() -> None:
    d: Deadlines[_Conn] = Deadlines()
    a = _Conn()
    d.schedule(a, 1.0)
    d.clear()
    assert a.deadline is None and d.next_at() is None and d.due(10.0) == []
