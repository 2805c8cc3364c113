"""Column blocks (docs/protocol.md §20): the server's blocks, the client's checks and apply."""

from __future__ import annotations

import gc
import json
import random
import weakref
from typing import Any

import pytest

from reverb.errors import RemoteProtocolError
from reverb.proto import messages as m
from reverb.proto.session import COLUMNS, FEATURES
from tests.replication.test_compact import Guarded, client, state, world_with


def bodies(out: list[tuple[tuple[int, ...], m.Message]], columns: set[int]) -> dict[int, bytes]:
    """member -> its frame body, as the hub sends it: columnar to ``columns`` members."""
    sent: dict[int, bytes] = {}
    for members, message in out:
        assert isinstance(message, m.SyncFrame)
        for member in members:
            sent[member] = (message.columnar() if member in columns else message).body()
    return sent


def test_reverb_clients_ask_for_columns_by_default() -> None:
    assert COLUMNS in FEATURES


def test_a_tick_where_every_object_changes_the_same_fields_is_one_block() -> None:
    world, things = world_with(6, (2, ("compact",)))
    world.tick(1)
    for i, t in enumerate(things):
        t.x = i + 0.5
        t.hp = i
    body = json.loads(bodies(world.tick(2), {2})[2])
    table = body["schema"]["Thing"]["add"]  # the server's order of first use (§12.2)
    assert sorted(table) == ["hp", "x"]
    assert body["update"] == []
    values = {"x": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5], "hp": [0, 1, 2, 3, 4, 5]}
    assert body["cols"] == [[[0, 1], [1, 2, 3, 4, 5, 6], values[table[0]], values[table[1]]]]


def test_shapes_with_few_rows_stay_rows_and_owner_changes_keep_the_object_form() -> None:
    world, things = world_with(9, (2, ("compact",)))
    world.tick(1)
    for t in things[:5]:
        t.x = 11.0
    things[5].y = 2.0  # one row of its shape: stays a row
    things[6].belonging_membership = 3  # object form (§12.4)
    body = json.loads(bodies(world.tick(2), {2})[2])
    assert body["cols"] == [[[0], [1, 2, 3, 4, 5], [11.0] * 5]]
    assert body["update"] == [[6, 1, 2.0], {"uid": 7, "fields": {}, "owner": 3}]


def test_peers_without_the_feature_get_rows_and_share_the_frame_of_a_world_without_it() -> None:
    world, things = world_with(8, (1, ("compact",)), (2, ("compact",)))
    alone, others = world_with(8, (1, ("compact",)))
    for tick in range(1, 6):
        for objs in (things, others):
            for t in objs:
                t.x = tick + t.hp
        sent = bodies(world.tick(tick), {2})
        assert sent[1] == bodies(alone.tick(tick), set())[1]
        assert b'"cols"' not in sent[1]
        if tick > 1:
            assert b'"cols"' in sent[2]


def test_a_columns_peer_ends_with_the_state_of_a_plain_and_a_compact_peer() -> None:
    world, things = world_with(60, (1, ()), (2, ("compact",)), (3, ("compact",)))
    plain, compact, columns = client(compact=False), client(), client()
    rng = random.Random(7)
    shapes = (("x",), ("x", "y"), ("hp",), ("x", "y", "hp"))
    seen_cols = 0
    for tick in range(1, 80):
        for thing in rng.sample(things, rng.randrange(0, 60)):
            for name in rng.choice(shapes):
                setattr(thing, name, rng.choice((1, 2.5, "s", [1, 2], None, tick * 0.5)))
        if tick % 9 == 0:
            rng.choice(things).belonging_membership = rng.choice((None, 3))
        sent = bodies(world.tick(tick), {3})
        seen_cols += b'"cols"' in sent.get(3, b"")
        for member, replicas in ((1, plain), (2, compact), (3, columns)):
            if member in sent:
                replicas.apply(m.decode(sent[member]))
        assert state(columns) == state(compact) == state(plain)
    assert seen_cols > 40  # the blocks were exercised, not only rows
    assert state(columns) == {
        t.uid: (t.x, t.y, t.hp, t.belonging_membership) for t in things if t.uid is not None
    }


def test_a_sync_too_large_for_the_peer_in_columns_is_split_in_rows() -> None:
    world, things = world_with(3000, (2, ("compact",)))
    world.tick(1)
    for t in things:
        t.x = t.x + 0.125
    ((_, frame),) = world.tick(2)
    assert isinstance(frame, m.SyncFrame)
    variant = frame.columnar()
    assert variant.cols_bytes is not None
    limit = 16384
    assert len(variant.body()) > limit
    parts = variant.parts(limit)
    assert len(parts) > 1 and parts == frame.parts(limit)
    decoded = [json.loads(p) for p in parts]
    assert all("cols" not in d for d in decoded)
    assert [d["final"] for d in decoded] == [False] * (len(parts) - 1) + [True]


