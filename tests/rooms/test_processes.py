"""Rooms (docs/protocol.md §17) between real processes over real sockets, on both I/O layers:
rooms never leak objects, events or calls into each other; join, leave and switch; full,
locked and other refusals with their reasons; disposal; the live lobby; protocol-1 clients
in the default room."""

from __future__ import annotations

import json
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
        self.member = 0

    def join(self, op: str, *args: Any, **kw: Any) -> dict[str, Any]:
        self.send(op, args=list(args), kw=kw)
        return self.expect_any("handle", "refused")

    def expect_any(self, *events: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next event whose name is one of ``events``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"none of {events} within {timeout} s")
            data = json.loads(self.lines.next(left))
            if data.get("event") in events:
                return data

    def state(self, until: Any = lambda s: True, timeout: float = 10.0) -> dict[str, Any]:
        """The client's room and replicas, asked again until ``until(state)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            self.send("state")
            got = self.expect("state")
            if until(got) or time.monotonic() > deadline:
                return got
            time.sleep(0.02)  # bounded polling of another process's state, with a deadline


class Game:
    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.peers: list[Peer] = []
        self.server = self._add(Peer("server", layer))

    def _add(self, peer: Peer) -> Peer:
        self.peers.append(peer)
        return peer

    def client(self, **options: Any) -> Peer:
        peer = self._add(Peer("client", self.layer, str(self.server.port), json.dumps(options)))
        peer.member = peer.expect("connected")["member"]
        return peer

    def close(self) -> None:
        for peer in reversed(self.peers):
            peer.close()


@pytest.fixture(params=LAYERS)
def game(request: pytest.FixtureRequest) -> Iterator[Game]:
    g = Game(str(request.param))
    try:
        yield g
    finally:
        g.close()


def ships_of(state: dict[str, Any]) -> set[int]:
    """The owners of the ships a client holds."""
    return {owner for _, owner, _ in state["ships"]}


def test_two_rooms_never_leak_objects_events_or_calls(game: Game) -> None:
    a, b, c = game.client(), game.client(), game.client()
    room_a = a.join("create", "battle", {"mode": "x"})["room"]
    room_b = b.join("create", "battle", {"mode": "y"})["room"]
    assert room_a != room_b
    assert c.join("join_or_create", "battle", {"mode": "x"}) == {
        "event": "handle",
        "room": room_a,
        "name": "battle",
        "created": False,
    }
    sa = a.state(lambda s: len(s["ships"]) == 2)
    sb = b.state(lambda s: len(s["ships"]) == 1)
    assert ships_of(sa) == {a.member, c.member} and sa["room"] == room_a
    assert ships_of(sb) == {b.member} and sb["room"] == room_b
    assert sa["flags"] == [] and sb["flags"] == []  # the default room's Flag is elsewhere
    # UIDs are per room: both rooms started at 1
    assert min(uid for uid, _, _ in sa["ships"]) == 1 == sb["ships"][0][0]
    # a call runs in the caller's room only, on its own ship
    a.send("fire")
    assert a.expect("fired")["value"] == 1
    fired = game.server.expect("fired")
    assert fired["room"] == room_a and fired["by"] == a.member
    sb = b.state()
    assert sb["ships"] == [[1, b.member, 0]]  # room B's uid 1 untouched
    sc = c.state(lambda s: [a.member, 1] in [[o, x] for _, o, x in s["ships"]])
    assert [a.member, 1] in [[o, x] for _, o, x in sc["ships"]]
    # room B never heard of room A's spawns: every spawn event b got was in its room
    b.send("state")
    spawned_b = []
    while True:
        event = b.expect_any("spawned", "state")
        if event["event"] == "state":
            break
        spawned_b.append(event)
    assert all(e["room"] == room_b for e in spawned_b)


def test_join_leave_and_switch(game: Game) -> None:
    a, b = game.client(), game.client()
    first = a.join("create", "battle", {"mode": "s1"})["room"]
    b.join("join_by_id", first)
    assert len(a.state(lambda s: len(s["ships"]) == 2)["ships"]) == 2
    a.send("leave")
    assert a.expect("handle")["room"] is None  # leave() returned; its room_left follows
    assert a.expect("room_left")["room"] == first
    assert a.state()["ships"] == [] and a.state()["room"] is None
    left = game.server.expect("left", lambda e: e["member"] == a.member)
    assert left["room"] == first and left["consented"] is True
    assert ships_of(b.state(lambda s: len(s["ships"]) == 1)) == {b.member}
    # join again, then switch to a new room without reconnecting
    a.join("join_by_id", first)
    second = a.join("create", "battle", {"mode": "s2"}, switch=True)
    assert second["event"] == "handle" and second["created"] is True
    moved = a.expect("room_left")
    assert moved == {
        "event": "room_left",
        "room": first,
        "consented": True,
        "reason": "switched room",
    }
    state = a.state(lambda s: s["room"] == second["room"] and len(s["ships"]) == 1)
    assert state["room"] == second["room"] and ships_of(state) == {a.member}
    assert ships_of(b.state(lambda s: len(s["ships"]) == 1)) == {b.member}
    # a refused switch leaves the connection where it was, still synced
    refused = a.join("join_by_id", "no-such-room", switch=True)
    assert refused["code"] == "unknown_room"
    a.send("fire")
    assert a.expect("fired")["value"] == 1
    assert a.state(lambda s: s["ships"][0][2] == 1)["room"] == second["room"]


def test_refusals_have_codes_and_reasons(game: Game) -> None:
    a, b, c = game.client(), game.client(), game.client()
    room = a.join("create", "battle", {"mode": "r"})["room"]
    b.join("join_by_id", room)
    full = c.join("join_by_id", room)
    assert (full["kind"], full["code"], full["reason"]) == (
        "RoomRefused",
        "full",
        "the room is full",
    )
    assert c.join("join_by_id", "nope")["code"] == "unknown_room"
    assert c.join("join_or_create", "arena?")["code"] == "unknown_room_type"
    assert c.join("join", "battle", {"mode": "none"})["code"] == "no_room"
    assert a.join("join_or_create", "battle", {"mode": "r2"})["code"] == "already_in_room"
    sealed = c.join("create", "sealed")["room"]
    d = game.client()
    assert d.join("join_by_id", sealed)["code"] == "locked"
    vip = d.join("create", "vip", {"key": "sesame"})["room"]
    e = game.client()
    rejected = e.join("join_by_id", vip, {"key": "guess"})
    assert (rejected["code"], rejected["reason"]) == ("rejected", "the key is wrong")
    e.send("leave")
    assert e.expect("refused")["code"] == "not_in_room"
    # every refused request left its connection where it was
    assert e.state()["room"] is None and d.state()["room"] == vip


def test_dispose_by_the_server_and_when_empty(game: Game) -> None:
    a, b, w = game.client(), game.client(), game.client()
    w.send("watch", name="battle")
    w.expect("watching")
    room = a.join("create", "battle", {"mode": "d"})["room"]
    b.join("join_by_id", room)
    b.state(lambda s: len(s["ships"]) == 2)
    game.server.send("dispose", room=room)
    game.server.expect("disposed", lambda e: e["room"] == room)  # on_dispose, then the answer
    assert game.server.expect("done")["ok"] is True
    for peer in (a, b):
        gone = peer.expect("room_left")
        assert gone == {
            "event": "room_left",
            "room": room,
            "consented": False,
            "reason": "room disposed",
        }
        assert peer.state(lambda s: s["room"] is None)["ships"] == []
    w.expect("room_event", lambda e: e["kind"] == "removed" and e["listing"]["room"] == room)
    assert a.join("join_by_id", room)["code"] == "unknown_room"
    # auto_dispose: the last client leaving disposes the room, its objects and its tick
    other = a.join("create", "battle", {"mode": "d2"})["room"]
    a.send("leave")
    a.expect("room_left")
    game.server.expect("disposed", lambda e: e["room"] == other)
    game.server.send("rooms")
    assert other not in game.server.expect("rooms")["rooms"]


def test_lobby_streams_the_room_list(game: Game) -> None:
    w, a, b = game.client(), game.client(), game.client()
    w.send("watch", name="battle")
    assert w.expect("watching")["rooms"] == []
    room = a.join("create", "battle", {"mode": "l"})["room"]
    added = w.expect("room_event", lambda e: e["listing"]["room"] == room)
    assert added["kind"] == "added" and added["listing"]["metadata"] == {"mode": "l"}
    b.join("join_or_create", "battle", {"mode": "l"})
    w.expect("room_event", lambda e: e["kind"] == "changed" and e["listing"]["clients"] == 2)
    game.server.send("lock", room=room)
    w.expect("room_event", lambda e: e["kind"] == "changed" and e["listing"]["locked"])
    w.send("lobby")
    assert w.expect("lobby")["rooms"] == {room: 2}
    for peer in (a, b):
        peer.send("leave")
        peer.expect("room_left")
    w.expect("room_event", lambda e: e["kind"] == "removed" and e["listing"]["room"] == room)
    w.send("lobby")
    assert w.expect("lobby")["rooms"] == {}
    # rooms of other types are not streamed to a "battle" watcher; list_rooms sees them all
    c = game.client()
    vip = c.join("create", "vip", {"key": "sesame"})["room"]
    w.send("list")
    assert vip in w.expect("list")["rooms"]
    w.send("lobby")
    assert w.expect("lobby")["rooms"] == {}


def test_protocol1_and_default_room_clients_see_the_seed_world(game: Game) -> None:
    plain = game.client(rooms=False)
    fighter = game.client()
    fighter.join("create", "battle", {"mode": "p"})
    assert plain.state(lambda s: len(s["flags"]) == 1)["flags"] == [[1, 7]]
    assert fighter.state(lambda s: len(s["ships"]) == 1)["flags"] == []
    plain.send("poke")
    assert plain.expect("poked")["value"] == 8
    # a rooms client joins the default room by id and calls into the seed world
    visitor = game.client()
    assert visitor.join("join_by_id", "default")["room"] == "default"
    assert visitor.state(lambda s: s["flags"] == [[1, 8]])["flags"] == [[1, 8]]
    visitor.send("poke")
    assert visitor.expect("poked")["value"] == 9
    assert plain.state(lambda s: s["flags"] == [[1, 9]])["flags"] == [[1, 9]]
