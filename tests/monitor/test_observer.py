"""What the observer keeps is bounded: frames per client (count and bytes), bytes over all
clients, the call log, and the rings of departed clients."""

from __future__ import annotations

from reverb.monitor import Observer
from reverb.monitor._observer import DEPARTED_KEPT, INVALID_METHOD
from reverb.proto import messages as m


def sync(tick: int) -> m.Sync:
    return m.Sync(tick=tick, full=False, final=True, spawn=(), update=(), despawn=())


def test_frames_per_client_capped_by_count() -> None:
    obs = Observer(frames_per_client=5)
    for tick in range(1, 21):
        obs.sent(1, sync(tick), [b"x" * 10], 0.0)
    frames = obs.frames(1)
    assert [f.tick for f in frames] == [16, 17, 18, 19, 20]
    assert obs.held_bytes() == 5 * 14
    assert obs.client_counters()[1]["frames_sent"] == 20  # counters keep counting


def test_frames_per_client_capped_by_bytes() -> None:
    obs = Observer(frames_per_client=1000, bytes_per_client=1000)
    for tick in range(1, 101):
        obs.sent(1, sync(tick), [b"y" * 96], 0.0)  # 100 bytes with the header
    assert len(obs.frames(1)) == 10
    assert obs.held_bytes() == 1000


def test_all_clients_capped_together() -> None:
    obs = Observer(frames_per_client=1000, bytes_per_client=10_000, bytes_total=3000)
    for tick in range(1, 101):
        for member in (1, 2, 3):
            obs.sent(member, sync(tick), [b"z" * 96], 0.0)
    assert obs.held_bytes() <= 3000
    held = [len(obs.frames(member)) for member in (1, 2, 3)]
    assert sum(held) == 30 and all(n == 10 for n in held)  # the oldest frames went first
    assert obs.frames(1)[-1].tick == 100


def test_evicted_frames_let_go_of_their_bytes() -> None:
    """The bound is on memory really held: frames pushed out of a client's ring and still
    listed in the global order (until it is compacted) keep no body."""
    obs = Observer(frames_per_client=4, bytes_per_client=10_000, bytes_total=1 << 30)
    for tick in range(1, 501):
        obs.sent(1, sync(tick), [b"b" * 996], 0.0)
    assert obs.held_bytes() == 4 * 1000
    assert sum(len(f.body) for f in obs._order) == 4 * 996  # not 500 bodies
    assert [f.size for f in obs.frames(1)] == [1000] * 4


def test_one_frame_larger_than_the_cap_is_not_held() -> None:
    obs = Observer(bytes_per_client=100)
    obs.sent(1, sync(1), [b"w" * 500], 0.0)
    assert obs.frames(1) == [] and obs.held_bytes() == 0


def test_departed_clients_forgotten_beyond_a_few() -> None:
    obs = Observer()
    for member in range(1, DEPARTED_KEPT + 11):
        obs.sent(member, sync(1), [b"{}"], 0.0)
    obs.forget_departed(frozenset())
    assert len(obs.client_counters()) == DEPARTED_KEPT
    assert obs.frames(1) == [] and obs.frames(DEPARTED_KEPT + 10) != []
    assert obs.held_bytes() == DEPARTED_KEPT * 6


class _World:
    def __init__(self) -> None:
        from reverb.replication.types import TypeRegistry

        self.types = TypeRegistry()
        self.objects: dict[int, object] = {}

    def call(self, member: int, rpc: m.Rpc) -> m.Message:
        return m.RpcErrorReply(id=rpc.id, code="unknown_object", message="no")


def test_call_log_bounded_and_unknown_methods_share_one_label() -> None:
    obs = Observer(rpc_log=50)
    world = _World()
    for i in range(500):
        obs.call(world, 1, m.Rpc(id=i, uid=99, method=f"junk{i}", args=[]))
    assert len(obs.rpc_log()) == 50
    assert set(obs.rpc_counts) == {(INVALID_METHOD, "unknown_object")}  # no label explosion
    assert obs.rpc_counts[(INVALID_METHOD, "unknown_object")] == 500


def test_frame_description_decodes_json_only() -> None:
    obs = Observer()
    obs.sent(1, sync(7), [m.encode(sync(7))], 0.0)
    obs.sent(1, sync(8), [b"not json"], 0.0)
    good, bad = (f.describe() for f in obs.frames(1))
    assert good["body"]["type"] == "sync" and good["tick"] == 7
    assert good["summary"] == "spawn 0 update 0 despawn 0"
    assert bad["body"] == "not json"


