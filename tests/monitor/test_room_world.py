"""Rooms (protocol §17) on the world and client pages' APIs, against a real server with
rooms on both I/O layers: a client seated in a room other than the default is shown what it
holds there, and the world page reads any live room's objects (the browser tests drive the
same pages in test_browser.py)."""

from __future__ import annotations

from typing import Any

from tests.jsonproc import stop
from tests.monitor.conftest import Game, until


def test_room_clients_views_and_room_worlds(rooms_game: Game) -> None:
    game = rooms_game
    _, a, duel = game.room_client("duel")
    _, b, _ = game.room_client("duel")
    squad_proc, c, squad = game.room_client("squad")
    _, plain = game.client()

    def sizes() -> dict[int, int] | None:
        rows = game.get_json("/api/overview")["clients"]
        got = {row["member"]: row["view_size"] for row in rows}
        want = {a: 3, b: 3, c: 2}  # an arena's marker and a Token per client
        return got if all(got.get(k) == v for k, v in want.items()) else None

    got = until(sizes, what="room clients' view sizes read from their rooms")
    assert got[plain] > 0  # the default room's client, as before

    def client_view() -> dict[str, Any] | None:
        data = game.get_json(f"/api/client/{a}")
        return data if len(data["view"]) == 3 else None

    data = until(client_view, what="a room client's view")
    assert data["room"] == duel
    assert {o["type"] for o in data["view"]} == {"Token"}
    assert sorted(o["owner"] for o in data["view"] if o["owner"] is not None) == sorted([a, b])
    assert all(o["seen_by"] == sorted([a, b]) for o in data["view"])
    assert all("x" in o["fields"] for o in data["view"])
    assert game.get_json(f"/api/client/{plain}")["room"] == "default"

    def nudged() -> list[dict[str, Any]] | None:
        rpcs = game.get_json(f"/api/client/{a}")["rpcs"]
        return [r for r in rpcs if r["method"] == "nudge"] or None

    calls = until(nudged, what="a room client's calls logged")
    assert {(r["type"], r["code"], r["room"]) for r in calls} == {("Token", "ok", duel)}
    assert any(r["room"] == duel for r in game.get_json("/api/rpc")["rpcs"])
    status, _, metrics = game.request("GET", "/metrics")
    assert status == 200 and b'method="Token.nudge"' in metrics  # in the RPC series too

    def room_world() -> dict[str, Any] | None:
        data = game.get_json(f"/api/world?room={duel}")
        return data if len(data["objects"]) == 3 else None

    world = until(room_world, what="the duel arena's world")
    assert world["room"] == duel
    assert world["rooms"][0] == "default" and {duel, squad} <= set(world["rooms"])
    assert sorted(world["peers"]) == sorted([a, b])
    assert {o["type"] for o in world["objects"]} == {"Token"}

    default = game.get_json("/api/world")
    assert default["room"] == "default"
    assert "Token" not in {o["type"] for o in default["objects"]}
    assert {"Crate", "Player"} <= {o["type"] for o in default["objects"]}
    assert a not in default["peers"]

    nothing = game.get_json("/api/world?room=no-such-room")
    assert nothing["tick"] is None and nothing["objects"] == []

    stop(squad_proc.proc)  # its last client gone, the squad arena is disposed
    until(
        lambda: game.get_json(f"/api/world?room={squad}")["objects"] == [],
        what="a disposed room shows no objects",
    )


def test_world_without_room_types_names_no_room(game: Game) -> None:
    game.client()
    data = game.get_json("/api/world")
    assert data["room"] is None and data["rooms"] is None
    assert game.get_json("/api/world?room=anything")["room"] is None
