"""The RPC path's shortcuts (issue 9): each must give exactly what the general path gives --
the same messages, the same bytes, the same refusals with the same words."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reverb._sendq import FrameSizer
from reverb.errors import EncodeError, RemoteProtocolError
from reverb.hub import ServerHub, ServerOptions
from reverb.proto import decode
from reverb.proto import messages as m
from reverb.proto.framing import FrameDecoder, encode_frame
from reverb.proto.session import CloseCode, Closed, Received, Session, received
from reverb.transport import PeerMessage, peer_message
from tests.proto.helpers import frame, sent

GENERIC = decode._DECODERS


def generic(body: bytes) -> m.Message | RemoteProtocolError:
    """What the schema alone makes of ``body`` (the path before the shortcut)."""
    obj = json.loads(body)
    try:
        message: m.Message = GENERIC[obj["type"]](obj, "")
    except RemoteProtocolError as exc:
        return exc
    if isinstance(message, m.Rpc) and message.id < 0:
        return RemoteProtocolError("rpc id must not be negative", CloseCode.PROTOCOL_ERROR)
    return message


def decoded(body: bytes) -> m.Message | RemoteProtocolError:
    try:
        return m.decode(body)
    except RemoteProtocolError as exc:
        return exc


def same(a: m.Message | RemoteProtocolError, b: m.Message | RemoteProtocolError) -> bool:
    if isinstance(a, RemoteProtocolError) or isinstance(b, RemoteProtocolError):
        return type(a) is type(b) and str(a) == str(b) and a.code == b.code  # type: ignore[union-attr]
    return a == b and type(a) is type(b)


SHAPES = [
    '{"type":"rpc","id":1,"uid":2,"method":"m","args":[1,"a",null]}',
    '{"type":"rpc","id":0,"uid":0,"method":"","args":[]}',
    '{"type":"rpc","id":-1,"uid":2,"method":"m","args":[]}',
    '{"type":"rpc","id":1.0,"uid":2,"method":"m","args":[]}',
    '{"type":"rpc","id":true,"uid":2,"method":"m","args":[]}',
    '{"type":"rpc","id":1,"uid":"2","method":"m","args":[]}',
    '{"type":"rpc","id":1,"uid":2,"method":3,"args":[]}',
    '{"type":"rpc","id":1,"uid":2,"method":"m","args":{}}',
    '{"type":"rpc","id":1,"uid":2,"method":"m"}',
    '{"type":"rpc","id":1,"uid":2,"args":[],"extra":1}',
    '{"type":"rpc","id":1,"uid":2,"method":"m","args":[],"room":"r"}',
    '{"type":"rpc","id":1,"uid":2,"method":"m","args":[],"room":5}',
    '{"type":"rpc","id":1,"uid":2,"method":"m","args":[],"other":5}',
    '{"type":"rpc_result","id":1,"value":{"a":[1,2]}}',
    '{"type":"rpc_result","id":1,"value":null}',
    '{"type":"rpc_result","id":-4,"value":1}',
    '{"type":"rpc_result","id":"1","value":1}',
    '{"type":"rpc_result","id":1}',
    '{"type":"rpc_result","id":1,"value":1,"room":"default"}',
    '{"type":"rpc_result","id":1,"value":1,"room":7}',
    '{"type":"rpc_result","id":1,"other":1,"value":1}',
    '{"type":"rpc_result","value":1,"other":1}',
]


@pytest.mark.parametrize("text", SHAPES)
def test_rpc_and_rpc_result_decode_as_the_schema_does(text: str) -> None:
    body = text.encode()
    assert same(decoded(body), generic(body))


@settings(max_examples=200, deadline=None)
@given(
    call_id=st.integers(-3, m.MAX_SAFE_INT),
    uid=st.one_of(st.integers(0, 10), st.text(max_size=2)),
    method=st.one_of(st.text(max_size=8), st.integers(-9, 9)),
    args=st.lists(st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=3)), max_size=3),
    room=st.one_of(st.none(), st.text(max_size=3)),
)
def test_any_rpc_decodes_as_the_schema_does(
    call_id: int, uid: Any, method: Any, args: list[Any], room: str | None
) -> None:
    obj: dict[str, Any] = {"type": "rpc", "id": call_id, "uid": uid, "method": method}
    obj["args"] = args
    if room is not None:
        obj["room"] = room
    body = json.dumps(obj).encode()
    assert same(decoded(body), generic(body))


@settings(max_examples=100, deadline=None)
@given(
    method=st.text(max_size=10),
    args=st.lists(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
        max_size=4,
    ),
)
def test_encode_rpc_is_the_bytes_of_encode(method: str, args: list[Any]) -> None:
    try:
        args = m.to_wire(args)
    except EncodeError:
        return
    assert m.encode_rpc(7, 3, method, args) == m.encode(
        m.Rpc(id=7, uid=3, method=method, args=args)
    )


def test_to_wire_names_the_bad_item_of_a_list_as_before() -> None:
    for value, words in [
        ([1, float("nan")], "call args[1]: nan is not a finite number"),
        ((1, 2**60), "call args[1]: integer 1152921504606846976 is outside"),
        (["ok", "\ud800"], "call args[1]: string holds a lone surrogate"),
        ([[1, {2: 3}]], "call args[0][1]: dict key 2 is not a UTF-8 string"),
        ([None, {1, 2}], "call args[1]: a set cannot be sent"),
    ]:
        with pytest.raises(EncodeError) as info:
            m.to_wire(value, "call args")
        assert words in str(info.value)
    assert m.to_wire((1, 2.5, "x", None, True, [3]), "v") == [1, 2.5, "x", None, True, [3]]


@pytest.mark.parametrize(
    "text",
    [' {"type":"ping","nonce":1}', '{"type":"ping","nonce":1} ', '{"type":"ping","nonce":1}\n'],
)
def test_whitespace_around_the_value_is_still_accepted(text: str) -> None:
    assert m.decode(text.encode()) == m.Ping(nonce=1)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"type":"rpc_result","id":1,"value":NaN}', "NaN is not allowed"),
        ('{"type":"rpc_result","id":1,"value":1} x', "not valid JSON (at character"),
        ('{"type":"rpc_result","id":1,"value":[1,]}', "not valid JSON (at character"),
    ],
)
def test_what_the_scanner_refuses_is_refused_with_the_same_words(text: str, words: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        m.decode(text.encode())
    assert info.value.code == CloseCode.INVALID_PAYLOAD and words in str(info.value)


def test_whole_takes_only_one_exact_frame_within_the_limit() -> None:
    dec = FrameDecoder(max_frame_size=10)
    assert dec.whole(encode_frame(b"abc")) == b"abc"
    assert dec.whole(encode_frame(b"abc") + b"\x00") is None  # more than one frame
    assert dec.whole(encode_frame(b"abc")[:-1]) is None  # less
    assert dec.whole(encode_frame(b"x" * 11)) is None  # over the limit: next_frame refuses
    assert dec.whole(b"\x00\x00\x00\x00") is None  # an empty frame: next_frame refuses
    dec.add(b"\x00")
    assert dec.whole(encode_frame(b"abc")) is None  # something is buffered


def test_frame_sizer_reports_a_whole_frame_and_keeps_following_the_stream() -> None:
    sizer = FrameSizer()
    assert sizer.feed(encode_frame(b"x" * 70000)) == 70000
    two = encode_frame(b"y" * 5)
    assert sizer.feed(two[:3]) == 0 and sizer.feed(two[3:] + two) == 5


def _served(options: dict[str, Any] | None = None, **hello: Any) -> tuple[ServerHub, Session]:
    h = ServerHub(ServerOptions(**(options or {})))
    session = h.open("10.0.0.1", 1, 0.0)
    session.receive_data(frame(m.Hello(version=1, **hello)), 0.0)
    for event in session.events():
        h.on_event(session, event, 0.0)
    sent(session)
    return h, session


@pytest.mark.parametrize(
    "reply",
    [
        m.RpcResult(id=3, value={"a": [1, "é"]}),
        m.RpcErrorReply(id=4, code="rejected", message="no"),
    ],
)
@pytest.mark.parametrize("features", [None, ["deflate"], ["rooms"]])
def test_one_answer_to_one_member_has_the_bytes_and_counts_of_the_general_path(
    reply: m.Message, features: list[str] | None
) -> None:
    hello = {} if features is None else {"features": features}
    fast_hub, fast = _served(**hello)
    slow_hub, slow = _served(**hello)
    fast_hub.send((fast.member,), reply, 1.0)
    slow_hub.send((slow.member, 999), reply, 1.0)  # two members: never the shortcut
    assert fast.data_to_send() == slow.data_to_send()
    assert fast.sent_by_kind == slow.sent_by_kind and fast.rpc_errors == slow.rpc_errors


def test_an_answer_too_large_for_the_client_is_bad_return_on_the_shortcut_too() -> None:
    h, session = _served(max_frame=65536)
    h.send((session.member,), m.RpcResult(id=1, value="x" * 70000), 0.0)
    (body,) = [f[4:] for f in [session.data_to_send()]]
    assert m.decode(body) == m.RpcErrorReply(
        id=1, code="bad_return", message="the return value is too large"
    )


def test_a_duplicate_call_id_in_flight_still_closes_1002() -> None:
    _, session = _served()
    call = frame(m.Rpc(id=5, uid=1, method="m", args=[]))
    session.receive_data(call + call, 0.0)
    events = session.events()
    assert isinstance(events[-1], Closed) and events[-1].code == CloseCode.PROTOCOL_ERROR
    assert "rpc id 5 already in flight" in events[-1].reason


def test_an_answer_frees_its_id_on_the_shortcut() -> None:
    h, session = _served()
    call = frame(m.Rpc(id=5, uid=1, method="m", args=[]))
    session.receive_data(call, 0.0)
    session.events()
    h.send((session.member,), m.RpcResult(id=5, value=1), 0.0)
    session.receive_data(call, 0.0)  # the id may be used again (§8.5)
    assert not session.closed and 5 in session.calls_in_flight


def test_call_future_knows_the_done_states_of_concurrent_futures() -> None:
    import concurrent.futures._base as base

    from reverb.aio import client

    assert {base.CANCELLED, base.CANCELLED_AND_NOTIFIED, base.FINISHED} == client._DONE


@pytest.mark.parametrize(
    ("built", "constructed"),
    [
        (
            lambda: m.make_rpc(3, 4, "go", [1, "a"]),
            lambda: m.Rpc(id=3, uid=4, method="go", args=[1, "a"]),
        ),
        (lambda: m.make_rpc_result(3, {"a": 1}), lambda: m.RpcResult(id=3, value={"a": 1})),
        (
            lambda: received(m.RpcResult(id=1, value=2), 5.0),
            lambda: Received(m.RpcResult(id=1, value=2), 5.0),
        ),
        (
            lambda: peer_message(7, m.RpcResult(id=1, value=2)),
            lambda: PeerMessage(7, m.RpcResult(id=1, value=2)),
        ),
    ],
)
def test_the_rpc_paths_builders_make_what_the_constructors_make(
    built: Any, constructed: Any
) -> None:
    """Built without the frozen dataclass's __init__: the same type, every field set (no
    more, no less), equal, the same repr, and still frozen."""
    fast, slow = built(), constructed()
    assert type(fast) is type(slow)
    assert vars(fast) == vars(slow)
    assert list(vars(fast)) == [f.name for f in dataclasses.fields(slow)]
    assert fast == slow and repr(fast) == repr(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.x = 1
