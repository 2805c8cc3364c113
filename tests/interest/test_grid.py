"""reverb/replication/grid.py: edges, hysteresis, and many moving objects against brute force."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reverb.replication import grid as grid_module
from reverb.replication.grid import SpatialGrid


class Thing:
    def __init__(self, x: Any, y: Any) -> None:
        self.x = x
        self.y = y


def world(*points: tuple[float, float]) -> dict[int, Thing]:
    return {uid: Thing(x, y) for uid, (x, y) in enumerate(points, start=1)}


def setup(grid: SpatialGrid, objects: dict[int, Thing], focus: dict[int, int]) -> None:
    for client, uid in focus.items():
        grid.set_client(client, uid)
    grid.update(objects, objects, focus)


def test_enter_at_radius_inclusive_and_not_beyond() -> None:
    grid = SpatialGrid(10.0, margin=2.0)
    objects = world((0, 0), (10, 0), (10.001, 0), (0, -10))
    setup(grid, objects, {1: 1})
    assert grid.in_range[1] == {1, 2, 4}


def test_hysteresis_keeps_an_edge_object_until_radius_plus_margin() -> None:
    grid = SpatialGrid(10.0, margin=2.0)
    objects = world((0, 0), (9, 0))
    setup(grid, objects, {7: 1})
    assert 2 in grid.in_range[7]
    for x, expected in [(11.0, True), (12.0, True), (10.5, True), (12.01, False), (11.0, False)]:
        objects[2].x = x
        changes = grid.update([2], objects)
        assert (2 in grid.in_range[7]) is expected, x
        assert (7 in changes) == (x in (12.01,)), x  # only the crossing reports a change
    objects[2].x = 10.0
    assert grid.update([2], objects) == {7: {2}}
    assert 2 in grid.in_range[7]


def test_focus_moving_recomputes_the_client_with_hysteresis() -> None:
    grid = SpatialGrid(10.0, margin=2.0)
    objects = world((0, 0), (9, 0), (25, 0))
    setup(grid, objects, {1: 1})
    assert grid.in_range[1] == {1, 2}
    objects[1].x = -2.5  # object 2 now at 11.5: kept
    assert grid.update([1], objects) == {}
    objects[1].x = 16.0  # 2 at 7, 3 at 9: 3 enters
    assert grid.update([1], objects) == {1: {3}}
    objects[1].x = 100.0
    assert grid.update([1], objects) == {1: {2, 3}}
    assert grid.in_range[1] == {1}


def test_cell_boundaries_and_negative_coordinates() -> None:
    grid = SpatialGrid(5.0, margin=0.0, cell=1.0)  # a reach of many cells
    objects = world((-0.5, -0.5), (-5.5, -0.5), (4.4, -0.5), (-0.5, 4.49))
    setup(grid, objects, {1: 1})
    assert grid.in_range[1] == {1, 2, 3, 4}


def test_objects_without_a_position_are_in_no_range() -> None:
    grid = SpatialGrid(10.0)
    objects = world((0, 0), (1, 1))
    objects[3] = Thing(None, 1)
    objects[4] = Thing(math.nan, 0)
    objects[5] = Thing(True, 0)
    setup(grid, objects, {1: 1})
    assert grid.in_range[1] == {1, 2}
    objects[2].x = "far"
    assert grid.update([2], objects) == {1: {2}}


def test_client_without_focus_or_with_unplaced_focus_sees_nothing() -> None:
    grid = SpatialGrid(10.0)
    objects = world((0, 0))
    objects[2] = Thing(None, None)
    setup(grid, objects, {1: 2})
    grid.set_client(3, None)
    grid.update([], objects, [3])
    assert grid.in_range[1] == set() and grid.in_range[3] == set()


def test_per_client_radius_and_unplace_and_drop() -> None:
    grid = SpatialGrid(10.0, margin=1.0)
    objects = world((0, 0), (30, 0))
    grid.set_client(1, 1, radius=40.0)
    grid.set_client(2, 1)
    grid.update(objects, objects, [1, 2])
    assert grid.in_range == {1: {1, 2}, 2: {1}}
    objects[2].x = 43.9  # leave distance of client 1 is 40 + 1 * 40/10 = 44
    grid.update([2], objects)
    assert 2 in grid.in_range[1]
    assert grid.unplace(2) == {1}
    assert grid.in_range[1] == {1}
    grid.drop_client(1)
    assert grid.seen_by == {1: {2}}
    with pytest.raises(ValueError):
        SpatialGrid(0)


def reference(
    state: dict[int, set[int]],
    objects: dict[int, Thing],
    focus: dict[int, int],
    r: float,
    margin: float,
) -> dict[int, set[int]]:
    out = {}
    for client, f in focus.items():
        fx, fy = objects[f].x, objects[f].y
        held = set()
        for uid, o in objects.items():
            d = math.hypot(o.x - fx, o.y - fy)
            if d <= r or (d <= r + margin and uid in state.get(client, set())):
                held.add(uid)
        out[client] = held
    return out


coord = st.floats(min_value=-60, max_value=60, allow_nan=False).map(lambda v: round(v, 1))


@settings(max_examples=60, deadline=None)
@given(
    start=st.lists(st.tuples(coord, coord), min_size=2, max_size=40),
    steps=st.lists(st.lists(st.tuples(st.integers(0, 39), coord, coord), max_size=40), max_size=6),
    cell=st.sampled_from([None, 3.0, 50.0]),
    n_clients=st.integers(1, 6),
    bulk_min=st.sampled_from([64, 0]),  # 0: the every-client recompute path too
)
def test_many_moving_objects_match_brute_force(
    start: list[tuple[float, float]],
    steps: list[list[tuple[int, float, float]]],
    cell: float | None,
    n_clients: int,
    bulk_min: int,
) -> None:
    saved = grid_module.BULK_MIN
    grid_module.BULK_MIN = bulk_min
    try:
        check_against_brute_force(start, steps, cell, n_clients)
    finally:
        grid_module.BULK_MIN = saved


def check_against_brute_force(
    start: list[tuple[float, float]],
    steps: list[list[tuple[int, float, float]]],
    cell: float | None,
    n_clients: int,
) -> None:
    r, margin = 12.0, 3.0
    objects = world(*start)
    n = len(objects)
    focus = {100 + c: 1 + (c % n) for c in range(n_clients)}
    grid = SpatialGrid(r, margin=margin, cell=cell)
    setup(grid, objects, focus)
    state = reference({}, objects, focus, r, margin)
    assert {c: grid.in_range[c] for c in focus} == state
    for step in steps:
        moved = set()
        for index, x, y in step:
            uid = 1 + index % n
            objects[uid].x, objects[uid].y = x, y
            moved.add(uid)
        before = {c: set(grid.in_range[c]) for c in focus}
        changes = grid.update(moved, objects)
        state = reference(state, objects, focus, r, margin)
        assert {c: grid.in_range[c] for c in focus} == state
        for c in focus:
            assert changes.get(c, set()) == before[c] ^ state[c]
        for uid in objects:
            assert grid.seen_by.get(uid, set()) == {c for c in focus if uid in state[c]}


def test_stagger_recomputes_one_group_per_bulk_update_and_converges() -> None:
    saved = grid_module.BULK_MIN
    grid_module.BULK_MIN = 0
    try:
        grid = SpatialGrid(10.0, margin=0.0, stagger=3)
        objects = world((0, 0), (100, 0), (200, 0), (5, 0))
        focus = {30: 1, 31: 2, 32: 3}
        setup(grid, objects, focus)  # clients passed explicitly: all recomputed at once
        assert grid.in_range == {30: {1, 4}, 31: {2}, 32: {3}}
        objects[4].x = 105.0  # object 4 goes from client 30's range to client 31's
        objects[1].x = 0.5
        objects[2].x = 100.5
        objects[3].x = 200.5
        moved = [1, 2, 3, 4]
        # setup's update was a bulk one too (phase 0): this one recomputes 31 % 3 == 1 only
        assert grid.update(moved, objects) == {31: {4}}
        assert grid.in_range[30] == {1, 4}  # waits for its turn
        assert grid.update([], objects) == {}  # no bulk update: nothing recomputed
        assert grid.update(moved, objects) == {}  # phase 2: client 32, unchanged
        assert grid.update(moved, objects) == {30: {4}}  # phase 0
        assert grid.in_range == {30: {1}, 31: {2, 4}, 32: {3}}
        with pytest.raises(ValueError):
            SpatialGrid(1.0, stagger=0)
    finally:
        grid_module.BULK_MIN = saved


@pytest.mark.parametrize(
    ("seed", "cell", "bulk_min"),
    [(0, None, 64), (1, None, 0), (2, 2.5, 0), (3, 7.0, 64), (4, 40.0, 0), (5, None, 0)],
)
def test_small_steps_over_many_updates_match_brute_force(
    seed: int, cell: float | None, bulk_min: int
) -> None:
    """Objects and foci wander in small steps, as in a game: each client's classified cells
    (``_plan``) are reused while its focus stays in one small square and made again when it
    leaves it; after every update each range, each change and each ``seen_by`` are those of
    a brute-force computation with the same hysteresis."""
    import random

    rng = random.Random(seed)
    r, margin = 10.0, 1.5
    objects = world(*[(rng.uniform(0, 80), rng.uniform(0, 80)) for _ in range(150)])
    focus = {200 + c: 1 + 7 * c for c in range(12)}
    saved = grid_module.BULK_MIN
    grid_module.BULK_MIN = bulk_min
    try:
        grid = SpatialGrid(r, margin=margin, cell=cell)
        setup(grid, objects, focus)
        state = reference({}, objects, focus, r, margin)
        replans = 0
        for tick in range(150):
            moved = [uid for uid in objects if rng.random() < 0.7]
            for uid in moved:
                thing = objects[uid]
                thing.x = min(80.0, max(0.0, thing.x + rng.uniform(-0.25, 0.25)))
                thing.y = min(80.0, max(0.0, thing.y + rng.uniform(-0.25, 0.25)))
            if tick % 50 == 25:  # a few per-client radii (their plans made again)
                grid.set_client(200, focus[200], radius=r if tick % 100 == 25 else None)
            plans = dict(grid._plans)
            before = {c: set(grid.in_range[c]) for c in focus}
            changes = grid.update(moved, objects)
            replans += sum(1 for c in plans if grid._plans.get(c) is not plans[c])
            state = reference(state, objects, focus, r, margin)
            assert {c: grid.in_range[c] for c in focus} == state, tick
            for c in focus:
                assert changes.get(c, set()) == before[c] ^ state[c], (tick, c)
            for uid in objects:
                assert grid.seen_by.get(uid, set()) == {c for c in focus if uid in state[c]}
        if bulk_min == 0:  # every client recomputed each update: plans kept, and made again
            assert 0 < replans < 150 * len(focus) * 0.7
    finally:
        grid_module.BULK_MIN = saved


def test_empty_cells_are_pruned_and_the_ranges_stay_right() -> None:
    """An object leaves a trail of empty cells (kept while plans refer to them): once they
    outnumber the objects they are dropped, and the clients' ranges are still exact."""
    saved = grid_module.BULK_MIN
    grid_module.BULK_MIN = 0
    try:
        grid = SpatialGrid(5.0, margin=1.0, cell=1.0)
        objects = world((0.0, 0.0), (3.0, 0.0), (0.0, 3.0))
        focus = {1: 1, 2: 3}
        setup(grid, objects, focus)
        state = reference({}, objects, focus, 5.0, 1.0)
        most = 0
        for step in range(1, 3000):
            objects[2].x = 3.0 + step * 1.0  # a cell further each update
            objects[1].x = 0.01 * (step % 7)
            grid.update([1, 2], objects)
            state = reference(state, objects, focus, 5.0, 1.0)
            assert {c: grid.in_range[c] for c in focus} == state
            most = max(most, len(grid._cells))
        assert most <= 2 * len(objects) + 1024 + 1
        for x, y in [(2.5, 0.5), (-1.5, 2.5), (0.5, -4.5)]:  # back into pruned cells
            objects[2].x, objects[2].y = x, y
            grid.update([2], objects)
            state = reference(state, objects, focus, 5.0, 1.0)
            assert {c: grid.in_range[c] for c in focus} == state
        assert {key for key, bucket in grid._cells.items() if bucket} == {
            grid._cell_of[uid] for uid in objects
        }
    finally:
        grid_module.BULK_MIN = saved


