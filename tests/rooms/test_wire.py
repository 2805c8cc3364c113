"""Rooms on the in-memory transport (protocol §17): exact bytes and orders, no sockets. What a
protocol-1 client receives is unchanged; a "rooms" client's syncs and replies carry its room;
calls never cross rooms; refusals raise."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest

from reverb import (
    HandshakeFailed,
    ReverbContext,
    ReverbObject,
    ReverbSide,
    RoomRefused,
    RpcError,
    expose,
)
from reverb.memory import MemoryNetwork
from reverb.proto import messages as m
from reverb.rooms import JoinRequest, Room, RoomClient

TICK = 1 / 30


class Orb(ReverbObject):
    def __init__(self, x: Any = 0, uid=None, add_on_init=True, belonging_membership=None):  # type: ignore[no-untyped-def]
        self.x = x
        super().__init__(
            x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose(anyone=True)
    def grow(self) -> int:
        self.x += 1
        return int(self.x)


class Duel(Room):
    object_types = (Orb,)
    max_clients = 2

    def on_join(self, client: RoomClient) -> None:
        self.spawn(Orb, 10 * client.member, owner=client.member)


def world() -> tuple[ReverbContext, MemoryNetwork]:
    server = ReverbContext(ReverbSide.SERVER)
    server.register(Orb)
    server.define_room("duel", Duel)
    net = MemoryNetwork(server)
    with server.activate():
        Orb(99)
    return server, net


def client(net: MemoryNetwork, **options: Any) -> tuple[ReverbContext, Any]:
    ctx = ReverbContext()
    ctx.register(Orb)
    return ctx, net.connect(ctx, **options)


def frames_to(net: MemoryNetwork, clt: Any) -> list[bytes]:
    """Every frame body the server has queued for this client since the last call."""
    session = net.server.hub.members[clt.member]
    raw = session.data_to_send()
    out = []
    while raw:
        n = int.from_bytes(raw[:4], "big")
        out.append(raw[4 : 4 + n])
        raw = raw[4 + n :]
    return out


def test_protocol1_bytes_are_unchanged_by_room_types() -> None:
    """The same world with and without room types sends a plain client the same bytes."""
    bodies = []
    for define in (False, True):
        server = ReverbContext(ReverbSide.SERVER)
        server.register(Orb)
        if define:
            server.define_room("duel", Duel)
        net = MemoryNetwork(server)
        with server.activate():
            Orb(5)
        _, clt = client(net, features=())
        net.step(TICK)
        bodies.append([b.replace(b'"member":%d' % clt.member, b"") for b in frames_to(net, clt)])
    assert bodies[0] == bodies[1]
    assert all(b'"room"' not in body for body in bodies[1])


def test_rooms_client_syncs_and_replies_carry_the_room() -> None:
    _, net = world()
    ctx, clt = client(net, rooms=True)
    net.step(TICK)
    assert ctx.objects == {}  # in no room: nothing syncs (§17.2)
    handle = _join(net, clt.join_or_create("duel"))
    net.run(0.2)
    (orb,) = handle.get_all_ro_by_type(Orb)
    assert orb.x == 10 * clt.member and orb.uid == 1  # the room's own uid space
    future = orb.compute_server(orb.grow)
    net.run(0.1)
    assert future.result(0) == 10 * clt.member + 1
    # the default room by id: the server's own world, stamped "default"
    visitor, vclt = client(net, rooms=True)
    _join(net, vclt.join_by_id("default"))
    net.run(0.2)
    assert [o.x for o in visitor.get_all_ro_by_type(Orb)] == [99]


def _join(net: MemoryNetwork, pending: Any) -> Any:
    net.step(TICK)  # the memory client's request resolves as the network delivers it
    return pending.result(0)


def test_a_call_naming_another_room_is_unknown_object_and_does_not_run() -> None:
    _, net = world()
    _, ca = client(net, rooms=True)
    _, cb = client(net, rooms=True)
    _join(net, ca.create("duel"))
    _join(net, cb.create("duel"))
    net.run(0.2)
    room_b = net.server.rooms.matchmaker.room_of(cb.member)
    before = [o.x for o in room_b.objects.values()]
    # uid 1 exists in both rooms (per-room uids): a's call names b's room, sent raw
    answer: Future[Any] = Future()
    ca.hub._calls[50] = answer
    ca.session.send(m.Rpc(id=50, uid=1, method="grow", args=[], room=room_b.room_id), 0.0)
    net.run(0.1)
    with pytest.raises(RpcError) as err:
        answer.result(0)
    assert err.value.code == "unknown_object"
    assert [o.x for o in room_b.objects.values()] == before


def test_refusal_raises_room_refused_with_code_and_reason() -> None:
    _, net = world()
    ctx, clt = client(net, rooms=True)
    pending = clt.join_by_id("nope")
    net.step(TICK)
    with pytest.raises(RoomRefused) as err:
        pending.result(0)
    assert (err.value.code, err.value.reason) == ("unknown_room", "no room 'nope'")
    assert ctx.room is None


class Gem(ReverbObject):
    """Only in a room type's world, never in the default room's."""

    def __init__(self, shine=0, uid=None, add_on_init=True, belonging_membership=None):  # type: ignore[no-untyped-def]
        self.shine = shine
        super().__init__(
            shine, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


class Mine(Room):
    object_types = (Gem,)


def test_contract_covers_room_types_the_client_describes_only() -> None:
    """§17.2: a room type's object type the client does not describe is no mismatch; one it
    describes differently is (3001)."""
    server = ReverbContext(ReverbSide.SERVER)
    server.register(Orb)
    server.define_room("mine", Mine)
    net = MemoryNetwork(server)
    plain = ReverbContext()
    plain.register(Orb)
    assert net.connect(plain).connected  # knows only the default room's types
    same = ReverbContext()
    same.register(Orb)
    same.register(Gem)
    assert net.connect(same, rooms=True).connected

    class Other(ReverbObject):
        def __init__(self, sparkle=0, uid=None, add_on_init=True, belonging_membership=None):  # type: ignore[no-untyped-def]
            super().__init__(
                sparkle, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
            )

    wrong = ReverbContext()
    wrong.register(Orb)
    wrong.register(Other, "Gem")
    with pytest.raises(HandshakeFailed) as err:
        net.connect(wrong, rooms=True)
    assert err.value.code == 3001 and "Gem" in err.value.reason


class Chat(Room):
    """Echoes every "say" to the whole room, stamped by the server with the room id."""

    def on_create(self, options: dict[str, Any]) -> None:
        @self.on_message("say")
        def say(sender: int, data: Any) -> None:
            self.broadcast("said", {"by": sender, "text": data})


def test_messages_stay_in_their_room() -> None:
    server = ReverbContext(ReverbSide.SERVER)
    server.define_room("chat", Chat)
    net = MemoryNetwork(server)
    heard: dict[str, list[Any]] = {}

    def member(tag: str) -> Any:
        ctx = ReverbContext()
        ctx.client_messages.on("said")(lambda data: heard.setdefault(tag, []).append(data))
        return net.connect(ctx, rooms=True)

    a, b, c = member("a"), member("b"), member("c")
    room = _join(net, a.create("chat")).room_id
    _join(net, b.join_by_id(room))
    _join(net, c.create("chat"))  # another chat room
    a.send_message("say", "hello")
    net.run(0.1)
    assert heard["a"] == heard["b"] == [{"by": a.member, "text": "hello"}]
    assert "c" not in heard  # never crosses rooms
    # on the wire the message names its room; a message naming another room is refused
    errors: list[Any] = []
    c.context.client_events.on_event("message_error")(lambda *e: errors.append(e))
    c.session.send(m.AppMessage(name="say", data="psst", room=room), net.clock())
    net.run(0.1)
    assert errors == [("say", "unknown_message", "not in that room")]
    assert heard["a"] == [{"by": a.member, "text": "hello"}]


def test_a_seat_reserved_by_the_server_is_consumed_once() -> None:
    """Colyseus' two-step join (§17.5 mode ``reservation``): the server reserves, the client
    claims the seat with the token; a second claim is ``reservation_expired``."""
    _, net = world()
    _, clt = client(net, rooms=True)
    mm = net.server.rooms.matchmaker
    seat = mm.reserve_seat(RoomClient(clt.member), JoinRequest.create("duel"), now=net.clock())
    assert mm.rooms[seat.room_id].reserved == 1
    handle = _join(net, clt.consume_seat(seat.token))
    assert handle.room_id == seat.room_id and mm.rooms[seat.room_id].reserved == 0
    net.run(0.2)
    assert len(handle.get_all_ro_by_type(Orb)) == 1
    _, other = client(net, rooms=True)
    with pytest.raises(RoomRefused) as err:
        _join(net, other.consume_seat(seat.token))
    assert err.value.code == "reservation_expired"


class Slow(Duel):
    tick_rate = 10.0


def test_room_joined_carries_the_rooms_tick_rate_for_smoothing() -> None:
    server, net = world()
    server.define_room("slow", Slow)
    ctx, clt = client(net, rooms=True)
    _join(net, clt.create("slow"))
    net.step(TICK)
    assert ctx.room_tick_rate == 10.0
    assert ctx.interpolation is not None
    assert ctx.interpolation._tick == pytest.approx(0.1)
    _join(net, clt.join_by_id("default", switch=True))
    net.step(TICK)
    assert ctx.room_tick_rate == net.server.tick_rate  # the server's own world's rate
