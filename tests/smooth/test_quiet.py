"""The feature "quiet" (docs/protocol.md §19): on a "time" connection, no empty sync for an
idle tick except the follow-up of a non-empty one (§19.2 (b)) and a heartbeat every
``quiet_interval`` (§19.3); without it, every tick as before, byte for byte. Sans I/O and on
the memory transport with a stepped clock: deterministic."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from reverb import Client, ReverbContext, ReverbSide
from reverb.memory import MemoryNetwork
from reverb.proto import messages as m
from reverb.proto.framing import FrameDecoder
from reverb.proto.session import FEATURES, GRANTABLE, QUIET, TIME, Role, Session
from reverb.replication.types import TypeRegistry
from reverb.replication.world import QUIET_INTERVAL, ServerWorld
from tests.smooth.test_wiring import Walker

STEP = 0.125  # a tick period whose multiples are exact in binary: heartbeats fall on ticks
PLAIN = ("compact", "time", "messages", "interest")  # what Reverb clients asked before §19
QUIETLY = (*PLAIN, QUIET)


def frames(data: bytes) -> list[dict[str, Any]]:
    decoder = FrameDecoder()
    decoder.add(data)
    out = []
    while (body := decoder.next_frame()) is not None:
        out.append(json.loads(body))
    return out


def handshake(
    world: ServerWorld, member: int, features: tuple[str, ...], grants: Any = GRANTABLE
) -> Session:
    """A server session for a client asking ``features``, joined to ``world``."""
    client = Session(Role.CLIENT, 0.0, features=features)
    server = Session(Role.SERVER, 0.0, member=member, features=grants)
    server.receive_data(client.data_to_send(), 0.0)
    server.data_to_send()  # the welcome
    world.peer_joined(member, server.features)
    return server


class Rig:
    """A world, its peers' server sessions, and the ticks each peer received."""

    def __init__(self, peers: dict[int, tuple[str, ...]], interval: float = 0.5) -> None:
        types = TypeRegistry()
        types.register(Walker)
        self.world = ServerWorld(types)
        self.world.quiet_interval = interval
        self.walker = Walker(1.0, add_on_init=False)
        self.world.add(self.walker, (1.0,))
        self.sessions = {p: handshake(self.world, p, f) for p, f in peers.items()}
        self.now = 0.0

    def tick(self) -> int:
        self.now += STEP
        for members, message in self.world.tick(self.now):
            for member in members:
                self.sessions[member].send_encoded("sync", m.encode(message), self.now)
        return self.world.tick_count

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.tick()

    def syncs(self, member: int) -> list[dict[str, Any]]:
        return [b for b in frames(self.sessions[member].data_to_send()) if b["type"] == "sync"]


def _empty(sync: dict[str, Any]) -> bool:
    return not (sync["full"] or sync["spawn"] or sync["update"] or sync["despawn"])


# -- negotiation -----------------------------------------------------------------------------


def test_quiet_is_asked_by_default_granted_by_default_and_only_when_asked() -> None:
    assert QUIET in FEATURES and QUIET in GRANTABLE
    world = ServerWorld(TypeRegistry())
    assert QUIET in handshake(world, 1, QUIETLY).features
    assert QUIET not in handshake(world, 2, PLAIN).features  # not asked: not granted
    assert QUIET not in handshake(world, 3, QUIETLY, grants=PLAIN).features  # server's option
    assert handshake(world, 4, ()).features == frozenset()  # protocol 1


def test_a_client_asks_for_quiet_with_time_and_leaves_both_out_with_time_sync_false() -> None:
    ctx = ReverbContext()
    asked = Client(context=ctx).asked
    assert TIME in asked and QUIET in asked
    asked = Client(context=ctx, time_sync=False).asked
    assert TIME not in asked and QUIET not in asked


def test_quiet_interval_must_be_positive() -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="quiet_interval"):
            MemoryNetwork(ReverbContext(ReverbSide.SERVER), quiet_interval=bad)
    assert QUIET_INTERVAL == 0.5


# -- which ticks a quiet peer receives (§19.2) -----------------------------------------------


def test_idle_ticks_give_the_follow_up_then_only_heartbeats() -> None:
    rig = Rig({1: QUIETLY})
    rig.run(12)  # 1.5 s of an idle world
    syncs = rig.syncs(1)
    assert syncs[0]["full"] and syncs[0]["tick"] == 1
    assert [s["tick"] for s in syncs] == [1, 2, 6, 10]  # (b) then (c) every 4 ticks (0.5 s)
    assert all(_empty(s) for s in syncs[1:])
    times = [s["time"] for s in syncs]
    assert [b - a for a, b in itertools.pairwise(times[1:])] == [0.5, 0.5]


