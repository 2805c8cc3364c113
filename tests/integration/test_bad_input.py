"""Hostile and broken peers over raw sockets: each gets a clear close code (docs/protocol.md
§10), and the server keeps serving a well-behaved client afterwards."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.hostile.raw import Raw
from tests.integration.driver import Game, game

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def g() -> Iterator[Game]:
    yield from game(tick_rate=60, handshake_timeout=0.5, max_send_buffer=256 * 1024)


def still_serves(g: Game) -> None:
    client, _ = g.client()
    g.server.ask("spawn", "spawned", n=1)
    g.converge([client])


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (struct.pack(">I", 2**32 - 1), 1009),
        (struct.pack(">I", (1 << 20) + 1), 1009),
        (struct.pack(">I", 0), 1007),
        (struct.pack(">I", 2) + b"\xff\xfe", 1007),
        (struct.pack(">I", 5) + b"{nope", 1007),
        (struct.pack(">I", 2) + b"[]", 1007),
        (struct.pack(">I", 15) + b'{"type":"nope"}', 1002),
        (struct.pack(">I", 26) + b'{"type":"hello","version":2}'[:26], 1007),
    ],
    ids=["2^32-1", "limit+1", "empty", "utf8", "json", "array", "unknown-type", "cut-json"],
)
def test_malformed_first_frame_is_closed_with_its_code(g: Game, data: bytes, code: int) -> None:
    raw = Raw(g.server.port)
    raw.send_raw(data)
    assert raw.closed_with()[0] == code
    raw.close()
    still_serves(g)


def test_unsupported_version_is_refused_with_an_explanation(g: Game) -> None:
    raw = Raw(g.server.port)
    raw.send({"type": "hello", "version": 99})
    close = raw.expect("close")
    assert close["code"] == 1003 and "1" in close["reason"]
    raw.close()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "rpc", "id": "x", "uid": 1, "method": "move", "args": []}, 1002),
        ({"type": "rpc", "id": 1, "uid": 1, "method": "move"}, 1002),
        ({"type": "rpc", "id": True, "uid": 1, "method": "move", "args": []}, 1002),
        ({"type": "hello", "version": 1}, 1002),
        ({"type": "welcome", "version": 1, "member": 1, "tick_rate": 1, "max_frame": 1}, 1002),
    ],
    ids=["id-str", "no-args", "id-bool", "double-hello", "server-message"],
)
def test_bad_message_after_handshake_is_closed(g: Game, message: dict[str, Any], code: int) -> None:
    raw = Raw(g.server.port)
    raw.hello()
    raw.send(message)
    assert raw.closed_with()[0] == code
    raw.close()
    still_serves(g)


def test_rpc_on_unknown_uid_and_unexposed_names_answered_not_closed(g: Game) -> None:
    raw = Raw(g.server.port)
    member = raw.hello()["member"]
    avatar = g.server.expect("client_connected", lambda e: e["member"] == member)["uid"]
    raw.send({"type": "rpc", "id": 1, "uid": 999999, "method": "move", "args": [1]})
    assert raw.expect("rpc_error")["code"] == "unknown_object"
    for i, name in enumerate(
        ["secret", "_private", "__init__", "__class__", "destroy", "compute_server"]
    ):
        raw.send({"type": "rpc", "id": 10 + i, "uid": avatar, "method": name, "args": []})
        reply = raw.expect("rpc_error")
        assert (reply["id"], reply["code"]) == (10 + i, "not_exposed")
    raw.send(
        {"type": "rpc", "id": 50, "uid": avatar, "method": "move", "args": [3], "member": 12345}
    )
    assert raw.expect("rpc_result")["value"] == 3  # claimed ids are ignored; it is the owner
    executed = g.state()["executed"]
    assert executed == {"move": 1}
    raw.close()


def test_silent_peer_hits_the_handshake_deadline(g: Game) -> None:
    raw = Raw(g.server.port)
    started = time.monotonic()
    assert raw.closed_with(timeout=5)[0] == 1008
    assert time.monotonic() - started < 3
    raw.close()
    still_serves(g)


def test_trickled_bytes_do_not_extend_the_handshake_deadline(g: Game) -> None:
    raw = Raw(g.server.port)
    hello = json.dumps({"type": "hello", "version": 1, "pad": "x" * 200}).encode()
    frame = struct.pack(">I", len(hello)) + hello
    started = time.monotonic()
    closed = False
    for byte in frame:
        try:
            raw.send_raw(bytes([byte]))
        except OSError:
            closed = True
            break
        if time.monotonic() - started > 3:
            break
        time.sleep(0.01)  # the trickle itself: one byte per 10 ms
    assert closed or raw.closed_with()[0] == 1008
    assert time.monotonic() - started < 3
    raw.close()


def test_client_killed_mid_frame_leaves_others_unharmed(g: Game) -> None:
    raw = Raw(g.server.port)
    raw.hello()
    raw.send_raw(struct.pack(">I", 100) + b'{"type":"rpc"')
    raw.sock.close()
    still_serves(g)


def test_reader_that_never_reads_is_dropped() -> None:
    yield_game = game(tick_rate=60, max_send_buffer=1 << 20)
    g = next(yield_game)
    try:
        stalled_reader_scenario(g)
    finally:
        yield_game.close()


def stalled_reader_scenario(g: Game) -> None:
    raw = Raw(g.server.port)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    member = raw.hello()["member"]
    good, good_member = g.client()
    uids = g.server.ask("spawn", "spawned", n=50)["uids"]
    deadline = time.monotonic() + 30
    value = 0
    while time.monotonic() < deadline:
        value += 1
        for uid in uids:
            g.server.send("set", uid=uid, field="weight", value="x" * 10000 + str(value))
        try:
            left = g.server.expect(
                "client_disconnected", lambda e: e["member"] == member, timeout=0.2
            )
            break
        except AssertionError:
            continue
    else:
        raise AssertionError("the stalled reader was never dropped")
    assert left["code"] == 1013
    for uid in uids:
        g.server.send("set", uid=uid, field="weight", value=0)
    g.converge([good], timeout=20)
    assert g.state()["members"] == [good_member]
    raw.close()
