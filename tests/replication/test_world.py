"""reverb/replication/world.py: the server's world (sync, RPC) and the client's replica table."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from reverb import ReverbObject, RpcError, expose, rpc_caller
from reverb.errors import EncodeError, InvalidState, RemoteProtocolError
from reverb.proto import messages as m
from reverb.replication.types import TypeRegistry
from reverb.replication.world import ClientWorld, Despawned, ServerWorld, Spawned


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
        super().__init__(
            x, y, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )
        self.x = x
        self.y = y
        self._runs: list[str] = []  # private: never replicated

    @expose
    def move(self, dx: int, dy: int = 0) -> tuple[int, int]:
        self._runs.append("move")
        self.x += dx
        self.y += dy
        return (self.x, self.y)

    @expose(anyone=True)
    def whoami(self) -> int | None:
        self._runs.append("whoami")
        return rpc_caller()

    @expose(anyone=True)
    def refuse(self) -> None:
        self._runs.append("refuse")
        raise RpcError("not now")

    @expose(anyone=True)
    def crash(self) -> float:
        self._runs.append("crash")
        return 1 / 0

    @expose(anyone=True)
    def odd(self) -> set[int]:
        self._runs.append("odd")
        return {1}

    def internal(self) -> None:
        self._runs.append("internal")

    def _secret(self) -> None:
        self._runs.append("_secret")


class Crate(ReverbObject):
    __reverb_fields__ = ("label",)

    def __init__(
        self,
        *,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


class Fragile(ReverbObject):
    """A type whose constructor refuses some arguments."""

    def __init__(
        self,
        n: int,
        *,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        if n < 0:
            raise ValueError("negative")
        super().__init__(
            n, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


def registry() -> TypeRegistry:
    types = TypeRegistry()
    for cls in (Unit, Crate, Fragile):
        types.register(cls)
    return types


def spawn(world: ServerWorld, *args: Any, owner: int | None = None) -> Unit:
    obj = Unit(*args, belonging_membership=owner)
    world.add(obj, obj._reverb_args)
    return obj


def synced_world(*members: int) -> ServerWorld:
    world = ServerWorld(registry())
    for member in members:
        world.peer_joined(member)
    world.tick(0.0)
    return world


def only_sync(out: list[tuple[tuple[int, ...], m.Message]], members: tuple[int, ...]) -> m.Sync:
    assert [peers for peers, _ in out] == [members], out
    message = out[0][1]
    assert isinstance(message, m.Sync)
    return message


def nested(levels: int, inner: Any = 1) -> Any:
    for _ in range(levels):
        inner = [inner]
    return inner


# -- ServerWorld: objects and UIDs (§7.1) -----------------------------------------------------


def test_uids_start_at_1_and_increase() -> None:
    world = ServerWorld(registry())
    assert [spawn(world).uid for _ in range(3)] == [1, 2, 3]
    assert set(world.objects) == {1, 2, 3}


def test_uids_are_never_reused_after_remove() -> None:
    world = ServerWorld(registry())
    first, second = spawn(world), spawn(world)
    assert world.remove(2) is second
    assert world.remove(1) is first
    assert spawn(world).uid == 3
    assert set(world.objects) == {3}


def test_removing_an_unknown_uid_raises() -> None:
    with pytest.raises(InvalidState):
        ServerWorld(registry()).remove(1)


def test_add_refuses_unencodable_constructor_arguments() -> None:
    world = ServerWorld(registry())
    obj = Unit({1}, 0)
    with pytest.raises(EncodeError, match="Unit uid=1 constructor arguments"):
        world.add(obj, obj._reverb_args)


def test_add_refuses_an_unregistered_type() -> None:
    with pytest.raises(Exception, match="not registered"):
        ServerWorld(TypeRegistry()).add(Unit(), ())


# -- ServerWorld: sync (§7.2, §7.3) -----------------------------------------------------------


def test_no_peers_no_sync() -> None:
    world = ServerWorld(registry())
    spawn(world)
    assert world.tick(0.0) == []
    assert world.tick_count == 1


def test_first_tick_gives_joining_peers_a_full_sync() -> None:
    world = ServerWorld(registry())
    spawn(world, 10, 20, owner=7)
    spawn(world, (1, 2), "s")
    world.peer_joined(7)
    world.peer_joined(3)
    assert world.peers == {3, 7}
    sync = only_sync(world.tick(0.0), (3, 7))
    assert sync == m.Sync(
        tick=1,
        full=True,
        final=True,
        spawn=(
            m.SpawnEntry(uid=1, type="Unit", owner=7, args=[10, 20], fields={"x": 10, "y": 20}),
            m.SpawnEntry(
                uid=2, type="Unit", owner=None, args=[[1, 2], "s"], fields={"x": [1, 2], "y": "s"}
            ),
        ),
    )


def test_full_sync_of_an_empty_world_is_still_sent() -> None:
    world = ServerWorld(registry())
    world.peer_joined(1)
    assert only_sync(world.tick(0.0), (1,)) == m.Sync(tick=1, full=True, final=True)


def test_no_sync_when_nothing_changed() -> None:
    world = synced_world(1)
    spawn(world)
    world.tick(1.0)
    assert world.tick(2.0) == []
    assert world.tick(3.0) == []


def test_delta_holds_only_changed_fields() -> None:
    world = ServerWorld(registry())
    unit = spawn(world, 1, 2)
    world.peer_joined(1)
    world.tick(0.0)
    unit.x = 5
    sync = only_sync(world.tick(1.0), (1,))
    assert sync == m.Sync(
        tick=2, full=False, final=True, update=(m.UpdateEntry(uid=1, fields={"x": 5}),)
    )


def test_new_attribute_is_a_change() -> None:
    world = ServerWorld(registry())
    unit = spawn(world)
    world.peer_joined(1)
    world.tick(0.0)
    unit.hp = None  # type: ignore[attr-defined]
    assert only_sync(world.tick(1.0), (1,)).update == (m.UpdateEntry(1, {"hp": None}),)


@pytest.mark.parametrize(("old", "new"), [(1, True), (True, 1), (0, False), (1, 1.0), (0.0, 0)])
def test_a_type_change_counts_as_a_change(old: Any, new: Any) -> None:
    world = ServerWorld(registry())
    unit = spawn(world, old)
    world.peer_joined(1)
    world.tick(0.0)
    unit.x = new
    update = only_sync(world.tick(1.0), (1,)).update
    assert update == (m.UpdateEntry(1, {"x": new}),)
    assert type(update[0].fields["x"]) is type(new)


@pytest.mark.parametrize(
    ("old", "new"), [([1], [True]), ({"a": 1}, {"a": 1.0}), ([[0]], [[False]])]
)
def test_a_nested_type_change_counts_as_a_change(old: Any, new: Any) -> None:
    # The wire value differs ([1] is not [true]): a client holding [1] must be told.
    world = ServerWorld(registry())
    unit = spawn(world, old)
    world.peer_joined(1)
    world.tick(0.0)
    unit.x = new
    assert only_sync(world.tick(1.0), (1,)).update == (m.UpdateEntry(1, {"x": new}),)


def test_tuple_and_list_with_equal_items_are_no_change() -> None:
    world = ServerWorld(registry())
    unit = spawn(world, [1, 2])
    world.peer_joined(1)
    world.tick(0.0)
    unit.x = (1, 2)  # both are [1,2] on the wire
    assert world.tick(1.0) == []


def test_owner_change_is_an_update_with_owner() -> None:
    world = ServerWorld(registry())
    unit = spawn(world, owner=None)
    world.peer_joined(1)
    world.tick(0.0)
    unit.belonging_membership = 4
    assert only_sync(world.tick(1.0), (1,)).update == (m.UpdateEntry(1, {}, owner=4),)
    unit.belonging_membership = None
    unit.x = 2
    assert only_sync(world.tick(2.0), (1,)).update == (m.UpdateEntry(1, {"x": 2}, owner=None),)


def test_spawn_and_despawn_in_deltas() -> None:
    world = synced_world(1)
    unit = spawn(world, 3)
    sync = only_sync(world.tick(1.0), (1,))
    assert [e.uid for e in sync.spawn] == [unit.uid] and not sync.full
    world.remove(unit.uid)  # type: ignore[arg-type]
    sync = only_sync(world.tick(2.0), (1,))
    assert sync == m.Sync(tick=3, full=False, final=True, despawn=(1,))
    assert world.tick(3.0) == []


def test_object_spawned_and_removed_within_a_tick_is_never_sent() -> None:
    world = synced_world(1)
    unit = spawn(world)
    world.remove(unit.uid)  # type: ignore[arg-type]
    assert world.tick(1.0) == []


def test_late_joiner_gets_full_while_others_get_delta_in_the_same_tick() -> None:
    world = ServerWorld(registry())
    unit = spawn(world, 1)
    world.peer_joined(1)
    world.tick(0.0)
    unit.x = 2
    world.peer_joined(2)
    out = world.tick(1.0)
    assert [peers for peers, _ in out] == [(1,), (2,)]
    delta, full = out[0][1], out[1][1]
    assert delta == m.Sync(tick=2, full=False, final=True, update=(m.UpdateEntry(1, {"x": 2}),))
    assert full == m.Sync(
        tick=2,
        full=True,
        final=True,
        spawn=(m.SpawnEntry(1, "Unit", None, [1, 0], {"x": 2, "y": 0}),),
    )
    unit.x = 3
    assert [peers for peers, _ in world.tick(2.0)] == [(1, 2)]


def test_peer_left_gets_nothing() -> None:
    world = synced_world(1, 2)
    world.peer_joined(3)
    world.peer_left(2)
    world.peer_left(3)
    assert world.peers == {1}
    spawn(world)
    assert [peers for peers, _ in world.tick(1.0)] == [(1,)]


def test_ticks_strictly_increase() -> None:
    world = synced_world(1)
    unit = spawn(world)
    ticks = []
    for i in range(4):
        unit.x = i + 1
        ticks.append(only_sync(world.tick(float(i)), (1,)).tick)
    assert ticks == [2, 3, 4, 5]


def test_declared_fields_only() -> None:
    world = ServerWorld(registry())
    crate = Crate()
    crate.label = "ammo"  # type: ignore[attr-defined]
    crate.other = 1  # type: ignore[attr-defined]
    world.add(crate, ())
    world.peer_joined(1)
    assert only_sync(world.tick(0.0), (1,)).spawn[0].fields == {"label": "ammo"}


def test_declared_field_not_set_raises_naming_it_in_strict_mode() -> None:
    world = ServerWorld(registry())
    world.strict = True
    world.add(Crate(), ())
    world.peer_joined(1)
    with pytest.raises(EncodeError, match="Crate uid=1: declared field 'label'"):
        world.tick(0.0)


def test_unencodable_value_raises_at_tick_naming_class_uid_and_attribute_in_strict_mode() -> None:
    world = synced_world(1)
    world.strict = True
    spawn(world)
    unit = spawn(world)
    unit.y = {1, 2}
    with pytest.raises(EncodeError) as info:
        world.tick(1.0)
    assert "Unit uid=2 attribute 'y'" in str(info.value)


@pytest.mark.parametrize("where", ["field", "constructor argument", "update"])
def test_what_tick_sends_is_valid_payload(where: str) -> None:
    # §3.4 bounds the nesting of the whole sync message, in which a field value sits at
    # level 5 (sync > spawn > entry > fields > value). Whatever tick returns must decode;
    # a value nested too deep for that is an EncodeError on the server, not a 1007 at the client.
    ok, too_deep = nested(27, []), nested(28, [])
    for value, fits in ((ok, True), (too_deep, False)):
        world = synced_world(1)
        try:
            if where == "constructor argument":
                spawn(world, value)
            elif where == "field":
                spawn(world).y = value
            else:
                unit = spawn(world)
                world.tick(1.0)
                unit.y = value
            out = world.tick(2.0)
        except EncodeError as exc:
            assert not fits, exc
            continue
        for _, message in out:
            m.decode(m.encode(message))  # raises RemoteProtocolError if invalid
        sent = repr([message for _, message in out])
        assert fits == (repr(value) in sent), f"a {where} nested too deep was sent"


def test_server_world_to_client_world_round_trip() -> None:
    server = ServerWorld(registry())
    client = ClientWorld(registry(), bind=lambda obj: None)
    a, b = spawn(server, 1, owner=7), spawn(server, 2)
    server.peer_joined(7)

    def deliver() -> None:
        for _, message in server.tick(0.0):
            decoded = m.decode(m.encode(message))
            assert isinstance(decoded, m.Sync)
            client.apply(decoded)

    def view(objects: dict[int, Any]) -> dict[int, Any]:
        return {uid: (type(o), o.belonging_membership, o.x, o.y) for uid, o in objects.items()}

    deliver()
    assert view(client.objects) == view(server.objects)
    a.x, b.belonging_membership = (5, 6), 7
    c = spawn(server, "c")
    server.remove(a.uid)  # type: ignore[arg-type]
    deliver()
    c.y = {"k": [1.5, None]}
    deliver()
    assert view(client.objects) == {2: (Unit, 7, 2, 0), 3: (Unit, None, "c", {"k": [1.5, None]})}
    assert view(client.objects) == view(server.objects)


# -- ServerWorld.call (§8) ----------------------------------------------------------------------


def call(world: ServerWorld, member: int, uid: int, method: str, *args: Any) -> m.Message:
    return world.call(member, m.Rpc(id=11, uid=uid, method=method, args=list(args)))


def assert_refused(reply: m.Message, code: str, *words: str) -> None:
    assert isinstance(reply, m.RpcErrorReply), reply
    assert reply.id == 11
    assert reply.code == code, reply
    for word in words:
        assert word in reply.message


def test_owner_call_runs_and_returns_a_wire_value() -> None:
    world = ServerWorld(registry())
    unit = spawn(world, 1, 1, owner=5)
    assert call(world, 5, 1, "move", 2, 3) == m.RpcResult(id=11, value=[3, 4])
    assert unit._runs == ["move"]


def test_unknown_object() -> None:
    world = ServerWorld(registry())
    spawn(world)
    assert_refused(call(world, 1, 99, "move", 1), "unknown_object", "99")
    world.remove(1)
    assert_refused(call(world, 1, 1, "move", 1), "unknown_object")


@pytest.mark.parametrize(
    "method", ["_secret", "__init__", "__class__", "internal", "destroy", "is_owner", "nope"]
)
def test_not_exposed_never_runs(method: str) -> None:
    world = ServerWorld(registry())
    unit = spawn(world, owner=1)
    assert_refused(call(world, 1, 1, method), "not_exposed", "Unit")
    assert unit._runs == []
    assert unit.uid == 1 and unit.x == 0


def test_not_exposed_message_is_bounded() -> None:
    world = ServerWorld(registry())
    spawn(world, owner=1)
    reply = call(world, 1, 1, "x" * 10000)
    assert_refused(reply, "not_exposed")
    assert len(reply.message) < 200  # type: ignore[attr-defined]


def test_owner_only_by_default() -> None:
    world = ServerWorld(registry())
    unit = spawn(world, owner=1)
    assert_refused(call(world, 2, 1, "move", 1), "not_owner", "Unit.move")
    unowned = spawn(world, owner=None)
    assert_refused(call(world, 2, 2, "move", 1), "not_owner")
    assert unit._runs == [] and unowned._runs == []


def test_anyone_may_call_an_anyone_method() -> None:
    world = ServerWorld(registry())
    spawn(world, owner=1)
    assert call(world, 2, 1, "whoami") == m.RpcResult(id=11, value=2)


@pytest.mark.parametrize("args", [(), (1, 2, 3), (1, 2, 3, 4)])
def test_bad_arguments_never_run(args: tuple[int, ...]) -> None:
    world = ServerWorld(registry())
    unit = spawn(world, owner=1)
    assert_refused(call(world, 1, 1, "move", *args), "bad_arguments", "Unit.move")
    assert unit._runs == []


def test_checks_run_in_the_order_of_the_spec() -> None:
    world = ServerWorld(registry())
    spawn(world, owner=1)
    assert_refused(call(world, 2, 1, "internal", 1, 2, 3), "not_exposed")
    assert_refused(call(world, 2, 1, "move", 1, 2, 3), "not_owner")


def test_rejected_passes_the_message() -> None:
    world = ServerWorld(registry())
    unit = spawn(world)
    reply = call(world, 3, 1, "refuse")
    assert reply == m.RpcErrorReply(id=11, code="rejected", message="not now")
    assert unit._runs == ["refuse"]


def test_handler_error_names_no_internals(caplog: pytest.LogCaptureFixture) -> None:
    world = ServerWorld(registry())
    spawn(world)
    with caplog.at_level(logging.ERROR, logger="reverb"):
        reply = call(world, 3, 1, "crash")
    assert_refused(reply, "handler_error", "Unit.crash")
    text = reply.message  # type: ignore[attr-defined]
    assert "ZeroDivision" not in text and "division" not in text and "Traceback" not in text
    assert "ZeroDivisionError" in caplog.text  # kept for the server's log


def test_bad_return(caplog: pytest.LogCaptureFixture) -> None:
    world = ServerWorld(registry())
    unit = spawn(world)
    with caplog.at_level(logging.ERROR, logger="reverb"):
        assert_refused(call(world, 3, 1, "odd"), "bad_return", "Unit.odd")
    assert unit._runs == ["odd"]
    assert "set" in caplog.text


def test_rpc_caller_is_the_member_inside_and_none_outside() -> None:
    world = ServerWorld(registry())
    spawn(world, owner=1)
    assert rpc_caller() is None
    assert call(world, 42, 1, "whoami") == m.RpcResult(id=11, value=42)
    assert rpc_caller() is None
    call(world, 42, 1, "crash")
    call(world, 42, 1, "refuse")
    assert rpc_caller() is None


# -- ClientWorld (§7.3-§7.6) ------------------------------------------------------------------


def entry(
    uid: int, x: Any = 0, *, owner: int | None = None, kind: str = "Unit", **fields: Any
) -> m.SpawnEntry:
    return m.SpawnEntry(uid=uid, type=kind, owner=owner, args=[x, 0], fields={"x": x, **fields})


def full(tick: int, *entries: m.SpawnEntry, final: bool = True) -> m.Sync:
    return m.Sync(tick=tick, full=True, final=final, spawn=entries)


def delta(
    tick: int,
    *,
    final: bool = True,
    spawn: tuple[m.SpawnEntry, ...] = (),
    update: tuple[m.UpdateEntry, ...] = (),
    despawn: tuple[int, ...] = (),
) -> m.Sync:
    return m.Sync(tick=tick, full=False, final=final, spawn=spawn, update=update, despawn=despawn)


class Replicas:
    """A ClientWorld with a recording ``bind``."""

    def __init__(self) -> None:
        self.bound: list[Any] = []
        self.world = ClientWorld(registry(), bind=self.bound.append)

    def snapshot(self) -> dict[int, tuple[Any, ...]]:
        return {
            uid: (id(o), o.belonging_membership, dict(vars(o)))
            for uid, o in self.world.objects.items()
        }

    def assert_refused(self, sync: m.Sync, *words: str) -> None:
        """``sync`` is a protocol error (1002) and the table is as it was."""
        before, tick = self.snapshot(), self.world.tick
        with pytest.raises(RemoteProtocolError) as info:
            self.world.apply(sync)
        assert info.value.code == 1002
        for word in words:
            assert word in str(info.value)
        assert self.snapshot() == before
        assert self.world.tick == tick


def started(*entries: m.SpawnEntry) -> Replicas:
    replicas = Replicas()
    replicas.world.apply(full(1, *entries))
    return replicas


def test_full_sync_builds_replicas() -> None:
    replicas = Replicas()
    changes = replicas.world.apply(full(5, entry(1, 10, owner=3), entry(2, "a", hp=9)))
    assert changes is not None
    objs = replicas.world.objects
    assert changes == [Spawned(objs[1]), Spawned(objs[2])]
    assert (type(objs[1]), objs[1].uid, objs[1].belonging_membership, objs[1].x) == (Unit, 1, 3, 10)
    assert objs[2].hp == 9 and objs[2].x == "a"
    assert replicas.bound == [objs[1], objs[2]]
    assert replicas.world.tick == 5


def test_deltas_apply_spawns_updates_despawns() -> None:
    replicas = started(entry(1), entry(2))
    first = replicas.world.objects[1]
    changes = replicas.world.apply(
        delta(
            2,
            spawn=(entry(3, 7),),
            update=(m.UpdateEntry(1, {"x": 4}, owner=9), m.UpdateEntry(3, {"y": 1})),
            despawn=(2,),
        )
    )
    objs = replicas.world.objects
    assert set(objs) == {1, 3}
    assert objs[1] is first and (first.x, first.belonging_membership) == (4, 9)
    assert (objs[3].x, objs[3].y) == (7, 1)
    assert [type(c) for c in changes or []] == [Spawned, Despawned]
    replicas.world.apply(delta(3, update=(m.UpdateEntry(1, {}),)))
    assert first.belonging_membership == 9  # absent owner: unchanged
    replicas.world.apply(delta(4, update=(m.UpdateEntry(1, {}, owner=None),)))
    assert first.belonging_membership is None


def test_despawn_of_an_object_spawned_in_the_same_tick() -> None:
    replicas = started()
    changes = replicas.world.apply(delta(2, spawn=(entry(4),), despawn=(4,)))
    assert [type(c) for c in changes or []] == [Spawned, Despawned]
    assert replicas.world.objects == {}


def test_parts_are_buffered_until_final() -> None:
    replicas = started(entry(1))
    assert replicas.world.apply(delta(2, final=False, spawn=(entry(2),))) is None
    assert replicas.world.apply(delta(2, final=False, update=(m.UpdateEntry(1, {"x": 5}),))) is None
    assert set(replicas.world.objects) == {1} and replicas.world.objects[1].x == 0
    assert replicas.world.tick == 1
    changes = replicas.world.apply(delta(2, despawn=(1,)))
    assert set(replicas.world.objects) == {2}
    assert [type(c) for c in changes or []] == [Spawned, Despawned]
    assert replicas.world.tick == 2


def test_full_parts_are_buffered_until_final() -> None:
    replicas = Replicas()
    assert replicas.world.apply(full(1, entry(1), final=False)) is None
    assert replicas.world.objects == {} and replicas.world.tick is None
    replicas.world.apply(full(1, entry(2)))
    assert set(replicas.world.objects) == {1, 2}


def test_parts_of_different_ticks_are_a_protocol_error() -> None:
    replicas = started(entry(1))
    replicas.world.apply(delta(2, final=False, update=(m.UpdateEntry(1, {"x": 5}),)))
    replicas.assert_refused(delta(3, despawn=(1,)), "interleaved")
    replicas.assert_refused(full(2, entry(1)), "interleaved")


def test_first_sync_must_be_full() -> None:
    Replicas().assert_refused(delta(1), "full")


def test_tick_must_increase() -> None:
    replicas = started(entry(1))
    replicas.assert_refused(delta(1, update=(m.UpdateEntry(1, {"x": 2}),)), "tick")
    replicas.assert_refused(delta(0), "tick")
    replicas.assert_refused(full(1), "tick")


def test_update_of_an_unknown_uid() -> None:
    started(entry(1)).assert_refused(delta(2, update=(m.UpdateEntry(9, {"x": 1}),)), "uid 9")


def test_despawn_of_an_unknown_uid() -> None:
    started(entry(1)).assert_refused(delta(2, despawn=(1, 9)), "uid 9")


def test_despawn_of_the_same_uid_twice() -> None:
    started(entry(1)).assert_refused(delta(2, despawn=(1, 1)))


def test_spawn_of_an_existing_uid_in_a_delta() -> None:
    started(entry(1)).assert_refused(delta(2, spawn=(entry(1),)), "uid 1")


def test_spawn_of_the_same_uid_twice_in_one_tick() -> None:
    started().assert_refused(delta(2, spawn=(entry(2), entry(2))), "uid 2")
    Replicas().assert_refused(full(1, entry(2), entry(2)), "uid 2")


def test_spawn_of_an_unregistered_type() -> None:
    started(entry(1)).assert_refused(delta(2, spawn=(entry(2, kind="Dragon"),)), "Dragon")


@pytest.mark.parametrize(
    "name",
    [
        "_x",
        "__class__",
        "uid",
        "belonging_membership",
        "is_owner",
        "move",
        "destroy",
        "not-an-identifier",
        "",
    ],
)
def test_forbidden_field_names(name: str) -> None:
    replicas = started(entry(1))
    bad_spawn = m.SpawnEntry(uid=2, type="Unit", owner=None, args=[0, 0], fields={name: 1})
    replicas.assert_refused(delta(2, spawn=(bad_spawn,)), "not allowed")
    replicas.assert_refused(delta(2, update=(m.UpdateEntry(1, {name: 1}),)), "not allowed")
    Replicas().assert_refused(full(1, bad_spawn), "not allowed")
    assert callable(replicas.world.objects[1].is_owner)


@pytest.mark.parametrize("name", ["_x", "uid", "is_owner"])
def test_forbidden_field_name_on_an_object_spawned_in_the_same_tick(name: str) -> None:
    replicas = started()
    replicas.assert_refused(
        delta(2, spawn=(entry(2),), update=(m.UpdateEntry(2, {name: 1}),)), "not allowed"
    )


def test_an_invalid_last_part_leaves_the_table_unchanged() -> None:
    replicas = started(entry(1))
    replicas.world.apply(delta(2, final=False, update=(m.UpdateEntry(1, {"x": 5}),)))
    replicas.assert_refused(delta(2, despawn=(7,)))
    assert replicas.world.objects[1].x == 0


def test_constructor_failure_is_a_protocol_error(caplog: pytest.LogCaptureFixture) -> None:
    replicas = started()
    bad = m.SpawnEntry(uid=5, type="Fragile", owner=None, args=[-1], fields={})
    with caplog.at_level(logging.ERROR, logger="reverb"):
        replicas.assert_refused(delta(2, spawn=(bad,)), "Fragile uid=5")


def test_constructor_failure_leaves_the_table_unchanged() -> None:
    # "Validate a whole tick before touching the table, so it applies entirely or not at all."
    replicas = started(entry(1))
    good = m.SpawnEntry(uid=4, type="Fragile", owner=None, args=[1], fields={})
    bad = m.SpawnEntry(uid=5, type="Fragile", owner=None, args=[-1], fields={})
    replicas.assert_refused(delta(2, spawn=(good, bad)))
    replicas.assert_refused(full(2, good, bad))


def test_full_sync_updates_in_place_and_drops_unlisted() -> None:
    replicas = started(entry(1, 1), entry(2, 2))
    one, two = replicas.world.objects[1], replicas.world.objects[2]
    changes = replicas.world.apply(full(7, entry(1, 10, owner=4), entry(3, 3)))
    objs = replicas.world.objects
    assert set(objs) == {1, 3}
    assert objs[1] is one and (one.x, one.belonging_membership) == (10, 4)
    assert changes == [Despawned(two), Spawned(objs[3])]
    assert replicas.world.tick == 7


def test_reset_forgets_every_replica() -> None:
    replicas = started(entry(1), entry(2))
    objs = list(replicas.world.objects.values())
    assert replicas.world.reset() == [Despawned(o) for o in objs]
    assert replicas.world.objects == {} and replicas.world.tick is None
    replicas.assert_refused(delta(2))  # a new connection starts from a full sync again
    replicas.world.apply(full(1))


# -- unencodable state (issue 8, decision 7) ---------------------------------------------------


def test_a_withheld_object_despawned_is_despawned_only_where_it_was_sent() -> None:
    world = synced_world(1)
    unit = spawn(world)
    world.tick(1.0)
    unit.x = float("nan")
    world.peer_joined(2)  # joins while the object is withheld: its snapshot lacks it
    out = world.tick(2.0)
    assert [peers for peers, _ in out] == [(2,)]
    full = out[0][1]
    assert isinstance(full, m.Sync) and full.full and full.spawn == ()
    assert [obj for obj, _ in world.sync_errors] == [unit]
    world.remove(1)
    out = world.tick(3.0)
    despawns = {peers: message.despawn for peers, message in out if isinstance(message, m.Sync)}
    assert despawns == {(1,): (1,)}  # peer 2 never had it: nothing to despawn there


def test_a_peer_lacking_a_withheld_object_gets_a_spawn_when_it_recovers() -> None:
    world = synced_world(1)
    unit = spawn(world, 1)
    world.tick(1.0)
    unit.x = {1}
    world.peer_joined(2)
    world.tick(2.0)
    unit.x = 5
    out = dict(world.tick(3.0))
    one, two = out[(1,)], out[(2,)]
    assert isinstance(one, m.Sync) and isinstance(two, m.Sync)
    assert [u.fields for u in one.update] == [{"x": 5}] and one.spawn == ()
    assert [s.fields["x"] for s in two.spawn] == [5] and two.update == ()
    assert world.tick(4.0) == []  # both hold it now: nothing more to send


class Shapes(ReverbObject):
    """Exposed methods of every parameter shape the RPC path's arity check must get right."""

    def __init__(self, uid=None, add_on_init=False, belonging_membership=None):
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def defaults(self, a, b=2, c=3):
        return [a, b, c]

    @expose
    def star(self, a, *rest):
        return [a, *rest]

    @expose
    def keyword_only(self, a, *, must):
        return a  # pragma: no cover - no positional call binds


@pytest.mark.parametrize(
    ("method", "args", "value"),
    [
        ("defaults", (1,), [1, 2, 3]),
        ("defaults", (1, 5), [1, 5, 3]),
        ("defaults", (1, 5, 6), [1, 5, 6]),
        ("defaults", (), None),
        ("defaults", (1, 2, 3, 4), None),
        ("star", (1,), [1]),
        ("star", tuple(range(40)), list(range(40))),
        ("star", (), None),
        ("keyword_only", (1,), None),
        ("keyword_only", (1, 2), None),
    ],
)
def test_arguments_bind_exactly_as_a_python_call_would(
    method: str, args: tuple[int, ...], value: Any
) -> None:
    types = TypeRegistry()
    types.register(Shapes)
    world = ServerWorld(types)
    obj = Shapes(uid=None, belonging_membership=1)
    world.add(obj, ())
    for _ in range(2):  # the second call takes the cached arity
        reply = call(world, 1, obj.uid, method, *args)
        if value is None:
            assert_refused(reply, "bad_arguments", f"Shapes.{method}")
        else:
            assert reply == m.RpcResult(id=11, value=value)
