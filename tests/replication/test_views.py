"""Per-peer views in ``ServerWorld`` (issue 9): peers holding the same objects share one frame,
a joiner gets a full snapshot and then joins the others, frames split per frame limit (§7.5),
and an entry too large for a limit names its object (issue 8, decision 8)."""

from __future__ import annotations

from typing import Any

import pytest

from reverb import ReverbObject
from reverb.errors import EncodeError
from reverb.proto import messages as m
from reverb.replication.types import TypeRegistry
from reverb.replication.world import ClientWorld, ServerWorld


class Blob(ReverbObject):
    def __init__(
        self,
        text: str = "",
        *,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        self.text = text
        super().__init__(
            text, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


def registry() -> TypeRegistry:
    types = TypeRegistry()
    types.register(Blob)
    return types


def add(world: ServerWorld, text: str = "", owner: int | None = None) -> Blob:
    blob = Blob(text, belonging_membership=owner)
    world.add(blob, blob._reverb_args)
    return blob


def deliver(out: Any, clients: dict[int, ClientWorld], limit: int = 1 << 20) -> None:
    """Every frame to its peers, split at ``limit`` and decoded as a client would."""
    for members, message in out:
        bodies = m.encode_sync(message, limit)
        for member in members:
            for body in bodies:
                decoded = m.decode(body)
                assert isinstance(decoded, m.Sync)
                clients[member].apply(decoded)


def table(objects: dict[int, Any]) -> dict[int, tuple[Any, ...]]:
    return {uid: (o.belonging_membership, o.text) for uid, o in objects.items()}


def test_peers_with_the_same_view_share_one_frame() -> None:
    world = ServerWorld(registry())
    add(world, "a")
    for member in (3, 1, 2):
        world.peer_joined(member)
    [(members, full)] = world.tick(0.0)
    assert members == (1, 2, 3) and isinstance(full, m.SyncFrame) and full.full
    world.objects[1].text = "b"
    [(members, delta)] = world.tick(1.0)
    assert members == (1, 2, 3) and not delta.full  # type: ignore[attr-defined]


def test_a_late_joiner_gets_a_full_snapshot_then_shares_the_delta() -> None:
    world = ServerWorld(registry())
    clients = {member: ClientWorld(registry(), bind=lambda obj: None) for member in (1, 2)}
    first = add(world, "a", owner=1)
    world.peer_joined(1)
    deliver(world.tick(0.0), clients)
    first.text = "b"
    add(world, "c")
    world.peer_joined(2)
    out = world.tick(1.0)
    assert [(members, message.full) for members, message in out] == [  # type: ignore[attr-defined]
        ((1,), False),
        ((2,), True),
    ]
    deliver(out, clients)
    assert table(clients[1].objects) == table(clients[2].objects) == table(world.objects)
    first.text = "d"
    out = world.tick(2.0)
    assert [members for members, _ in out] == [(1, 2)]  # one view again: one frame
    deliver(out, clients)
    assert table(clients[2].objects) == table(world.objects)


def test_a_joiner_in_a_quiet_world_still_gets_its_snapshot() -> None:
    world = ServerWorld(registry())
    add(world, "a")
    world.peer_joined(1)
    world.tick(0.0)
    assert world.tick(1.0) == []
    world.peer_joined(2)
    [(members, full)] = world.tick(2.0)
    assert members == (2,) and len(full.spawn) == 1  # type: ignore[attr-defined]
    assert world.tick(3.0) == []


def test_a_peer_that_left_is_dropped_from_its_view() -> None:
    world = ServerWorld(registry())
    blob = add(world)
    for member in (1, 2):
        world.peer_joined(member)
    world.tick(0.0)
    world.peer_left(1)
    assert world.peers == {2}
    blob.text = "x"
    assert [members for members, _ in world.tick(1.0)] == [(2,)]
    world.peer_left(2)
    assert world.peers == frozenset() and world._views == []
    blob.text = "y"
    assert world.tick(2.0) == []


def test_views_split_by_a_withheld_object_merge_once_it_recovers() -> None:
    world = ServerWorld(registry())
    blob = add(world, "ok")
    world.peer_joined(1)
    world.tick(0.0)
    blob.text = "\ud800"  # a lone surrogate: no UTF-8 form
    world.peer_joined(2)
    world.tick(1.0)
    assert len(world._views) == 2
    blob.text = "fine"
    out = dict(world.tick(2.0))
    assert out[(1,)].update[0].fields == {"text": "fine"}  # type: ignore[attr-defined]
    assert out[(2,)].spawn[0].fields == {"text": "fine"}  # type: ignore[attr-defined]
    assert len(world._views) == 1
    blob.text = "again"
    assert [members for members, _ in world.tick(3.0)] == [(1, 2)]


# -- parts per frame limit (§7.5) and entries too large (decision 8) ---------------------------


@pytest.mark.parametrize("full", [True, False])
def test_a_frame_splits_into_parts_within_each_limit(full: bool) -> None:
    world = ServerWorld(registry())
    world.peer_joined(1)
    world.tick(0.0)
    blobs = [add(world, "x" * 300) for _ in range(40)]
    if full:
        world.peer_joined(2)
        world.tick(1.0)  # peer 1 gets the spawns, 2 the snapshot
        world.peer_left(1)
        for blob in blobs:
            blob.text = "y" * 300
        world.peer_joined(3)
    out = world.tick(2.0)
    frame = out[-1][1]
    assert isinstance(frame, m.SyncFrame) and frame.full is full
    whole = frame.as_sync()
    for limit in (2000, 5000, 1 << 20):
        bodies = m.encode_sync(frame, limit)
        assert all(len(body) <= limit for body in bodies)
        parts = [m.decode(body) for body in bodies]
        assert [p.final for p in parts] == [False] * (len(parts) - 1) + [True]  # type: ignore[attr-defined]
        assert tuple(e for p in parts for e in p.spawn) == whole.spawn  # type: ignore[attr-defined]
        assert tuple(e for p in parts for e in p.update) == whole.update  # type: ignore[attr-defined]
        assert (len(parts) == 1) is (limit == 1 << 20)


def test_an_entry_too_large_for_a_limit_names_its_uid() -> None:
    world = ServerWorld(registry())
    add(world, "small")
    add(world, "x" * 5000)
    world.peer_joined(1)
    [(_, frame)] = world.tick(0.0)
    assert len(m.encode_sync(frame, 65536)) == 1  # fits a larger limit
    with pytest.raises(m.FrameTooLarge) as info:
        m.encode_sync(frame, 4000)
    assert isinstance(info.value, EncodeError)
    assert info.value.uid == 2
    assert str(info.value) == "object uid=2 does not fit the client's max_frame"


def test_frames_are_encoded_once_per_tick_whatever_the_number_of_peers() -> None:
    world = ServerWorld(registry())
    blob = add(world, "a")
    for member in range(1, 9):
        world.peer_joined(member)
    world.tick(0.0)
    blob.text = "b"
    [(members, frame)] = world.tick(1.0)
    assert len(members) == 8 and isinstance(frame, m.SyncFrame)
    joined = frame.lists[1].joined()
    assert frame.lists[1].joined() is joined  # the entries' bytes, reused for every peer
    assert m.encode_sync(frame, 65536) == m.encode_sync(frame, 100000) == [frame.body()]