def test_the_room_stamp_reaches_the_rows_of_a_split_columnar_sync() -> None:
    world, things = world_with(3000, (2, ("compact",)))
    world.tick(1)
    for t in things:
        t.y = 4.0
    ((_, frame),) = world.tick(2)
    assert isinstance(frame, m.SyncFrame)
    stamped = m.in_room(frame.columnar(), "default")
    for part in stamped.parts(65536):  # type: ignore[attr-defined]
        assert json.loads(part)["room"] == "default"


def test_block_rows_are_the_compact_entries_in_order() -> None:
    cols = [[[1, 2], [1, 2], [0.5, 1.5], [0.25, 0.75]], [[0], [7], ["a"]]]
    assert m.block_rows(cols) == [[1, 1, 0.5, 2, 0.25], [2, 1, 1.5, 2, 0.75], [7, 0, "a"]]


def test_column_blocks_round_trip_through_block_rows() -> None:
    rng = random.Random(3)
    for _ in range(200):
        rows: list[Any] = []
        for uid in rng.sample(range(1, 500), rng.randrange(0, 30)):
            if rng.random() < 0.1:
                rows.append({"uid": uid, "fields": {}, "owner": 2})
                continue
            indexes = sorted(rng.sample(range(4), rng.randrange(1, 4)))
            row: list[Any] = [uid]
            for i in indexes:
                row += [i, rng.random()]
            rows.append(row)
        uids = [r[0] if type(r) is list else r["uid"] for r in rows]
        blocks, rest_uids, rest = m.column_blocks(uids, rows)
        assert sorted(rest + m.block_rows(blocks), key=str) == sorted(rows, key=str)
        assert rest_uids == [r[0] if type(r) is list else r["uid"] for r in rest]
        assert all(len(b[1]) >= m.MIN_BLOCK for b in blocks)


SYNC = {"type": "sync", "tick": 5, "full": False, "final": True, "spawn": [], "update": []}


@pytest.mark.parametrize(
    "cols",
    [
        {"a": 1},  # not an array
        [1],  # a block that is not an array
        [[[0], [1]]],  # fewer than 3 arrays
        [[[0], [1], 5]],  # a column that is not an array
        [[[0, 1], [1], [2.0]]],  # one column for two indexes
        [[[0], [1], [2.0], [3.0]]],  # two columns for one index
        [[[0.0], [1], [2.0]]],  # an index that is not an int
        [[[True], [1], [2.0]]],  # a boolean is not an int
        [[[0], ["1"], [2.0]]],  # a uid that is not an int
        [[[0], [], []]],  # no uids
        [[[1, 0], [1], [2.0], [3.0]]],  # indexes not increasing
        [[[0, 0], [1], [2.0], [3.0]]],  # a repeated index
        [[[-1], [1], [2.0]]],  # a negative index
        [[[0], [1, 2], [2.0]]],  # a column shorter than the uids
        [[[], [1]]],  # no index
    ],
)
def test_malformed_blocks_close_with_1002(cols: Any) -> None:
    with pytest.raises(RemoteProtocolError) as raised:
        m.decode(json.dumps({**SYNC, "despawn": [], "cols": cols}).encode())
    assert raised.value.code == 1002


def applied(replicas: Any, body: dict[str, Any]) -> None:
    replicas.apply(m.decode(json.dumps(body).encode()))


def full_of_things(n: int) -> dict[str, Any]:
    spawn = [
        {"uid": u, "type": "Thing", "owner": None, "args": [], "fields": {"x": 0.0, "hp": 1}}
        for u in range(1, n + 1)
    ]
    return {**SYNC, "tick": 1, "full": True, "spawn": spawn, "despawn": []}


def test_a_client_applies_blocks_after_the_update_entries() -> None:
    replicas = client()
    applied(replicas, full_of_things(3))
    schema = {"Thing": {"at": 0, "add": ["x", "hp"]}}
    cols = [[[0, 1], [1, 2], [5.0, 6.0], [10, 20]]]
    applied(
        replicas,
        {**SYNC, "schema": schema, "update": [[1, 0, 9.0], [3, 1, 7]], "despawn": [], "cols": cols},
    )
    assert {u: (o.x, o.hp) for u, o in replicas.objects.items()} == {
        1: (5.0, 10),
        2: (6.0, 20),
        3: (0.0, 7),
    }


