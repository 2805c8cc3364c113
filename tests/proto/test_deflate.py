"""Compressed frames, feature "deflate" (protocol §15): negotiation, the client's bounded
inflation and its errors, and the hub compressing once for every peer that has it."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import pytest

from reverb.hub import COMPRESS_MIN, ServerHub, ServerOptions
from reverb.proto import messages as m
from reverb.proto.framing import encode_frame
from reverb.proto.session import FEATURES, GRANTABLE, Role, Session, State
from tests.proto.helpers import SessionPair, assert_closed_with, decode_stream, frame, sent

BIG = {"type": "rpc_result", "id": 1, "value": "x" * 5000}


def compressed(body: bytes, level: int = 1) -> bytes:
    return encode_frame(b"\x00" + zlib.compress(body, level))


def deflate_client(max_frame_size: int = 1 << 20) -> Session:
    """A client granted "deflate" (and nothing else), past its welcome, with one call out."""
    session = Session(
        Role.CLIENT, 0, features=("deflate",), max_frame_size=max_frame_size, name="c"
    )
    session.data_to_send()
    welcome = m.Welcome(
        version=1, member=3, tick_rate=30.0, max_frame=1 << 20, features=["deflate"]
    )
    session.receive_data(frame(welcome), 0)
    session.events()
    assert session.features == frozenset({"deflate"})
    return session


def test_a_server_grants_deflate_only_to_a_client_that_asks() -> None:
    asked = SessionPair(client_options={"features": ("compact", "deflate")})
    assert asked.server.features == asked.client.features == frozenset({"compact", "deflate"})
    default = SessionPair()
    assert default.server.features == frozenset(FEATURES)
    assert "deflate" not in FEATURES and "deflate" in GRANTABLE
    assert m.Hello(version=1, max_frame=1 << 20, features=list(FEATURES)) in default.to_server


def test_a_granted_client_inflates_a_compressed_frame_into_its_message() -> None:
    session = deflate_client()
    body = json.dumps(BIG).encode()
    session.receive_data(compressed(body), 0)
    (event,) = session.events()
    assert event.message == m.RpcResult(id=1, value="x" * 5000)  # type: ignore[attr-defined]
    assert session.stats["inflated_frames"] == 1
    assert not session.closed


def test_plain_frames_still_work_on_a_deflate_connection() -> None:
    session = deflate_client()
    session.receive_data(frame(m.RpcResult(id=1, value=2)), 0)
    (event,) = session.events()
    assert event.message == m.RpcResult(id=1, value=2)  # type: ignore[attr-defined]


def test_a_client_without_the_feature_treats_a_compressed_frame_as_invalid_json() -> None:
    session = Session(Role.CLIENT, 0, features=("compact",))
    session.data_to_send()
    session.receive_data(
        frame(m.Welcome(version=1, member=3, tick_rate=30.0, max_frame=1 << 20)), 0
    )
    session.events()
    session.receive_data(compressed(json.dumps(BIG).encode()), 0)
    assert_closed_with(session, 1007)


def test_a_frame_inflating_beyond_max_frame_is_1009_without_inflating_it_all() -> None:
    session = deflate_client(max_frame_size=65536)
    bomb = json.dumps({"type": "rpc_result", "id": 1, "value": "a" * 50_000_000}).encode()
    data = compressed(bomb, 9)
    assert len(data) < 65536  # the frame fits; what it inflates to does not
    session.receive_data(data, 0)
    assert_closed_with(session, 1009, "inflates beyond max_frame")


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00not zlib at all",
        b"\x00" + zlib.compress(json.dumps(BIG).encode())[:-6],  # cut short
        b"\x00" + zlib.compress(json.dumps(BIG).encode()) + b"{}",  # bytes after its end
    ],
    ids=["garbage", "truncated", "trailing"],
)
def test_a_broken_compressed_frame_is_1007(payload: bytes) -> None:
    session = deflate_client()
    session.receive_data(struct.pack(">I", len(payload)) + payload, 0)
    assert_closed_with(session, 1007)


def test_a_server_never_inflates_what_a_client_sends() -> None:
    pair = SessionPair(client_options={"features": ("deflate",)})
    assert pair.server.features == frozenset({"deflate"})
    pair.server.receive_data(compressed(json.dumps({"type": "ping", "nonce": 1}).encode()), 0)
    assert_closed_with(pair.server, 1007)


# -- the hub: compress once, share the bytes ---------------------------------------------------


def joined(hub: ServerHub, features: list[str] | None) -> Session:
    session = hub.open("10.0.0.1", 1000, 0.0)
    hello: Any = m.Hello(version=1) if features is None else m.Hello(version=1, features=features)
    session.receive_data(frame(hello), 0.0)
    for event in session.events():
        hub.on_event(session, event, 0.0)
    session.data_to_send()
    assert session.state is State.OPEN
    return session


def test_the_hub_compresses_a_large_message_once_for_every_peer_that_asked() -> None:
    hub = ServerHub(ServerOptions())
    plain = joined(hub, None)
    one, two = joined(hub, ["deflate"]), joined(hub, ["compact", "deflate"])
    message = m.RpcResult(id=0, value=["same value"] * 400)
    hub.send((plain.member, one.member, two.member), message, 0.0)
    raw = {s: s.data_to_send() for s in (plain, one, two)}
    assert raw[plain][4:5] == b"{" and decode_stream(raw[plain]) == [message]
    assert raw[one] == raw[two] and raw[one][4:5] == b"\x00"
    assert len(raw[one]) < len(raw[plain]) // 4
    assert zlib.decompress(raw[one][5:]) == raw[plain][4:]


def test_the_hub_sends_small_messages_uncompressed_even_to_deflate_peers() -> None:
    hub = ServerHub(ServerOptions())
    peer = joined(hub, ["deflate"])
    small = m.RpcResult(id=0, value="y" * (COMPRESS_MIN // 2))
    hub.send((peer.member,), small, 0.0)
    assert sent(peer) == [small]
