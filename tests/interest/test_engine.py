"""Interest management through the engine (issue 11, protocol §16): the in-memory transport
and a stepped clock, several clients, exact ticks. Policies decide what each client holds;
entering arrives whole, leaving despawns, owner-only fields reach only the owner, a hidden
uid answers an RPC like a missing one, and without interest nothing changes on the wire."""

from __future__ import annotations

from typing import Any

import pytest

from reverb import ReverbContext, ReverbObject, ReverbSide, RpcError, expose
from reverb.memory import MemoryClient, MemoryNetwork
from reverb.proto import messages as m
from reverb.proto.session import FEATURES
from reverb.replication.interest import Grid, Nobody, OwnerOnly, Team

TICK = 1 / 30


class Unit(ReverbObject):
    __reverb_owner_fields__ = ("gold",)
    __reverb_server_fields__ = ("brain",)

    def __init__(
        self,
        x: float = 0.0,
        y: float = 0.0,
        *,
        team: Any = None,
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        self.x = x
        self.y = y
        self.hp = 10
        self.gold = 0
        self.brain = "idle"
        self.team = team
        super().__init__(
            x, y, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose(anyone=True)
    def poke(self) -> int:
        return 1


class Rock(ReverbObject):
    def __init__(
        self,
        x: float = 0.0,
        y: float = 0.0,
        *,
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        self.x = x
        self.y = y
        super().__init__(
            x, y, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


class Game:
    def __init__(self, n: int = 2, features: tuple[str, ...] = FEATURES) -> None:
        self.server = ReverbContext(ReverbSide.SERVER)
        for cls in (Unit, Rock):
            self.server.register(cls)
        self.net = MemoryNetwork(self.server)
        self.contexts: list[ReverbContext] = []
        self.logs: list[list[tuple[Any, ...]]] = []
        self.clients = [self.join(features) for _ in range(n)]
        self.net.step(TICK)

    def join(self, features: tuple[str, ...] = FEATURES) -> MemoryClient:
        ctx = ReverbContext()
        for cls in (Unit, Rock):
            ctx.register(cls)
        log: list[tuple[Any, ...]] = []
        for name in ("object_spawned", "object_despawned"):
            ctx.client_events.on_event(name)(lambda *a, _n=name, _l=log: _l.append((_n, *a)))
        self.contexts.append(ctx)
        self.logs.append(log)
        return self.net.connect(ctx, features=features)

    def member(self, i: int) -> int:
        member = self.clients[i].member
        assert member is not None
        return member

    def unit(self, *args: Any, **kwargs: Any) -> Unit:
        with self.server.activate():
            return Unit(*args, **kwargs)

    def rock(self, x: float, y: float) -> Rock:
        with self.server.activate():
            return Rock(x, y)

    def held(self, i: int) -> set[int]:
        return set(self.contexts[i].objects)

    def step(self) -> None:
        self.net.step(TICK)


def test_without_interest_every_client_shares_one_view() -> None:
    game = Game(3)
    game.rock(1, 1)
    game.step()
    assert not game.server.world.filtering
    assert len(game.server.world._views) == 1


def test_hide_from_beats_the_policy_and_show_to_beats_nobody() -> None:
    game = Game(2)
    a, b = game.member(0), game.member(1)
    u = game.unit(1, 1)
    game.step()
    assert game.held(0) == game.held(1) == {u.uid}
    u.hide_from(a)
    game.step()
    assert game.held(0) == set() and game.held(1) == {u.uid}
    assert game.logs[0][-1] == ("object_despawned", game.logs[0][0][1], "left_view")
    u.show_to(a)  # hide_from still wins
    game.step()
    assert game.held(0) == set()
    game.server.interest.reset(u.uid, a)
    game.server.set_interest(Nobody())
    game.step()
    assert game.held(0) == game.held(1) == set()
    u.show_to(b)
    game.step()
    assert game.held(0) == set() and game.held(1) == {u.uid}


def test_an_object_entering_view_arrives_whole_and_reentered() -> None:
    game = Game(2)
    a = game.member(0)
    u = game.unit(1, 1)
    u.brain = "attack"
    game.step()
    first = game.contexts[0].objects[u.uid]
    u.hide_from(a)
    game.step()
    u.x, u.hp = 50.0, 3  # changes while hidden
    game.step()
    game.server.interest.reset(u.uid, a)
    game.step()
    replica = game.contexts[0].objects[u.uid]
    assert replica is not first  # a fresh spawn
    assert (replica.x, replica.hp) == (50.0, 3)
    assert game.logs[0][-1] == ("object_spawned", replica, True)
    assert replica.brain == "idle"  # server-only: never sent (the constructor's value)


def test_leaving_view_does_not_run_on_destroy_and_destroy_reaches_only_holders() -> None:
    game = Game(2)
    a = game.member(0)
    destroyed: list[int] = []
    Unit.on_destroy_from_client = lambda self: destroyed.append(self.uid)  # type: ignore[method-assign]
    try:
        u = game.unit(1, 1)
        game.step()
        u.hide_from(a)
        game.step()
        assert destroyed == []  # left the view: not destroyed
        before = list(game.logs[0])
        u.destroy()
        game.step()
        assert game.logs[0] == before  # A could not see it: learns nothing
        assert destroyed == [u.uid]  # B held it
        assert game.logs[1][-1][2] == "destroyed"
    finally:
        del Unit.on_destroy_from_client


def test_a_joiner_full_sync_lists_only_what_it_sees() -> None:
    game = Game(1)
    game.server.set_interest(Team())
    game.unit(1, 1, team="red")
    blue = game.unit(2, 2, team="blue")
    neutral = game.rock(3, 3)
    game.step()
    assert game.held(0) == {neutral.uid}  # no groups: only the unassigned
    joining = game.join()
    game.net.step(0)  # the handshake
    assert joining.member is not None
    game.server.set_groups(joining.member, ["blue"])
    game.step()
    assert set(game.contexts[1].objects) == {blue.uid, neutral.uid}


def test_peers_with_equal_visible_sets_share_one_view() -> None:
    game = Game(4)
    game.server.set_interest(Team())
    members = [game.member(i) for i in range(4)]
    for member, team in zip(members, ["red", "red", "blue", "blue"], strict=True):
        game.server.set_groups(member, [team])
    game.unit(1, 1, team="red")
    game.unit(2, 2, team="blue")
    game.step()
    game.step()
    views = game.server.world._views
    assert sorted(sorted(v.members) for v in views) == [members[:2], members[2:]]
    assert game.held(0) == game.held(1) != game.held(2) == game.held(3)


def test_grid_edges_and_hysteresis_through_the_world() -> None:
    game = Game(1)
    game.server.set_interest(Grid(10.0, margin=2.0))
    a = game.member(0)
    me = game.rock(0, 0)
    other = game.rock(9.9, 0)
    far = game.rock(10.5, 0)
    game.server.set_focus(a, me)
    game.step()
    assert game.held(0) == {me.uid, other.uid}
    other.x = 11.5  # beyond radius, within radius + margin: kept
    game.step()
    assert other.uid in game.held(0)
    other.x = 12.5  # beyond radius + margin: leaves
    game.step()
    assert other.uid not in game.held(0)
    other.x = 11.0  # inside the margin again: not re-entered until within the radius
    game.step()
    assert other.uid not in game.held(0)
    far.x = 9.0
    game.step()
    assert far.uid in game.held(0)
    assert game.contexts[0].objects[far.uid].x == 9.0
    me.x = 100.0  # the focus moves away: everything else leaves
    game.step()
    assert game.held(0) == {me.uid}


def test_composition_grid_or_owner_only() -> None:
    game = Game(2)
    game.server.set_interest(Grid(5.0) | OwnerOnly())
    a, b = game.member(0), game.member(1)
    ma = game.unit(0, 0, belonging_membership=a)
    mb = game.unit(100, 0, belonging_membership=b)
    game.server.set_focus(a, ma)
    game.server.set_focus(b, mb)
    mine_far = game.unit(500, 500, belonging_membership=a)
    game.step()
    assert game.held(0) == {ma.uid, mine_far.uid}
    assert game.held(1) == {mb.uid}
    mine_far.belonging_membership = b  # ownership moves: it leaves A and enters B
    game.step()
    assert game.held(0) == {ma.uid}
    assert game.held(1) == {mb.uid, mine_far.uid}


def test_owner_only_fields_reach_only_the_owner() -> None:
    game = Game(3)
    a = game.member(0)
    u = game.unit(1, 1, belonging_membership=a)
    u.gold = 7
    game.step()
    assert game.contexts[0].objects[u.uid].gold == 7
    for i in (1, 2):
        assert game.contexts[i].objects[u.uid].gold == 0  # the constructor's, never sent
    u.gold, u.hp = 9, 4
    game.step()
    assert game.contexts[0].objects[u.uid].gold == 9
    for i in (1, 2):
        replica = game.contexts[i].objects[u.uid]
        assert replica.hp == 4 and replica.gold == 0
    u.gold = 11  # only an owner-only field changes: the others get nothing at all
    game.step()
    assert game.contexts[0].objects[u.uid].gold == 11
    # the two non-owners still share a view; the owner has its own
    views = game.server.world._views
    assert sorted(len(v.members) for v in views) == [1, 2]


def test_ownership_change_gives_the_new_owner_every_owner_field() -> None:
    game = Game(2)
    a, b = game.member(0), game.member(1)
    u = game.unit(1, 1, belonging_membership=a)
    u.gold = 5
    game.step()
    assert game.contexts[1].objects[u.uid].gold == 0
    u.belonging_membership = b
    game.step()
    assert game.contexts[1].objects[u.uid].gold == 5  # never had it: sent whole
    assert game.contexts[0].objects[u.uid].gold == 5  # kept what it was entitled to
    u.gold = 6
    game.step()
    assert game.contexts[1].objects[u.uid].gold == 6
    assert game.contexts[0].objects[u.uid].gold == 5  # no more


def test_an_rpc_on_a_hidden_uid_answers_like_a_missing_one() -> None:
    game = Game(2)
    a = game.member(0)
    u = game.unit(1, 1)
    game.step()
    replica = game.contexts[0].objects[u.uid]
    u.hide_from(a)
    game.step()
    world = game.server.world
    hidden = world.call(a, m.Rpc(id=1, uid=u.uid, method="poke", args=[]))
    missing = world.call(a, m.Rpc(id=1, uid=9999, method="poke", args=[]))
    assert isinstance(hidden, m.RpcErrorReply) and isinstance(missing, m.RpcErrorReply)
    assert hidden.code == missing.code == "unknown_object"
    assert m.encode(hidden) == m.encode(missing).replace(b"9999", b"%d" % u.uid)
    assert replica._reverb_ctx is None  # it left the client's world
    future = game.clients[0].call(u.uid, "poke", [])
    game.step()
    with pytest.raises(RpcError) as info:
        future.result(0)
    assert info.value.code == "unknown_object"
    assert world.call(game.member(1), m.Rpc(id=2, uid=u.uid, method="poke", args=[])) == (
        m.RpcResult(id=2, value=1)
    )


def test_protocol_1_and_interest_peers_get_the_same_bytes_when_all_is_visible() -> None:
    game = Game(0)
    plain = game.join(features=())
    reasons = game.join(features=("interest",))
    game.net.step(TICK)
    got: dict[int, list[bytes]] = {}
    world = game.server.world
    real_tick = world.tick

    def spy(now: float) -> Any:
        out = real_tick(now)
        for members, frame in out:
            for member in members:
                got.setdefault(member, []).append(m.encode(frame))
        return out

    world.tick = spy  # type: ignore[method-assign]
    u = game.unit(1, 1)
    game.step()
    u.x = 3.0
    game.step()
    u.destroy()
    game.step()
    assert plain.member is not None and reasons.member is not None
    assert got[plain.member] == got[reasons.member]
    assert len(got[plain.member]) == 3
    assert b'"left"' not in b"".join(got[plain.member])


def test_left_is_sent_only_to_interest_peers() -> None:
    game = Game(0)
    plain = game.join(features=())
    reasons = game.join(features=("interest",))
    game.net.step(TICK)
    u = game.unit(1, 1)
    game.step()
    frames: list[tuple[tuple[int, ...], bytes]] = []
    world = game.server.world
    real_tick = world.tick

    def spy(now: float) -> Any:
        out = real_tick(now)
        frames.extend((members, m.encode(frame)) for members, frame in out)
        return out

    world.tick = spy  # type: ignore[method-assign]
    assert plain.member is not None and reasons.member is not None
    u.hide_from(plain.member)
    u.hide_from(reasons.member)
    game.step()
    by_member = {member: body for members, body in frames for member in members}
    assert b'"left":[%d]' % u.uid in by_member[reasons.member]
    assert b'"left"' not in by_member[plain.member]
    assert game.logs[0][-1][2] == "destroyed"  # protocol 1: the only safe assumption
    assert game.logs[1][-1][2] == "left_view"


@pytest.mark.parametrize("seed", range(6))
def test_random_play_every_client_holds_exactly_what_it_sees(seed: int) -> None:
    """Random moves, teams, owners, overrides, spawns and destructions under
    ``(Grid(20) & Team()) | OwnerOnly()``: after every tick each client holds exactly its
    visible set, with the server's current values (owner-only fields for the owner only)."""
    import random

    rng = random.Random(seed)
    game = Game(0)
    for i in range(4):
        game.join(features=FEATURES if i % 2 else ())
    game.net.step(TICK)
    members = [ctx.connection.member for ctx in game.contexts]
    game.server.set_interest((Grid(20.0) & Team()) | OwnerOnly())
    teams = ["red", "blue", None]
    units: list[Unit] = []
    for member in members:
        focus = game.unit(rng.uniform(0, 60), rng.uniform(0, 60), belonging_membership=member)
        units.append(focus)
        game.server.set_focus(member, focus)
        game.server.set_groups(member, [rng.choice(teams[:2])])
    for _ in range(60):
        for _ in range(rng.randint(0, 6)):
            op = rng.random()
            live = [u for u in units if u.uid is not None and u._reverb_ctx is not None]
            if op < 0.25 or not live:
                units.append(
                    game.unit(rng.uniform(0, 60), rng.uniform(0, 60), team=rng.choice(teams))
                )
            elif op < 0.55:
                u = rng.choice(live)
                u.x = min(60.0, max(0.0, u.x + rng.uniform(-15, 15)))
                u.hp = rng.randint(0, 100)
            elif op < 0.65:
                rng.choice(live).team = rng.choice(teams)
            elif op < 0.72:
                rng.choice(live).belonging_membership = rng.choice([*members, None])
            elif op < 0.8:
                rng.choice(live).gold = rng.randint(0, 100)
            elif op < 0.86:
                u, member = rng.choice(live), rng.choice(members)
                rng.choice([u.hide_from, u.show_to])(member)
            elif op < 0.9:
                game.server.interest.reset(rng.choice(live).uid, rng.choice(members))
            elif op < 0.94:
                game.server.set_groups(rng.choice(members), [rng.choice(teams[:2])])
            else:
                victim = rng.choice(live)
                if victim not in units[: len(members)]:  # keep the foci
                    victim.destroy()
        game.step()
        interest = game.server.interest
        objects = game.server.world.objects
        for ctx, member in zip(game.contexts, members, strict=True):
            assert set(ctx.objects) == set(interest.visible(member))
            for uid, replica in ctx.objects.items():
                obj = objects[uid]
                assert (replica.x, replica.hp, replica.team) == (obj.x, obj.hp, obj.team)
                assert replica.belonging_membership == obj.belonging_membership
                if obj.belonging_membership == member:
                    assert replica.gold == obj.gold


def test_a_call_right_after_a_spawn_is_decided_by_the_policy_now() -> None:
    """An object added since the last tick is not yet in anyone's visible set: a call on it
    gets the answer the next tick will give (conformance 8.2.x call right after spawn)."""
    game = Game(2)
    a, b = game.member(0), game.member(1)
    game.server.set_interest(OwnerOnly())
    world = game.server.world
    u = game.unit(1, 1, belonging_membership=a)
    assert world.call(a, m.Rpc(id=1, uid=u.uid, method="poke", args=[])) == m.RpcResult(1, 1)
    refused = world.call(b, m.Rpc(id=1, uid=u.uid, method="poke", args=[]))
    assert isinstance(refused, m.RpcErrorReply) and refused.code == "unknown_object"


def test_overrides_for_unknown_clients_or_objects_raise_invalid_state() -> None:
    from reverb import InvalidState

    game = Game(1)
    u = game.rock(1, 1)
    with pytest.raises(InvalidState, match="no connected client"):
        u.hide_from(12345)
    with pytest.raises(InvalidState, match="no object"):
        game.server.world.show_to(999, game.member(0))


@pytest.mark.parametrize("seed", range(3))
def test_random_walks_every_client_holds_the_brute_force_view(seed: int) -> None:
    """Many objects wander in small steps every tick (as in a game: the grid's bulk path,
    its cell plans reused and made again) under ``Grid(12)``: after every tick each client
    holds exactly what a brute-force computation says it sees (enter within the radius,
    leave beyond radius + margin), with the server's current positions."""
    import math
    import random

    rng = random.Random(seed)
    game = Game(0)
    for i in range(6):
        game.join(features=FEATURES if i % 2 else ())
    game.net.step(TICK)
    members = [ctx.connection.member for ctx in game.contexts]
    r, margin = 12.0, 1.2
    game.server.set_interest(Grid(r, margin=margin))
    rocks = [game.rock(rng.uniform(0, 70), rng.uniform(0, 70)) for _ in range(160)]
    foci = {member: rocks[3 * i] for i, member in enumerate(members)}
    for member, rock in foci.items():
        game.server.set_focus(member, rock)
    expected: dict[int, set[int]] = {member: set() for member in members}
    for _ in range(90):
        for rock in rocks:
            rock.x = min(70.0, max(0.0, rock.x + rng.uniform(-0.6, 0.6)))
            rock.y = min(70.0, max(0.0, rock.y + rng.uniform(-0.6, 0.6)))
        game.step()
        for member, focus in foci.items():
            held = expected[member]
            now = set()
            for rock in rocks:
                d = math.hypot(rock.x - focus.x, rock.y - focus.y)
                if d <= r or (d <= r + margin and rock.uid in held):
                    now.add(rock.uid)
            expected[member] = now
        for ctx, member in zip(game.contexts, members, strict=True):
            assert set(ctx.objects) == expected[member]
            for uid, replica in ctx.objects.items():
                rock = game.server.world.objects[uid]
                assert (replica.x, replica.y) == (rock.x, rock.y)
