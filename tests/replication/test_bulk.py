"""The bulk way of comparing a tick (``ServerWorld._compare_bulk``, issue 9): objects of a type
assigned the same plain-number fields are checked and compared a column at a time, and their
entries are made only in the forms peers want. Every scenario here runs twice -- bulk for any
group (``_BULK_MIN = 1``) and never bulk -- and every peer kind (protocol 1, compact, compact
with "time", the "columns" variant, frames split at a small limit) must get the same bytes
from both; each fallback (a NaN, an infinity, an int beyond 2^53, a bool, a string, a
container, a type change, a deleted attribute, an owner change, a subclass with its own
``__setattr__``, a property, a slot, ...) must leave the bulk way and still behave as §3.4 and
issue 8 decision 7 say."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable
from typing import Any
from unittest.mock import patch

import pytest

from reverb import ReverbObject
from reverb.errors import EncodeError
from reverb.proto import messages as m
from reverb.replication import shared as shared_module
from reverb.replication import world as world_module
from reverb.replication.types import TypeRegistry
from reverb.replication.world import ServerWorld


class Body(ReverbObject):
    def __init__(
        self,
        x: Any = 0.0,
        y: Any = 0.0,
        hp: Any = 100,
        *,
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


class Declared(ReverbObject):
    """Declared fields; ``note`` is not one of them."""

    __reverb_fields__ = ("x", "hp")

    def __init__(
        self,
        x: Any = 0.0,
        hp: Any = 1,
        *,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        self.x = x
        self.hp = hp
        self.note = 0
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


class Doubling(Body):
    """Its own ``__setattr__``, through ours: what it stores is what is sent."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "hp" and type(value) is int:
            value *= 2
        super().__setattr__(name, value)


class Direct(Body):
    """Its own ``__setattr__``, around ours: writes reach the instance dict directly."""

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)


class Propertied(Body):
    """``x`` behind a property (a data descriptor): never read from the instance dict."""

    __reverb_fields__ = ("x", "y", "hp")

    @property
    def x(self) -> Any:
        return self.__dict__.get("_x", 0.0)

    @x.setter
    def x(self, value: Any) -> None:
        self.__dict__["_x"] = value + 0.5 if type(value) is float else value


class Slotted(Body):
    __reverb_fields__ = ("x", "y", "hp")
    __slots__ = ("hp",)


class Rank(enum.IntEnum):
    LOW = 1


KINDS = (Body, Declared, Doubling, Direct, Propertied, Slotted)


def registry() -> TypeRegistry:
    types = TypeRegistry()
    for cls in KINDS:
        types.register(cls)
    return types


# Peers: protocol 1, compact, compact with "time" (snap), compact with "time" and "interest".
PEERS = {1: (), 2: ("compact",), 3: ("compact", "time"), 4: ("compact", "time", "interest")}
Step = Callable[[ServerWorld, list[Any]], None]


def wire(out: list[tuple[tuple[int, ...], m.Message]]) -> list[Any]:
    got = []
    for members, frame in out:
        assert isinstance(frame, m.SyncFrame)
        columnar = frame.columnar() if frame.offers_columns else frame
        got.append(
            (
                members,
                frame.body(),
                columnar.body(),
                m.encode_sync(frame, 600),
                m.encode_sync(columnar, 600),
            )
        )
    return got


class Run:
    """One world of ``count`` objects of ``kind`` (and a few Declared ones), stepped."""

    def __init__(self, bulk: bool, kind: type = Body, count: int = 12) -> None:
        self.bulk = bulk
        self.world = ServerWorld(registry())
        self.objs: list[Any] = [kind(float(i), float(-i), 100 + i) for i in range(count)]
        self.objs += [Declared(float(i), i) for i in range(3)]
        for obj in self.objs:
            self.world.add(obj, obj._reverb_args)
        for member, features in PEERS.items():
            self.world.peer_joined(member, features)
        self.clock = 0.0
        self.taken: list[bool] = []  # what _compare_bulk answered, per call
        compare = self.world._compare_bulk

        def spy(dirty: list[Any], updated: list[tuple[int, Any]]) -> bool:
            done = compare(dirty, updated)
            self.taken.append(done)
            return done

        self.world._compare_bulk = spy  # type: ignore[method-assign]
        self.tick()

    def tick(self) -> list[Any]:
        self.clock += 1 / 30
        with patch.object(world_module, "_BULK_MIN", 1 if self.bulk else 10**9):
            out = self.world.tick(self.clock)
        errors = [(obj.uid, str(error)) for obj, error in self.world.sync_errors]
        return [wire(out), errors]


