"""The ``message`` and ``message_error`` messages (docs/protocol.md §14) in the codec and the
session: negotiation, validation, legality and the shared call budget."""

from __future__ import annotations

import json

import pytest

from reverb.errors import InvalidState, RemoteProtocolError
from reverb.proto import messages as m
from reverb.proto.framing import encode_frame
from reverb.proto.session import Received, Role, Session
from tests.proto.helpers import assert_closed_with, frame, sent


def _open_server(asked: list[str] | None = None, **options: object) -> Session:
    session = Session(Role.SERVER, 0.0, member=3, **options)  # type: ignore[arg-type]
    hello = m.Hello(version=1, features=asked if asked is not None else m.ABSENT)
    session.receive_data(frame(hello), 0.0)
    session.data_to_send()
    session.events()
    return session


def _raw(obj: object) -> bytes:
    return encode_frame(json.dumps(obj).encode())


def test_codec_round_trip_and_absent_data() -> None:
    msg = m.AppMessage(name="chat", data={"a": [1, 2.5, None]})
    assert m.decode(m.encode(msg)) == msg
    bare = m.decode(b'{"type":"message","name":"ping-me"}')
    assert bare == m.AppMessage(name="ping-me") and bare.data is m.ABSENT  # type: ignore[attr-defined]
    err = m.MessageError(name="x", code="unknown_message", reason="no handler")
    assert m.decode(m.encode(err)) == err


@pytest.mark.parametrize(
    "body",
    [
        {"type": "message", "name": ""},
        {"type": "message", "name": "n" * 65},
        {"type": "message", "name": 7},
        {"type": "message"},
        {"type": "message_error", "name": "", "code": "x", "reason": ""},
        {"type": "message_error", "name": "x", "code": 1, "reason": ""},
    ],
)
def test_bad_name_or_field_is_a_protocol_error(body: dict[str, object]) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        m.decode(json.dumps(body).encode())
    assert info.value.code == 1002


def test_the_name_may_hold_64_characters_of_any_script() -> None:
    name = "é" * 64
    assert m.decode(m.encode(m.AppMessage(name=name))) == m.AppMessage(name=name)


def test_granted_only_when_asked() -> None:
    assert _open_server(["messages"]).features == frozenset({"messages"})
    assert _open_server(["compact"]).features == frozenset({"compact"})
    assert _open_server().features == frozenset()
    assert _open_server(["messages"], features=("compact",)).features == frozenset()


def test_welcome_carries_the_grant_only_when_asked() -> None:
    for asked, granted in ((["messages"], ["messages"]), (None, None)):
        session = Session(Role.SERVER, 0.0, member=3)
        hello = m.Hello(version=1, features=asked if asked is not None else m.ABSENT)
        session.receive_data(frame(hello), 0.0)
        (welcome,) = sent(session)
        assert isinstance(welcome, m.Welcome)
        assert welcome.features == (granted if granted is not None else m.ABSENT)


def test_server_receives_a_message_when_granted() -> None:
    session = _open_server(["messages"])
    session.receive_data(_raw({"type": "message", "name": "chat", "data": 5, "member": 99}), 1.0)
    assert session.events() == [Received(m.AppMessage(name="chat", data=5))]
    assert not session.closed


def test_a_message_without_the_feature_closes_1002() -> None:
    session = _open_server(["compact"])
    session.receive_data(_raw({"type": "message", "name": "chat"}), 1.0)
    assert_closed_with(session, 1002, "message without the 'messages' feature")


def test_a_bad_name_closes_1002_even_when_granted() -> None:
    session = _open_server(["messages"])
    session.receive_data(_raw({"type": "message", "name": ""}), 1.0)
    assert_closed_with(session, 1002, "name must hold 1 to 64 characters")


def test_a_client_may_not_send_message_error() -> None:
    session = _open_server(["messages"])
    session.receive_data(_raw({"type": "message_error", "name": "x", "code": "c", "reason": ""}), 1)
    assert_closed_with(session, 1002, "message_error")


def test_messages_share_the_call_budget_and_overflow_is_answered() -> None:
    session = _open_server(["messages"], max_calls_per_second=2.0)  # bursts of 4
    for i in range(3):
        session.receive_data(frame(m.Rpc(id=i, uid=1, method="f", args=[])), 0.0)
    for _ in range(3):
        session.receive_data(frame(m.AppMessage(name="chat")), 0.0)
    events = session.events()
    assert len(events) == 4  # 3 calls and 1 message
    out = sent(session)
    assert out == [m.MessageError(name="chat", code="rate_limited", reason="too many messages")] * 2
    assert session.stats["limit.call_rate"] == 2
    assert not session.closed


def test_sending_needs_the_grant() -> None:
    session = _open_server(["compact"])
    with pytest.raises(InvalidState, match="'messages' was not granted"):
        session.send(m.AppMessage(name="x"), 0.0)
    granted = _open_server(["messages"])
    granted.send(m.AppMessage(name="x", data=[1]), 0.0)
    assert sent(granted) == [m.AppMessage(name="x", data=[1])]
