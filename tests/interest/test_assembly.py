"""How a filtered tick assembles each view's sync (issue 11, §16): many small views of a busy
world. Each view's update list holds exactly the entries of what it holds, in uid order, with
the bytes a world without interest management sends for them (the wire does not depend on how
the entries were gathered); each entry is encoded once per tick for every view that holds it;
entries that differ per view ("snap" for "time" peers, §13.5; owner-only fields, §16.2) are
right for each view."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from reverb import ReverbObject
from reverb.proto import messages as m
from reverb.replication.interest import Grid
from reverb.replication.types import TypeRegistry
from reverb.replication.world import ServerWorld

FEATURE_SETS: list[tuple[str, ...]] = [
    (),
    ("compact",),
    ("time",),
    ("compact", "time"),
    ("interest",),
    ("compact", "time", "interest"),
]


class Dot(ReverbObject):
    def __init__(
        self,
        x: float = 0.0,
        y: float = 0.0,
        *,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        self.x = x
        self.y = y
        self.hp = 10
        super().__init__(
            x, y, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


class Chest(ReverbObject):
    __reverb_owner_fields__ = ("gold",)

    def __init__(
        self,
        x: float = 0.0,
        y: float = 0.0,
        *,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        self.x = x
        self.y = y
        self.gold = 0
        super().__init__(
            x, y, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


def new_world(*classes: type) -> ServerWorld:
    types = TypeRegistry()
    for cls in classes:
        types.register(cls)
    return ServerWorld(types)


def add(world: ServerWorld, obj: Any) -> Any:
    world.add(obj, obj._reverb_args)
    return obj


def updates(out: list[tuple[tuple[int, ...], m.Message]]) -> dict[int, list[tuple[int, bytes]]]:
    """member -> the (uid, encoded entry) pairs of its sync's update list, in order."""
    got: dict[int, list[tuple[int, bytes]]] = {}
    for members, frame in out:
        assert isinstance(frame, m.SyncFrame)
        entries = frame.lists[1]
        pairs = list(zip(entries.uids, entries.fragments(), strict=True))
        for member in members:
            got[member] = pairs
    return got


@pytest.mark.parametrize("seed", range(4))
def test_each_view_gets_the_unfiltered_bytes_of_what_it_holds_in_uid_order(seed: int) -> None:
    """The same random play on a world with a ``Grid`` and on one without interest
    management: every peer's update entries are, byte for byte and in order, the unfiltered
    world's entries of the uids it holds (teleports included: "snap" for "time" peers)."""
    rng = random.Random(seed)
    filtered, plain = new_world(Dot), new_world(Dot)
    filtered.set_interest(Grid(12.0))
    dots: list[tuple[Dot, Dot]] = []
    for _ in range(80):
        x, y = rng.uniform(0, 100), rng.uniform(0, 100)
        dots.append((add(filtered, Dot(x, y)), add(plain, Dot(x, y))))
    members = list(range(1, 25))
    for member in members:
        features = FEATURE_SETS[member % len(FEATURE_SETS)]
        filtered.peer_joined(member, features)
        plain.peer_joined(member, features)
        filtered.set_focus(member, dots[member * 3][0].uid)
    now = 0.0
    checked = 0
    for _ in range(25):
        for a, b in dots:
            if rng.random() < 0.7:  # most move, some stay dormant
                dx, dy = rng.uniform(-2, 2), rng.uniform(-2, 2)
                a.x = b.x = min(100.0, max(0.0, a.x + dx))
                a.y = b.y = min(100.0, max(0.0, a.y + dy))
            if rng.random() < 0.1:
                a.hp = b.hp = rng.randint(0, 9)
            if rng.random() < 0.02:
                filtered.teleport(a.uid)
                plain.teleport(b.uid)
        now += 1 / 30
        held = {member: set(filtered.interest.visible(member)) for member in members}
        got = updates(filtered.tick(now))
        want = updates(plain.tick(now))
        for member in members:
            # held since the last tick and still visible: what left is despawned instead,
            # what entered is spawned whole
            kept = held[member] & filtered.interest.visible(member)
            mine = got.get(member, [])
            reference = dict(want.get(member, []))
            expected = [(uid, reference[uid]) for uid in sorted(kept) if uid in reference]
            assert mine == expected
            checked += len(mine)
    assert checked > 1000


def test_an_entry_is_encoded_once_for_every_view_holding_it() -> None:
    world = new_world(Dot)
    world.set_interest(Grid(15.0))
    dots = [add(world, Dot(float(i), 0.0)) for i in range(40)]
    for member in range(1, 11):
        world.peer_joined(member)
        world.set_focus(member, dots[member * 3].uid)
    world.tick(0.0)
    for dot in dots:
        dot.x += 0.5
    out = world.tick(1 / 30)
    seen: dict[int, bytes] = {}
    shared = 0
    for members, frame in out:
        assert isinstance(frame, m.SyncFrame)
        entries = frame.lists[1]
        assert len(members) == 1 and entries.uids == sorted(entries.uids)
        for uid, fragment in zip(entries.uids, entries.fragments(), strict=True):
            if uid in seen:
                assert fragment is seen[uid]  # the same bytes object: encoded once
                shared += 1
            seen[uid] = fragment
    assert shared > 50


def test_small_views_get_owner_only_fields_and_snap_per_view() -> None:
    """Chests with owner-only ``gold`` among moving dots: the owner's entry carries gold,
    the others' carry only what they may see (none at all when only gold changed); a
    teleported chest's entry says "snap" to "time" peers only."""
    world = new_world(Dot, Chest)
    world.set_interest(Grid(30.0))
    for i in range(60):
        add(world, Dot(float(i), 0.0))
    owner, other, timed = 1, 2, 3
    moved = add(world, Chest(10.0, 0.0, belonging_membership=owner))
    rich = add(world, Chest(12.0, 0.0, belonging_membership=owner))
    focus = add(world, Dot(11.0, 0.0))
    world.peer_joined(owner)
    world.peer_joined(other, ("compact",))
    world.peer_joined(timed, ("time",))
    for member in (owner, other, timed):
        world.set_focus(member, focus.uid)
    world.tick(0.0)
    for obj in list(world.objects.values()):
        if isinstance(obj, Dot):
            obj.x += 0.25
    moved.x = 10.5
    moved.gold = 7
    rich.gold = 99  # only an owner-only field changes
    world.teleport(moved.uid)
    got = updates(world.tick(1 / 30))
    by_member = {member: dict(pairs) for member, pairs in got.items()}
    for pairs in got.values():
        assert [uid for uid, _ in pairs] == sorted(uid for uid, _ in pairs)
    assert json.loads(by_member[owner][moved.uid]) == {
        "uid": moved.uid,
        "fields": {"x": 10.5, "gold": 7},
    }
    assert json.loads(by_member[owner][rich.uid]) == {"uid": rich.uid, "fields": {"gold": 99}}
    assert rich.uid not in by_member[other] and rich.uid not in by_member[timed]
    assert b"gold" not in b"".join(by_member[other].values())
    assert json.loads(by_member[timed][moved.uid]) == {
        "uid": moved.uid,
        "fields": {"x": 10.5},
        "snap": True,
    }
    for member in (owner, other):
        assert b"snap" not in b"".join(by_member[member].values())
    assert focus.uid in by_member[other] and focus.uid in by_member[timed]