def test_a_change_is_sent_and_the_next_tick_tells_it_stopped() -> None:
    rig = Rig({1: QUIETLY})
    rig.run(3)  # full, follow-up, nothing
    rig.syncs(1)
    rig.walker.x = 2.0
    changed = rig.tick()  # (a)
    rig.run(2)
    syncs = rig.syncs(1)
    assert [s["tick"] for s in syncs] == [changed, changed + 1]  # (b): the follow-up, then none
    assert len(syncs[0]["update"]) == 1 and not syncs[0]["spawn"]
    assert _empty(syncs[1])
    for x in (3.0, 4.0, 5.0):  # moving every tick: one sync a tick, as without "quiet"
        rig.walker.x = x
        rig.tick()
    rig.tick()
    ticks = [s["tick"] for s in rig.syncs(1)]
    assert ticks == list(range(changed + 3, changed + 7))


def test_the_heartbeat_counts_from_the_last_sync_sent() -> None:
    rig = Rig({1: QUIETLY})
    rig.run(2)  # full (t=0.125), follow-up (t=0.25)
    rig.run(2)  # 0.375, 0.5: nothing
    rig.walker.x = 9.0
    rig.run(2)  # 0.625 (a), 0.75 (b)
    rig.run(4)  # 0.875 .. 1.25: the heartbeat is due at 0.75 + 0.5
    times = [s["time"] for s in rig.syncs(1)]
    assert times == [0.125, 0.25, 0.625, 0.75, 1.25]


def test_a_time_client_without_quiet_and_a_protocol_1_client_are_served_byte_for_byte() -> None:
    """The same game, with and without a quiet peer in the world: the others' bytes match."""

    def play(peers: dict[int, tuple[str, ...]]) -> Rig:
        rig = Rig(peers)
        rig.run(5)
        rig.walker.x = 4.5
        rig.run(3)
        rig.world.teleport(rig.walker.uid)
        rig.walker.x = 7.5
        rig.run(6)
        return rig

    alone = play({1: (), 2: PLAIN, 3: ("time",)})
    shared = play({1: (), 2: PLAIN, 3: ("time",), 4: QUIETLY})
    for member in (1, 2, 3):
        got = alone.sessions[member].data_to_send()
        assert got == shared.sessions[member].data_to_send()
        syncs = [b for b in frames(got) if b["type"] == "sync"]
        if member == 1:
            assert len(syncs) == 3  # §7.3: the snapshot and the two changes
        else:
            assert [s["tick"] for s in syncs] == list(range(1, 15))  # §13.7: every tick
    assert len(shared.syncs(4)) == 7  # 1, 2, heartbeat 6, change 9 + 10, change 12 + 13


def test_quiet_with_interest_management_and_with_budgets() -> None:
    """The filtered tick (§16) and the scheduled one (§16.6) skip idle ticks the same way."""
    for budget in (False, True):
        rig = Rig({1: QUIETLY, 2: PLAIN})
        other = Walker(5.0, add_on_init=False)
        rig.world.add(other, (5.0,))
        rig.world.hide_from(other.uid, 2)  # interest management is on from here
        if budget:
            rig.world.set_budget(None, 100_000.0)
        rig.run(6)
        rig.walker.x = 3.0
        changed = rig.tick()
        rig.run(6)
        quiet = [s["tick"] for s in rig.syncs(1)]
        assert quiet == [1, 2, 6, changed, changed + 1, changed + 5], budget
        assert [s["tick"] for s in rig.syncs(2)] == list(range(1, changed + 7)), budget


def test_a_joiner_shares_the_view_and_its_follow_up_goes_to_both() -> None:
    rig = Rig({1: QUIETLY})
    rig.run(3)  # 1 full, 2 follow-up; 3 nothing
    rig.sessions[2] = handshake(rig.world, 2, QUIETLY)
    rig.run(1)  # 4: 2's full sync; 1 nothing; then one view (loud: 2's follow-up is due)
    assert len(rig.world._views) == 1
    rig.run(6)  # 5: the follow-up, to both (§19.2 allows the extra one); 9: the heartbeat
    assert [s["tick"] for s in rig.syncs(1)] == [1, 2, 5, 9]
    assert [s["tick"] for s in rig.syncs(2)] == [4, 5, 9]


