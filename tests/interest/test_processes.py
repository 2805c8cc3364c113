"""Interest management between real processes over real sockets, on both I/O layers
(protocol §16): two clients of different teams see different units, owner-only fields reach
only the owner, hiding despawns with the reason ``left_view``, and a call on a unit the
caller cannot see is answered exactly like a call on a missing uid."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.jsonproc import JsonProcess

APP = Path(__file__).with_name("app.py")


class Peer(JsonProcess):
    def __init__(self, *args: str) -> None:
        super().__init__(str(APP), *args)

    def state(self) -> dict[str, Any]:
        units: dict[str, Any] = self.ask("state", "state")["units"]
        return units


@pytest.fixture(params=["threaded", "aio"])
def peers(request: pytest.FixtureRequest) -> Iterator[tuple[Peer, Peer, int, Peer, int]]:
    layer = str(request.param)
    started: list[Peer] = []
    try:
        server = Peer("server", layer)
        started.append(server)
        clients = []
        for _ in range(2):
            peer = Peer("client", layer, str(server.port))
            started.append(peer)
            connected = peer.expect("connected")
            assert "interest" in connected["features"]
            server.expect("client_connected", lambda e, m=connected["member"]: e["member"] == m)
            clients.append((peer, connected["member"]))
        (a, ma), (b, mb) = clients
        yield server, a, ma, b, mb
    finally:
        for peer in reversed(started):
            peer.close()


def test_two_clients_see_different_things(peers: tuple[Peer, Peer, int, Peer, int]) -> None:
    server, a, ma, b, mb = peers
    server.ask("groups", "done", member=ma, groups=["red"])
    server.ask("groups", "done", member=mb, groups=["blue"])
    red = server.ask("spawn", "spawned", team="red", owner=ma, gold=7)["uid"]
    blue = server.ask("spawn", "spawned", team="blue", owner=mb, gold=3)["uid"]
    neutral = server.ask("spawn", "spawned")["uid"]
    got_a = {a.expect("object_spawned")["uid"] for _ in range(2)}
    got_b = {b.expect("object_spawned")["uid"] for _ in range(2)}
    assert got_a == {red, neutral} and got_b == {blue, neutral}
    state_a, state_b = a.state(), b.state()
    assert set(state_a) == {str(red), str(neutral)}
    assert state_a[str(red)] == ["red", 10, 7]  # its own unit: the owner-only gold
    assert set(state_b) == {str(blue), str(neutral)}
    assert state_b[str(blue)] == ["blue", 10, 3]

    server.ask("set", "done", uid=red, name="gold", value=8)
    server.ask("set", "done", uid=neutral, name="hp", value=4)
    # b may call its own unit; a call on a unit it cannot see is refused:
    assert b.ask("poke", "poked", uid=blue)["value"] == 10
    # hidden and missing uids answer alike (§8.2, §16.5)
    hidden = b.ask("poke", "poked", uid=red)
    missing = b.ask("poke", "poked", uid=10**9)
    assert hidden["code"] == missing["code"] == "unknown_object"
    assert hidden["message"] == missing["message"].replace(str(10**9), str(red))

    server.ask("hide", "done", uid=neutral, member=ma)
    gone = a.expect("object_despawned")
    assert gone == {"event": "object_despawned", "uid": neutral, "reason": "left_view"}
    state_a = a.state()
    assert set(state_a) == {str(red)} and state_a[str(red)] == ["red", 10, 8]
    assert b.state()[str(neutral)] == [None, 4, 0]

    server.ask("set", "done", uid=red, name="team", value="blue")  # moves to the other team
    assert a.expect("object_despawned") == {
        "event": "object_despawned",
        "uid": red,
        "reason": "left_view",
    }
    entered = b.expect("object_spawned")
    assert (entered["uid"], entered["team"], entered["gold"]) == (red, "blue", 0)  # not its own


def test_two_clients_with_different_budgets(peers: tuple[Peer, Peer, int, Peer, int]) -> None:
    """§16.6 between real processes: a client under a byte budget is sent fewer bytes than
    one without, and still ends holding every unit at its latest value (coalesced)."""
    server, a, ma, b, mb = peers
    server.ask("budget", "done", member=mb, bytes_per_second=5000)
    units = [server.ask("spawn", "spawned")["uid"] for _ in range(60)]
    for client in (a, b):
        for _ in units:
            client.expect("object_spawned")
    server.ask("churn", "done", ticks=150)  # 5 s of every unit changing every tick
    final = server.expect("churned", timeout=30)["hp"]
    sent_a = server.ask("sent", "sent", member=ma)["bytes"]
    sent_b = server.ask("sent", "sent", member=mb)["bytes"]
    assert sent_a is not None and sent_b is not None
    # b: at most its burst (1 s) + the spawns + 5000 B/s over the ~5-8 s of churn (the
    # server's ticks may lag on a loaded box: the wall-clock time is what refills it)
    assert sent_b < sent_a / 2
    for client in (a, b):  # polled, with a deadline: b catches up as its budget refills
        deadline = time.monotonic() + 20
        while not all(v[1] == final for v in client.state().values()):
            assert time.monotonic() < deadline, "the budgeted client never caught up"
