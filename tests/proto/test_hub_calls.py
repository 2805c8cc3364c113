"""ServerHub and the session together: new session options reach every session, and every
way a call is answered frees its id (§8.4, §11; reverb/hub/server.py)."""

from __future__ import annotations

import struct

from reverb.hub import ServerHub, ServerOptions
from reverb.proto import messages as m
from reverb.proto.session import Closed, Received, Session
from reverb.transport import PeerMessage
from tests.proto.helpers import frame, frames, sent


def opened(hub: ServerHub) -> Session:
    session = hub.open("127.0.0.1", 5000, 0.0)
    session.receive_data(frame(m.Hello(version=1)), 0.0)
    for event in session.events():
        hub.on_event(session, event, 0.0)
    session.data_to_send()
    return session


def rpc(call_id: int) -> m.Rpc:
    return m.Rpc(id=call_id, uid=1, method="m", args=[])


def test_new_options_reach_the_sessions() -> None:
    hub = ServerHub(ServerOptions(max_handshake_frame=1000, max_bytes_per_second=5000.0))
    session = hub.open("127.0.0.1", 5000, 0.0)
    session.receive_data(b"\x00\x00\x03\xe9", 0.0)  # 1001 bytes announced before hello
    assert [e.code for e in session.events() if isinstance(e, Closed)] == [1009]
    session = opened(hub)
    # the budget holds max(2 s worth, max_frame + 4): one whole 1 MiB frame may arrive at once
    session.receive_data(struct.pack(">I", 1 << 20) + b" " * 70000, 0.0)
    assert not session.closed
    session.receive_data(b" " * 1_000_000, 0.0)
    assert [e.code for e in session.events() if isinstance(e, Closed)] == [1008]


def test_a_reply_broadcast_by_the_hub_frees_the_id() -> None:
    hub = ServerHub(ServerOptions())
    session = opened(hub)
    session.receive_data(frame(rpc(4)), 0.0)
    (event,) = session.events()
    assert isinstance(hub.on_event(session, event, 0.0), PeerMessage)
    assert session.calls_in_flight == {4}
    hub.send((session.member,), m.RpcResult(id=4, value=None), 0.0)
    assert session.calls_in_flight == set()


def test_a_too_large_result_answered_as_bad_return_frees_the_id() -> None:
    hub = ServerHub(ServerOptions())
    session = opened(hub)
    session.receive_data(frame(rpc(4)), 0.0)
    session.events()
    hub.send((session.member,), m.RpcResult(id=4, value="x" * (2 << 20)), 0.0)
    assert sent(session) == [
        m.RpcErrorReply(id=4, code="bad_return", message="the return value is too large")
    ]
    assert session.calls_in_flight == set()


def test_an_overloaded_answer_frees_the_id() -> None:
    hub = ServerHub(ServerOptions(max_pending_calls=1))
    session = opened(hub)
    session.receive_data(frames(rpc(1), rpc(2)), 0.0)
    outs = [hub.on_event(session, e, 0.0) for e in session.events() if isinstance(e, Received)]
    assert isinstance(outs[0], PeerMessage) and outs[1] is None
    assert sent(session) == [
        m.RpcErrorReply(id=2, code="overloaded", message="too many calls pending")
    ]
    assert session.calls_in_flight == {1}
    hub.pending.clear()  # the game loop polled
    session.receive_data(frame(rpc(2)), 0.0)  # id 2 was answered: free again
    assert not session.closed
