"""Named messages (docs/protocol.md §14) between real processes over real sockets, on both I/O
layers: to one client, to all, to an object's observers, client to server with the rate and
size limits, bad payloads, and a raw protocol-1 client."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.jsonproc import JsonProcess

APP = Path(__file__).with_name("app.py")
LAYERS = ["threaded", "aio"]


class Peer(JsonProcess):
    def __init__(self, *args: str) -> None:
        super().__init__(str(APP), *args)

    def messages(self, name: str, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return [self.expect("message", lambda e: e["name"] == name, timeout) for _ in range(n)]


class Game:
    def __init__(self, layer: str, **options: Any) -> None:
        self.layer = layer
        self.peers: list[Peer] = []
        self.server = self._add(Peer("server", layer, json.dumps(options)))

    def _add(self, peer: Peer) -> Peer:
        self.peers.append(peer)
        return peer

    def client(self, **options: Any) -> tuple[Peer, int]:
        peer = self._add(Peer("client", self.layer, str(self.server.port), json.dumps(options)))
        connected = peer.expect("connected")
        member = connected["member"]
        self.features = connected["features"]
        self.server.expect("client_connected", lambda e: e["member"] == member)
        return peer, member

    def close(self) -> None:
        for peer in reversed(self.peers):
            peer.close()


@pytest.fixture(params=LAYERS)
def layer(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def game(layer: str) -> Iterator[Game]:
    g = Game(layer)
    try:
        yield g
    finally:
        g.close()


def test_to_one_and_to_all(game: Game) -> None:
    a, ma = game.client()
    b, _ = game.client()
    assert game.server.ask("send", "sent", member=ma, name="hi", data={"to": ma})["count"] == 1
    assert a.messages("hi", 1)[0]["data"] == {"to": ma}
    assert game.server.ask("broadcast", "sent", name="news", data=[1, "x"])["count"] == 2
    for peer in (a, b):
        assert peer.messages("news", 1)[0]["data"] == [1, "x"]
    assert game.server.ask("broadcast", "sent", name="news", data=2, exclude=[ma])["count"] == 1
    assert b.messages("news", 1)[0]["data"] == 2
    # a had no "hi" but its own and no second news: the next thing it hears is a fresh one
    game.server.ask("send", "sent", member=ma, name="hi", data="last")
    assert a.expect("message")["data"] == "last"


def test_to_observers_and_ordering_with_syncs(game: Game) -> None:
    a, _ = game.client()
    uid = game.server.ask("spawn", "spawned", x=0)["uid"]
    a.expect("object_spawned", lambda e: e["uid"] == uid)
    assert game.server.ask("observers", "sent", uid=uid, name="near", data=uid)["count"] == 1
    assert a.messages("near", 1)[0]["data"] == uid
    for x in (1, 2, 3):
        game.server.ask("order", "ordered", uid=uid, x=x)
        before = a.messages("before", 1)[0]
        after = a.messages("after", 1)[0]
        assert before["xs"] == [x - 1]  # sent before server_sync(): precedes that tick's sync
        assert after["xs"] == [x]  # sent after it: follows the sync that carried x


def test_client_to_server_reaches_the_handler_with_the_sender(game: Game) -> None:
    a, ma = game.client()
    a.send("send", name="chat", data={"text": "gg", "member": 999})
    got = game.server.expect("chat")
    assert got == {"event": "chat", "sender": ma, "data": {"text": "gg", "member": 999}}
    assert a.messages("echo", 1)[0]["data"] == {"from": ma, "data": {"text": "gg", "member": 999}}


def test_unknown_failing_refused_and_the_connection_stays(game: Game) -> None:
    a, _ = game.client()
    for name in ("nobody", "boom", "refuse"):
        a.send("send", name=name, data=1)
        error = a.expect("message_error")
        assert error["name"] == name
        assert error["code"] == {"nobody": "unknown_message", "boom": "handler_error"}.get(
            name, "rejected"
        )
        assert "secret" not in error["reason"]
    a.send("send", name="chat", data="still open")
    assert game.server.expect("chat")["data"] == "still open"


def test_rate_limit_refuses_without_closing(layer: str) -> None:
    game = Game(layer, max_calls_per_second=5.0)  # bursts of 10
    try:
        a, _ = game.client()
        a.send("send", name="chat", data=0, times=25)
        refused = [a.expect("message_error") for _ in range(15)]
        assert {e["code"] for e in refused} == {"rate_limited"}
        handled = [game.server.expect("chat") for _ in range(10)]
        assert len(handled) == 10
        deadline = time.monotonic() + 10
        while True:  # the bucket refills at 5/s: a later message goes through again
            a.send("send", name="chat", data="later")
            try:
                game.server.expect("chat", lambda e: e["data"] == "later", 1.0)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "no message handled after the refill"
    finally:
        game.close()


def test_size_limits_and_bad_payloads_are_clear_errors(layer: str) -> None:
    game = Game(layer, max_frame_size=65536)
    try:
        a, _ = game.client()
        small, _ = game.client(max_frame_size=65536)
        a.send("send", name="chat", data="x" * 70000)
        refused = a.expect("refused")
        assert refused["kind"] == "LocalProtocolError"
        assert "exceeds the peer's limit of 65536" in refused["error"]
        a.send("send", name="", data=1)
        assert "1 to 64 characters" in a.expect("refused")["error"]
        game.server.send("bad")
        refused = game.server.expect("refused")
        assert refused["kind"] == "EncodeError" and "set" in refused["error"]
        a.send("send", name="chat", data="fine")
        assert game.server.expect("chat")["data"] == "fine"
        # too large for one client's max_frame: that one is skipped, the other served
        big = "y" * 70000
        assert game.server.ask("broadcast", "sent", name="big", data=big)["count"] == 2
        assert a.messages("big", 1)[0]["data"] == big
        game.server.ask("broadcast", "sent", name="news", data="after")
        assert small.expect("message")["name"] == "news"  # never got "big", still connected
    finally:
        game.close()


def test_a_client_without_the_feature(game: Game) -> None:
    old, mo = game.client(features=["compact"])
    assert game.features == ["compact"]
    new, _ = game.client()
    assert "messages" in game.features
    assert game.server.ask("send", "sent", member=mo, name="hi")["count"] == 0
    assert game.server.ask("broadcast", "sent", name="news", data=1)["count"] == 1
    assert new.messages("news", 1)[0]["data"] == 1
    old.send("send", name="chat", data=1)
    refused = old.expect("refused")
    assert refused["kind"] == "InvalidState" and "'messages' feature" in refused["error"]


# -- a raw client: what goes on the wire -------------------------------------------------------


class Raw:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send(self, obj: Any) -> None:
        body = json.dumps(obj).encode()
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def recv(self, timeout: float = 5.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    body, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
                    return dict(json.loads(body))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("nothing received in time")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data

    def until(self, kind: str, timeout: float = 5.0) -> tuple[dict[str, Any], list[str]]:
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.0, deadline - time.monotonic()))
            assert msg is not None, f"connection ended before {kind}; saw {seen}"
            if msg["type"] == kind:
                return msg, seen
            seen.append(msg["type"])
            if msg["type"] == "ping":
                self.send({"type": "pong", "nonce": msg["nonce"]})

    def close(self) -> None:
        self.sock.close()


def test_raw_protocol_1_client_sees_no_message_and_is_closed_for_sending_one(game: Game) -> None:
    raw = Raw(game.server.port)
    try:
        raw.send({"type": "hello", "version": 1})
        welcome, _ = raw.until("welcome")
        assert "features" not in welcome
        game.server.expect("client_connected")
        raw.until("sync")
        game.server.ask("broadcast", "sent", name="news", data=1)
        uid = game.server.ask("spawn", "spawned", x=7)["uid"]
        sync, seen = raw.until("sync")
        assert sync["spawn"][0]["uid"] == uid
        assert "message" not in seen
        raw.send({"type": "message", "name": "chat", "data": 1})
        close, _ = raw.until("close")
        assert close["code"] == 1002 and "'messages' feature" in close["reason"]
    finally:
        raw.close()


def test_raw_bad_name_closes_1002_and_unknown_name_is_answered(game: Game) -> None:
    raw = Raw(game.server.port)
    try:
        raw.send({"type": "hello", "version": 1, "features": ["messages"]})
        welcome, _ = raw.until("welcome")
        assert welcome["features"] == ["messages"]
        raw.send({"type": "message", "name": "who-handles-this"})
        error, _ = raw.until("message_error")
        assert error == {
            "type": "message_error",
            "name": "who-handles-this",
            "code": "unknown_message",
            "reason": "no handler for this name",
        }
        raw.send({"type": "message", "name": "x" * 65, "data": None})
        close, _ = raw.until("close")
        assert close["code"] == 1002 and "1 to 64" in close["reason"]
    finally:
        raw.close()
