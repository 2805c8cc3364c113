"""reverb/context.py: a server context and a client context joined over loopback TCP.

Each test runs real threaded ``Server``/``Client`` pairs on 127.0.0.1 port 0; the game side
of both is driven from the test thread (``serve``/``tick``, ``client_sync``), and every wait is
on a condition with a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from reverb import (
    Client,
    ReverbContext,
    ReverbManager,
    ReverbObject,
    ReverbSide,
    RpcError,
    Server,
    expose,
    rpc_caller,
)

pytestmark = pytest.mark.timeout(30)


class Ship(ReverbObject):
    def __init__(
        self,
        x: int = 0,
        *,
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        # Set first: the base constructor adds the object to the world (on_init_from_server).
        self.x = x
        self._hooks: list[str] = []
        super().__init__(
            x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def thrust(self, dx: int) -> int:
        self.x += dx
        return self.x

    @expose(anyone=True)
    def who(self) -> int | None:
        return rpc_caller()

    @expose(anyone=True)
    def refuse(self) -> None:
        raise RpcError("no fuel")

    def internal(self) -> None:
        pass

    def on_init_from_server(self) -> None:
        self._hooks.append("init_server")

    def on_init_from_client(self) -> None:
        self._hooks.append("init_client")

    def on_destroy_from_server(self) -> None:
        self._hooks.append("destroy_server")

    def on_destroy_from_client(self) -> None:
        self._hooks.append("destroy_client")


class Game:
    """A server context and a client context, each with its own connection."""

    def __init__(self) -> None:
        self.sctx = ReverbContext(ReverbSide.SERVER)
        self.cctx = ReverbContext(ReverbSide.CLIENT)
        self.sctx.register(Ship)
        self.cctx.register(Ship)
        self.server_log: list[tuple[Any, ...]] = []
        self.client_log: list[tuple[Any, ...]] = []
        for name in ("client_connected", "client_disconnected"):
            self.sctx.server_events.on_event(name)(self._recorder(self.server_log, name))
        for name in (
            "connected",
            "disconnected",
            "synced",
            "object_spawned",
            "object_despawned",
            "rpc_error",
        ):
            self.cctx.client_events.on_event(name)(self._recorder(self.client_log, name))
        self.server = Server(host="127.0.0.1", port=0, context=self.sctx)
        self.client: Client | None = None

    @staticmethod
    def _recorder(log: list[tuple[Any, ...]], name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            log.append((name, *args))

        return record

    def start(self) -> int:
        self.server.start_server()
        self.client = Client(ip="127.0.0.1", port=self.server.port, context=self.cctx)
        self.client.connect()
        member = self.client.member
        assert member is not None
        self.until(lambda: member in self.sctx.world.peers)
        return member

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
        self.server.stop_server()

    def step(self, tick: bool = True) -> None:
        self.sctx.serve()
        if tick:
            self.sctx.tick(time.monotonic())
        self.cctx.client_sync(timeout=0.02)

    def until(
        self, condition: Callable[[], object], *, tick: bool = True, timeout: float = 5.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            self.step(tick)

    def result(self, future: Future[Any], *, tick: bool = True) -> Any:
        self.until(future.done, tick=tick)
        return future.result(timeout=5)

    def spawn(self, x: int = 0, owner: int | None = None) -> tuple[Ship, Ship]:
        """Spawn on the server; wait for the replica; return (server object, replica)."""
        with self.sctx.activate():
            ship = Ship(x, belonging_membership=owner)
        self.until(lambda: ship.uid in self.cctx.objects)
        return ship, self.cctx.objects[ship.uid]

    def names(self, log: list[tuple[Any, ...]]) -> list[str]:
        return [entry[0] for entry in log]


@pytest.fixture
def game() -> Iterator[Game]:
    g = Game()
    try:
        yield g
    finally:
        g.stop()


def test_connect_fires_events_on_both_sides(game: Game) -> None:
    member = game.start()
    assert member >= 1
    assert ("connected", member) in game.client_log
    assert game.server_log == [("client_connected", member, None)]  # identity: no auth hook
    assert game.server.members == [member]


def test_spawn_replicates_with_the_same_uid(game: Game) -> None:
    game.start()
    ship, replica = game.spawn(5)
    assert replica is not ship and type(replica) is Ship
    assert (replica.uid, replica.x) == (ship.uid, 5)
    assert ship._hooks == ["init_server"] and replica._hooks == ["init_client"]
    assert ("object_spawned", replica) in game.client_log
    assert "synced" in game.names(game.client_log)


def test_field_changes_replicate(game: Game) -> None:
    game.start()
    ship, replica = game.spawn(1)
    ship.x = 42
    game.until(lambda: replica.x == 42)
    ship.x = 43
    game.until(lambda: replica.x == 43)
    assert game.cctx.objects[ship.uid] is replica  # updated in place


def test_despawn_replicates(game: Game) -> None:
    game.start()
    ship, replica = game.spawn()
    uid = ship.uid
    ship.destroy()
    assert ship._hooks == ["init_server", "destroy_server"]
    assert uid not in game.sctx.objects
    game.until(lambda: uid not in game.cctx.objects)
    assert replica._hooks == ["init_client", "destroy_client"]
    assert ("object_despawned", replica) in game.client_log


def test_is_owner_only_on_the_owners_client(game: Game) -> None:
    member = game.start()
    mine, my_replica = game.spawn(owner=member)
    _theirs, their_replica = game.spawn(owner=member + 1000)
    _unowned, unowned_replica = game.spawn(owner=None)
    assert my_replica.is_owner()
    assert not their_replica.is_owner() and not unowned_replica.is_owner()
    assert not mine.is_owner()  # the server owns nothing
    assert my_replica.belonging_membership == member


def test_owner_change_replicates(game: Game) -> None:
    member = game.start()
    ship, replica = game.spawn(owner=None)
    ship.belonging_membership = member
    game.until(replica.is_owner)


def test_compute_server_returns_the_result(game: Game) -> None:
    member = game.start()
    ship, replica = game.spawn(5, owner=member)
    assert game.result(replica.compute_server(replica.thrust, 3)) == 8
    assert ship.x == 8
    game.until(lambda: replica.x == 8)
    assert game.result(replica.compute_server("who")) == member


def test_compute_server_on_the_server_runs_now(game: Game) -> None:
    game.start()
    ship, _ = game.spawn(1)
    assert ship.compute_server(ship.thrust, 2).result(timeout=0) == 3


def refused(game: Game, future: Future[Any], *, tick: bool = True) -> RpcError:
    game.until(future.done, tick=tick)
    with pytest.raises(RpcError) as info:
        future.result(timeout=5)
    return info.value


def test_refused_calls_raise_rpc_error_with_the_code(game: Game) -> None:
    member = game.start()
    ship, replica = game.spawn(1, owner=member + 1)
    assert refused(game, replica.compute_server(replica.thrust, 1)).code == "not_owner"
    assert refused(game, replica.compute_server("internal")).code == "not_exposed"
    assert refused(game, replica.compute_server("_hooks")).code == "not_exposed"
    error = refused(game, replica.compute_server(replica.refuse))
    assert (error.code, error.message) == ("rejected", "no fuel")
    mine, my_replica = game.spawn(1, owner=member)
    assert refused(game, my_replica.compute_server("thrust")).code == "bad_arguments"
    assert ship.x == 1 and mine.x == 1  # refused calls never ran
    game.until(lambda: len([e for e in game.client_log if e[0] == "rpc_error"]) >= 3)
    codes = [e[1].code for e in game.client_log if e[0] == "rpc_error"]
    assert {"not_owner", "rejected", "bad_arguments"} <= set(codes)


def test_call_on_a_despawned_object_is_unknown_object(game: Game) -> None:
    member = game.start()
    ship, replica = game.spawn(owner=member)
    ship.destroy()  # no tick yet: the client still holds its replica
    error = refused(game, replica.compute_server(replica.thrust, 1), tick=False)
    assert error.code == "unknown_object"


def test_disconnect_fires_events_on_both_sides(game: Game) -> None:
    member = game.start()
    assert game.client is not None
    game.client.disconnect()
    assert ("disconnected", 1000, "client disconnect") in game.client_log
    game.until(lambda: len(game.server_log) == 2, tick=False)
    assert game.server_log[1][:3] == ("client_disconnected", member, 1000)
    assert member not in game.sctx.world.peers


def test_server_shutdown_reaches_the_client(game: Game) -> None:
    game.start()
    game.server.stop_server()
    game.until(lambda: "disconnected" in game.names(game.client_log), tick=False)
    assert ("disconnected", 1001, "server shutting down") in game.client_log


def test_two_contexts_in_one_process_are_independent() -> None:
    default_objects = dict(ReverbManager.context.objects)
    first, second = Game(), Game()
    try:
        first.start()
        second.start()
        ship_a, replica_a = first.spawn(1)
        ship_b, replica_b = second.spawn(2)
        assert ship_a.uid == ship_b.uid == 1  # each server numbers its own objects
        ship_a.x = 10
        first.until(lambda: replica_a.x == 10)
        second.step()
        assert replica_b.x == 2
        assert list(first.cctx.objects.values()) == [replica_a]
        assert list(second.cctx.objects.values()) == [replica_b]
        assert list(first.sctx.objects.values()) == [ship_a]
        assert list(second.sctx.objects.values()) == [ship_b]
        ship_b.destroy()
        second.until(lambda: not second.cctx.objects)
        first.step()
        assert first.cctx.objects == {1: replica_a}
        assert dict(ReverbManager.context.objects) == default_objects
    finally:
        first.stop()
        second.stop()
