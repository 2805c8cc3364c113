"""The new server engine against the old one (issue 9): for any sequence of spawns, writes,
in-place container changes, owner changes, removals, joins, leaves and ticks, every peer
receives the same syncs (the same JSON, up to the order of keys and entries) from
``ServerWorld`` with its fragment encoder as from ``ReferenceWorld`` (the pre-issue-9 world)
with the old dataclass encoder; and clients applying the new frames, split at a small frame
limit, hold the server's state."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reverb import ReverbObject
from reverb.proto import messages as m
from reverb.replication import world as world_module
from reverb.replication.types import TypeRegistry
from reverb.replication.world import ClientWorld, ServerWorld
from tests.replication import reference_world as old


class Unit(ReverbObject):
    def __init__(
        self,
        x: Any = 0,
        y: Any = 0,
        *,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        self.x = x
        self.y = y
        super().__init__(
            x, y, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


def registry() -> TypeRegistry:
    types = TypeRegistry()
    types.register(Unit)
    return types


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=4)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(text, inner, max_size=3)
        | st.tuples(inner, inner)
    ),
    max_leaves=6,
)
index = st.integers(0, 20)
owners = st.none() | st.integers(1, 4)
ops = st.one_of(
    st.tuples(st.just("spawn"), values, values, owners),
    st.tuples(st.just("set"), index, st.sampled_from(["x", "y", "hp"]), values),
    st.tuples(st.just("append"), index, values),
    st.tuples(st.just("mark"), index, text, values),
    st.tuples(st.just("owner"), index, owners),
    st.tuples(st.just("remove"), index),
    st.tuples(st.just("join")),
    st.tuples(st.just("leave"), index),
    st.tuples(st.just("tick")),
    st.tuples(st.just("tick")),
)


def normal(sync: m.Message) -> tuple[Any, ...]:
    assert isinstance(sync, m.Sync)
    return (
        sync.tick,
        sync.full,
        sorted(sync.spawn, key=lambda e: e.uid),
        sorted(sync.update, key=lambda e: e.uid),
        sorted(sync.despawn),
    )


def wire_state(objects: dict[int, Any]) -> dict[int, Any]:
    return {
        uid: (o.belonging_membership, m.to_wire(o.x), m.to_wire(o.y), m.to_wire(vars(o).get("hp")))
        for uid, o in objects.items()
    }


start = st.lists(st.tuples(st.just("spawn"), values, values, owners), min_size=1, max_size=6)


@pytest.mark.parametrize("bulk", [False, True], ids=["default", "bulk-for-any-group"])
@settings(max_examples=100, deadline=None)
@given(start, st.integers(0, 3), st.lists(ops, min_size=10, max_size=60))
def test_the_new_engine_sends_what_the_old_one_sent(
    bulk: bool, spawns: list[tuple[Any, ...]], joins: int, program: list[tuple[Any, ...]]
) -> None:
    """With ``bulk``, every group of objects goes the bulk way where it can (issue 9)."""
    with patch.object(world_module, "_BULK_MIN", 1 if bulk else world_module._BULK_MIN):
        run_program(spawns, joins, program)


def run_program(spawns: list[tuple[Any, ...]], joins: int, program: list[tuple[Any, ...]]) -> None:
    new, ref = ServerWorld(registry()), old.ReferenceWorld(registry())
    pairs: list[tuple[Unit, Unit]] = []
    peers: list[int] = []
    clients: dict[int, ClientWorld] = {}
    next_member = 1

    def copy(value: Any) -> Any:
        return m.decode(m.encode(m.RpcResult(id=0, value=m.to_wire(value)))).value  # type: ignore[attr-defined]

    def tick() -> None:
        got = new.tick(0.0)
        want = ref.tick(0.0)
        mine = {member: message for members, message in got for member in members}
        theirs = {member: message for members, message in want for member in members}
        assert mine.keys() == theirs.keys()
        for member, message in mine.items():
            assert isinstance(message, m.SyncFrame)
            assert normal(m.decode(message.body())) == normal(m.decode(old.encode(theirs[member])))
            for body in m.encode_sync(message, 2048):
                part = m.decode(body)
                assert isinstance(part, m.Sync)
                clients[member].apply(part)

    for op in [*spawns, *[("join",)] * joins, ("tick",), *program]:
        kind = op[0]
        if kind == "spawn":
            _, x, y, owner = op
            a, b = Unit(x, y, belonging_membership=owner), Unit(x, y, belonging_membership=owner)
            new.add(a, a._reverb_args)
            ref.add(b, b._reverb_args)
            pairs.append((a, b))
        elif kind == "join":
            new.peer_joined(next_member)
            ref.peer_joined(next_member)
            clients[next_member] = ClientWorld(registry(), bind=lambda obj: None)
            peers.append(next_member)
            next_member += 1
        elif kind == "tick":
            tick()
        elif kind == "leave" and peers:
            member = peers.pop(op[1] % len(peers))
            new.peer_left(member)
            ref.peer_left(member)
            del clients[member]
        elif pairs and kind != "leave":
            i = op[1] % len(pairs)
            a, b = pairs[i]
            if kind == "set":
                setattr(a, op[2], op[3])
                setattr(b, op[2], copy(op[3]))
            elif kind == "append" and type(a.x) is list:
                a.x.append(op[2])  # in place: found by comparing containers
                b.x.append(copy(op[2]))
            elif kind == "mark" and type(a.y) is dict:
                a.y[op[2]] = op[3]
                a.mark_changed("y")
                b.y[op[2]] = copy(op[3])
            elif kind == "owner":
                a.belonging_membership = b.belonging_membership = op[2]
            elif kind == "remove":
                pairs.pop(i)
                new.remove(a.uid)  # type: ignore[arg-type]
                ref.remove(b.uid)  # type: ignore[arg-type]
    tick()
    for client in clients.values():
        assert wire_state(client.objects) == wire_state(new.objects)
