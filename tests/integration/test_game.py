"""The seed's flow between real processes: spawn, convergence, UIDs, ownership, RPC, despawn,
disconnect events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.driver import Game, game

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def g() -> Iterator[Game]:
    yield from game(tick_rate=60)


def test_spawned_objects_converge_with_identical_uids(g: Game) -> None:
    a, _ = g.client()
    b, _ = g.client()
    uids = g.server.ask("spawn", "spawned", n=5, weight=3)["uids"]
    assert uids == sorted(set(uids))
    table = g.converge([a, b])
    assert {u for u, e in table.items() if e["type"] == "Crate"} == {str(u) for u in uids}
    for uid in uids[:3]:
        g.server.ask("set", "set", uid=uid, field="weight", value=uid * 10)
    table = g.converge([a, b])
    assert [table[str(u)]["fields"]["weight"] for u in uids] == [u * 10 for u in uids[:3]] + [3, 3]


def test_late_joiner_gets_the_whole_world(g: Game) -> None:
    a, _ = g.client()
    uids = g.server.ask("spawn", "spawned", n=20)["uids"]
    g.server.ask("despawn", "despawned", uid=uids[0])
    g.converge([a])
    late, _ = g.client()
    table = g.converge([a, late])
    assert str(uids[0]) not in table and str(uids[1]) in table


def test_uids_are_never_reused(g: Game) -> None:
    first = g.server.ask("spawn", "spawned", n=3)["uids"]
    for uid in first:
        g.server.ask("despawn", "despawned", uid=uid)
    again = g.server.ask("spawn", "spawned", n=3)["uids"]
    assert not set(first) & set(again) and min(again) > max(first)


def test_ownership_is_reported_to_the_owner_only(g: Game) -> None:
    a, ma = g.client()
    b, mb = g.client()
    assert ma != mb and ma > 0 and mb > 0
    g.converge([a, b])
    for peer, member in ((a, ma), (b, mb)):
        table = peer.ask("table", "table")["table"]
        mine = {uid for uid, e in table.items() if e["mine"]}
        owned = {uid for uid, e in table.items() if e["owner"] == member}
        assert mine == owned and len(mine) == 1


def test_rpc_by_owner_runs_once_and_returns(g: Game) -> None:
    a, ma = g.client()
    avatar = g.server.expect("client_connected", lambda e: e["member"] == ma)["uid"]
    g.converge([a])
    a.send("call", uid=avatar, method="move", args=[5], ref=1)
    assert a.expect("result")["value"] == 5
    a.send("call", uid=avatar, method="wave", ref=2)
    assert a.expect("result")["value"] == {"by": ma, "to": ma}
    state = g.state()
    assert state["executed"] == {"move": 1, "wave": 1}
    assert state["table"][str(avatar)]["fields"]["x"] == 5


def test_rpc_refused_for_non_owner_and_never_run(g: Game) -> None:
    a, ma = g.client()
    b, mb = g.client()
    avatar_a = g.server.expect("client_connected", lambda e: e["member"] == ma)["uid"]
    g.converge([a, b])
    b.send("call", uid=avatar_a, method="move", args=[1], ref=7)
    error = b.expect("error")
    assert (error["ref"], error["code"]) == (7, "not_owner")
    b.send("call", uid=avatar_a, method="wave", ref=8)  # anyone may wave
    assert b.expect("result")["value"] == {"by": mb, "to": ma}
    assert "move" not in g.state()["executed"]


def test_rpc_errors_reach_the_caller_without_internals(g: Game) -> None:
    a, ma = g.client()
    avatar = g.server.expect("client_connected", lambda e: e["member"] == ma)["uid"]
    g.converge([a])
    a.send("call", uid=avatar, method="explode", ref=1)
    error = a.expect("error")
    assert error["code"] == "handler_error"
    assert "secret internal detail" not in error["message"] and "Traceback" not in error["message"]
    a.send("call", uid=avatar, method="refuse", args=["not your turn"], ref=2)
    assert a.expect("error")["message"] == "not your turn"
    a.send("call", uid=avatar, method="move", args=[1, 2, 3], ref=3)
    assert a.expect("error")["code"] == "bad_arguments"
    a.send("call", uid=avatar, method="secret", ref=4)
    assert a.expect("error")["code"] == "not_exposed"
    # the server survived all of it and still serves
    a.send("call", uid=avatar, method="move", args=[2], ref=5)
    assert a.expect("result")["value"] == 2
    assert g.state()["executed"] == {"explode": 1, "refuse": 1, "move": 1}


def test_despawn_reaches_every_client(g: Game) -> None:
    a, _ = g.client()
    b, _ = g.client()
    uid = g.server.ask("spawn", "spawned", n=1)["uids"][0]
    g.converge([a, b])
    g.server.ask("despawn", "despawned", uid=uid)
    for peer in (a, b):
        assert peer.expect("object_despawned", lambda e: e["uid"] == uid)
    assert str(uid) not in g.converge([a, b])


def test_disconnect_fires_events_and_despawns_the_avatar(g: Game) -> None:
    a, ma = g.client()
    b, mb = g.client()
    g.converge([a, b])
    a.send("quit")
    left = g.server.expect("client_disconnected", lambda e: e["member"] == ma)
    assert left["code"] == 1000
    avatar_a = [u for u, e in g.state()["table"].items() if e["owner"] == ma]
    assert avatar_a == []
    b.expect("object_despawned")
    assert g.state()["members"] == [mb]


def test_killed_client_is_detected(g: Game) -> None:
    a, ma = g.client()
    g.converge([a])
    a.proc.kill()
    left = g.server.expect("client_disconnected", lambda e: e["member"] == ma)
    assert left["code"] == 1006


def test_stopped_server_disconnects_clients() -> None:
    g = Game(tick_rate=60)
    try:
        a, _ = g.client()
        g.converge([a])
        g.server.close()
        assert a.expect("disconnected")["code"] == 1001
    finally:
        g.close()