def test_merging_views_keeps_a_due_follow_up_and_the_older_heartbeat() -> None:
    rig = Rig({1: QUIETLY, 2: QUIETLY})
    rig.run(1)
    one, two = rig.world._views[0], rig.world._views[0]
    assert one is two and len(rig.world._views) == 1  # joined in one tick: one view
    first, second = rig.world._split(one, lambda p: p)
    assert (first.loud, first.heard) == (second.loud, second.heard) == (True, 0.125)
    first.loud, first.heard = False, 0.25
    second.loud, second.heard = True, 0.5
    rig.world._views = [first, second]
    rig.world._merge_views()
    (merged,) = rig.world._views
    assert merged.members == {1, 2} and merged.loud and merged.heard == 0.25


# -- the client across skipped ticks (memory transport, stepped clock) -----------------------

TICK = 1 / 30
FRAME = 1 / 60


def test_a_quiet_client_renders_exactly_what_a_client_synced_every_tick_renders() -> None:
    server = ReverbContext(ReverbSide.SERVER)
    server.register(Walker)
    net = MemoryNetwork(server, latency=0.02)
    clients: dict[str, ReverbContext] = {}
    synced: dict[str, list[int]] = {}
    for name, features in (("quiet", QUIETLY), ("every", PLAIN)):
        ctx = clients[name] = ReverbContext()
        ctx.register(Walker)
        net.connect(ctx, features=features)
        synced[name] = []
        ctx.client_events.on_event("synced")(synced[name].append)
    with server.activate():
        walker = Walker(0.0)
    net.run(0.5, FRAME)

    def move(ticks: int) -> None:
        for frame in range(2 * ticks):
            if frame % 2 == 0:
                walker.x += 3.0
            net.step(FRAME)

    start = net.clock.now
    move(10)
    net.run(1.0, FRAME)  # idle: the quiet client hears the follow-up and two heartbeats
    move(10)
    net.run(0.6, FRAME)
    end = net.clock.now
    assert len(synced["quiet"]) < len(synced["every"]) / 2
    quiet, every = clients["quiet"].interpolation, clients["every"].interpolation
    assert quiet is not None and every is not None
    samples = 0
    render = start - 0.2
    while render < end:  # the same server times rendered the same, over the gaps too
        got = quiet.sample(walker.uid, render)
        assert got == every.sample(walker.uid, render), render
        samples += 1
        render += 1 / 240
    assert samples > 500
    # it stopped: held at its last state, never extrapolated past it
    assert quiet.sample(walker.uid, end)["x"] == walker.x == 60.0
    # across the idle gap it held still until one tick before the next change, not sliding
    times = quiet.buffer(walker.uid).times
    gap = max(range(1, len(times)), key=lambda i: times[i] - times[i - 1])
    middle = (times[gap - 1] + times[gap]) / 2
    assert quiet.sample(walker.uid, middle)["x"] == 30.0


def test_a_quiet_client_keeps_its_clock_and_render_time_on_heartbeats() -> None:
    server = ReverbContext(ReverbSide.SERVER)
    server.register(Walker)
    net = MemoryNetwork(server, latency=0.03)
    ctx = ReverbContext()
    ctx.register(Walker)
    client = net.connect(ctx)  # the defaults: "time" and "quiet"
    synced: list[int] = []
    ctx.client_events.on_event("synced")(synced.append)
    with server.activate():
        Walker(0.0)
    net.run(3.0, FRAME)
    assert QUIET in client.features
    now = net.clock.now
    assert 2 + 4 <= len(synced) <= 2 + 6  # the full sync, the follow-up, a heartbeat each 0.5 s
    assert client.clock_ready and abs(client.server_time(now) - now) < 0.02
    tick = client.server_tick(now)
    assert tick is not None and abs(tick - server.world.tick_count) < 2
    lag = now - client.render_time(now)
    assert 0.03 + 2 * TICK - 0.02 < lag < 0.03 + 10 * TICK + 0.02


def test_a_room_world_takes_the_servers_quiet_interval() -> None:
    from reverb.rooms import Room

    class Arena(Room):
        pass

    net = MemoryNetwork(ReverbContext(ReverbSide.SERVER), quiet_interval=2.0)
    net.server.define_room("arena", Arena)
    room = net.server.matchmaker._make("arena", Arena, {}, 0.0)
    assert isinstance(room, Arena)
    assert room.context.world.quiet_interval == 2.0
