"""reverb/proto/session.py: handshake, state machine, timers and closing (§4, §6, §9, §10)."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from reverb.errors import InvalidState, LocalProtocolError
from reverb.proto import messages as m
from reverb.proto.framing import encode_frame
from reverb.proto.session import (
    FEATURES,
    NEEDS_FEATURE,
    RECEIVABLE,
    CloseCode,
    Closed,
    Opened,
    Received,
    Role,
    Session,
    State,
)
from tests.proto.helpers import (
    SAMPLES,
    SessionPair,
    assert_closed_with,
    client,
    frame,
    frames,
    sent,
    server,
)

# -- handshake (§4) -------------------------------------------------------------------------------


def test_client_sends_hello_at_construction() -> None:
    session = client(max_frame_size=70000)
    assert session.state is State.HANDSHAKE
    assert sent(session) == [m.Hello(version=1, max_frame=70000, features=list(FEATURES))]


def test_server_sends_nothing_before_hello() -> None:
    session = server()
    assert session.data_to_send() == b""
    assert session.events() == []


def test_handshake_opens_both_sides_with_the_member_id() -> None:
    pair = SessionPair(member=42, server_options={"tick_rate": 20.0, "max_frame_size": 70000})
    assert pair.to_server == [m.Hello(version=1, max_frame=1 << 20, features=list(FEATURES))]
    assert pair.to_client == [
        m.Welcome(
            version=1,
            member=42,
            tick_rate=20.0,
            max_frame=70000,
            features=list(FEATURES),
            time=0.0,
        )
    ]
    compact = frozenset(FEATURES)
    assert pair.server_events == [Opened(member=42, tick_rate=20.0, features=compact)]
    assert pair.client_events == [Opened(member=42, tick_rate=20.0, features=compact)]
    assert pair.client.state is State.OPEN and pair.server.state is State.OPEN
    assert pair.client.member == 42
    assert pair.client.peer_max_frame == 70000
    assert pair.server.peer_max_frame == 1 << 20
    assert "42" in pair.client.name


def test_hello_without_max_frame_keeps_the_default_peer_limit() -> None:
    session = server()
    session.receive_data(frame(m.Hello(version=1)), 0)
    assert session.state is State.OPEN
    assert session.peer_max_frame == 1 << 20


def test_hello_with_max_frame_below_the_minimum_is_a_protocol_error() -> None:
    session = server()
    session.receive_data(frame(m.Hello(version=1, max_frame=65535)), 0)
    assert_closed_with(session, 1002, "65536")


def test_unsupported_version_closes_1003_naming_version_1() -> None:
    session = server()
    session.receive_data(frame(m.Hello(version=2)), 0)
    assert_closed_with(session, 1003, "version 2", "speaks 1")


def test_message_before_hello_is_a_protocol_error() -> None:
    session = server()
    session.receive_data(frame(m.Ping(nonce=1)), 0)
    assert_closed_with(session, 1002, "ping")


def test_rpc_before_hello_is_refused() -> None:
    session = server()
    session.receive_data(frame(SAMPLES[m.Rpc]), 0)
    assert_closed_with(session, 1002, "rpc")


def test_double_hello_is_a_protocol_error() -> None:
    session = server()
    session.receive_data(frames(m.Hello(version=1), m.Hello(version=1)), 0)
    assert [type(e) for e in session.events()] == [Opened, Closed]
    out = sent(session)
    assert isinstance(out[0], m.Welcome)
    assert out[1].code == 1002  # type: ignore[attr-defined]
    assert session.closed


def test_client_cannot_send_rpc_before_welcome() -> None:
    session = client()
    with pytest.raises(InvalidState):
        session.send(SAMPLES[m.Rpc], 0)
    assert sent(session) == [m.Hello(version=1, max_frame=1 << 20, features=list(FEATURES))]


def test_send_in_handshake_raises_invalid_state() -> None:
    for session in (server(), client()):
        with pytest.raises(InvalidState):
            session.send(m.Ping(nonce=1), 0)
        with pytest.raises(InvalidState):
            session.send_encoded("ping", m.encode(m.Ping(nonce=1)), 0)


def test_send_after_close_raises_invalid_state() -> None:
    session = server(opened=True)
    session.close(1000, "", 0)
    with pytest.raises(InvalidState):
        session.send(m.Ping(nonce=1), 0)


def test_send_refuses_a_message_the_peer_may_not_receive() -> None:
    # send(): "it must be legal for the peer to receive now (§6.2)"; errors.py: LocalProtocolError
    # is raised when this side "tried to send something illegal".
    srv, clt = server(opened=True), client(opened=True)
    for session, message in [
        (srv, SAMPLES[m.Rpc]),
        (srv, SAMPLES[m.Hello]),
        (clt, SAMPLES[m.Sync]),
        (clt, SAMPLES[m.Welcome]),
    ]:
        with pytest.raises(LocalProtocolError):
            session.send(message, 0)


def test_send_queues_a_frame() -> None:
    session = server(opened=True)
    session.send(SAMPLES[m.Sync], 1)
    assert sent(session) == [SAMPLES[m.Sync]]


def test_send_over_the_peers_limit_raises() -> None:
    session = server(opened=True)  # the client announced no limit: 1 MiB
    body = m.encode(m.RpcResult(id=0, value="x" * (1 << 20)))
    with pytest.raises(LocalProtocolError, match="limit"):
        session.send_encoded("rpc_result", body, 0)
    assert session.data_to_send() == b""


def test_welcome_sets_the_clients_view() -> None:
    session = client()
    session.data_to_send()
    session.receive_data(frame(m.Welcome(version=1, member=9, tick_rate=60, max_frame=80000)), 0)
    assert session.events() == [Opened(member=9, tick_rate=60.0)]
    assert (session.member, session.tick_rate, session.peer_max_frame) == (9, 60.0, 80000)


# -- legality table (§6.2) ------------------------------------------------------------------------


def waiting_client() -> Session:
    """A client that has sent its hello and waits for the welcome."""
    session = client()
    session.data_to_send()
    return session


SESSIONS = {
    (Role.SERVER, State.HANDSHAKE): server,
    (Role.SERVER, State.OPEN): lambda: server(opened=True),
    (Role.CLIENT, State.HANDSHAKE): waiting_client,
    (Role.CLIENT, State.OPEN): lambda: client(opened=True),
}
CASES = [(role, state, kind) for (role, state) in SESSIONS for kind in SAMPLES]


def test_table_lists_exactly_the_spec() -> None:
    names = {key: {cls.TYPE for cls in legal} for key, legal in RECEIVABLE.items()}
    assert names == {
        (Role.SERVER, State.HANDSHAKE): {"hello", "close"},
        (Role.SERVER, State.OPEN): {"rpc", "ping", "pong", "close", "message"}
        | {"room_list", "room_join", "room_leave", "room_watch", "room_unwatch"},  # §17
        (Role.CLIENT, State.HANDSHAKE): {"welcome", "close"},
        (Role.CLIENT, State.OPEN): {
            "sync",
            "rpc_result",
            "rpc_error",
            "ping",
            "pong",
            "close",
            "message",
            "message_error",
        }
        | {"room_list_result", "room_joined", "room_refused", "room_left", "room_event"},
    }


@pytest.mark.parametrize(
    ("role", "state", "kind"),
    CASES,
    ids=[f"{r.value}-{s.value}-{k.TYPE}" for r, s, k in CASES],
)
def test_legality(role: Role, state: State, kind: type[m.Message]) -> None:
    session = SESSIONS[(role, state)]()
    assert session.state is state
    message = SAMPLES[kind]
    session.receive_data(frame(message), 1.0)
    if kind not in RECEIVABLE[(role, state)]:
        assert_closed_with(session, 1002, kind.TYPE, state.value)
        return
    if kind in NEEDS_FEATURE:  # these sessions asked for no feature (§14.1)
        assert_closed_with(session, 1002, "without the 'messages' feature")
        return
    events = session.events()
    out = sent(session)
    if kind is m.Close:
        assert events == [Closed(code=4000, reason="game over", by_peer=True)]
        assert out == []
    elif kind is m.Ping:
        assert events == [] and out == [m.Pong(nonce=5)]
    elif kind is m.Pong:
        assert events == [] and out == []
    elif kind in (m.Hello, m.Welcome):
        assert [type(e) for e in events] == [Opened]
        assert session.state is State.OPEN
    else:
        assert events == [Received(message)] and out == []
    assert session.closed is (kind is m.Close)


# -- heartbeat (§9) --------------------------------------------------------------------------------


def test_ping_is_answered_with_the_same_nonce() -> None:
    pair = SessionPair()
    pair.client.send(m.Ping(nonce=123), pair.now)
    pair.pump()
    assert pair.to_client[-1] == m.Pong(nonce=123, time=pair.now)  # §13.4: a "time" client
    pair.server.send(m.Ping(nonce=9), pair.now)
    pair.pump()
    assert pair.to_server[-1] == m.Pong(nonce=9)


def test_ping_sent_after_the_ping_interval_of_silence() -> None:
    session = server(opened=True, ping_interval=5.0, idle_timeout=100.0)
    session.check_timeouts(4.9)
    assert sent(session) == []
    session.check_timeouts(5.0)
    assert sent(session) == [m.Ping(nonce=1)]
    session.check_timeouts(9.9)
    assert sent(session) == []
    session.check_timeouts(10.0)
    assert sent(session) == [m.Ping(nonce=2)]


def test_sending_does_not_postpone_the_ping() -> None:
    # §9.2: heartbeats depend on what was received; a server syncing every tick still pings.
    session = server(opened=True, ping_interval=5.0, idle_timeout=100.0)
    for tick in range(1, 50):
        session.send(m.Sync(tick=tick, full=False, final=True), tick * 0.1)
    session.data_to_send()
    session.check_timeouts(5.0)
    assert sent(session) == [m.Ping(nonce=1)]


def test_receiving_postpones_the_ping() -> None:
    session = server(opened=True, ping_interval=5.0, idle_timeout=100.0)
    session.receive_data(frame(m.Ping(nonce=77)), 3.0)
    session.data_to_send()
    session.check_timeouts(7.9)
    assert sent(session) == []
    session.check_timeouts(8.0)
    assert sent(session) == [m.Ping(nonce=1)]


def test_a_client_that_only_answers_pings_is_never_dropped() -> None:
    # Issue 8: the server synced every tick, so it never pinged, and dropped a client that
    # (as §9 allows) sends nothing but pongs. 60 s of a 30 Hz server, stepped.
    pair = SessionPair(
        server_options={"ping_interval": 5.0, "idle_timeout": 15.0},
        # never pings by itself (no "time" feature: no clock pings, §13.6)
        client_options={"ping_interval": 1e9, "idle_timeout": 1e9, "features": ("compact",)},
    )
    for tick in range(1, 1801):
        pair.server.send(m.Sync(tick=tick, full=tick == 1, final=True), pair.now)
        pair.step(1 / 30)
    assert pair.now > 59.9
    assert pair.server.state is State.OPEN and pair.client.state is State.OPEN
    client_sent = {type(msg) for msg in pair.to_server[1:]}  # after its hello
    assert client_sent == {m.Pong}
    assert sum(isinstance(msg, m.Ping) for msg in pair.to_client) >= 60 // 5 - 1


def test_a_peer_that_answers_no_ping_is_dropped_after_the_idle_timeout() -> None:
    session = server(opened=True, ping_interval=5.0, idle_timeout=15.0)
    pings = []
    for step in range(1, 150):
        session.send(m.Sync(tick=step, full=False, final=True), step * 0.1)
        session.check_timeouts(step * 0.1)
        pings += [msg for msg in sent(session) if isinstance(msg, m.Ping)]
        if session.closed:
            break
    assert pings == [m.Ping(nonce=1), m.Ping(nonce=2)]  # at 5 s and 10 s
    assert not session.closed
    session.check_timeouts(15.0)
    assert_closed_with(session, 1008, "idle timeout")


def test_no_ping_in_handshake() -> None:
    session = server(ping_interval=1.0, handshake_timeout=100.0)
    session.check_timeouts(50.0)
    assert session.data_to_send() == b""
    assert not session.closed


def test_pinging_pair_stays_open() -> None:
    pair = SessionPair(
        server_options={"ping_interval": 5, "idle_timeout": 15},
        client_options={"ping_interval": 5, "idle_timeout": 15},
    )
    for _ in range(20):
        pair.step(5.0)
    assert pair.client.state is State.OPEN and pair.server.state is State.OPEN
    assert any(isinstance(msg, m.Ping) for msg in pair.to_server)
    assert any(isinstance(msg, m.Pong) for msg in pair.to_client)


def test_idle_timeout_closes_1008() -> None:
    session = server(opened=True, ping_interval=5.0, idle_timeout=15.0)
    session.check_timeouts(14.9)
    sent(session)
    assert not session.closed
    session.check_timeouts(15.0)
    assert_closed_with(session, 1008, "idle timeout")


def test_received_bytes_reset_the_idle_timer() -> None:
    session = server(opened=True, ping_interval=100.0, idle_timeout=15.0)
    session.receive_data(frame(m.Pong(nonce=1)), 10.0)
    session.check_timeouts(24.9)
    assert not session.closed
    session.check_timeouts(25.0)
    assert_closed_with(session, 1008, "idle")


def test_client_side_idle_timeout() -> None:
    session = client(opened=True, ping_interval=100.0, idle_timeout=3.0)
    session.check_timeouts(3.0)
    assert_closed_with(session, 1008, "idle timeout")


# -- deadlines (§2.6, §4.6) --------------------------------------------------------------------


def test_handshake_deadline_closes_1008() -> None:
    session = server(handshake_timeout=5.0)
    session.check_timeouts(4.99)
    assert not session.closed
    session.check_timeouts(5.0)
    assert_closed_with(session, 1008, "handshake")


def test_handshake_deadline_is_not_extended_by_trickling_bytes() -> None:
    session = server(handshake_timeout=5.0, frame_timeout=100.0)
    hello = frame(m.Hello(version=1))
    for i, byte in enumerate(hello[:-1]):
        session.receive_data(bytes([byte]), i * 0.2)
    session.check_timeouts(5.0)
    assert_closed_with(session, 1008, "handshake")


def test_hello_in_time_cancels_the_handshake_deadline() -> None:
    session = server(handshake_timeout=5.0, ping_interval=100.0, idle_timeout=100.0)
    session.receive_data(frame(m.Hello(version=1)), 4.0)
    session.check_timeouts(6.0)
    assert session.state is State.OPEN


def test_client_handshake_deadline() -> None:
    session = client(handshake_timeout=2.0)
    session.data_to_send()
    session.check_timeouts(2.0)
    assert_closed_with(session, 1008, "handshake")


def test_frame_completion_deadline_closes_1008() -> None:
    session = server(opened=True, frame_timeout=10.0, ping_interval=100.0, idle_timeout=100.0)
    data = frame(SAMPLES[m.Rpc])
    session.receive_data(data[:6], 1.0)
    session.receive_data(data[6:8], 9.0)  # progress does not extend the deadline
    session.check_timeouts(10.9)
    assert not session.closed
    session.check_timeouts(11.0)
    assert_closed_with(session, 1008, "frame")


def test_a_split_header_counts_as_a_started_frame() -> None:
    session = server(opened=True, frame_timeout=10.0, ping_interval=100.0, idle_timeout=100.0)
    session.receive_data(b"\x00\x00", 0.0)
    session.check_timeouts(10.0)
    assert_closed_with(session, 1008, "frame")


def test_completed_frame_clears_the_frame_deadline() -> None:
    session = server(opened=True, frame_timeout=10.0, ping_interval=100.0, idle_timeout=100.0)
    data = frame(m.Pong(nonce=1))
    session.receive_data(data[:3], 1.0)
    session.receive_data(data[3:], 2.0)
    session.check_timeouts(50.0)
    assert not session.closed


def test_next_frame_starts_its_own_deadline() -> None:
    session = server(opened=True, frame_timeout=10.0, ping_interval=100.0, idle_timeout=100.0)
    first, second = frame(m.Pong(nonce=1)), frame(m.Pong(nonce=2))
    session.receive_data(first[:3], 0.0)
    session.receive_data(first[3:] + second[:3], 8.0)  # completes one, starts the next
    session.check_timeouts(17.9)
    assert not session.closed
    session.check_timeouts(18.0)
    assert_closed_with(session, 1008, "frame")


def test_next_deadline() -> None:
    session = server(
        5.0, handshake_timeout=5.0, frame_timeout=10.0, ping_interval=3.0, idle_timeout=15.0
    )
    assert session.next_deadline() == 10.0
    session.receive_data(frame(m.Hello(version=1)), 6.0)
    assert session.next_deadline() == 9.0  # hello received at 6: ping due at 9
    session.send(m.Ping(nonce=1), 8.0)
    assert session.next_deadline() == 9.0  # sending does not postpone it (§9.2)
    session.receive_data(b"\x00", 6.5)
    assert session.next_deadline() == 9.5  # received at 6.5: ping due at 9.5
    session.check_timeouts(9.5)
    assert sent(session)[-1] == m.Ping(nonce=1)
    assert session.next_deadline() == 12.5  # one ping per interval
    session.receive_data(b"\x00\x00", 12.0)  # still inside the same header
    assert session.next_deadline() == 12.5  # keep-alive: nothing sent since 9.5 (§9.2)
    session.check_timeouts(12.5)
    assert sent(session)[-1] == m.Ping(nonce=2)
    assert session.next_deadline() == 15.5  # the next ping, received or sent
    session.check_timeouts(15.5)
    assert session.next_deadline() == 16.5  # the frame started at 6.5
    session.close(1000, "", 8.0)
    assert session.next_deadline() is None


# -- end of stream, closing (§2.5, §10) ---------------------------------------------------------


def test_eof_between_frames_is_abnormal() -> None:
    session = server(opened=True)
    session.receive_data(frame(m.Ping(nonce=1)), 0)
    sent(session)
    session.receive_eof()
    assert session.events() == [Closed(1006, "connection ended without close", by_peer=True)]
    assert session.data_to_send() == b""  # 1006 is never sent (§10.2)


def test_eof_mid_frame_is_abnormal_and_says_so() -> None:
    session = server(opened=True)
    session.receive_data(frame(m.Ping(nonce=1))[:7], 0)
    session.receive_eof()
    assert_closed_with(session, 1006, "inside a frame", by_peer=True)


def test_eof_mid_header() -> None:
    session = client(opened=True)
    session.receive_data(b"\x00", 0)
    session.receive_eof()
    assert_closed_with(session, 1006, "inside a frame", by_peer=True)


def test_close_sends_a_close_frame_and_one_closed_event() -> None:
    pair = SessionPair()
    pair.client.close(1000, "bye", pair.now)
    pair.client.close(1000, "again", pair.now)
    pair.pump()
    assert pair.to_server[-1] == m.Close(code=1000, reason="bye")
    assert [m.Close] == [type(msg) for msg in pair.to_server if isinstance(msg, m.Close)]
    assert pair.client_events[-1] == Closed(code=1000, reason="bye", by_peer=False)
    assert [e for e in pair.client_events if isinstance(e, Closed)] == [pair.client_events[-1]]
    assert pair.server_events[-1] == Closed(code=1000, reason="bye", by_peer=True)
    assert not any(isinstance(msg, m.Close) for msg in pair.to_client)  # §10.1


def test_server_going_away() -> None:
    pair = SessionPair()
    pair.server.close(CloseCode.GOING_AWAY, "shutting down", pair.now)
    pair.pump()
    assert pair.client_events[-1] == Closed(1001, "shutting down", by_peer=True)
    assert pair.client.closed and pair.server.closed


def test_input_after_closed_is_ignored() -> None:
    session = server(opened=True)
    session.close(1000, "done", 0)
    session.events()
    session.data_to_send()
    received = session.bytes_received
    session.receive_data(frame(m.Ping(nonce=1)) + b"garbage", 1)
    session.receive_eof()
    session.check_timeouts(1000)
    session.abort(1011, "late")
    assert session.events() == [] and session.data_to_send() == b""
    assert session.bytes_received == received


def test_frames_after_a_close_in_the_same_read_are_ignored() -> None:
    session = server(opened=True)
    session.receive_data(frames(m.Close(code=1000, reason=""), m.Ping(nonce=1)), 0)
    assert session.events() == [Closed(1000, "", by_peer=True)]
    assert session.data_to_send() == b""


def test_frames_before_an_error_in_the_same_read_are_processed() -> None:
    session = server(opened=True)
    session.receive_data(frame(m.Ping(nonce=4)) + encode_frame(b"[]"), 0)
    assert sent(session)[0] == m.Pong(nonce=4)


def test_abort_ends_without_sending() -> None:
    session = server(opened=True)
    session.abort(1013, "slow")
    assert session.events() == [Closed(1013, "slow", by_peer=False)]
    assert session.data_to_send() == b""
    assert session.closed


def test_empty_data_is_ignored() -> None:
    session = server()
    session.receive_data(b"", 0)
    assert session.bytes_received == 0 and session.events() == []


# -- remote garbage becomes a close, never an exception (§3, §10.2) ------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x00\x00\x00\x00", 1007),
        (b"\xff\xff\xff\xff", 1009),
        (encode_frame(b"\xff"), 1007),
        (encode_frame(b"[1]"), 1007),
        (encode_frame(b'{"type":"nope"}'), 1002),
        (encode_frame(b'{"type":"hello"}'), 1002),
        (encode_frame(b'{"type":"hello","version":1,"version":1}'), 1007),
    ],
)
def test_garbage_closes_with_its_code(data: bytes, code: int) -> None:
    session = server()
    session.receive_data(data, 0)
    assert_closed_with(session, code)


def test_frame_over_the_sessions_limit_closes_1009_from_the_header() -> None:
    session = client(opened=True, max_frame_size=65536)
    session.receive_data(b"\x00\x01\x00\x01", 0)
    assert_closed_with(session, 1009, "65537")


def test_bytes_counters() -> None:
    pair = SessionPair()
    hello = len(frame(pair.to_server[0]))
    welcome = len(frame(pair.to_client[0]))
    assert (pair.client.bytes_sent, pair.server.bytes_received) == (hello, hello)
    assert (pair.server.bytes_sent, pair.client.bytes_received) == (welcome, welcome)
    pair.client.send(m.Ping(nonce=1), 0)
    pair.pump()
    ping, pong = len(frame(m.Ping(nonce=1))), len(frame(m.Pong(nonce=1, time=0.0)))
    assert pair.client.bytes_sent == hello + ping
    assert pair.server.bytes_received == hello + ping
    assert pair.server.bytes_sent == welcome + pong


def test_name_defaults_to_role_and_member() -> None:
    assert Session(Role.SERVER, 0, member=4).name == "server #4"
    assert Session(Role.SERVER, 0, name="custom").name == "custom"


# -- internal errors close 1011, this connection only (§10.2, issue 8 decision 1) ----------------


def test_an_unexpected_exception_closes_1011_and_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(body: bytes) -> m.Message:
        raise Exception("codec bug")  # a plain Exception is the point

    session = server(opened=True)
    monkeypatch.setattr(m, "decode", broken)
    with caplog.at_level("ERROR", logger="reverb"):
        session.receive_data(frame(m.Ping(nonce=1)), 1.0)  # must not raise
    monkeypatch.undo()
    assert_closed_with(session, 1011)
    assert session.stats["internal_error"] == 1
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.exc_info is not None and "codec bug" in str(record.exc_info[1])


def test_the_1011_reason_names_no_internals(monkeypatch: pytest.MonkeyPatch) -> None:
    session = server(opened=True)
    monkeypatch.setattr(m, "decode", lambda body: 1 / 0)
    session.receive_data(frame(m.Ping(nonce=1)), 1.0)
    monkeypatch.undo()
    closed = [e for e in session.events() if isinstance(e, Closed)]
    assert [(e.code, e.reason) for e in closed] == [(1011, "internal error")]
    assert sent(session) == [m.Close(code=1011, reason="internal error")]


def test_a_failing_contract_check_closes_1011_not_the_server() -> None:
    def check(contract: dict[str, object]) -> str | None:
        raise KeyError("bug in the check")

    session = server(check_contract=check)
    session.receive_data(frame(m.Hello(version=1, contract={"types": {}})), 0)
    assert_closed_with(session, 1011, "internal error")


def test_a_session_can_be_closed_1011_on_either_side(monkeypatch: pytest.MonkeyPatch) -> None:
    session = client(opened=True)
    monkeypatch.setattr(m, "decode", lambda body: 1 / 0)
    session.receive_data(frame(m.Ping(nonce=1)), 1.0)
    monkeypatch.undo()
    assert_closed_with(session, 1011)


# -- the handshake frame cap (§2.7, decision 2) -------------------------------------------------


def test_before_welcome_a_frame_over_64_kib_closes_1009_from_its_header() -> None:
    session = server(handshake_timeout=100.0)
    session.receive_data(struct.pack(">I", 65537), 0)  # the header alone: nothing buffered
    assert_closed_with(session, 1009, "65537", "65536")
    assert session.stats["limit.handshake_frame"] == 1


def test_a_hello_of_exactly_64_kib_is_accepted() -> None:
    hello = m.encode(m.Hello(version=1, auth="x"))
    padded = hello[:-1] + b" " * (65536 - len(hello)) + b"}"
    session = server()
    session.receive_data(encode_frame(padded), 0)
    assert session.state is State.OPEN


def test_the_handshake_cap_is_an_option_and_never_above_max_frame() -> None:
    session = server(max_handshake_frame=1000)
    session.receive_data(struct.pack(">I", 1001), 0)
    assert_closed_with(session, 1009, "1000")
    session = server(max_frame_size=70000, max_handshake_frame=1 << 20)
    session.receive_data(struct.pack(">I", 70001), 0)
    assert_closed_with(session, 1009, "70000")


def test_after_welcome_frames_up_to_max_frame_are_accepted_even_in_the_same_read() -> None:
    big = m.Rpc(id=1, uid=1, method="m", args=["x" * 200_000])
    session = server()
    session.receive_data(frames(m.Hello(version=1), big), 0)  # pipelined: one read
    assert session.state is State.OPEN
    assert [e for e in session.events() if isinstance(e, Received)] == [Received(big)]


def test_the_client_side_has_no_handshake_cap() -> None:
    session = client()
    welcome = m.encode(m.Welcome(version=1, member=1, tick_rate=30, max_frame=65536, identity="x"))
    padded = welcome[:-1] + b" " * 70000 + b"}"
    session.receive_data(encode_frame(padded), 0)
    assert session.state is State.OPEN


# -- the byte-rate budget (§11, decision 3) -----------------------------------------------------


def test_bytes_beyond_the_budget_close_1008_before_being_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = server(opened=True, max_bytes_per_second=10_000.0, max_frame_size=65536)
    decoded: list[bytes] = []
    real = m.decode
    monkeypatch.setattr(m, "decode", lambda body: decoded.append(body) or real(body))
    rpc = frame(m.Rpc(id=0, uid=1, method="m", args=["x" * 60_000]))
    session.receive_data(rpc, 1.0)  # within the burst: max(2 s worth, max_frame + 4)
    assert len(decoded) == 1 and not session.closed
    session.data_to_send()
    session.events()
    session.receive_data(b"\x00" * 10_000, 1.0)  # no time has passed: over budget
    assert len(decoded) == 1
    monkeypatch.undo()
    assert_closed_with(session, 1008, "byte rate limit exceeded")
    assert session.stats["limit.byte_rate"] == 1


def test_a_steady_stream_within_the_budget_stays_open() -> None:
    session = server(opened=True, max_bytes_per_second=10_000.0, max_calls_per_second=1e9)
    chunk = frames(*(m.Ping(nonce=i) for i in range(100)))  # ~2.6 KB
    now = 0.0
    for _ in range(400):  # 100 s at ~26 KB/s would be over; here 2.6 KB every 0.3 s
        now += 0.3
        session.receive_data(chunk, now)
        session.data_to_send()
    assert not session.closed


def test_the_byte_budget_covers_the_handshake_too() -> None:
    session = server(max_bytes_per_second=100.0, max_frame_size=65536, handshake_timeout=100.0)
    session.receive_data(struct.pack(">I", 65500) + b" " * 64000, 0.0)  # a frame, unfinished
    session.receive_data(b" " * 2000, 0.0)
    assert_closed_with(session, 1008, "byte rate")


def test_clients_count_no_byte_budget() -> None:
    session = client(opened=True, max_bytes_per_second=1.0)
    session.receive_data(frames(*(m.Ping(nonce=i) for i in range(100))), 0.0)
    assert not session.closed


# -- RPC ids in flight (§8.4, decision 5) -------------------------------------------------------


def rpc(call_id: int) -> m.Rpc:
    return m.Rpc(id=call_id, uid=1, method="m", args=[])


def test_a_second_rpc_with_an_id_in_flight_closes_1002() -> None:
    session = server(opened=True)
    session.receive_data(frame(rpc(5)), 0)
    assert session.calls_in_flight == {5}
    session.receive_data(frame(rpc(6)) + frame(rpc(5)), 0)
    events = session.events()
    assert [e.message for e in events if isinstance(e, Received)] == [rpc(5), rpc(6)]
    closed = [e for e in events if isinstance(e, Closed)]
    assert [(e.code, e.reason) for e in closed] == [(1002, "rpc id 5 already in flight")]


@pytest.mark.parametrize(
    "answer",
    [m.RpcResult(id=5, value=1), m.RpcErrorReply(id=5, code="rejected", message="no")],
)
def test_an_answered_id_may_be_used_again(answer: m.Message) -> None:
    session = server(opened=True)
    session.receive_data(frame(rpc(5)), 0)
    session.send(answer, 0)
    assert session.calls_in_flight == set()
    session.receive_data(frame(rpc(5)), 0)
    assert not session.closed


def test_an_answer_sent_encoded_frees_its_id() -> None:
    session = server(opened=True)
    session.receive_data(frame(rpc(5)) + frame(rpc(6)), 0)
    session.send_encoded("rpc_result", m.encode(m.RpcResult(id=5, value=1)), 0, answers=5)
    assert session.calls_in_flight == {6}


def test_a_rate_limited_call_is_answered_and_its_id_is_free() -> None:
    session = server(opened=True, max_calls_per_second=1.0)  # a burst of 2
    session.receive_data(frames(rpc(1), rpc(2), rpc(3)), 0)
    assert sent(session) == [m.RpcErrorReply(id=3, code="rate_limited", message="too many calls")]
    assert session.calls_in_flight == {1, 2}
    session.receive_data(frame(rpc(3)), 5.0)
    assert not session.closed and session.calls_in_flight == {1, 2, 3}


def test_ids_in_flight_are_per_connection() -> None:
    one, two = server(opened=True, member=1), server(opened=True, member=2)
    one.receive_data(frame(rpc(5)), 0)
    two.receive_data(frame(rpc(5)), 0)
    assert not one.closed and not two.closed


# -- features (§4.11) ---------------------------------------------------------------------------


def test_a_hello_without_features_gets_a_welcome_without_features() -> None:
    session = server()
    session.receive_data(frame(m.Hello(version=1)), 0)
    body = json.loads(session.data_to_send()[4:])
    assert body == {
        "type": "welcome",
        "version": 1,
        "member": body["member"],
        "tick_rate": 30.0,
        "max_frame": 1 << 20,
    }
    assert session.features == frozenset()


def test_unknown_features_are_ignored_and_known_ones_granted() -> None:
    session = server()
    session.receive_data(frame(m.Hello(version=1, features=["zstd9", "compact"])), 0)
    welcome = sent(session)[0]
    assert isinstance(welcome, m.Welcome) and welcome.features == ["compact"]
    assert session.features == frozenset({"compact"})


def test_a_server_offering_nothing_grants_nothing() -> None:
    pair = SessionPair(server_options={"features": ()})
    assert pair.client.features == frozenset() and pair.server.features == frozenset()


def test_a_client_asking_for_nothing_sends_no_features() -> None:
    pair = SessionPair(client_options={"features": ()})
    assert pair.to_server == [m.Hello(version=1, max_frame=1 << 20)]
    assert pair.server.features == frozenset()


@pytest.mark.parametrize(
    "features",
    ["compact", [1], ["x" * 33], [f"f{i}" for i in range(17)], {"compact": True}],
    ids=["string", "int", "long", "many", "object"],
)
def test_malformed_hello_features_are_1002(features: Any) -> None:
    session = server()
    body = json.dumps({"type": "hello", "version": 1, "features": features}).encode()
    session.receive_data(struct.pack(">I", len(body)) + body, 0)
    assert_closed_with(session, 1002, "features")


def test_a_client_ignores_a_feature_it_did_not_ask_for() -> None:
    session = Session(Role.CLIENT, 0, features=())
    session.data_to_send()
    welcome = m.Welcome(version=1, member=3, tick_rate=30.0, max_frame=1 << 20, features=["x"])
    session.receive_data(frame(welcome), 0)
    assert session.state is State.OPEN and session.features == frozenset()
