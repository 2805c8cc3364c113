"""reverb/replication/interest.py: policies, composition precedence, enter/leave deltas."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reverb.replication.interest import (
    AllOf,
    AnyOf,
    ByType,
    Delta,
    DespawnReason,
    Everyone,
    Grid,
    Hook,
    Interest,
    Nobody,
    Not,
    OwnerOnly,
    Team,
    rpc_target,
)


class Unit:
    def __init__(
        self, x: float = 0.0, y: float = 0.0, team: Any = None, owner: int | None = None
    ) -> None:
        self.x = x
        self.y = y
        self.team = team
        self.belonging_membership = owner


class Secret(Unit):
    def __init__(self, allowed: set[int]) -> None:
        super().__init__()
        self.allowed = allowed

    def visible_to(self, client_id: int) -> bool:
        return client_id in self.allowed


def make(policy: Any, objects: dict[int, Any], clients: dict[int, dict[str, Any]]) -> Interest:
    interest = Interest(policy)
    for uid, obj in objects.items():
        interest.add_object(uid, obj)
    for client, options in clients.items():
        interest.add_client(client, **options)
    interest.update()
    return interest


def seen(interest: Interest, *clients: int) -> list[set[int]]:
    return [set(interest.visible(c)) for c in clients]


def test_everyone_is_the_default_and_a_new_object_enters_everywhere() -> None:
    interest = make(None, {1: Unit()}, {10: {}, 11: {}})
    assert seen(interest, 10, 11) == [{1}, {1}]
    interest.add_object(2, Unit())
    assert interest.update() == {10: Delta(frozenset({2})), 11: Delta(frozenset({2}))}


def test_owner_only_and_ownership_change_needs_a_refresh() -> None:
    objects = {1: Unit(owner=10), 2: Unit(owner=None)}
    interest = make(OwnerOnly(), objects, {10: {}, 11: {}})
    assert seen(interest, 10, 11) == [{1}, set()]
    objects[1].belonging_membership = 11
    assert interest.update() == {}  # the engine refreshes on belonging_membership changes
    interest.refresh(1)
    assert interest.update() == {
        10: Delta(left=frozenset({1})),
        11: Delta(entered=frozenset({1})),
    }
    assert "belonging_membership" in OwnerOnly().reads


def test_team_filter_groups_lists_and_unassigned() -> None:
    objects = {1: Unit(team="red"), 2: Unit(team="blue"), 3: Unit(), 4: Unit(team=["red", "x"])}
    clients = {10: {"groups": ["red"]}, 11: {"groups": ["blue"]}, 12: {}}
    interest = make(Team(), objects, clients)
    assert seen(interest, 10, 11, 12) == [{1, 3, 4}, {2, 3}, {3}]
    interest.set_groups(12, ["blue", "x"])
    assert interest.update() == {12: Delta(entered=frozenset({2, 4}))}
    strict = make(Team(unassigned=False), objects, clients)
    assert seen(strict, 12) == [set()]


def test_hook_on_the_object_and_its_default() -> None:
    objects = {1: Secret({10}), 2: Unit()}
    interest = make(Hook(), objects, {10: {}, 11: {}})
    assert seen(interest, 10, 11) == [{1, 2}, {2}]
    objects[1].allowed = {11}
    interest.refresh(1)
    interest.update()
    assert seen(interest, 10, 11) == [{2}, {1, 2}]
    assert seen(make(Hook(default=False), objects, {10: {}}), 10) == [set()]


def test_explicit_observer_sets_with_nobody_and_show_to() -> None:
    interest = make(Nobody(), {1: Unit(), 2: Unit()}, {10: {}, 11: {}})
    assert seen(interest, 10, 11) == [set(), set()]
    interest.show_to(1, 11)
    assert interest.update() == {11: Delta(entered=frozenset({1}))}
    interest.reset(1, 11)
    assert interest.update() == {11: Delta(left=frozenset({1}))}


def test_precedence_hide_from_beats_show_to_beats_policy() -> None:
    interest = make(Everyone(), {1: Unit(), 2: Unit()}, {10: {}})
    interest.hide_from(1, 10)
    interest.show_to(1, 10)
    interest.update()
    assert seen(interest, 10) == [{2}]  # hidden, though also shown
    interest.reset(1, 10)
    interest.update()
    assert seen(interest, 10) == [{1, 2}]
    nobody = make(Nobody(), {1: Unit()}, {10: {}})
    nobody.show_to(1, 10)
    nobody.update()
    assert nobody.can_see(10, 1)  # shown beats the policy


def test_composition_all_any_not_and_by_type() -> None:
    objects = {1: Unit(team="red", owner=11), 2: Unit(team="blue", owner=10), 3: Secret({11})}
    clients = {10: {"groups": ["red"]}, 11: {"groups": ["blue"]}}
    assert seen(make(Team() & OwnerOnly(), objects, clients), 10, 11) == [set(), set()]
    assert seen(make(Team() | OwnerOnly(), objects, clients), 10, 11) == [{1, 2, 3}, {1, 2, 3}]
    assert seen(make(~OwnerOnly(), objects, clients), 10, 11) == [{1, 3}, {2, 3}]
    assert seen(make(AllOf(Team(), Not(Nobody())), objects, clients), 10) == [{1, 3}]
    assert seen(make(AnyOf(Nobody()), objects, clients), 10) == [set()]
    by_type = ByType({Secret: Hook()}, default=Team())
    assert seen(make(by_type, objects, clients), 10, 11) == [{1}, {2, 3}]
    assert by_type.reads == {"team"}


def test_grid_with_focus_and_teams_and_left_view_versus_destroyed() -> None:
    objects = {1: Unit(0, 0, "red"), 2: Unit(5, 0, "red"), 3: Unit(5, 0, "blue"), 4: Unit(50, 0)}
    interest = make(Grid(10, margin=1) & Team(), objects, {10: {"focus": 1, "groups": ["red"]}})
    assert seen(interest, 10) == [{1, 2}]
    objects[2].x = 30.0
    assert interest.update([2]) == {10: Delta(left=frozenset({2}))}
    interest.remove_object(1)
    delta = interest.update()
    assert delta == {10: Delta(destroyed=frozenset({1}))}
    assert list(delta[10].despawns()) == [(1, DespawnReason.DESTROYED)]
    interest.set_focus(10, 4)
    assert interest.update() == {10: Delta(entered=frozenset({4}))}
    assert list(Delta(left=frozenset({4})).despawns()) == [(4, DespawnReason.LEFT_VIEW)]


def test_grid_or_owner_sees_own_objects_anywhere() -> None:
    objects = {1: Unit(0, 0), 2: Unit(500, 0, owner=10), 3: Unit(500, 0)}
    interest = make(Grid(10) | OwnerOnly(), objects, {10: {"focus": 1}})
    assert seen(interest, 10) == [{1, 2}]


def test_rpc_target_refuses_hidden_objects_like_unknown_ones() -> None:
    objects = {1: Unit(), 2: Unit()}
    interest = make(Everyone(), objects, {10: {}})
    interest.hide_from(2, 10)
    interest.update()
    assert rpc_target(objects, interest, 10, 1) is objects[1]
    assert rpc_target(objects, interest, 10, 2) is None
    assert rpc_target(objects, interest, 10, 3) is None
    assert rpc_target(objects, None, 10, 2) is objects[2]


def test_removed_client_and_object_leave_no_state() -> None:
    objects = {1: Unit(), 2: Unit()}
    interest = make(Grid(10), objects, {10: {"focus": 1}})
    interest.show_to(2, 10)
    interest.remove_client(10)
    interest.remove_object(2)
    assert interest.update() == {}
    assert interest.holders(1) == frozenset()
    assert not interest._shown and not interest._overridden  # nothing kept for the dead


# -- incremental against a from-scratch evaluation -------------------------------------------


def scratch(interest: Interest, objects: dict[int, Unit], clients: list[int]) -> dict[int, set]:
    """What each client sees, deciding every pair from nothing (the grid's hysteresis state
    is the one piece of memory, so its ranges are taken as they are)."""
    return {c: {u for u in objects if interest.decide(c, u)} for c in clients}


@settings(max_examples=50, deadline=None)
@given(
    data=st.data(),
    n=st.integers(2, 30),
    policy_kind=st.sampled_from(["grid", "grid&team", "grid|owner", "team|owner"]),
)
def test_incremental_updates_match_deciding_every_pair(
    data: st.DataObject, n: int, policy_kind: str
) -> None:
    coord = st.floats(-40, 40, allow_nan=False)
    teams = st.sampled_from([None, "red", "blue"])
    clients = [100, 101, 102]
    objects = {
        uid: Unit(
            data.draw(coord),
            data.draw(coord),
            data.draw(teams),
            data.draw(st.sampled_from([None, *clients])),
        )
        for uid in range(1, n + 1)
    }
    policy = {
        "grid": lambda: Grid(10, margin=3),
        "grid&team": lambda: Grid(10, margin=3) & Team(),
        "grid|owner": lambda: Grid(10, margin=3) | OwnerOnly(),
        "team|owner": lambda: Team() | OwnerOnly(),
    }[policy_kind]()
    interest = Interest(policy)
    next_uid = [n + 1]
    for uid, obj in objects.items():
        interest.add_object(uid, obj)
    for i, c in enumerate(clients):
        interest.add_client(c, focus=1 + i % n, groups=[["red"], ["blue"], []][i])
    interest.update()
    for _ in range(data.draw(st.integers(1, 5))):
        before = {c: set(interest.visible(c)) for c in clients}
        moved = set()
        for _ in range(data.draw(st.integers(0, n))):
            action = data.draw(
                st.sampled_from(["move", "team", "show", "hide", "reset", "add", "remove", "focus"])
            )
            uid = data.draw(st.sampled_from(sorted(objects)))
            c = data.draw(st.sampled_from(clients))
            if action == "move":
                objects[uid].x, objects[uid].y = data.draw(coord), data.draw(coord)
                moved.add(uid)
            elif action == "team":
                objects[uid].team = data.draw(teams)
                interest.refresh(uid)
            elif action == "show":
                interest.show_to(uid, c)
            elif action == "hide":
                interest.hide_from(uid, c)
            elif action == "reset":
                interest.reset(uid, c)
            elif action == "add":
                new = next_uid[0]  # UIDs are never reused (§7.1)
                next_uid[0] += 1
                objects[new] = Unit(data.draw(coord), data.draw(coord), data.draw(teams))
                interest.add_object(new, objects[new])
            elif action == "remove" and len(objects) > 1:
                del objects[uid]
                moved.discard(uid)
                interest.remove_object(uid)
            elif action == "focus":
                interest.set_focus(c, uid)
        deltas = interest.update(moved)
        expected = scratch(interest, objects, clients)
        for c in clients:
            assert set(interest.visible(c)) == expected[c]
            d = deltas.get(c, Delta())
            assert (before[c] | d.entered) - d.left - d.destroyed == expected[c]
            assert not (d.entered & d.left)
        for uid in objects:
            assert interest.holders(uid) == {c for c in clients if uid in expected[c]}
        for c in clients:  # and the grid's ranges obey the radius rule
            for grid in interest._grids:
                f = objects.get(grid._focus[c] or -1)
                assert f is not None or not grid.in_range[c]
                for uid in grid.in_range[c]:
                    o = objects[uid]
                    assert f is not None and math.hypot(o.x - f.x, o.y - f.y) <= 13 + 1e-9


def test_destroying_a_clients_focus_empties_its_grid_view() -> None:
    objects = {1: Unit(0, 0), 2: Unit(1, 0)}
    interest = make(Grid(10), objects, {10: {"focus": 1}})
    interest.remove_object(1)
    assert interest.update() == {10: Delta(left=frozenset({2}), destroyed=frozenset({1}))}