def _world_with_crates() -> tuple[object, list[object]]:
    from reverb import ReverbContext, ReverbSide
    from tests.monitor.app import Crate

    ctx = ReverbContext(ReverbSide.SERVER)
    ctx.register(Crate)
    with ctx.activate():
        crates = [Crate(i) for i in range(3)]
    ctx.world.peer_joined(7)
    return ctx, crates


def test_snapshot_is_what_clients_hold_after_the_tick() -> None:
    """Taken on the game thread right after a tick: values as sent; an object whose field
    cannot be encoded is flagged withheld and shows the last values clients got."""
    from reverb.monitor._observer import describe_object, take_snapshot

    ctx, crates = _world_with_crates()
    obs = Observer()
    obs.watch(1)  # someone is watching: the tick hook takes snapshots
    crates[0].x = 1.5
    obs.tick(ctx, 100.0)
    crates[0].x = float("nan")  # unencodable: withheld from now on
    crates[1].x = 2.5
    obs.tick(ctx, 101.0)
    snap = obs.snapshot
    assert snap is not None and snap.tick == 2 and 7 in snap.peers
    assert snap.held[7] == {c.uid for c in crates}
    shown = {o["uid"]: o for o in map(describe_object, snap.objects)}
    assert shown[crates[0].uid]["withheld"] and shown[crates[0].uid]["fields"]["x"] == 1.5
    assert not shown[crates[1].uid]["withheld"] and shown[crates[1].uid]["fields"]["x"] == 2.5
    crates[1].x = 3.5  # after the tick: not what clients hold yet
    assert {o[0]: o[3]["x"] for o in take_snapshot(ctx, 101.0).objects}[crates[1].uid] == 2.5


def test_no_snapshot_when_nobody_watches() -> None:
    ctx, _ = _world_with_crates()
    obs = Observer()
    for i in range(5):
        obs.tick(ctx, 100.0 + i)
    assert obs.snapshot is None and obs.ticks == 5 and obs.tick_seconds.count == 5


def test_snapshot_without_the_engines_records_reads_the_objects() -> None:
    """Another engine (no per-object records): fields are converted here; unencodable
    objects are left out; every synced peer is taken to hold the rest."""
    from types import SimpleNamespace

    from reverb.monitor._observer import take_snapshot

    ctx, crates = _world_with_crates()
    ctx.tick(0.0)
    crates[0].x = float("nan")
    crates[2].x = 4.0
    fast = {o[0]: o[3] for o in take_snapshot(ctx, 0.0).objects}
    world = ctx.world
    other = SimpleNamespace(
        types=ctx.types,
        world=SimpleNamespace(
            objects=world.objects, tick_count=world.tick_count, peers=world.peers
        ),
    )
    snap = take_snapshot(other, 0.0)
    slow = {o[0]: o[3] for o in snap.objects}
    assert crates[0].uid not in slow and slow[crates[2].uid]["x"] == 4.0
    assert snap.held == {7: frozenset(slow)}
    assert fast[crates[2].uid]["x"] == 0.0  # the engine's record: as of the last tick


def test_a_compressed_frame_is_shown_as_the_message_it_holds() -> None:
    import json
    import zlib

    from reverb.monitor._observer import Frame

    message = {"type": "sync", "tick": 5, "full": True, "final": True, "spawn": [], "update": []}
    message["despawn"] = list(range(300))
    body = b"\x00" + zlib.compress(json.dumps(message).encode())
    shown = Frame(1, 2, 0.0, "sync", 5, body).describe()
    assert shown["body"] == message and shown["summary"] == "full spawn 0 update 0 despawn 300"
    assert shown["size"] == len(body) + 4  # what went on the wire


def test_departed_clients_final_figures_kept_for_a_few() -> None:
    """``left`` keeps a departed client's last counters and incidents, for a bounded few."""
    from reverb.proto.session import Role, Session

    obs = Observer()
    for member in range(1, DEPARTED_KEPT + 6):
        session = Session(Role.SERVER, 0.0, member=member)
        session.abort(1006, "connection lost")
        obs.left(session)
    assert obs.departed(1) is None and obs.departed(5) is None
    last = obs.departed(DEPARTED_KEPT + 5)
    assert last is not None and last.member == DEPARTED_KEPT + 5
    assert [(i.kind, i.code, i.detail) for i in last.incidents] == [
        ("closed", 1006, "by this side: connection lost")
    ]
    assert len(obs._departed) == DEPARTED_KEPT
