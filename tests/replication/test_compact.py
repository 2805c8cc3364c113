"""The compact encoding (docs/protocol.md §12) and the client's fast apply path."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from reverb import ReverbObject
from reverb.errors import RemoteProtocolError
from reverb.proto import messages as m
from reverb.replication.types import TypeRegistry
from reverb.replication.world import ClientWorld, ServerWorld


class Thing(ReverbObject):
    def __init__(
        self,
        x: Any = 0.0,
        y: Any = 0.0,
        hp: Any = 100,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        self.x = x
        self.y = y
        self.hp = hp
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


class Guarded(ReverbObject):
    """Its own ``__setattr__`` and a property: replicas must be written through them."""

    def __init__(
        self,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        self._seen: list[str] = []
        self.a = 0
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in ("uid", "belonging_membership"):
            self._seen.append(name)
        super().__setattr__(name, value)


def registry() -> TypeRegistry:
    types = TypeRegistry()
    types.register(Thing)
    types.register(Guarded)
    return types


def world_with(n: int, *features: tuple[int, tuple[str, ...]]) -> tuple[ServerWorld, list[Thing]]:
    world = ServerWorld(registry())
    things = [Thing(float(i), -float(i)) for i in range(n)]
    for t in things:
        world.add(t, ())
    for member, granted in features:
        world.peer_joined(member, granted)
    return world, things


def frames(out: list[tuple[tuple[int, ...], m.Message]]) -> dict[int, bytes]:
    """member -> the one frame body sent to it at this tick."""
    sent: dict[int, bytes] = {}
    for members, message in out:
        assert isinstance(message, m.SyncFrame)
        for member in members:
            sent[member] = message.body()
    return sent


def client(compact: bool = True) -> ClientWorld:
    replicas = ClientWorld(registry(), bind=lambda obj: None)
    replicas.compact = compact
    return replicas


def state(replicas: ClientWorld) -> dict[int, tuple[Any, ...]]:
    return {
        uid: (o.x, o.y, o.hp, o.belonging_membership)
        for uid, o in replicas.objects.items()
        if isinstance(o, Thing)
    }


def test_plain_peers_receive_exactly_the_bytes_of_a_world_without_compact_peers() -> None:
    mixed, things = world_with(5, (1, ()), (2, ("compact",)))
    alone, others = world_with(5, (1, ()))
    for tick in range(1, 5):
        for objs in (things, others):
            objs[tick].x = tick * 0.5
            objs[0].hp = tick
            if tick == 3:
                objs[2].belonging_membership = 9
        assert frames(mixed.tick(tick))[1] == frames(alone.tick(tick))[1]


def test_a_compact_peer_ends_with_the_state_of_a_plain_peer() -> None:
    world, things = world_with(20, (1, ()), (2, ("compact",)))
    plain, compact = client(compact=False), client()
    rng = random.Random(5)
    for tick in range(1, 40):
        for thing in rng.sample(things, 5):
            setattr(thing, rng.choice(("x", "y", "hp")), rng.choice((1, 2.5, "s", [1], None)))
        if tick % 7 == 0:
            rng.choice(things).belonging_membership = rng.choice((None, 3))
        sent = frames(world.tick(tick))
        for member, replicas in ((1, plain), (2, compact)):
            if member in sent:
                replicas.apply(m.decode(sent[member]))
        assert state(compact) == state(plain)
    assert state(plain) == {
        t.uid: (t.x, t.y, t.hp, t.belonging_membership) for t in things if t.uid is not None
    }


def test_compact_updates_carry_indexes_and_the_schema_announces_them() -> None:
    world, things = world_with(2, (2, ("compact",)))
    world.tick(1)
    things[0].hp = 5
    things[1].x = 1.5
    body = json.loads(frames(world.tick(2))[2])
    assert body["schema"] == {"Thing": {"at": 0, "add": ["hp", "x"]}}
    assert body["update"] == [[1, 0, 5], [2, 1, 1.5]]
    things[0].y = 7.0
    things[0].hp = 6
    body = json.loads(frames(world.tick(3))[2])
    assert body["schema"] == {"Thing": {"at": 2, "add": ["y"]}}
    assert body["update"] == [[1, 0, 6, 2, 7.0]]
    things[1].x = 2.5
    body = json.loads(frames(world.tick(4))[2])
    assert "schema" not in body and body["update"] == [[2, 1, 2.5]]


def test_a_joiner_gets_the_whole_table_in_its_full_sync() -> None:
    world, things = world_with(2, (2, ("compact",)))
    world.tick(1)
    things[0].hp = 5
    world.tick(2)
    world.peer_joined(3, ("compact",))
    things[1].y = 1.0
    sent = frames(world.tick(3))
    full = json.loads(sent[3])
    assert full["full"] and full["schema"] == {"Thing": {"at": 0, "add": ["hp", "y"]}}
    things[1].hp = 1
    sent = frames(world.tick(4))
    assert sent[2] == sent[3]  # same view, same encoding: one frame
    late = client()
    late.apply(m.decode(json.dumps(full).encode()))
    late.apply(m.decode(sent[3]))
    assert late.objects[2].hp == 1


def test_an_owner_change_uses_the_object_form() -> None:
    world, things = world_with(1, (2, ("compact",)))
    world.tick(1)
    things[0].belonging_membership = 4
    things[0].x = 3.0
    body = json.loads(frames(world.tick(2))[2])
    assert body["update"] == [{"uid": 1, "fields": {"x": 3.0}, "owner": 4}]


def test_a_tick_that_only_grows_the_table_is_still_sent_to_a_view_without_entries() -> None:
    world = ServerWorld(registry())
    world.peer_joined(2, ("compact",))
    world.tick(1)
    world.peer_joined(3, ("compact",))
    world.tick(2)  # 3 gets its full sync; 2 and 3 share a view from now on
    thing = Thing()
    world.add(thing, ())
    world.tick(3)
    thing.x = 1.0
    sent = frames(world.tick(4))
    assert json.loads(sent[2])["schema"] == {"Thing": {"at": 0, "add": ["x"]}}


# -- the client: what §12 makes it refuse ------------------------------------------------------


def started() -> ClientWorld:
    replicas = client()
    spawn = {"uid": 1, "type": "Thing", "owner": None, "args": [], "fields": {"x": 0.0}}
    replicas.apply(m.decode(sync(1, full=True, spawn=[spawn])))
    return replicas


def sync(tick: int, full: bool = False, **lists: Any) -> bytes:
    body = {"type": "sync", "tick": tick, "full": full, "final": True}
    body.update({"spawn": [], "update": [], "despawn": []})
    body.update(lists)
    return json.dumps(body).encode()


SCHEMA = {"Thing": {"at": 0, "add": ["x", "y"]}}


def test_a_compact_entry_applies() -> None:
    replicas = started()
    replicas.apply(m.decode(sync(2, schema=SCHEMA, update=[[1, 0, 2.5, 1, 3.0]])))
    assert (replicas.objects[1].x, replicas.objects[1].y) == (2.5, 3.0)
    replicas.apply(m.decode(sync(3, update=[[1, 1, 4.0], {"uid": 1, "fields": {"x": 1}}])))
    assert (replicas.objects[1].x, replicas.objects[1].y) == (1, 4.0)


@pytest.mark.parametrize(
    "entry",
    [[], [1, 0], ["1", 0, 1], [1, 2, 0], [1, -1, 0], [1, 1, 0, 0, 0], [1, 0, 1, 0, 2], [1, 0.0, 1]],
    ids=["empty", "even", "uid-str", "index-beyond", "negative", "decreasing", "repeat", "float"],
)
def test_a_malformed_compact_entry_is_1002_and_changes_nothing(entry: list[Any]) -> None:
    replicas = started()
    with pytest.raises(RemoteProtocolError) as info:
        replicas.apply(m.decode(sync(2, schema=SCHEMA, update=[[1, 0, 9.0], entry])))
    assert info.value.code == 1002
    assert replicas.objects[1].x == 0.0 and replicas.tick == 1


def started_with(count: int) -> ClientWorld:
    replicas = client()
    spawn = [
        {"uid": uid, "type": "Thing", "owner": None, "args": [], "fields": {"x": 0.0}}
        for uid in range(1, count + 1)
    ]
    replicas.apply(m.decode(sync(1, full=True, spawn=spawn)))
    return replicas


def test_a_tick_of_same_shaped_compact_entries_applies_each_value_to_its_object() -> None:
    # The common tick (every entry with the same indexes) is applied column by column.
    replicas = started_with(4)
    rows = [[uid, 0, uid * 1.5, 1, -uid] for uid in (3, 1, 4, 2)]
    replicas.apply(m.decode(sync(2, schema=SCHEMA, update=rows)))
    assert [(o.x, o.y) for o in replicas.objects.values()] == [(i * 1.5, -i) for i in range(1, 5)]


@pytest.mark.parametrize(
    "last",
    [[4, 0, 9.0, True, 9.0], [4, 0, 9.0, 1.0, 9.0], [4, 0, 9.0, 2, 9.0], [4, 1, 9.0, 0, 9.0]],
    ids=["bool-index", "float-index", "index-beyond", "decreasing"],
)
def test_a_bad_index_in_one_of_same_shaped_entries_is_1002_and_changes_nothing(
    last: list[Any],
) -> None:
    replicas = started_with(4)
    rows = [[uid, 0, 9.0, 1, 9.0] for uid in (1, 2, 3)] + [last]
    with pytest.raises(RemoteProtocolError) as info:
        replicas.apply(m.decode(sync(2, schema=SCHEMA, update=rows)))
    assert info.value.code == 1002
    assert all(o.x == 0.0 for o in replicas.objects.values()) and replicas.tick == 1


def test_a_compact_entry_for_an_unknown_uid_is_1002() -> None:
    replicas = started()
    with pytest.raises(RemoteProtocolError, match="unknown uid 5"):
        replicas.apply(m.decode(sync(2, schema=SCHEMA, update=[[5, 0, 1]])))


@pytest.mark.parametrize(
    "schema",
    [
        [],
        {"Thing": ["x"]},
        {"Thing": {"at": 1, "add": ["x"]}},
        {"Thing": {"at": 0, "add": ["x", "x"]}},
        {"Thing": {"at": 0, "add": ["_secret"]}},
        {"Thing": {"at": 0, "add": ["uid"]}},
        {"Thing": {"at": 0, "add": ["mark_changed"]}},
        {"Thing": {"at": 0, "add": [1]}},
        {"Nope": {"at": 0, "add": ["x"]}},
        {"Thing": {"at": 0, "add": [f"f{i}" for i in range(1025)]}},
    ],
    ids=["array", "spec", "gap", "repeat", "private", "meta", "method", "int", "type", "big"],
)
def test_a_malformed_schema_is_1002(schema: Any) -> None:
    replicas = started()
    with pytest.raises(RemoteProtocolError) as info:
        replicas.apply(m.decode(sync(2, schema=schema)))
    assert info.value.code == 1002
    assert replicas.tick == 1


def test_compact_forms_are_refused_when_not_negotiated() -> None:
    replicas = started()
    replicas.compact = False
    with pytest.raises(RemoteProtocolError, match="compact"):
        replicas.apply(m.decode(sync(2, schema=SCHEMA)))
    with pytest.raises(RemoteProtocolError, match="compact"):
        replicas.apply(m.decode(sync(2, update=[[1]])))


def test_a_class_with_its_own_setattr_is_written_through_it() -> None:
    replicas = client()
    spawn = {"uid": 1, "type": "Guarded", "owner": None, "args": [], "fields": {"a": 1}}
    replicas.apply(m.decode(sync(1, full=True, spawn=[spawn])))
    obj = replicas.objects[1]
    obj._seen.clear()
    replicas.apply(m.decode(sync(2, update=[{"uid": 1, "fields": {"a": 2}}])))
    schema = {"Guarded": {"at": 0, "add": ["a"]}}
    replicas.apply(m.decode(sync(3, schema=schema, update=[[1, 0, 3]])))
    assert obj.a == 3 and obj._seen == ["a", "a"]


class WithProperty(ReverbObject):
    def __init__(
        self,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        self._level = 0
        self.log: list[int] = []
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @property
    def level(self) -> int:
        return self._level

    @level.setter
    def level(self, value: int) -> None:
        self.log.append(value)
        self._level = value


def test_a_property_is_set_through_its_setter() -> None:
    types = TypeRegistry()
    types.register(WithProperty)
    replicas = ClientWorld(types, bind=lambda obj: None)
    spawn = {"uid": 1, "type": "WithProperty", "owner": None, "args": [], "fields": {}}
    replicas.apply(m.decode(sync(1, full=True, spawn=[spawn])))
    replicas.apply(m.decode(sync(2, update=[{"uid": 1, "fields": {"level": 4}}])))
    assert replicas.objects[1].level == 4 and replicas.objects[1].log == [4]
