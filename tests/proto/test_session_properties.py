"""Invariants of the session and codec under arbitrary input (hypothesis)."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reverb.errors import EncodeError, RemoteProtocolError
from reverb.proto import messages as m
from reverb.proto.session import Closed, Role, Session, SessionEvent
from tests.proto.helpers import frame

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ints = st.integers(min_value=-m.MAX_SAFE_INT, max_value=m.MAX_SAFE_INT)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)
client_messages = st.one_of(
    st.builds(
        m.Rpc,
        id=st.integers(0, 10**6),
        uid=ints,
        method=st.text(max_size=20),
        args=st.lists(json_values, max_size=3),
    ),
    st.builds(m.Ping, nonce=ints),
    st.builds(m.Pong, nonce=ints),
)


def run_server(chunks: list[bytes]) -> tuple[list[SessionEvent], bytes]:
    session = Session(Role.SERVER, 0.0, member=1)
    for i, chunk in enumerate(chunks):
        session.receive_data(chunk, float(i))
    return session.events(), session.data_to_send()


@PROPERTY
@given(st.binary(max_size=300))
def test_any_bytes_yield_events_or_a_close_never_an_exception(data: bytes) -> None:
    session = Session(Role.SERVER, 0.0, member=1)
    session.receive_data(data, 0.0)
    events = session.events()
    closes = [e for e in events if isinstance(e, Closed)]
    assert len(closes) <= 1
    if closes:
        assert session.closed and events[-1] is closes[0]
    session.receive_eof()
    assert session.closed


@PROPERTY
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_any_bytes_after_a_handshake_never_raise(prefix: bytes, data: bytes) -> None:
    session = Session(Role.SERVER, 0.0, member=1)
    session.receive_data(frame(m.Hello(version=1)) + prefix, 0.0)
    session.receive_data(data, 1.0)
    session.check_timeouts(100.0)
    assert session.closed


@PROPERTY
@given(st.lists(client_messages, max_size=8), st.data())
def test_a_stream_split_anywhere_gives_the_same_events(messages: list[Any], data: Any) -> None:
    # §8.4: a call id is not reused while the call is in flight (none is answered here)
    messages = [
        dataclasses.replace(msg, id=i) if isinstance(msg, m.Rpc) else msg
        for i, msg in enumerate(messages)
    ]
    stream = frame(m.Hello(version=1)) + b"".join(frame(msg) for msg in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    whole = run_server([stream])
    assert run_server(chunks) == whole
    assert run_server([bytes([b]) for b in stream]) == whole
    # The server received every rpc, in order, and answered every ping.
    rpcs = [msg for msg in messages if isinstance(msg, m.Rpc)]
    assert [e.message for e in whole[0][1:]] == rpcs  # type: ignore[union-attr]


@PROPERTY
@given(st.binary(max_size=300))
def test_decode_raises_only_remote_protocol_error(data: bytes) -> None:
    try:
        message = m.decode(data)
    except RemoteProtocolError as exc:
        assert exc.code in (1002, 1007)
    else:
        assert isinstance(message, m.Message)


@PROPERTY
@given(
    st.one_of(
        st.binary(max_size=300),
        st.from_regex(rb'\A\{"type":"(ping|rpc|sync|hello)",.{0,80}\}\Z'),
    )
)
def test_decode_of_near_json_raises_only_remote_protocol_error(data: bytes) -> None:
    try:
        m.decode(data)
    except RemoteProtocolError as exc:
        assert exc.code in (1002, 1007)


@PROPERTY
@given(json_values)
def test_json_values_round_trip_through_the_codec(value: Any) -> None:
    message = m.RpcResult(id=1, value=m.to_wire(value))
    assert m.decode(m.encode(message)) == message


@PROPERTY
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.tuples(inner)
            | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3)
            | st.frozensets(st.integers(), max_size=2)
        ),
        max_leaves=8,
    )
)
def test_to_wire_either_encodes_a_decodable_value_or_raises_encode_error(value: Any) -> None:
    try:
        wire = m.to_wire(value)
    except EncodeError:
        return
    message = m.RpcResult(id=1, value=wire)
    assert m.decode(m.encode(message)) == message
