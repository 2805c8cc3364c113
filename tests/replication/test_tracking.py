"""Change tracking in ``ServerWorld`` (issue 9): a tick looks at what was assigned, marked or
holds a container, and at nothing else; in-place container mutation and ownership replicate."""

from __future__ import annotations

from typing import Any

import pytest

from reverb import ReverbObject
from reverb.proto import messages as m
from reverb.replication.types import TypeRegistry
from reverb.replication.world import ClientWorld, ServerWorld


class Thing(ReverbObject):
    """Seed style: fields set before ``super().__init__``."""

    def __init__(
        self,
        x: Any = 0,
        items: Any = None,
        *,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        self.x = x
        self.items = [] if items is None else items
        super().__init__(
            x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


class Strict(ReverbObject):
    """Declares which containers are compared at every tick: none."""

    __reverb_mutable__ = ()

    def __init__(
        self,
        *,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        self.items: list[Any] = []
        self.tags: dict[str, Any] = {}
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


class Counted(ReverbObject):
    """A declared field behind a property that counts its reads."""

    __reverb_fields__ = ("hp",)
    reads = 0

    def __init__(
        self,
        *,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        self._hp = 10
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @property
    def hp(self) -> int:
        Counted.reads += 1
        return self._hp

    @hp.setter
    def hp(self, value: int) -> None:
        self._hp = value


class Partial(ReverbObject):
    __reverb_exclude__ = ("cache",)

    def __init__(
        self,
        *,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        self.a = 1
        self.cache = 0
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


def registry() -> TypeRegistry:
    types = TypeRegistry()
    for cls in (Thing, Strict, Counted, Partial):
        types.register(cls)
    return types


def world_with(*objs: Any, members: tuple[int, ...] = (1,)) -> ServerWorld:
    world = ServerWorld(registry())
    for obj in objs:
        world.add(obj, obj._reverb_args)
    for member in members:
        world.peer_joined(member)
    world.tick(0.0)
    return world


def updates(world: ServerWorld) -> list[m.UpdateEntry]:
    out = world.tick(0.0)
    if not out:
        return []
    [(_, sync)] = out
    assert isinstance(sync, m.Sync) and not sync.spawn and not sync.despawn
    return list(sync.update)


# -- what marks an object changed -------------------------------------------------------------


def test_an_assignment_puts_the_object_on_the_dirty_list_once() -> None:
    thing = Thing()
    world = world_with(thing)
    assert world._dirty == []
    thing.x = 1
    thing.x = 2
    thing.items = [1]
    assert world._dirty == [thing]
    assert thing._reverb_changed == {"x", "items"}
    assert updates(world) == [m.UpdateEntry(1, {"x": 2, "items": [1]})]
    assert world._dirty == [] and thing._reverb_changed == set()


def test_private_writes_do_not_mark_the_object() -> None:
    thing = Thing()
    world = world_with(thing)
    thing._cache = 5  # type: ignore[attr-defined]
    assert world._dirty == []
    assert world.tick(1.0) == []


def test_writes_before_joining_a_world_are_not_tracked() -> None:
    thing = Thing(3)  # its __init__ assigns fields before super().__init__: no world yet
    assert thing._reverb_changed is None
    thing.x = 4
    world = world_with(thing, members=())
    assert thing._reverb_changed == set()  # tracked from now on
    replica = ClientWorld(registry(), bind=lambda obj: None)
    world.peer_joined(2)
    [(members, sync)] = world.tick(1.0)
    assert members == (2,) and isinstance(sync, m.Sync)
    decoded = m.decode(m.encode(sync))
    assert isinstance(decoded, m.Sync)
    replica.apply(decoded)
    assert replica.objects[1].x == 4


def test_assigning_the_same_value_sends_nothing() -> None:
    thing = Thing(5, [1, (2, 3)])
    world = world_with(thing)
    thing.x = 5
    thing.items = [1, [2, 3]]  # equal on the wire
    assert world.tick(1.0) == []


def test_an_excluded_or_undeclared_attribute_is_not_sent() -> None:
    part, counted = Partial(), Counted()
    world = world_with(part, counted)
    part.cache = 9
    counted.other = 1  # type: ignore[attr-defined]
    assert world.tick(1.0) == []
    counted.hp = 11
    assert updates(world) == [m.UpdateEntry(2, {"hp": 11})]


def test_a_new_attribute_is_sent() -> None:
    thing = Thing()
    world = world_with(thing)
    thing.hp = 3  # type: ignore[attr-defined]
    assert updates(world) == [m.UpdateEntry(1, {"hp": 3})]


def test_a_deleted_attribute_is_no_longer_in_snapshots() -> None:
    thing = Thing()
    thing.hp = 1  # type: ignore[attr-defined]
    world = world_with(thing)
    del thing.hp  # type: ignore[attr-defined]
    assert world.tick(1.0) == []  # clients keep what they have: there is no "delete" on the wire
    world.peer_joined(2)
    [(_, full)] = world.tick(2.0)
    assert isinstance(full, m.Sync) and full.spawn[0].fields == {"x": 0, "items": []}


# -- a tick looks only at what may have changed -------------------------------------------------


def test_a_tick_without_changes_reads_no_object() -> None:
    counted = [Counted() for _ in range(50)]
    world = world_with(*counted)
    Counted.reads = 0
    for _ in range(5):
        assert world.tick(1.0) == []
    assert Counted.reads == 0
    counted[7].hp = 3
    assert updates(world) == [m.UpdateEntry(8, {"hp": 3})]
    assert Counted.reads == 1  # only the object that changed was read


def test_scalar_fields_are_not_watched() -> None:
    world = world_with(Thing(1, 5), Counted())
    assert world._watched == {}


# -- containers mutated in place ---------------------------------------------------------------


def test_in_place_list_mutation_replicates_by_default() -> None:
    thing = Thing(0, [1])
    world = world_with(thing)
    thing.items.append(2)
    assert updates(world) == [m.UpdateEntry(1, {"items": [1, 2]})]
    thing.items[0] = {"k": [True]}
    assert updates(world) == [m.UpdateEntry(1, {"items": [{"k": [True]}, 2]})]
    assert world.tick(2.0) == []


def test_in_place_mutation_inside_a_tuple_or_dict_replicates() -> None:
    thing = Thing({"a": [1]}, (1, [2]))
    world = world_with(thing)
    thing.x["a"].append(3)
    thing.items[1].append(4)
    assert updates(world) == [m.UpdateEntry(1, {"x": {"a": [1, 3]}, "items": [1, [2, 4]]})]


def test_an_in_place_change_with_an_assignment_in_the_same_tick_is_sent_whole() -> None:
    thing = Thing(0, [1])
    world = world_with(thing)
    thing.items.append(2)
    thing.x = 7
    assert updates(world) == [m.UpdateEntry(1, {"x": 7, "items": [1, 2]})]


def test_a_type_change_from_int_to_bool_inside_a_list_is_a_change() -> None:
    thing = Thing(0, [1])
    world = world_with(thing)
    thing.items[0] = True
    assert updates(world) == [m.UpdateEntry(1, {"items": [True]})]


def test_a_field_that_stops_holding_a_container_is_no_longer_watched() -> None:
    thing = Thing(0, [1])
    world = world_with(thing)
    assert set(world._watched) == {1}
    thing.items = 5
    assert updates(world) == [m.UpdateEntry(1, {"items": 5})]
    assert world._watched == {}
    thing.items = [5]
    world.tick(1.0)
    assert set(world._watched) == {1}


def test_declared_mutable_fields_narrow_the_comparison() -> None:
    strict = Strict()
    world = world_with(strict)
    assert world._watched == {}
    strict.items.append(1)
    assert world.tick(1.0) == []  # not compared: the type declared no mutable field
    strict.mark_changed("items")
    assert updates(world) == [m.UpdateEntry(1, {"items": [1]})]
    strict.tags["a"] = 1
    strict.items.append(2)
    strict.mark_changed()  # every field
    assert updates(world) == [m.UpdateEntry(1, {"items": [1, 2], "tags": {"a": 1}})]


def test_assigning_a_new_container_replicates_without_mark_changed() -> None:
    strict = Strict()
    world = world_with(strict)
    strict.items = [3]
    assert updates(world) == [m.UpdateEntry(1, {"items": [3]})]


def test_mark_changed_outside_a_world_does_nothing() -> None:
    thing = Thing()
    thing.mark_changed("items")
    thing.mark_changed()
    assert thing._reverb_changed is None


def test_mark_changed_on_an_unchanged_field_sends_nothing() -> None:
    thing = Thing(0, [1])
    world = world_with(thing)
    thing.mark_changed("items", "x")
    assert world.tick(1.0) == []


# -- ownership ---------------------------------------------------------------------------------


def test_an_ownership_change_is_tracked() -> None:
    thing = Thing()
    world = world_with(thing)
    thing.belonging_membership = 4
    assert thing._reverb_changed == {"belonging_membership"}
    assert updates(world) == [m.UpdateEntry(1, {}, owner=4)]
    thing.belonging_membership = 4
    assert world.tick(1.0) == []
    thing.belonging_membership = None
    world.peer_joined(2)
    out = dict(world.tick(2.0))
    assert out[(1,)].update == (m.UpdateEntry(1, {}, owner=None),)  # type: ignore[attr-defined]
    assert out[(2,)].spawn[0].owner is None  # type: ignore[attr-defined]


def test_an_owner_that_is_not_a_membership_id_withholds_the_object() -> None:
    thing = Thing()
    world = world_with(thing)
    thing.belonging_membership = "me"  # type: ignore[assignment]
    assert world.tick(1.0) == []
    assert [obj for obj, _ in world.sync_errors] == [thing]
    assert "belonging_membership" in str(world.sync_errors[0][1])
    assert world.withheld() == world.sync_errors
    thing.belonging_membership = 2
    assert updates(world) == [m.UpdateEntry(1, {}, owner=2)]
    assert world.withheld() == []


# -- removal -----------------------------------------------------------------------------------


def test_a_changed_object_removed_before_the_tick_is_only_despawned() -> None:
    thing, other = Thing(), Thing()
    world = world_with(thing, other)
    thing.x = 9
    world.remove(1)
    thing.x = 10  # no longer tracked
    assert thing._reverb_changed is None
    [(_, sync)] = world.tick(1.0)
    assert sync == m.Sync(tick=2, full=False, final=True, despawn=(1,))


def test_a_removed_object_holding_a_container_is_no_longer_watched() -> None:
    thing = Thing(0, [1])
    world = world_with(thing)
    world.remove(1)
    assert world._watched == {}
    thing.items.append(2)
    world.tick(1.0)
    assert world.tick(2.0) == []


@pytest.mark.parametrize("count", [1, 3])
def test_updates_come_in_uid_order(count: int) -> None:
    things = [Thing() for _ in range(4)]
    world = world_with(*things)
    for thing in reversed(things[:count] + things[-1:]):
        thing.x = 1
    assert [u.uid for u in updates(world)] == sorted({*range(1, count + 1), 4})


class Hooked(ReverbObject):
    """Overrides ``__setattr__`` and writes with ``object.__setattr__``, never reaching ours."""

    def __init__(
        self,
        *,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        self._seen: list[str] = []
        self.x = 0
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "x":
            self.__dict__["_seen"].append(name)

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)


class HookedChild(Hooked):
    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)


@pytest.mark.parametrize("cls", [Hooked, HookedChild])
def test_a_subclass_with_its_own_setattr_is_tracked_too(cls: type[Hooked]) -> None:
    types = TypeRegistry()
    types.register(cls)
    world = ServerWorld(types)
    obj = cls()
    world.add(obj, ())
    world.peer_joined(1)
    world.tick(0.0)
    obj.x = 5
    assert obj._seen == ["x", "x"]  # its own hook still runs
    assert world._dirty == [obj]
    assert updates(world) == [m.UpdateEntry(1, {"x": 5})]
    obj.y = 1  # type: ignore[attr-defined]
    del obj.y  # type: ignore[attr-defined]
    assert world._dirty == [obj]


# -- the direct write (a public name no data descriptor of the class handles) -----------------


class Slotted(ReverbObject):
    """A slot and a property next to plain attributes: both keep their own way of storing."""

    __slots__ = ("s",)

    def __init__(
        self,
        *,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        self.s = 0
        self.p = 0
        self.plain = 0
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @property
    def p(self) -> int:
        return int(self.__dict__.get("_p", 0))

    @p.setter
    def p(self, value: int) -> None:
        self.__dict__["_p"] = value * 10


def test_slots_and_properties_keep_their_way_of_storing_after_many_writes() -> None:
    types = TypeRegistry()
    types.register(Slotted)
    world = ServerWorld(types)
    obj = Slotted()
    world.add(obj, ())
    world.peer_joined(1)
    world.tick(0.0)
    for value in (1, 2, 3):  # past the first write of each name
        obj.s = value
        obj.p = value
        obj.plain = value
    assert "s" not in obj.__dict__ and obj.s == 3  # in its slot
    assert obj.p == 30 and "p" not in obj.__dict__  # through the property's setter
    assert obj.__dict__["plain"] == 3
    assert "plain" in Slotted._reverb_plain
    assert not {"s", "p"} & Slotted._reverb_plain
    assert world._dirty == [obj]
    # what replicates is unchanged: instance-dict attributes (the slot and the property are not)
    assert {e.uid: e.fields for e in updates(world)} == {1: {"plain": 3}}


def test_what_a_class_learns_is_its_own_and_not_its_parents() -> None:
    class Base(ReverbObject):
        pass

    class Child(Base):
        @property
        def hp(self) -> int:
            return 7

        @hp.setter
        def hp(self, value: int) -> None:
            self.__dict__["_set_hp"] = value

    base, child = Base(add_on_init=False), Child(add_on_init=False)
    base.hp = 1  # type: ignore[attr-defined]
    base.hp = 2  # type: ignore[attr-defined]
    child.hp = 5
    child.hp = 6
    assert "hp" in Base._reverb_plain and "hp" not in Child._reverb_plain
    assert base.__dict__["hp"] == 2
    assert child.hp == 7 and child.__dict__["_set_hp"] == 6 and "hp" not in child.__dict__
    assert "_set_hp" not in Base._reverb_plain | Child._reverb_plain  # private: never learnt


def test_a_hook_reaching_its_parents_setattr_keeps_its_own_property() -> None:
    """Each class gets a ``__setattr__`` of its own, holding its plain names; an instance of a
    subclass whose own hook calls ``super().__setattr__`` reaches the parent's, where the
    parent's names must not decide: its class's property still stores the value."""

    class Parent(ReverbObject):
        pass

    class Child(Parent):
        def __setattr__(self, name: str, value: Any) -> None:
            super().__setattr__(name, value)

        @property
        def hp(self) -> int:
            return int(self.__dict__.get("_hp", 0))

        @hp.setter
        def hp(self, value: int) -> None:
            self.__dict__["_hp"] = value + 1

    class Grandchild(Child):
        pass

    parent = Parent(add_on_init=False)
    parent.hp = 1  # type: ignore[attr-defined]
    parent.hp = 2  # type: ignore[attr-defined]
    assert "hp" in Parent._reverb_plain and parent.__dict__["hp"] == 2
    for obj in (Child(add_on_init=False), Grandchild(add_on_init=False)):
        obj.hp = 5
        obj.hp = 6
        assert obj.hp == 7 and "hp" not in obj.__dict__
    assert Parent.__setattr__ is not ReverbObject.__setattr__
    assert "__setattr__" not in Grandchild.__dict__  # it inherits Child's hook, wrapped


def test_a_replica_of_a_plain_subclass_is_written_straight_into_its_dict() -> None:
    """Each subclass gets a tracking hook of its own on the server side; on a client it is
    still plain storage, so replicas keep the direct (C-loop) way of applying columns and
    uniform rows. A class with its own hook does not (regression: the per-class hooks made
    every class look hooked, and a client applied 1000 objects ten times slower)."""
    from reverb.replication.replica import _direct

    class Plain(ReverbObject):
        pass

    class Deeper(Plain):
        pass

    class Hooked(ReverbObject):
        def __setattr__(self, name: str, value: object) -> None:
            super().__setattr__(name, value)

    class UnderHooked(Hooked):
        pass

    assert Plain.__setattr__ is not ReverbObject.__setattr__  # its own, made for it
    assert _direct(Plain) and _direct(Deeper)
    assert not _direct(Hooked) and not _direct(UnderHooked)


def test_an_instance_made_without_reverb_new_is_tracked_once_in_a_world() -> None:
    """The tracking hook reads ``_reverb_changed`` from the instance dict, where
    ``ReverbObject.__new__`` puts it; an instance made around it (``object.__new__``, as a
    copier or a class with its own ``__new__`` might) is plain storage until a world adds it,
    then tracked like any other."""
    thing = object.__new__(Thing)
    assert "_reverb_changed" not in thing.__dict__
    thing.x = 1  # neither fails nor tracks
    thing.items = []
    ReverbObject.__init__(thing, 1, add_on_init=False)
    world = world_with(thing)
    world.tick(1.0)
    thing.x = 2
    assert world._dirty == [thing] and thing._reverb_changed == {"x"}
    assert "_reverb_changed" in Thing(5).__dict__  # the usual way: from __new__ on


@pytest.mark.parametrize("count", [3, 10])  # one by one, and the bulk way (8 or more)
def test_an_object_moved_to_another_world_while_marked_stays_the_new_worlds(count: int) -> None:
    """Removed from one world with a change pending and added to another: the first world's
    tick must neither take the object for the one of its own that has its new uid nor
    clear the mark the second world needs (the object is on both dirty lists)."""
    olds = [Thing(i) for i in range(count)]
    first = world_with(*olds)
    second = world_with(Thing(100), Thing(101))
    for i, thing in enumerate(olds):
        thing.x = 1000 + i
    moved = olds[0]
    first.remove(moved.uid)
    second.add(moved, moved._reverb_args)
    assert moved.uid == 3 and 3 in first.objects  # the new uid is another object's in the first
    second.tick(0.0)  # its spawn
    moved.x = 77
    [(_, sync)] = first.tick(0.0)
    assert isinstance(sync, m.Sync) and sync.despawn == (1,)
    sent = [(e.uid, e.fields["x"]) for e in sync.update]
    assert sent == [(thing.uid, 1000 + i) for i, thing in enumerate(olds) if thing is not moved]
    assert [(e.uid, e.fields) for e in updates(second)] == [(3, {"x": 77})]
    olds[2].x = 5  # the first world's own uid 3 still compares with its own baseline
    assert [(e.uid, e.fields) for e in updates(first)] == [(3, {"x": 5})]
