"""reverb/rooms/room.py: hook order, and two rooms never sharing objects, UIDs, events or RPCs.

Real ``ReverbContext``s: objects are spawned in each room's world and the syncs each client is
sent are encoded and decoded as on the wire, then applied to a real client replica table.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from reverb import ReverbContext, ReverbSide
from reverb.proto import messages as m
from reverb.rooms import Joined, Room, RoomClient
from tests.rooms.helpers import Clock, Recording, Ship, client, fresh, make, syncs_for


def test_hooks_run_in_lifecycle_order() -> None:
    log = fresh()
    clock = Clock()
    mm = make(clock)
    a = mm.join_or_create(client(1), "battle", {"mode": "duel"}, now=clock())
    b = mm.join_or_create(client(2), "battle", now=clock())
    assert isinstance(a, Joined) and isinstance(b, Joined)
    assert a.created and not b.created and a.room_id == b.room_id == "r1"
    mm.leave(1, now=clock())
    mm.leave(2, now=clock())
    assert log == [
        ("create", "r1", {"mode": "duel"}),
        ("auth", "r1", 1),
        ("join", "r1", 1),
        ("auth", "r1", 2),
        ("join", "r1", 2),
        ("leave", "r1", 1, True),
        ("leave", "r1", 2, True),
        ("dispose", "r1"),
    ]


def test_on_auth_verdict_is_kept_and_on_join_sees_the_seat() -> None:
    fresh()
    clock = Clock()
    mm = make(clock)
    mm.create(client(5), "battle", {"level": 3}, now=clock())
    room = mm.rooms["r1"]
    assert room.auth == {5: {"level": 3}}
    assert set(room.clients) == {5} and mm.presence.seat_of(5) == "r1"


def test_a_raising_hook_is_logged_and_the_room_carries_on(caplog: Any) -> None:
    class Clumsy(Room):
        def on_join(self, client: RoomClient) -> None:
            raise RuntimeError("boom")

    clock = Clock()
    mm = make(clock)
    mm.define("clumsy", Clumsy)
    with caplog.at_level(logging.ERROR, logger="reverb"):
        joined = mm.join_or_create(client(1), "clumsy", now=clock())
    assert isinstance(joined, Joined)
    assert "on_join raised" in caplog.text
    assert mm.rooms[joined.room_id].clients.keys() == {1}


def test_two_rooms_never_share_objects_uids_or_syncs() -> None:
    fresh()
    clock = Clock()
    mm = make(clock)
    mm.create(client(1), "battle", now=clock())  # r1
    mm.create(client(2), "battle", now=clock())  # r2
    r1, r2 = mm.rooms["r1"], mm.rooms["r2"]
    assert r1.context is not r2.context and r1.context.world is not r2.context.world
    # each on_join spawned one ship: both got UID 1, in their own namespace
    assert list(r1.objects) == [1] and list(r2.objects) == [1]
    assert r1.objects[1] is not r2.objects[1]
    assert r1.objects[1].belonging_membership == 1 and r2.objects[1].belonging_membership == 2
    extra = r2.spawn(Ship, 99)
    assert extra.uid == 2 and 2 not in r1.objects

    mm.step(clock())
    out = mm.outgoing()
    assert all(set(o.members) <= set(mm.rooms[o.room_id].clients) for o in out)
    for member, room, xs in ((1, "r1", [1]), (2, "r2", [2, 99])):
        received = syncs_for(out, member)
        assert [r for r, _ in received] == [room]
        replicas = ReverbContext(ReverbSide.CLIENT)
        replicas.register(Ship)
        replicas.replicas.apply(received[0][1])
        assert sorted(o.x for o in replicas.replicas.objects.values()) == xs


def test_updates_in_one_room_reach_only_its_clients() -> None:
    fresh()
    clock = Clock()
    mm = make(clock)
    mm.create(client(1), "battle", now=clock())
    mm.create(client(2), "battle", now=clock())
    mm.step(clock())
    mm.outgoing()  # the full snapshots
    mm.rooms["r1"].objects[1].x = 42
    mm.step(clock.advance(1 / 30))
    out = mm.outgoing()
    assert [r for r, _ in syncs_for(out, 2)] == []
    ((room, sync),) = syncs_for(out, 1)
    assert room == "r1" and sync.update[0].fields == {"x": 42}


def test_events_fire_only_in_their_room() -> None:
    fresh()
    clock = Clock()
    mm = make(clock)
    mm.create(client(1), "battle", now=clock())
    mm.create(client(2), "battle", now=clock())
    seen: dict[str, list[Any]] = {"r1": [], "r2": []}
    for rid in seen:
        mm.rooms[rid].context.server_events.on_event("client_disconnected")(
            lambda member, code, reason, rid=rid: seen[rid].append((member, code, reason))
        )
    mm.rooms["r1"].auto_dispose = False
    mm.leave(1, now=clock())
    assert seen == {"r1": [(1, 1000, "left")], "r2": []}


def test_rpc_reaches_only_the_callers_room() -> None:
    fresh()
    clock = Clock()
    mm = make(clock)
    mm.create(client(1), "battle", now=clock())
    mm.create(client(2), "battle", now=clock())
    mm.rooms["r2"].spawn(Ship, 7)  # uid 2 exists in r2 only
    ok = mm.call(1, m.Rpc(id=1, uid=1, method="where", args=[]))
    assert ok == m.RpcResult(id=1, value=[1, 1])  # r1's ship, not r2's uid 1
    other = mm.call(1, m.Rpc(id=2, uid=2, method="where", args=[]))
    assert isinstance(other, m.RpcErrorReply) and other.code == "unknown_object"
    direct = mm.rooms["r2"].call(1, m.Rpc(id=3, uid=1, method="where", args=[]))
    assert isinstance(direct, m.RpcErrorReply) and direct.code == "unknown_object"
    nowhere = mm.call(9, m.Rpc(id=4, uid=1, method="where", args=[]))
    assert isinstance(nowhere, m.RpcErrorReply) and nowhere.code == "unknown_object"


def test_dispose_despawns_the_rooms_objects_and_stops_its_tick() -> None:
    fresh()
    clock = Clock()
    mm = make(clock)
    mm.create(client(1), "battle", now=clock())
    room = mm.rooms["r1"]
    ship = room.objects[1]
    mm.leave(1, now=clock())
    assert room.disposed and ship.destroyed and room.objects == {}
    assert "r1" not in mm.rooms and "r1" not in mm.scheduler
    assert mm.registry.get("r1") is None


@pytest.mark.parametrize("rate", [0.0, -1.0, float("inf")])
def test_bad_tick_rate_is_refused(rate: float) -> None:
    class Odd(Recording):
        tick_rate = rate

    clock = Clock()
    mm = make(clock)
    mm.define("odd", Odd)
    with pytest.raises(ValueError, match="tick rate"):
        mm.create(client(1), "odd", now=clock())
    assert mm.rooms == {} and mm.registry.listings() == [] and mm.presence.seat_of(1) is None


def test_a_room_can_adopt_an_existing_server_context() -> None:
    ctx = ReverbContext(ReverbSide.SERVER)
    room = Recording("default", "default", context=ctx)
    assert room.context is ctx and ctx.types.of(room.spawn(Ship, 1)).name == "Ship"


def test_sync_errors_fire_in_their_room_only() -> None:
    fresh()
    clock = Clock()
    mm = make(clock)
    mm.create(client(1), "battle", now=clock())
    mm.create(client(2), "battle", now=clock())
    seen: dict[str, list[Any]] = {"r1": [], "r2": []}
    for rid in seen:
        mm.rooms[rid].context.server_events.on_event("sync_error")(
            lambda obj, error, rid=rid: seen[rid].append(obj.uid)
        )
    mm.rooms["r2"].objects[1].x = float("nan")
    mm.step(clock())
    assert seen == {"r1": [], "r2": [1]}
    assert [r for r, _ in syncs_for(mm.outgoing(), 1)] == ["r1"]


def test_despawn_removes_from_the_rooms_world() -> None:
    fresh()
    clock = Clock()
    mm = make(clock)
    mm.create(client(1), "battle", now=clock())
    room = mm.rooms["r1"]
    ship = room.objects[1]
    room.despawn(ship)
    assert room.objects == {} and ship.destroyed
