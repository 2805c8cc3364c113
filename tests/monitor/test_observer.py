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