def both(steps: list[Step], kind: type = Body) -> tuple[Run, list[Any]]:
    """Run ``steps`` (a tick after each) in bulk and one by one; the same bytes for all."""
    runs = (Run(True, kind), Run(False, kind))
    outs = []
    for run in runs:
        outs.append([[step(run.world, run.objs), run.tick()][1] for step in steps])
    assert outs[0] == outs[1]
    assert not runs[1].taken  # one by one: never the bulk way
    return runs[0], outs[0]


def move(t: int) -> Step:
    def step(world: ServerWorld, objs: list[Any]) -> None:
        for i, obj in enumerate(objs):
            obj.x = t + i * 0.5
            if type(obj) is not Declared:
                obj.y = t * 3 + i * 0.25
            obj.hp = 1000 + t + i

    return step


def updates_of(out: list[Any], member: int) -> dict[int, Any]:
    """uid -> the fields of its update in a tick's output, for ``member`` (decoded)."""
    frames, _ = out
    for members, body, *_ in frames:
        if member in members:
            sync = m.decode(body)
            assert isinstance(sync, m.Sync)
            return {entry.uid: entry.fields for entry in sync.update}
    return {}


# -- the common tick ---------------------------------------------------------------------------


def test_every_field_of_every_object_every_tick_goes_the_bulk_way() -> None:
    run, outs = both([move(1), move(2), move(3)])
    assert run.taken == [True, True, True]
    fields = updates_of(outs[-1], 1)
    assert len(fields) == 15
    assert fields[1] == {"x": 3.0, "y": 9.0, "hp": 1003}
    assert fields[13] == {"x": 9.0, "hp": 1015}  # a Declared: its own batch


def test_a_window_of_objects_in_uid_order_whatever_order_they_were_written() -> None:
    def window(world: ServerWorld, objs: list[Any]) -> None:
        for i in [9, 10, 11, 0, 1, 2, 5]:
            objs[i].x = objs[i].x + 1.0
            objs[i].y = objs[i].y - 1.0

    run, outs = both([window, window])
    assert run.taken == [True, True]
    assert list(updates_of(outs[0], 1)) == [1, 2, 3, 6, 10, 11, 12]


def test_assigning_the_same_values_sends_only_what_changed() -> None:
    def same(world: ServerWorld, objs: list[Any]) -> None:
        for i, obj in enumerate(objs[:12]):
            obj.x = obj.x  # the same value: no entry for x
            obj.y = obj.y + (1.0 if i % 3 == 0 else 0.0)
            obj.hp = obj.hp if i % 2 else obj.hp + 1

    run, outs = both([same])
    assert run.taken == [True]
    fields = updates_of(outs[0], 1)
    assert fields[1] == {"y": 1.0, "hp": 101}  # i = 0
    assert 2 not in fields  # i = 1: nothing changed
    assert fields[3] == {"hp": 103}  # i = 2: y unchanged
    assert fields[4] == {"y": -2.0}  # i = 3: hp unchanged
    assert all("x" not in f for f in fields.values())


def test_negative_zero_for_zero_is_no_change() -> None:
    def flip(world: ServerWorld, objs: list[Any]) -> None:
        objs[0].x = -0.0  # 0.0 before: equal as JSON numbers go, as one by one

    both([flip])


def test_a_late_joiner_gets_the_values_of_the_bulk_ticks() -> None:
    def join(world: ServerWorld, objs: list[Any]) -> None:
        world.peer_joined(9, ("compact",))

    _run, outs = both([move(1), move(2), join, move(3)])
    frames, _ = outs[2]
    full = [m.decode(body) for members, body, *_ in frames if members == (9,)]
    [snapshot] = full
    assert isinstance(snapshot, m.Sync) and snapshot.full
    assert {e.uid: e.fields for e in snapshot.spawn}[2] == {"x": 2.5, "y": 6.25, "hp": 1003}


