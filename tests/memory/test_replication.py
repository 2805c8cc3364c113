"""Replication end to end on the in-memory transport (reverb/memory.py): three clients, a
stepped clock, no sockets, no threads. Every scenario is deterministic and runs in
milliseconds, so each asserts exact ticks and exact event orders."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest

from reverb import EncodeError, ReverbContext, ReverbObject, ReverbSide, RpcError, expose
from reverb.errors import ConnectionClosed, HandshakeFailed
from reverb.memory import Clock, MemoryClient, MemoryNetwork
from reverb.proto.session import CloseCode

TICK = 1 / 30


class Ship(ReverbObject):
    def __init__(
        self,
        x: Any = 0,
        *,
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        self.x = x
        super().__init__(
            x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def thrust(self, dx: int) -> int:
        self.x += dx
        return int(self.x)

    @expose(anyone=True)
    def refuse(self) -> None:
        raise RpcError("no fuel")


class Game:
    """A server context, its network, and clients that record their events."""

    def __init__(self, n_clients: int = 3, **network: Any) -> None:
        self.server = ReverbContext(ReverbSide.SERVER)
        self.server.register(Ship)
        self.server_log: list[tuple[Any, ...]] = []
        for name in ("client_connected", "client_disconnected", "sync_error"):
            self.server.server_events.on_event(name)(self._recorder(self.server_log, name))
        self.net = MemoryNetwork(self.server, **network)
        self.contexts: list[ReverbContext] = []
        self.logs: list[list[tuple[Any, ...]]] = []
        self.clients = [self.join() for _ in range(n_clients)]

    @staticmethod
    def _recorder(log: list[tuple[Any, ...]], name: str) -> Any:
        def record(*args: Any) -> None:
            log.append((name, *args))

        return record

    def join(self, **options: Any) -> MemoryClient:
        ctx = ReverbContext()
        ctx.register(Ship)
        log: list[tuple[Any, ...]] = []
        for name in ("connected", "disconnected", "object_spawned", "object_despawned"):
            ctx.client_events.on_event(name)(self._recorder(log, name))
        self.contexts.append(ctx)
        self.logs.append(log)
        return self.net.connect(ctx, **options)

    def spawn(self, x: Any = 0, owner: int | None = None) -> Ship:
        with self.server.activate():
            return Ship(x, belonging_membership=owner)

    def xs(self, i: int) -> dict[int, Any]:
        return {uid: obj.x for uid, obj in self.contexts[i].objects.items()}


def test_spawn_update_despawn_reach_every_client_on_the_next_tick() -> None:
    game = Game()
    ship = game.spawn(1)
    assert all(game.xs(i) == {} for i in range(3))
    game.net.step(TICK)
    assert [game.xs(i) for i in range(3)] == [{ship.uid: 1}] * 3
    ship.x = 2
    game.net.step(TICK)
    assert [game.xs(i) for i in range(3)] == [{ship.uid: 2}] * 3
    assert ship.uid is not None
    game.server.remove(ship.uid)
    game.net.step(TICK)
    assert [game.xs(i) for i in range(3)] == [{}] * 3
    for log in game.logs:
        assert [e[0] for e in log] == ["connected", "object_spawned", "object_despawned"]


def test_ticks_follow_the_tick_rate_of_the_stepped_clock() -> None:
    game = Game(1, tick_rate=10.0)
    ticks: list[int] = []
    game.contexts[0].client_events.on_event("synced")(ticks.append)
    ship = game.spawn(0)
    for _ in range(90):  # three seconds at 30 frames per second
        ship.x += 1
        game.net.step(TICK)
    assert len(ticks) in (30, 31)  # every 0.1 s, the first one on the first step
    assert game.xs(0)[ship.uid] in range(87, 91)


def test_ownership_change_replicates_and_is_owner_follows() -> None:
    game = Game()
    a, b = game.clients[0].member, game.clients[1].member
    ship = game.spawn(0, owner=a)
    game.net.step(TICK)
    owners = [ctx.objects[ship.uid].is_owner() for ctx in game.contexts]
    assert owners == [True, False, False]
    ship.belonging_membership = b
    game.net.step(TICK)
    owners = [ctx.objects[ship.uid].is_owner() for ctx in game.contexts]
    assert owners == [False, True, False]


def test_rpc_result_and_errors_resolve_their_futures() -> None:
    game = Game()
    ship = game.spawn(0, owner=game.clients[0].member)
    game.net.step(TICK)
    mine = game.contexts[0].objects[ship.uid]
    done = mine.compute_server(mine.thrust, 5)
    assert not done.done()  # served at the server's next step
    game.net.step(TICK)
    assert done.result(0) == 5
    theirs = game.contexts[1].objects[ship.uid]
    refused = theirs.compute_server(theirs.thrust, 1)  # not the owner
    failed = theirs.compute_server(theirs.refuse)
    game.net.step(TICK)
    with pytest.raises(RpcError) as info:
        refused.result(0)
    assert info.value.code == "not_owner"
    with pytest.raises(RpcError, match="no fuel"):
        failed.result(0)
    game.net.step(TICK)
    assert [game.xs(i) for i in range(3)] == [{ship.uid: 5}] * 3


def test_a_late_joiner_gets_a_snapshot_of_the_current_state() -> None:
    game = Game()
    ships = [game.spawn(i) for i in range(3)]
    game.net.step(TICK)
    ships[0].x = 10
    assert ships[2].uid is not None
    game.server.remove(ships[2].uid)
    game.net.step(TICK)
    game.join()
    game.net.step(TICK)
    assert game.xs(3) == {ships[0].uid: 10, ships[1].uid: 1}
    assert [e[0] for e in game.logs[3]] == ["connected", "object_spawned", "object_spawned"]


def test_a_disconnect_is_seen_by_the_server_and_others_keep_syncing() -> None:
    game = Game()
    ship = game.spawn(0)
    game.net.step(TICK)
    leaving = game.clients[1]
    member = leaving.member
    leaving.disconnect()
    assert game.logs[1][-2:] == [
        ("object_despawned", game.logs[1][1][1], "destroyed"),
        ("disconnected", CloseCode.NORMAL, "client disconnect"),
    ]
    ship.x = 7
    game.net.step(TICK)
    assert ("client_disconnected", member, CloseCode.NORMAL, "client disconnect") in (
        game.server_log
    )
    assert game.net.server.members == sorted(
        c.member for c in (game.clients[0], game.clients[2]) if c.member is not None
    )
    assert game.xs(0) == game.xs(2) == {ship.uid: 7}
    assert game.xs(1) == {}


def test_a_dropped_connection_closes_1006_on_both_sides() -> None:
    game = Game()
    game.spawn(0)
    game.net.step(TICK)
    game.net.drop(game.clients[0])
    game.net.step(TICK)
    assert game.logs[0][-1][:2] == ("disconnected", CloseCode.ABNORMAL)
    assert game.server_log[-1][:3] == (
        "client_disconnected",
        game.clients[0].member,
        CloseCode.ABNORMAL,
    )
    assert game.contexts[0].objects == {}
    assert not game.clients[0].connected
    assert game.net.server.members == [game.clients[1].member, game.clients[2].member]


def test_a_closed_client_reconnects_with_a_new_membership_and_a_fresh_snapshot() -> None:
    game = Game()
    ship = game.spawn(1)
    game.net.step(TICK)
    client = game.clients[0]
    first = client.member
    game.net.drop(client)
    ship.x = 2
    game.net.step(TICK)
    client.connect()
    game.net.step(TICK)
    assert client.member is not None and first is not None and client.member > first
    assert client.member not in (game.clients[1].member, game.clients[2].member)
    assert game.xs(0) == {ship.uid: 2}
    names = [e[0] for e in game.logs[0]]
    assert names == [
        "connected",
        "object_spawned",
        "object_despawned",
        "disconnected",
        "connected",
        "object_spawned",
    ]


def test_calls_in_flight_fail_with_connection_closed_when_the_link_drops() -> None:
    game = Game(1)
    ship = game.spawn(0, owner=game.clients[0].member)
    game.net.step(TICK)
    replica = game.contexts[0].objects[ship.uid]
    future = replica.compute_server(replica.thrust, 1)
    game.net.drop(game.clients[0])
    with pytest.raises(ConnectionClosed):
        future.result(0)


def test_an_unencodable_value_is_withheld_and_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    game = Game()
    good, bad = game.spawn(1), game.spawn(1)
    game.net.step(TICK)
    bad.x = math.nan
    good.x = 2
    with caplog.at_level(logging.ERROR, logger="reverb"):
        game.net.step(TICK)
        game.net.step(TICK)
    assert [game.xs(i) for i in range(3)] == [{good.uid: 2, bad.uid: 1}] * 3
    errors = [e for e in game.server_log if e[0] == "sync_error"]
    assert len(errors) == 1 and errors[0][1] is bad
    assert isinstance(errors[0][2], EncodeError)
    assert sum("Ship" in r.getMessage() for r in caplog.records) == 1
    # A client that joins while it is bad never sees it; once good again, everyone does.
    game.join()
    game.net.step(TICK)
    assert game.xs(3) == {good.uid: 2}
    bad.x = 3
    game.net.step(TICK)
    assert [game.xs(i) for i in range(4)] == [{good.uid: 2, bad.uid: 3}] * 4


def test_latency_delays_delivery_by_the_link_latency() -> None:
    game = Game(0, latency=0.1)
    client = game.join()
    assert client.member is None  # the welcome is one round trip (0.2 s) away
    synced: list[int] = []
    game.contexts[0].client_events.on_event("synced")(synced.append)
    ship = game.spawn(4)
    game.net.run(0.15, TICK)
    assert client.member is None and synced == [] and game.xs(0) == {}
    game.net.run(0.1, TICK)
    # the first sync left the server with the welcome, when the hello arrived (0.1 s)
    assert client.member is not None and len(synced) == 1
    assert game.xs(0) == {ship.uid: 4}


def test_an_idle_link_is_kept_alive_by_pings_and_a_silent_one_times_out() -> None:
    game = Game(1)
    game.net.run(60.0, 1.0)  # pings answer each other: nobody is idle
    assert game.clients[0].connected
    link = game.clients[0].link
    assert link is not None
    link.latency = 100.0  # from now on nothing arrives in time
    game.net.run(20.0, 1.0)
    assert not game.clients[0].connected
    assert game.logs[0][-1][:2] == ("disconnected", CloseCode.POLICY)


def test_the_connection_limit_refuses_with_handshake_failed() -> None:
    game = Game(1, max_connections=1)
    with pytest.raises(HandshakeFailed):
        game.join()
    assert game.net.server.stats["limit.connections"] == 1


def test_a_stepped_world_of_three_clients_runs_in_milliseconds() -> None:
    import time

    game = Game(clock=Clock(100.0))
    ships = [game.spawn(i, owner=game.clients[i % 3].member) for i in range(50)]
    started = time.perf_counter()
    for frame in range(30):
        for ship in ships[frame % 5 :: 5]:
            ship.x += 1
        game.net.step(TICK)
    assert time.perf_counter() - started < 2.0  # generous for a loaded box; ~10 ms idle
    expected = {ship.uid: ship.x for ship in ships}
    assert [game.xs(i) for i in range(3)] == [expected] * 3


def test_keep_replicas_keeps_them_until_the_next_connect() -> None:
    game = Game(0)
    client = game.join(keep_replicas=True)
    ship = game.spawn(1)
    game.net.step(TICK)
    game.net.drop(client)
    game.net.step(TICK)
    assert game.xs(0) == {ship.uid: 1}  # kept after the disconnect
    assert game.logs[0][-1][0] == "disconnected"
    ship.x = 2
    client.connect()  # a new membership: the old replicas go, the snapshot brings them back
    game.net.step(TICK)
    assert game.xs(0) == {ship.uid: 2}
    names = [e[0] for e in game.logs[0]]
    kept = ["connected", "object_spawned", "disconnected"]
    assert names == [*kept, "object_despawned", "connected", "object_spawned"]


def test_the_per_address_limit_sees_each_clients_ip() -> None:
    game = Game(0, max_connections_per_ip=1)
    game.join(ip="10.0.0.1")
    game.join(ip="10.0.0.2")
    with pytest.raises(HandshakeFailed):
        game.join(ip="10.0.0.1")
    assert game.net.server.stats["limit.connections_per_ip"] == 1


def test_heartbeats_keep_a_slow_link_alive() -> None:
    game = Game(0, latency=0.4)  # an 800 ms round trip, far below the 15 s idle timeout
    client = game.join()
    game.net.run(60.0, 0.25)
    assert client.connected
    assert game.logs[0] == [("connected", client.member)]


def test_a_memory_client_that_never_reads_is_closed_like_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The in-memory client takes the other layers' decisions (``ClientHub.step``): a game
    that leaves more than ``max_unread`` events unread is closed with 1008."""
    from reverb.hub import ClientHub

    monkeypatch.setattr(ClientHub, "max_unread", 20)
    game = Game(n_clients=1)
    game.net.step(TICK)
    with game.server.activate():
        ship = Ship(0)
    for _ in range(60):  # one sync a tick, never consumed: client_sync is not called
        ship.x += 1
        game.net.step(TICK, sync_clients=False)
        if game.server_log and game.server_log[-1][0] == "client_disconnected":
            break
    assert game.server_log[-1][0] == "client_disconnected"
    assert game.server_log[-1][2] == CloseCode.POLICY
    assert len(game.clients[0]._inbox) <= 20 + 2  # the limit, plus the close events