@pytest.mark.parametrize(("seed", "cell"), [(0, None), (1, None), (2, 0.25), (3, 0.25)])
def test_objects_streaming_past_foci_at_the_largest_step_match_brute_force(
    seed: int, cell: float | None
) -> None:
    """The exact incremental ranges (``_kinetic``) wait as long as no pair can have changed
    state: here every focus moves one way and every other object the other way, each by the
    same step, so distances change by exactly the bound it assumes (twice the largest step)
    and objects cross the radius and the leave distance at every update, whether they were
    tested at the last recompute or not (inside the radius, beyond the leave distance; small
    cells: their objects may lie close to the radius or the leave distance)."""
    import random

    rng = random.Random(seed)
    r, margin, step = 10.0, 1.0, 0.1  # the step below margin / 8: no object jumps
    objects = world(*[(rng.uniform(-60, 60), rng.uniform(-25, 25)) for _ in range(400)])
    focus = {300 + c: 1 + c for c in range(5)}
    grid = SpatialGrid(r, margin=margin, cell=cell)
    setup(grid, objects, focus)
    state = reference({}, objects, focus, r, margin)
    foci = set(focus.values())
    for tick in range(250):
        for uid, thing in objects.items():
            thing.x += step if uid in foci else -step
        before = {c: set(grid.in_range[c]) for c in focus}
        changes = grid.update(list(objects), objects)
        state = reference(state, objects, focus, r, margin)
        assert {c: grid.in_range[c] for c in focus} == state, tick
        for c in focus:
            assert changes.get(c, set()) == before[c] ^ state[c], (tick, c)
    assert grid._travel == pytest.approx(250 * 2 * step)