# -- what leaves the bulk way: §3.4 checks, and types it does not take -------------------------


BAD = [
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
    pytest.param(2**53, id="int-beyond-2^53"),
    pytest.param(-(2**53), id="int-below--2^53"),
    pytest.param(10**400, id="huge-int"),
    pytest.param(Rank.LOW, id="int-enum"),
]
OTHER = [
    pytest.param(True, id="bool"),
    pytest.param(None, id="none"),
    pytest.param("text", id="string"),
    pytest.param([1, 2], id="list"),
    pytest.param((1.0, 2.0), id="tuple"),
    pytest.param({"a": 1}, id="dict"),
    pytest.param(7, id="int-for-float"),
    pytest.param(1e308, id="sum-overflows"),
]


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("field", ["x", "hp"])
def test_an_unencodable_value_in_a_batch_withholds_that_object_only(field: str, value: Any) -> None:
    def bad(world: ServerWorld, objs: list[Any]) -> None:
        move(1)(world, objs)
        setattr(objs[4], field, value)

    def good(world: ServerWorld, objs: list[Any]) -> None:
        move(2)(world, objs)

    run, outs = both([bad, good])
    assert run.taken == [False, True]
    errors = outs[0][1]
    assert [uid for uid, _ in errors] == [5]
    assert f"attribute {field!r}" in errors[0][1]
    fields = updates_of(outs[0], 1)
    assert 5 not in fields and len(fields) == 14  # every other object synced
    assert 5 in updates_of(outs[1], 1)  # encodable again: its update goes out


@pytest.mark.parametrize("value", OTHER)
def test_a_value_the_bulk_way_does_not_take_goes_one_by_one(value: Any) -> None:
    def other(world: ServerWorld, objs: list[Any]) -> None:
        move(1)(world, objs)
        objs[3].x = value
        objs[7].x = value

    def again(world: ServerWorld, objs: list[Any]) -> None:
        move(2)(world, objs)

    run, outs = both([other, again, again])
    assert run.taken[0] is False
    assert outs[0][1] == []  # all of these encode
    assert updates_of(outs[0], 1)[4]["x"] == m.to_wire(value)


def test_a_huge_float_that_only_overflows_the_sum_is_sent() -> None:
    def huge(world: ServerWorld, objs: list[Any]) -> None:
        for obj in objs[:12]:
            obj.x = 1e308

    run, outs = both([huge])
    assert run.taken == [False]
    assert updates_of(outs[0], 1)[1] == {"x": 1e308}


def test_a_strict_world_raises_for_a_nan_in_a_batch_and_sends_it_later() -> None:
    run = Run(True)
    run.world.strict = True
    move(1)(run.world, run.objs)
    run.objs[2].y = math.nan
    with pytest.raises(EncodeError, match="'y'"):
        run.tick()
    run.objs[2].y = 5.0
    frames, errors = run.tick()
    assert errors == [] and run.taken == [True]
    sync = m.decode(frames[0][1])
    assert isinstance(sync, m.Sync) and len(sync.update) == 15


def test_a_deleted_attribute_goes_one_by_one() -> None:
    def delete(world: ServerWorld, objs: list[Any]) -> None:
        move(1)(world, objs)
        del objs[6].x

    run, _outs = both([delete, move(2)])
    assert run.taken[0] is False


def test_an_owner_change_goes_one_by_one_and_the_others_in_bulk() -> None:
    def owner(world: ServerWorld, objs: list[Any]) -> None:
        move(1)(world, objs)
        objs[0].belonging_membership = 2

    run, _outs = both([owner, move(2)])
    assert run.taken == [False, True]


def test_mark_changed_goes_in_bulk_and_mark_changed_of_everything_does_not() -> None:
    def marked(world: ServerWorld, objs: list[Any]) -> None:
        for obj in objs:
            obj.mark_changed("x")  # nothing changed: nothing to send

    def everything(world: ServerWorld, objs: list[Any]) -> None:
        for obj in objs:
            obj.mark_changed()

    run, outs = both([marked, everything, move(1)])
    assert run.taken == [True, False, True]
    assert updates_of(outs[0], 1) == {}


