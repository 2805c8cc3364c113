"""reverb/context.py: a server context and a client context joined over loopback TCP.

Each test runs real threaded ``Server``/``Client`` pairs on 127.0.0.1 port 0; the game side
of both is driven from the test thread (``serve``/``tick``, ``client_sync``), and every wait is
on a condition with a deadline.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from reverb import (
    Client,
    EncodeError,
    InvalidState,
    ReverbContext,
    ReverbManager,
    ReverbObject,
    ReverbSide,
    RpcError,
    Server,
    client_event_registry,
    expose,
    rpc_caller,
    server_event_registry,
)
from reverb.context import DEFAULT_TICK_RATE
from reverb.proto.session import FEATURES

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

    def start(self, **client_options: Any) -> int:
        self.server.start_server()
        self.client = Client(
            ip="127.0.0.1", port=self.server.port, context=self.cctx, **client_options
        )
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
    assert ("object_spawned", replica, False) in game.client_log
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
    assert ("object_despawned", replica, "destroyed") in game.client_log


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


# -- issue 8: unencodable state (decision 7) ------------------------------------------------

BAD_VALUES = {
    "nan": float("nan"),
    "inf": float("inf"),
    "set": {1, 2},
    "int_keys": {1: "a"},
    "big_int": 2**53,
}


def record_sync_errors(game: Game) -> list[tuple[Any, Any]]:
    errors: list[tuple[Any, Any]] = []
    game.sctx.server_events.on_event("sync_error")(lambda obj, exc: errors.append((obj, exc)))
    return errors


@pytest.mark.parametrize("kind", sorted(BAD_VALUES))
def test_an_unencodable_field_withholds_only_that_object(
    game: Game, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    errors = record_sync_errors(game)
    game.start()
    bad, bad_replica = game.spawn(1)
    good, good_replica = game.spawn(2)
    bad.x = BAD_VALUES[kind]
    with caplog.at_level(logging.ERROR, logger="reverb"):
        for value in (3, 4, 5):  # several ticks in the bad state
            good.x = value
            game.until(lambda v=value: good_replica.x == v)  # everything else syncs
    assert bad_replica.x == 1  # the client keeps the last good value
    assert len(errors) == 1 and errors[0][0] is bad  # fired once per entry into the state
    assert isinstance(errors[0][1], EncodeError)
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    text = logged[0].getMessage()
    type_name = type(BAD_VALUES[kind]).__name__
    assert f"Ship uid={bad.uid} attribute 'x'" in text and f"holds a {type_name}" in text
    bad.x = 9  # encodable again: the normal update goes out
    game.until(lambda: bad_replica.x == 9)
    bad.x = BAD_VALUES[kind]  # a new entry into the bad state is reported again
    game.until(lambda: len(errors) == 2)


def test_an_object_unencodable_from_the_start_is_spawned_once_it_can_be(game: Game) -> None:
    errors = record_sync_errors(game)
    game.start()
    with game.sctx.activate():
        ship = Ship(0)
    ship.x = float("nan")
    game.spawn(1)  # spawned after it, and it arrives
    assert ship.uid not in game.cctx.objects and len(errors) == 1
    ship.x = 7
    game.until(lambda: ship.uid in game.cctx.objects)
    assert game.cctx.objects[ship.uid].x == 7


def test_a_client_joining_while_an_object_is_withheld_gets_it_spawned_later() -> None:
    first, late = Game(), Game()
    late.sctx = first.sctx  # two clients of one server
    try:
        first.start()
        ship, replica = first.spawn(1)
        ship.x = float("inf")
        first.step()
        late.client = Client(ip="127.0.0.1", port=first.server.port, context=late.cctx)
        late.client.connect()
        marker, _ = first.spawn(2)
        late.until(lambda: marker.uid in late.cctx.objects)
        assert ship.uid not in late.cctx.objects  # withheld from a client that lacked it
        ship.x = 5
        late.until(lambda: ship.uid in late.cctx.objects)  # a spawn for the late client
        first.until(lambda: replica.x == 5)  # an update for the first
        assert late.cctx.objects[ship.uid].x == 5
        ship.destroy()
        first.until(lambda: ship.uid not in first.cctx.objects)
        late.until(lambda: ship.uid not in late.cctx.objects)
    finally:
        if late.client is not None:
            late.client.disconnect()
        first.stop()


def test_strict_sync_raises_the_encode_error(game: Game) -> None:
    game.start()
    ship, _ = game.spawn(1)
    ship.x = {1}
    game.sctx.strict_sync = True
    with pytest.raises(EncodeError, match="attribute 'x'"):
        game.sctx.server_step(time.monotonic() + 1.0)
    game.sctx.strict_sync = False
    game.sctx.server_step(time.monotonic() + 2.0)  # withheld, no exception


def test_the_facade_strict_flag_is_the_default_contexts() -> None:
    assert ReverbManager.STRICT_SYNC is False
    ReverbManager.STRICT_SYNC = True
    try:
        assert ReverbManager.context.strict_sync is True
    finally:
        ReverbManager.STRICT_SYNC = False
    assert ReverbManager.context.strict_sync is False


# -- issue 8: the client side and reconnecting (decision 9) ---------------------------------


def test_connect_makes_a_context_without_a_side_a_client(game: Game) -> None:
    game.cctx.side = None
    game.start()
    assert game.cctx.side is ReverbSide.CLIENT
    _ship, replica = game.spawn(3)  # get_all_ro_by_type sees the replicas
    assert game.cctx.get_all_ro_by_type(Ship) == [replica]


def test_connect_on_a_server_context_says_what_to_do(game: Game) -> None:
    game.server.start_server()
    client = Client(ip="127.0.0.1", port=game.server.port, context=game.sctx)
    with pytest.raises(InvalidState, match="needs its own context"):
        client.connect()


def test_a_client_closed_by_the_server_connects_again(game: Game) -> None:
    member = game.start()
    assert game.client is not None
    ship, replica = game.spawn(4)
    assert not game.server.close_member(member + 1, 1008, "kicked")  # no such client
    assert game.server.close_member(member, 1008, "kicked")  # the server closes it
    game.until(lambda: "disconnected" in game.names(game.client_log), tick=False)
    assert not game.client.connected
    assert game.cctx.objects == {}  # stale replicas despawned, with their event
    assert ("object_despawned", replica, "destroyed") in game.client_log
    despawn_at = game.client_log.index(("object_despawned", replica, "destroyed"))
    assert game.names(game.client_log)[despawn_at + 1] == "disconnected"
    game.client.connect()
    assert game.client.member is not None and game.client.member != member
    game.until(lambda: ship.uid in game.cctx.objects)  # a fresh snapshot
    assert game.cctx.objects[ship.uid] is not replica


def test_keep_replicas_keeps_them_until_the_next_connect() -> None:
    game = Game()
    try:
        game.server.start_server()
        game.client = Client(
            ip="127.0.0.1", port=game.server.port, context=game.cctx, keep_replicas=True
        )
        game.client.connect()
        ship, replica = game.spawn(4)
        game.client.disconnect()
        assert game.cctx.objects == {ship.uid: replica}
        assert ("object_despawned", replica, "destroyed") not in game.client_log
        game.client.connect()
        # replaced by a fresh snapshot
        assert ("object_despawned", replica, "destroyed") in game.client_log
        game.until(lambda: ship.uid in game.cctx.objects)
    finally:
        game.stop()


def test_connect_while_connected_still_refuses(game: Game) -> None:
    game.start()
    assert game.client is not None
    with pytest.raises(InvalidState, match="already connected"):
        game.client.connect()


# -- issue 8: event registries of an extra context ------------------------------------------


def test_each_context_fires_its_own_registries_only(game: Game) -> None:
    fired: list[str] = []
    handler = server_event_registry.on_event("client_connected")(lambda *a: fired.append("global"))
    client_handler = client_event_registry.on_event("connected")(lambda *a: fired.append("g-c"))
    try:
        game.sctx.server_events.on_event("client_connected")(lambda *a: fired.append("ctx"))
        game.start()
        assert fired == ["ctx"]  # the module registries belong to the default context
        assert ("connected", game.client.member if game.client else None) in game.client_log
    finally:
        server_event_registry.remove("client_connected", handler)
        client_event_registry.remove("connected", client_handler)
    assert server_event_registry is ReverbManager.context.server_events
    assert client_event_registry is ReverbManager.context.client_events


# -- issue 8: server_step never skips a due tick ---------------------------------------------


def count_ticks(times: list[float]) -> int:
    ctx = ReverbContext(ReverbSide.SERVER)  # no connection: DEFAULT_TICK_RATE
    for now in times:
        ctx.server_step(now)
    return ctx.world.tick_count


def test_a_game_loop_at_the_tick_rate_ticks_on_every_step() -> None:
    period = 1.0 / DEFAULT_TICK_RATE
    for start in (0.0, 1000.0):
        exact = [start + k * period for k in range(3000)]
        assert count_ticks(exact) == len(exact), start
    rng = random.Random(8)
    jittered = [1000.0 + k * period + rng.uniform(-0.2, 0.2) * period for k in range(3000)]
    assert count_ticks(jittered) == len(jittered)
    late_first = [1000.0 + 0.2 * period, *exact[1:]]  # the loop's first step came late
    assert count_ticks(late_first) == len(late_first)


def test_a_game_loop_with_slow_frames_catches_up_without_skipping() -> None:
    # A fixed-schedule loop where 1 frame in 50 runs late by more than a period (a slow
    # tick), then catches up: the old pacing re-anchored on the late frame and skipped ticks.
    period = 1.0 / DEFAULT_TICK_RATE
    rng = random.Random(90)
    for lateness in (0.04, 0.07, 0.12):
        steps: list[float] = []
        for k in range(3000):
            late = lateness if rng.random() < 0.02 else rng.uniform(0.0, 0.002)
            steps.append(max(1000.0 + k * period + late, steps[-1] if steps else 0.0))
        assert count_ticks(steps) == len(steps), lateness


def test_a_faster_game_loop_still_ticks_at_the_tick_rate() -> None:
    period = 1.0 / DEFAULT_TICK_RATE
    for speed in (1.5, 2.0, 7.0):
        steps = [1000.0 + k * period / speed for k in range(int(300 * speed))]
        ticks = count_ticks(steps)
        assert 299 <= ticks <= 301, (speed, ticks)


def test_a_long_stall_is_not_made_up_in_a_burst() -> None:
    period = 1.0 / DEFAULT_TICK_RATE
    resumed = 1000.0 + 10 * period
    steps = [1000.0, resumed, *(resumed + k * 0.001 for k in (1, 2, 3))]
    assert count_ticks(steps) == 2  # the schedule restarts after the stall
    steps = [1000.0, *(resumed + k * period for k in range(1, 300))]
    assert count_ticks(steps) == len(steps)  # and every later step at the rate ticks


def test_a_sync_error_handler_may_despawn_the_object(game: Game) -> None:
    game.sctx.server_events.on_event("sync_error")(lambda obj: obj.destroy())
    game.start()
    ship, replica = game.spawn(1)
    ship.x = float("nan")
    game.until(lambda: ship.uid not in game.cctx.objects)
    assert ("object_despawned", replica, "destroyed") in game.client_log


# -- issue 9: what a tick costs the threaded I/O layer ----------------------------------------


def test_a_sync_to_an_idle_connection_is_written_without_waking_the_io_thread(
    game: Game,
) -> None:
    # without "time", the client sends nothing of its own (no clock pings, §13.6): whenever the
    # I/O thread holds the connection's lock to read one, the game thread queues and wakes it,
    # as it should, so the test wants a connection that is idle by construction
    game.start(features=[f for f in FEATURES if f not in ("time", "quiet")])
    ship, replica = game.spawn(1)
    wakes: list[float] = []
    io = game.server._io
    wake = io.wake

    def counted() -> None:
        wakes.append(time.monotonic())
        wake()

    io.wake = counted  # type: ignore[method-assign]
    ship.x = 2
    game.sctx.tick(time.monotonic())  # the game thread writes the sync to the socket itself
    assert wakes == []
    game.until(lambda: replica.x == 2, tick=False)


def test_a_busy_connection_is_checked_at_its_deadline_not_every_50_ms(game: Game) -> None:
    # A client calls all along (the server's I/O thread busy with its connection); the
    # session's next deadline (a ping, idle) is seconds away, so its timeouts are not checked
    # meanwhile: the I/O thread takes deadlines from a heap (hub.Deadlines), as the asyncio
    # layer does, instead of checking every session every 50 ms while anything moves.
    member = game.start(time_sync=False)
    _, replica = game.spawn(1)
    session = game.server.hub.members[member]
    check = session.check_timeouts
    checks: list[float] = []

    def counted(now: float) -> None:
        checks.append(now)
        check(now)

    session.check_timeouts = counted  # type: ignore[method-assign]
    until = time.monotonic() + 0.6
    answers: list[int | None] = []

    def caller() -> None:
        while time.monotonic() < until:
            answers.append(replica.compute_server("who").result(5))
            time.sleep(0.005)  # within the call rate (§11): about 150 a second

    thread = threading.Thread(target=caller)
    thread.start()
    try:
        while thread.is_alive():
            game.sctx.server_sync()  # answers the calls as they come
    finally:
        thread.join(10)
    assert len(answers) > 20 and set(answers) == {member}
    assert len(checks) <= 1, (checks, len(answers))  # checked every 50 ms: about 12


def test_an_idle_io_loop_sleeps_until_the_next_deadline(game: Game) -> None:
    # Nothing in flight, the next deadline (a ping) seconds away: the I/O thread sleeps until
    # it (at most QUIET_CHECK_MAX). A window of time is what is measured here.
    # The client keeps no server clock: its clock pings (8 in the first 0.8 s, protocol §13)
    # would be activity.
    game.start(time_sync=False)
    game.spawn(1)
    selector = game.server._io._sel
    select = selector.select
    calls: list[float] = []

    def counted(timeout: float | None = None) -> Any:
        calls.append(time.monotonic())
        return select(timeout)

    selector.select = counted  # type: ignore[method-assign]
    time.sleep(0.2)  # the last activity passes; then the loop is quiet
    calls.clear()
    time.sleep(0.6)
    assert len(calls) <= 2, calls  # at 50 ms: about 12


def test_a_client_connecting_again_sends_its_hello_at_once() -> None:
    # Each connect() starts a fresh I/O thread with the connection already registered and
    # its hello queued: the thread must write it before it first sleeps (it used to sleep
    # until the last thread's next housekeeping, up to a second: a server with a short
    # handshake timeout closed with 1008 "handshake timeout", the resume process tests' flake).
    sctx = ReverbContext(ReverbSide.SERVER)
    server = Server(port=0, context=sctx, handshake_timeout=0.5)
    server.start_server()
    client = Client(port=server.port, context=ReverbContext())
    try:
        for _ in range(4):
            started = time.monotonic()
            client.connect()
            assert time.monotonic() - started < 0.4
            client.disconnect()
    finally:
        client.disconnect()
        server.stop_server()