@pytest.mark.parametrize(
    ("cols", "why"),
    [
        ([[[0], [9], [1.0]]], "unknown uid"),
        ([[[2], [1], [1.0]]], "index beyond the table"),
    ],
)
def test_a_block_naming_what_the_client_lacks_is_refused_and_nothing_applies(
    cols: Any, why: str
) -> None:
    replicas = client()
    applied(replicas, full_of_things(2))
    before = state(replicas)
    schema = {"Thing": {"at": 0, "add": ["x", "hp"]}}
    body = {**SYNC, "schema": schema, "update": [[1, 0, 3.0]], "despawn": [], "cols": cols}
    with pytest.raises(RemoteProtocolError) as raised:
        applied(replicas, body)
    assert raised.value.code == 1002, why
    assert state(replicas) == before


def test_a_block_cannot_write_a_method_or_private_name() -> None:
    replicas = client()
    applied(replicas, full_of_things(1))
    schema = {"Thing": {"at": 0, "add": ["_secret"]}}
    with pytest.raises(RemoteProtocolError):
        applied(replicas, {**SYNC, "schema": schema, "despawn": [], "cols": [[[0], [1], [1]]]})


def test_blocks_of_a_class_with_its_own_setattr_go_through_it() -> None:
    replicas = client()
    spawn = [
        {"uid": u, "type": "Guarded", "owner": None, "args": [], "fields": {"a": 0}} for u in (1, 2)
    ]
    applied(replicas, {**SYNC, "tick": 1, "full": True, "spawn": spawn, "despawn": []})
    objs = replicas.objects
    assert isinstance(objs[1], Guarded)
    seen = len(objs[1]._seen)
    schema = {"Guarded": {"at": 0, "add": ["a"]}}
    applied(replicas, {**SYNC, "schema": schema, "despawn": [], "cols": [[[0], [1, 2], [4, 5]]]})
    assert (objs[1].a, objs[2].a) == (4, 5)
    assert objs[1]._seen[seen:] == ["a"]  # written through its own __setattr__


def test_a_client_without_field_tables_refuses_blocks() -> None:
    replicas = client(compact=False)
    applied(replicas, full_of_things(1))
    with pytest.raises(RemoteProtocolError):
        applied(replicas, {**SYNC, "despawn": [], "cols": [[[0], [1], [1.0]]]})


def test_an_observing_client_sees_the_same_changes_from_blocks_as_from_rows() -> None:
    schema = {"Thing": {"at": 0, "add": ["x", "hp"]}}
    rows = [[u, 0, u * 1.5, 1, u * 10] for u in (1, 2, 3, 4)]
    cols = [[[0, 1], [1, 2, 3, 4], [1.5, 3.0, 4.5, 6.0], [10, 20, 30, 40]]]
    seen = []
    for form in ({"update": rows}, {"update": [], "cols": cols}):
        replicas = client()
        replicas.observe = lambda cls: True  # as for an interpolated type (§13)
        applied(replicas, full_of_things(4))
        applied(replicas, {**SYNC, "schema": schema, "despawn": [], **form})
        seen.append([(obj.uid, name, old, new) for obj, name, old, new in replicas.changes])
    assert seen[0] == seen[1]
    assert (1, "x", 0.0, 1.5) in seen[1] and (4, "hp", 1, 40) in seen[1]


def test_frames_and_their_columnar_variants_are_freed_without_the_garbage_collector() -> None:
    """A cycle between a tick's frame and its variant would keep every tick's bytes until a
    collection: memory that a server under load never gives back in time (found by the
    send-budget abuse test on Python 3.13)."""
    world, things = world_with(6, (2, ("compact",)))
    world.tick(1)
    for t in things:
        t.x = t.x + 0.5
    ((_, frame),) = world.tick(2)
    assert isinstance(frame, m.SyncFrame)
    gc.disable()
    try:
        variant = frame.columnar()
        assert variant is not frame and variant.cols_bytes is not None
        variant.parts(65536)
        refs = [weakref.ref(frame), weakref.ref(variant)]
        del frame, variant
        assert [r() for r in refs] == [None, None]
    finally:
        gc.enable()


@pytest.mark.parametrize("encode", [False, True])
def test_a_ticks_shared_entries_are_freed_without_the_garbage_collector(encode: bool) -> None:
    """A tick's entries, shared by its frames, are made only when a frame is encoded; the
    shared store kept them with a callback into itself, a cycle that held a whole tick's
    entries until a collection when a frame was never encoded (a stalled peer's: the
    send-budget abuse test on Python 3.13)."""
    world, things = world_with(12, (2, ("compact",)), (3, ()))
    world.tick(1)
    gc.collect()
    gc.disable()
    try:
        for tick in range(2, 6):
            for t in things:
                t.x = t.x + 0.5
            out = world.tick(tick)
            assert out
            if encode:
                for _, frame in out:
                    frame.body()
            del out
        assert gc.collect() == 0  # nothing was left for the collector
    finally:
        gc.enable()