def test_an_undeclared_or_private_name_is_not_sent_either_way() -> None:
    def note(world: ServerWorld, objs: list[Any]) -> None:
        for obj in objs[12:]:
            obj.note = 5  # Declared: not a field
        for obj in objs[:12]:
            obj.mark_changed("_private")

    _run, outs = both([note])
    assert updates_of(outs[0], 1) == {}


def test_a_container_field_and_its_in_place_changes() -> None:
    def lists(world: ServerWorld, objs: list[Any]) -> None:
        for obj in objs[:12]:
            obj.y = [obj.x]

    def append(world: ServerWorld, objs: list[Any]) -> None:
        move(5)(world, objs)  # y -> floats again for most; lists watched until then
        objs[1].y = [1.0]

    def grow(world: ServerWorld, objs: list[Any]) -> None:
        objs[1].y.append(2.0)
        for obj in objs[2:12]:
            obj.x = obj.x + 1.0

    run, outs = both([lists, append, grow, move(6)])
    assert run.taken[0] is False
    assert updates_of(outs[2], 1)[2] == {"y": [1.0, 2.0]}


def test_removed_and_re_added_objects_while_on_the_dirty_list() -> None:
    def remove(world: ServerWorld, objs: list[Any]) -> None:
        move(1)(world, objs)
        world.remove(objs[3].uid)
        world.remove(objs[4].uid)
        world.add(objs[4], objs[4]._reverb_args)  # a new uid, and twice on the list
        objs[4].x = 99.0

    _run, outs = both([remove, move(2)])
    frames, _ = outs[0]
    sync = m.decode(frames[0][1])
    assert isinstance(sync, m.Sync)
    assert list(sync.despawn) == [4, 5] and [e.uid for e in sync.spawn] == [16]


def test_a_teleported_object_in_a_batch_snaps_for_time_peers_only() -> None:
    def teleport(world: ServerWorld, objs: list[Any]) -> None:
        move(1)(world, objs)
        world.teleport(objs[2].uid)

    run, outs = both([teleport, move(2)])
    assert run.taken == [True, True]
    frames, _ = outs[0]
    for members, body, *_ in frames:
        update = json.loads(body)["update"]
        assert len(update) == 15
        snap = {e["uid"] for e in update if type(e) is dict and e.get("snap") is True}
        assert snap == ({3} if 3 in members or 4 in members else set())


def test_with_interest_management_the_batches_become_entries_per_view() -> None:
    def hide(world: ServerWorld, objs: list[Any]) -> None:
        world.hide_from(objs[0].uid, 1)
        world.hide_from(objs[5].uid, 4)
        move(1)(world, objs)

    run, outs = both([hide, move(2), move(3)])
    assert run.taken == [True, True, True]
    assert 1 not in updates_of(outs[1], 1) and 6 in updates_of(outs[1], 1)


def test_with_a_budget_the_batches_go_through_each_queue() -> None:
    def budget(world: ServerWorld, objs: list[Any]) -> None:
        world.set_budget(3, 4000.0)
        move(1)(world, objs)

    run, _outs = both([budget, move(2), move(3), move(4)])
    assert all(run.taken)


@pytest.mark.parametrize("kind", [Doubling, Direct, Propertied, Slotted])
def test_subclasses_that_store_their_own_way(kind: type) -> None:
    run, outs = both([move(1), move(2)], kind)
    fields = updates_of(outs[1], 1)
    obj = run.objs[0]
    assert fields[1] == {"x": m.to_wire(obj.x), "y": obj.y, "hp": obj.hp}
    if kind is Doubling:  # stored through ours: the bulk way reads what it stored
        assert run.taken == [True, True] and fields[1]["hp"] == 2 * 1002
    else:  # stored around ours, or not in the instance dict: one by one
        assert run.taken == [False, False]
    if kind is Propertied:
        assert fields[1]["x"] == 2.5  # the property's value, not a stale dict entry


def test_two_types_and_small_groups_in_one_tick() -> None:
    def mixed(world: ServerWorld, objs: list[Any]) -> None:
        for obj in objs[:5]:
            obj.x = obj.x + 1.0
        for obj in objs[5:9]:
            obj.hp = obj.hp + 1
            obj.y = obj.y * 2
        for obj in objs[12:]:
            obj.hp = obj.hp + 7

    run, _outs = both([mixed, mixed])
    assert run.taken == [True, True]


