"""The feature "time" wired end to end on the memory transport (reverb/memory.py) and a stepped
clock: server time on syncs and pongs, a sync every tick, the client's clock estimate,
interpolation of declared fields, change hooks and teleports (docs/protocol.md §13, guide
"Smooth movement"). Deterministic: every figure is exact or bounded tightly."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from reverb import DEGREES, Field, ReverbContext, ReverbObject, ReverbSide, on_change
from reverb.memory import MemoryClient, MemoryNetwork
from reverb.proto import messages as m
from reverb.proto.framing import FrameDecoder, encode_frame
from reverb.proto.session import Role, Session
from reverb.replication.types import TypeRegistry
from reverb.replication.world import ServerWorld

TICK = 1 / 30
FRAME = 1 / 60


class Walker(ReverbObject):
    __reverb_interpolate__ = ("x", Field("angle", period=DEGREES))

    def __init__(
        self,
        x: float = 0.0,
        *,
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        self.x = x
        self.angle = 0.0
        self.hp = 10
        self.name = "w"
        self.log: list[tuple[str, Any, Any]] = []
        self._log: list[tuple[str, Any, Any]] = []
        super().__init__(
            x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @on_change("hp", "name")
    def _marked(self, old: Any, new: Any) -> None:
        self._log.append(("marked", old, new))

    def on_hp_changed(self, old: Any, new: Any) -> None:
        self._log.append(("conventional", old, new))


class World:
    def __init__(self, latency: float = 0.0, **client: Any) -> None:
        self.server = ReverbContext(ReverbSide.SERVER)
        self.server.register(Walker)
        self.net = MemoryNetwork(self.server, latency=latency)
        self.ctx = ReverbContext()
        self.ctx.register(Walker)
        self.client: MemoryClient = self.net.connect(self.ctx, **client)
        self.synced: list[int] = []
        self.ctx.client_events.on_event("synced")(self.synced.append)

    def spawn(self, x: float = 0.0) -> Walker:
        with self.server.activate():
            return Walker(x)

    def replica(self, uid: int) -> Walker:
        obj = self.ctx.objects[uid]
        assert isinstance(obj, Walker)
        return obj


def test_a_time_client_gets_a_sync_every_tick_and_a_plain_one_only_on_change() -> None:
    world = World(features=("compact", "time", "messages", "interest"))  # without "quiet" (§19)
    plain_ctx = ReverbContext()
    plain_ctx.register(Walker)
    plain = world.net.connect(plain_ctx, time_sync=False)
    plain_synced: list[int] = []
    plain_ctx.client_events.on_event("synced")(plain_synced.append)
    world.spawn()
    world.net.run(1.0, TICK)
    assert len(world.synced) >= 29  # §13.7: every tick, though nothing changed after the spawn
    assert world.synced == list(range(world.synced[0], world.synced[-1] + 1))
    assert len(plain_synced) == 1  # §7.3: the snapshot (holding the spawn), nothing more
    assert not plain.timekeeper.granted
    assert not plain.clock_ready and plain.server_time(123.0) == 123.0


def test_server_time_estimate_rtt_and_tick_rate_on_a_slow_link() -> None:
    world = World(latency=0.04)
    world.net.run(3.0, FRAME)
    now = world.net.clock.now
    clt = world.client
    assert clt.clock_ready
    assert clt.tick_rate == 30.0
    assert clt.rtt == pytest.approx(0.09, abs=0.02)  # two 40 ms legs, stepped by 1/60 s
    assert abs(clt.server_time(now) - now) < 0.02  # the server's clock is the network's
    tick = clt.server_tick(now)
    assert tick is not None and abs(tick - world.server.world.tick_count) < 2
    # interpolated objects are shown behind the server: latency plus the delay
    assert 2 * TICK <= clt.interpolation_delay <= 10 * TICK
    lag = now - clt.render_time(now)
    assert 0.04 + 2 * TICK - 0.02 < lag < 0.04 + 10 * TICK + 0.02


def test_interpolated_values_move_every_frame_and_replicated_values_stay_exact() -> None:
    world = World(latency=0.03)
    walker = world.spawn()
    world.net.run(0.5, FRAME)
    replica = world.replica(walker.uid)
    rendered: list[float] = []
    raw: list[float] = []
    ticks = 0
    for frame in range(120):  # 2 s at 60 FPS, the server moving 3 units a tick (30 Hz)
        if frame % 2 == 0:
            walker.x += 3.0
            walker.angle = (walker.angle + 10.0) % 360.0
            ticks += 1
        world.net.step(FRAME)
        now = world.net.clock.now
        frame_values = world.ctx.interpolate(now)
        assert frame_values[replica] is not None
        rendered.append(float(replica.rendered["x"]))  # type: ignore[arg-type]
        raw.append(replica.x)
        if frame > 30:
            assert replica.interpolated("x", now) == pytest.approx(rendered[-1], abs=1e-6)
    later = rendered[40:]
    steps = [b - a for a, b in itertools.pairwise(later)]
    assert all(step > 0 for step in steps)  # never frozen once the buffer is filled
    assert max(steps) < 3.0  # never a whole tick's jump in one 60 FPS frame
    raw_steps = [b - a for a, b in itertools.pairwise(raw[40:])]
    assert raw_steps.count(0.0) > len(raw_steps) / 3  # the exact value stands still half the time
    assert all(v == int(v) for v in raw)  # replicated values are never touched
    with pytest.raises(ValueError, match="hp"):
        replica.interpolated("hp")


def test_angles_interpolate_along_the_shortest_arc() -> None:
    world = World()
    walker = world.spawn()
    walker.angle = 350.0
    world.net.run(0.5, FRAME)
    walker.angle = 10.0
    seen = []
    for _ in range(30):
        world.net.step(FRAME)
        seen.append(world.ctx.interpolate(world.net.clock.now)[world.replica(walker.uid)]["angle"])
    assert all(v >= 350.0 or v <= 10.0 for v in seen)  # through 0, never through 180
    assert any(0.0 < v < 10.0 for v in seen) or any(350.0 < v < 360.0 for v in seen)


def test_a_teleport_snaps_instead_of_sliding() -> None:
    world = World()
    walker = world.spawn()
    world.net.run(0.5, FRAME)
    walker.x = 1000.0
    walker.teleport()
    seen = []
    for _ in range(30):
        world.net.step(FRAME)
        seen.append(world.ctx.interpolate(world.net.clock.now)[world.replica(walker.uid)]["x"])
    assert set(seen) == {0.0, 1000.0}  # held, then jumped: no value in between


def test_change_hooks_fire_after_the_tick_in_order_and_not_on_spawn() -> None:
    world = World()
    order: list[Any] = []
    world.ctx.client_events.on_event("object_spawned")(lambda obj: order.append("spawned"))
    world.ctx.client_events.on_event("synced")(lambda tick: order.append("synced"))
    world.ctx.on_change("hp", lambda obj, old, new: order.append(("listener", old, new)))
    walker = world.spawn()
    world.net.step(TICK)
    replica = world.replica(walker.uid)
    assert replica._log == [] and order == ["spawned", "synced"]  # a spawn fires no hooks
    order.clear()
    walker.hp = 7
    walker.name = "v"
    world.net.step(TICK)
    assert replica._log == [
        ("marked", 10, 7),
        ("conventional", 10, 7),
        ("marked", "w", "v"),
    ] or replica._log == [("marked", "w", "v"), ("marked", 10, 7), ("conventional", 10, 7)]
    assert order == [("listener", 10, 7), "synced"]
    # the replica already held every value of the tick when the hooks ran
    assert replica.hp == 7 and replica.name == "v"


def test_a_hook_that_raises_is_logged_and_the_others_run(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    ran: list[int] = []

    def broken(obj: Any, old: Any, new: Any) -> None:
        raise RuntimeError("boom")

    world.ctx.on_change("hp", broken)
    world.ctx.on_change("hp", lambda obj, old, new: ran.append(new))
    walker = world.spawn()
    world.net.step(TICK)
    walker.hp = 3
    world.net.step(TICK)
    assert ran == [3]
    assert "boom" in caplog.text


def test_undeclared_interpolation_field_is_refused_at_registration() -> None:
    class Bad(ReverbObject):
        __reverb_fields__ = ("x",)
        __reverb_interpolate__ = ("y",)

        def __init__(
            self,
            *,
            uid: int | None = None,
            add_on_init: bool = True,
            belonging_membership: int | None = None,
        ) -> None:
            self.x = 0.0
            super().__init__(
                uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
            )

    with pytest.raises(TypeError, match="'y'"):
        ReverbContext().register(Bad)


def test_interpolated_on_a_server_is_refused() -> None:
    world = World()
    walker = world.spawn()
    from reverb.errors import InvalidState

    with pytest.raises(InvalidState):
        walker.interpolated("x")


# -- the wire, sans I/O: what each kind of peer receives -------------------------------------


def frames(data: bytes) -> list[dict[str, Any]]:
    decoder = FrameDecoder()
    decoder.add(data)
    out = []
    while (body := decoder.next_frame()) is not None:
        out.append(json.loads(body))
    return out


WELCOMES: dict[int, bytes] = {}


def peer(world: ServerWorld, member: int, features: tuple[str, ...]) -> tuple[Session, Session]:
    """A client session asking ``features`` handshaken with a server session."""
    client = Session(Role.CLIENT, 0.0, features=features)
    server = Session(Role.SERVER, 0.0, member=member)
    server.receive_data(client.data_to_send(), 0.0)
    WELCOMES[member] = welcome = server.data_to_send()
    client.receive_data(welcome, 0.0)
    world.peer_joined(member, server.features)
    return client, server


def run_ticks(world: ServerWorld, sessions: dict[int, Session], start: float = 1.0) -> None:
    for i in range(5):
        for members, message in world.tick(start + i * TICK):
            for member in members:
                sessions[member].send_encoded("sync", m.encode(message), start + i * TICK)


def test_a_protocol_1_client_is_served_byte_for_byte_as_before() -> None:
    types = TypeRegistry()
    types.register(Walker)
    world = ServerWorld(types)
    walker = Walker(1.5, add_on_init=False)
    world.add(walker, (1.5,))
    _, old_server = peer(world, 1, ())
    _, new_server = peer(world, 2, ("compact", "time"))
    old_server.receive_data(encode_frame(m.encode(m.Ping(nonce=3))), 0.5)
    run_ticks(world, {1: old_server, 2: new_server})
    walker.x = 2.5
    world.teleport(walker.uid)
    run_ticks(world, {1: old_server, 2: new_server}, start=2.0)
    assert WELCOMES[1] == encode_frame(
        b'{"type":"welcome","version":1,"member":1,"tick_rate":30.0,"max_frame":1048576}'
    )
    got = old_server.data_to_send()
    assert got.startswith(b'\x00\x00\x00\x19{"type":"pong","nonce":3}')
    bodies = frames(got)
    syncs = [b for b in bodies if b["type"] == "sync"]
    assert len(syncs) == 2  # the snapshot and the one change: no empty syncs
    assert all("time" not in s for s in syncs)
    assert syncs[1]["update"] == [{"uid": 1, "fields": {"x": 2.5}}]  # no snap
    timed = [b for b in frames(new_server.data_to_send()) if b["type"] == "sync"]
    assert len(timed) == 10  # one per tick
    times = [s["time"] for s in timed]
    assert times == sorted(set(times))
    assert {"uid": 1, "fields": {"x": 2.5}, "snap": True} in [
        e for s in timed for e in s["update"]
    ]  # the object form, also on a compact connection (§13.5)


def test_sync_time_increases_even_when_two_ticks_share_a_clock_reading() -> None:
    types = TypeRegistry()
    world = ServerWorld(types)
    _, server = peer(world, 1, ("time",))
    for _ in range(3):
        for _members, message in world.tick(5.0):
            server.send_encoded("sync", m.encode(message), 5.0)
    times = [b["time"] for b in frames(server.data_to_send()) if b["type"] == "sync"]
    assert len(times) == 3 and times[0] == 5.0 and times[0] < times[1] < times[2]


@pytest.mark.parametrize(
    ("sync", "why"),
    [
        ({"type": "sync", "tick": 1, "full": True, "final": True}, "missing"),
        ({"type": "sync", "tick": 1, "full": True, "final": True, "time": "1"}, "a string"),
        ({"type": "sync", "tick": 1, "full": True, "final": True, "time": -1}, "negative"),
    ],
)
def test_a_time_client_closes_1002_on_a_sync_without_a_valid_time(
    sync: dict[str, Any], why: str
) -> None:
    world = ServerWorld(TypeRegistry())
    client, _ = peer(world, 1, ("time",))
    body = json.dumps({**sync, "spawn": [], "update": [], "despawn": []}).encode()
    client.receive_data(len(body).to_bytes(4, "big") + body, 1.0)
    assert client.closed, why
    closes = [b for b in frames(client.data_to_send()) if b["type"] == "close"]
    assert closes and closes[0]["code"] == 1002


def test_a_snap_that_is_not_a_boolean_is_1002() -> None:
    body = json.dumps(
        {
            "type": "sync",
            "tick": 2,
            "full": False,
            "final": True,
            "time": 1.0,
            "spawn": [],
            "update": [{"uid": 1, "fields": {}, "snap": 1}],
            "despawn": [],
        }
    ).encode()
    with pytest.raises(Exception, match="snap"):
        m.decode(body)


def _closed_1002(session: Session) -> bool:
    closes = [b for b in frames(session.data_to_send()) if b["type"] == "close"]
    return session.closed and bool(closes) and closes[0]["code"] == 1002


def test_a_welcome_granting_time_without_time_is_1002() -> None:
    client = Session(Role.CLIENT, 0.0, features=("time",))
    client.data_to_send()
    welcome = m.Welcome(version=1, member=1, tick_rate=30.0, max_frame=65536, features=["time"])
    client.receive_data(encode_frame(m.encode(welcome)), 0.0)
    assert _closed_1002(client)


def test_a_pong_without_time_on_a_time_connection_is_1002() -> None:
    world = ServerWorld(TypeRegistry())
    client, _ = peer(world, 1, ("time",))
    client.receive_data(encode_frame(m.encode(m.Pong(nonce=1))), 1.0)
    assert _closed_1002(client)


def test_clock_pings_are_matched_by_nonce_and_feed_the_estimate() -> None:
    from reverb.timesync import Timekeeper

    keeper = Timekeeper()
    client = Session(Role.CLIENT, 0.0, features=("time",), timekeeper=keeper)
    server = Session(Role.SERVER, 0.0, member=1)
    server.receive_data(client.data_to_send(), 0.0)
    client.receive_data(server.data_to_send(), 0.0)
    now = 0.0
    for _ in range(40):  # server clock = client clock + 100; 20 ms each way
        now += 0.05
        client.check_timeouts(now)
        up = client.data_to_send()
        if up:
            server.receive_data(up, now + 100.02)
            client.receive_data(server.data_to_send(), now + 0.04)
    assert keeper.ready and keeper.rtt == pytest.approx(0.04, abs=1e-6)
    assert keeper.server_time(now + 1) == pytest.approx(now + 101, abs=0.002)


def test_a_listener_added_after_syncs_began_hears_every_class() -> None:
    class Plain(ReverbObject):
        def __init__(
            self,
            *,
            uid: int | None = None,
            add_on_init: bool = True,
            belonging_membership: int | None = None,
        ) -> None:
            self.hp = 1
            super().__init__(
                uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
            )

    world = World()
    world.server.register(Plain)
    world.ctx.register(Plain)
    with world.server.activate():
        plain = Plain()
    world.net.run(0.2, TICK)
    plain.hp = 2
    world.net.run(0.1, TICK)  # observed nothing: no hook, no listener
    heard: list[Any] = []
    world.ctx.on_change("hp", lambda obj, old, new: heard.append((type(obj).__name__, old, new)))
    plain.hp = 3
    world.net.run(0.1, TICK)
    assert heard == [("Plain", 2, 3)]


def _old_peer_bytes(with_time_peer: bool) -> bytes:
    types = TypeRegistry()
    types.register(Walker)
    world = ServerWorld(types)
    walker = Walker(1.5, add_on_init=False)
    world.add(walker, (1.5,))
    _, old = peer(world, 1, ())
    sessions = {1: old}
    if with_time_peer:
        _, sessions[2] = peer(world, 2, ("compact", "time"))
    run_ticks(world, sessions)
    walker.x = 2.5
    world.teleport(walker.uid)
    run_ticks(world, sessions, start=2.0)
    return WELCOMES[1] + old.data_to_send()


def test_a_time_peer_changes_no_byte_a_protocol_1_peer_receives() -> None:
    assert _old_peer_bytes(with_time_peer=True) == _old_peer_bytes(with_time_peer=False)
    assert b'"time"' not in _old_peer_bytes(with_time_peer=True)
