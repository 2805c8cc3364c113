"""Issue 8 between real processes: no single value or client takes the server down, and a
client recovers from a closed connection (decisions 7, 8 and 9)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.hostile.raw import Raw
from tests.integration.driver import Game, Peer, game

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def g() -> Iterator[Game]:
    yield from game(tick_rate=60)


def table_until(
    peer: Peer, condition: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    """The client's table once ``condition`` holds for it (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        table: dict[str, Any] = peer.ask("table", "table")["table"]
        if condition(table):
            return table
        assert time.monotonic() < deadline, f"condition not met within {timeout} s: {table}"
        time.sleep(0.02)  # polling interval between two condition checks, not synchronisation


def events_until(peer: Peer, event: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every event the process reports, up to and including the first ``event``."""
    deadline = time.monotonic() + timeout
    seen = [json.loads(peer.lines.next(deadline - time.monotonic()))]
    while seen[-1].get("event") != event:
        seen.append(json.loads(peer.lines.next(deadline - time.monotonic())))
    return seen


def avatar_uid(g: Game, member: int) -> str:
    table = g.state()["table"]
    return next(u for u, e in table.items() if e["type"] == "Avatar" and e["owner"] == member)


def test_readme_move_to_infinity_does_not_stop_the_server(g: Game) -> None:
    # The README's move(dx), called twice by its owner with 1.7e308: x becomes inf.
    a, ma = g.client()
    b, _ = g.client()
    uid = avatar_uid(g, ma)
    crate = g.server.ask("spawn", "spawned")["uids"][0]
    g.converge([a, b])
    a.send("call", ref=1, uid=int(uid), method="move", args=[1.7e308])
    assert a.expect("result")["value"] == 1.7e308
    table_until(b, lambda t: t[uid]["fields"]["x"] == 1.7e308)
    a.send("call", ref=2, uid=int(uid), method="move", args=[1.7e308])
    assert a.expect("error")["code"] == "bad_return"  # the return value is inf too
    error = g.server.expect("sync_error")
    assert error["uid"] == int(uid) and error["kind"] == "EncodeError"
    assert "attribute 'x'" in error["error"] and "float" in error["error"]
    # The server keeps ticking and every other object keeps syncing to both clients.
    g.server.ask("set", "set", uid=crate, field="weight", value=42)
    for peer in (a, b):
        table = table_until(peer, lambda t: t[str(crate)]["fields"]["weight"] == 42)
        assert table[uid]["fields"]["x"] == 1.7e308  # the last value that could be sent
    late, _ = g.client()
    table = table_until(late, lambda t: t.get(str(crate), {}).get("fields", {}).get("weight") == 42)
    assert uid not in table  # withheld: a client that never had it does not get it
    # Back to a finite value: it syncs again, spawned for the client that lacked it.
    g.server.ask("set", "set", uid=int(uid), field="x", value=3)
    for peer in (a, b, late):
        table_until(peer, lambda t: t.get(uid, {}).get("fields", {}).get("x") == 3)
    assert len(g.server.lines.stderr) > 0 and "Traceback" not in "".join(g.server.lines.stderr)


@pytest.mark.parametrize("kind", ["nan", "inf", "set", "int_keys", "big_int"])
def test_an_unencodable_value_is_withheld_and_recovers(g: Game, kind: str) -> None:
    a, _ = g.client()
    first, second = g.server.ask("spawn", "spawned", n=2, weight=1)["uids"]
    g.converge([a])
    g.server.ask("bad", "set", uid=first, field="weight", value=kind)
    assert g.server.expect("sync_error")["uid"] == first
    g.server.ask("set", "set", uid=second, field="weight", value=7)
    table = table_until(a, lambda t: t[str(second)]["fields"]["weight"] == 7)
    assert table[str(first)]["fields"]["weight"] == 1
    g.server.ask("set", "set", uid=first, field="weight", value=8)
    table_until(a, lambda t: t[str(first)]["fields"]["weight"] == 8)
    state = g.state()  # the server still answers: its loop is alive
    assert state["tick"] > 0
    errors = "".join(g.server.lines.stderr)
    assert errors.count("cannot sync Crate") == 1, errors  # ERROR logged once per entry
    assert f"Crate uid={first} attribute 'weight'" in errors


def test_an_entry_too_large_for_one_client_closes_only_that_client(g: Game) -> None:
    a, _ = g.client()
    raw = Raw(g.server.port)
    try:
        welcome = raw.hello(max_frame=65536)
        raw.expect("sync")  # the full snapshot
        crate = g.server.ask("spawn", "spawned")["uids"][0]
        g.server.ask("set", "set", uid=crate, field="weight", value="w" * 100_000)
        code, reason = raw.closed_with(timeout=10)
        assert code == 1009
        assert reason == f"object uid={crate} does not fit the client's max_frame"
        left = g.server.expect("client_disconnected", lambda e: e["member"] == welcome["member"])
        assert left["code"] == 1009
    finally:
        raw.close()
    table = table_until(
        a, lambda t: t.get(str(crate), {}).get("fields", {}).get("weight", "")[:1] == "w"
    )
    assert len(table[str(crate)]["fields"]["weight"]) == 100_000
    g.server.ask("set", "set", uid=crate, field="weight", value=5)
    table_until(a, lambda t: t[str(crate)]["fields"]["weight"] == 5)


def test_a_client_closed_by_the_server_reconnects(g: Game) -> None:
    a, member = g.client()
    crate = g.server.ask("spawn", "spawned")["uids"][0]
    g.converge([a])
    avatar_uid_before = avatar_uid(g, member)
    g.server.ask("kick", "kicked", member=member)
    seen = events_until(a, "disconnected")  # stale replicas despawned, with events, first
    assert seen[-1]["code"] == 1008
    gone = {e["uid"] for e in seen if e["event"] == "object_despawned"}
    assert gone == {crate, int(avatar_uid_before)}
    assert a.ask("table", "table")["table"] == {}
    a.send("connect")
    again = a.expect("connected")["member"]
    assert again != member  # a new membership
    table = g.converge([a])  # and a fresh snapshot
    assert str(crate) in table


def test_the_readme_client_recipe_without_a_side_sees_the_world(g: Game) -> None:
    a, _ = g.client("noside")
    crate = g.server.ask("spawn", "spawned")["uids"][0]
    table = g.converge([a])
    assert str(crate) in table