def test_a_patched_comparison_keeps_the_one_by_one_way() -> None:
    """The harness's "drop-updates" breakage replaces ``_same``: the bulk way must not hide it."""
    run = Run(True)
    move(1)(run.world, run.objs)
    with patch.object(world_module, "_same", lambda a, b: True):
        frames, _ = run.tick()
    assert run.taken == []
    for _, body, *_ in frames:
        sync = m.decode(body)
        assert isinstance(sync, m.Sync) and not sync.update


# -- the entries formatted from the columns ----------------------------------------------------

EDGE_FLOATS = [-0.0, 0.1 + 0.2, 1e16, 1e-07, 5e-324, 1.7976931348623157e308, -2.5e-05, 123.0]


def test_batch_fragments_are_the_encoders_bytes_for_any_name_and_number() -> None:
    """A batch's entries, formatted from its columns (plain §7.2, compact §12.4, all or some
    rows), are byte for byte what the encoder makes of the entries themselves: names with
    quotes, ``%``, non-ASCII or a backslash, floats whose shortest form has an exponent."""
    names = ("x", 'q"uote', "a%b", "é", "b\\s")
    n = len(EDGE_FLOATS)
    columns: list[list[Any]] = [
        EDGE_FLOATS,
        [m.MAX_SAFE_INT, -m.MAX_SAFE_INT, 0, 7, -1, 2**40, 10**15, 3],
        list(reversed(EDGE_FLOATS)),
        [float(i) for i in range(n)],
        [i - 4 for i in range(n)],
    ]
    batch = shared_module.Batch("T", names, [5 + 3 * i for i in range(n)], columns)
    plain = [m.dumpb(entry) for _, entry in batch.entries()]
    assert batch.fragments(False) == plain
    batch.plan = (4, "b\\s", 0, "x", 2, "a%b", 1, 'q"uote', 3, "é")
    compact = [m.dumpb(row) for row in batch.rows()]
    assert compact[0].startswith(b"[5,4,-4,0,-0.0,2,")
    assert batch.fragments(True) == compact
    assert batch.fragments(True, [6, 1]) == [compact[6], compact[1]]
    assert batch.fragments(False, [2]) == [plain[2]]


def test_plain_peers_get_the_batches_entries_split_at_a_small_limit_the_same() -> None:
    """Protocol-1 entries of a tick mixing a batch and one-by-one entries (an owner change),
    whole and split per frame limit, are those of the one-by-one way."""

    def mixed(world: ServerWorld, objs: list[Any]) -> None:
        move(5)(world, objs)
        objs[3].belonging_membership = 2
        objs[4].x = EDGE_FLOATS[4]

    run, outs = both([mixed, move(6)])
    assert run.taken[0] is False and run.taken[1] is True
    assert updates_of(outs[0], 1)[5]["x"] == EDGE_FLOATS[4]


def test_a_column_of_one_value_is_written_once_into_the_template_with_the_same_bytes() -> None:
    """A column whose every value is equal (a time stamp set on every object) has its text
    written into the template; zeros are not folded (0.0 and -0.0 are equal, not alike)."""
    n = 12
    columns: list[list[Any]] = [
        [0.25 * i for i in range(n)],
        [1712345678.125] * n,
        [0.0] * (n - 1) + [-0.0],
        [-0.0] + [0.0] * (n - 1),
        [7] * n,
        [0] * n,
    ]
    names = ("x", "t", "z", "w", "hp", "%r")
    batch = shared_module.Batch("T", names, list(range(1, n + 1)), columns)
    plain = [m.dumpb(entry) for _, entry in batch.entries()]
    assert batch.fragments(False) == plain
    assert b'"z":-0.0' in plain[-1] and b'"w":-0.0' in plain[0]
    batch.plan = (0, "x", 1, "t", 2, "z", 3, "w", 4, "hp", 5, "%r")
    assert batch.fragments(True) == [m.dumpb(row) for row in batch.rows()]
    assert batch.fragments(True, list(range(n - 1, -1, -1))) == [
        m.dumpb(row) for row in reversed(batch.rows())
    ]


def test_the_same_group_tick_after_tick_compares_with_what_the_last_tick_sent() -> None:
    """When the same objects change again in the same order, the bulk way takes the last
    tick's values as the baselines' (no lookup of records and baselines): the bytes stay
    those of the one-by-one way through partial changes, unchanged values, zeros of either
    sign, an object leaving the group for a tick and a baseline changed the other way."""

    def zeros(sign: float) -> Step:
        def step(world: ServerWorld, objs: list[Any]) -> None:
            for i, obj in enumerate(objs[:12]):
                obj.x = sign * 0.0 if i % 2 else obj.x
                obj.y = obj.y
                obj.hp = obj.hp + (i % 3 == 0)

        return step

    def one_string(world: ServerWorld, objs: list[Any]) -> None:
        move(7)(world, objs)
        objs[4].y = "far"  # its group goes one by one this tick

    def back(world: ServerWorld, objs: list[Any]) -> None:
        move(8)(world, objs)
        objs[4].y = 1.5

    steps = [move(1), move(2), zeros(1.0), zeros(-1.0), zeros(1.0), move(3), move(3)]
    steps += [one_string, back, move(9), move(10)]
    run, outs = both(steps)
    assert run.taken[:2] == [True, True]
    assert updates_of(outs[-1], 1)[5]["y"] == 30.0 + 4 * 0.25
    last = run.world._bulk.last
    assert [len(group[1]) for group in last.values()] == [12, 3]  # Body's, Declared's


def test_a_group_whose_baselines_changed_the_other_way_reads_them_again() -> None:
    """A baseline changed by the one-by-one way between two ticks of the same group (here by
    hand, as any other way would) is read again: the comparison never uses stale values."""
    run = Run(True)
    move(1)(run.world, run.objs)
    run.tick()
    record = run.world._records[run.objs[2].uid]
    assert record.fields is not None
    record.fields["x"] = 99.0  # as if clients held 99.0 ...
    run.world._rebased += 1  # ... set the other way (those count their changes)
    move(2)(run.world, run.objs)
    run.objs[2].x = 99.0  # ... so this is no change for them
    frames, _ = run.tick()
    assert "x" not in updates_of((frames, []), 1)[3]


def test_joiners_between_ticks_of_the_same_group_get_fresh_spawns() -> None:
    """Spawn fragments made for a joiner are cleared again when the same group changes next
    (the bulk way skips clearing only when none was made since it cleared them all): a
    later joiner gets the current values, after a tick where some objects kept theirs too."""

    def join(member: int, then: Step) -> Step:
        def step(world: ServerWorld, objs: list[Any]) -> None:
            world.peer_joined(member, ("compact",))
            then(world, objs)

        return step

    def some(world: ServerWorld, objs: list[Any]) -> None:
        kept = objs[0].x, objs[0].y, objs[0].hp
        move(3)(world, objs)
        objs[0].x, objs[0].y, objs[0].hp = kept  # assigned its own values: no change

    def nothing(world: ServerWorld, objs: list[Any]) -> None:
        pass

    steps = [move(1), join(5, move(2)), some, move(4), join(6, nothing), move(5)]
    steps += [move(6), join(7, nothing), move(7), join(8, move(8))]
    _run, outs = both(steps)
    snapshot = m.decode(next(body for members, body, *_ in outs[4][0] if 6 in members))
    assert isinstance(snapshot, m.Sync) and snapshot.full
    assert {e.uid: e.fields for e in snapshot.spawn}[1] == {"x": 4.0, "y": 12.0, "hp": 1004}


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**53 - 1])
def test_a_column_of_one_int_is_range_checked_once_and_still_checked(value: int) -> None:
    """Every object assigned the same int: checked once for the column, as §3.4 wants it
    (beyond ±(2^53-1): every object withheld, one by one; within: one batch)."""

    def same(world: ServerWorld, objs: list[Any]) -> None:
        move(1)(world, objs)
        for obj in objs:
            obj.hp = value

    run, outs = both([same, move(2)])
    fits = abs(value) <= m.MAX_SAFE_INT
    assert run.taken == [fits, True]
    assert len(outs[0][1]) == (0 if fits else 15)  # sync errors of the first tick
    assert len(updates_of(outs[1], 1)) == 15  # encodable again: every update goes out
