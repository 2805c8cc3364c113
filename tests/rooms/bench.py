"""Micro-benchmarks for reverb.rooms (a script, not a test): ``python -m tests.rooms.bench``.

1. memory per empty room (tracemalloc, matchmaker side included: room, context, listing,
   scheduler entry);
2. scheduler cost: R rooms x C seated clients x N objects at 30 Hz on one loop, nothing
   changing after the first snapshot, then every object moving every tick; CPU per loop
   second, per room tick, and the tick rate each room held (real clock, real waiting);
3. latency of a burst of 500 ``join_or_create`` calls in process (rooms of 4).

Sans I/O: no sockets, no client processes; the syncs are built (encoded) and dropped.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from typing import Any

from reverb import ReverbObject
from reverb.rooms import Joined, Matchmaker, Room, RoomClient


class Unit(ReverbObject):
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
        self.hp = 100
        super().__init__(
            x, y, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


class Empty(Room):
    object_types = (Unit,)
    auto_dispose = False


class Match(Room):
    object_types = (Unit,)
    moving = False

    def on_create(self, options: dict[str, Any]) -> None:
        self.max_clients = options["clients"]
        for n in range(options["objects"]):
            self.spawn(Unit, float(n), 0.0)

    def on_tick(self, now: float) -> None:
        if self.moving:
            for unit in self.objects.values():
                unit.x += 1.0


def _matchmaker() -> Matchmaker:
    mm = Matchmaker(time.perf_counter)
    mm.define("empty", Empty)
    mm.define("match", Match)
    mm.define("quad", Room)
    return mm


def memory_per_empty_room(n: int = 1000) -> float:
    mm = _matchmaker()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        mm.create(RoomClient(i + 1), "empty", now=0.0)
        mm.leave(i + 1, now=0.0)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(mm.rooms) == n and all(not r.clients for r in mm.rooms.values())
    return (after - before) / n


def scheduler_cost(rooms: int, clients: int, objects: int, seconds: float) -> dict[str, float]:
    mm = _matchmaker()
    member = 0
    for _ in range(rooms):
        member += 1
        made = mm.create(
            RoomClient(member), "match", {"clients": clients, "objects": objects}, now=0.0
        )
        assert isinstance(made, Joined)
        for _ in range(clients - 1):
            member += 1
            assert isinstance(mm.join_by_id(RoomClient(member), made.room_id, now=0.0), Joined)
    results: dict[str, float] = {}
    for moving in (False, True):
        Match.moving = moving
        now = time.perf_counter()
        mm.step(now)  # first ticks: the full snapshots
        mm.outgoing()
        ticks0 = sum(s.ticks for s in mm.scheduler.stats())
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while (now := time.perf_counter()) - wall0 < seconds:
            wait = mm.step(now)
            mm.outgoing()
            if wait > 0:
                time.sleep(wait)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        ticks = sum(s.ticks for s in mm.scheduler.stats()) - ticks0
        label = "moving" if moving else "idle"
        results[f"{label}.cpu_share"] = cpu / wall
        results[f"{label}.us_per_room_tick"] = 1e6 * cpu / max(ticks, 1)
        results[f"{label}.held_hz"] = ticks / rooms / wall
        results[f"{label}.p99_tick_ms"] = 1e3 * max(s.p99 for s in mm.scheduler.stats())
    Match.moving = False
    return results


def join_burst(calls: int = 500) -> tuple[float, float, int]:
    mm = _matchmaker()
    durations = []
    for i in range(calls):
        start = time.perf_counter()
        result = mm.join_or_create(
            RoomClient(i + 1), "match", {"clients": 4, "objects": 0}, now=start
        )
        durations.append(time.perf_counter() - start)
        assert isinstance(result, Joined)
    durations.sort()
    return (
        1e6 * statistics.median(durations),
        1e6 * durations[int(0.99 * len(durations))],
        len(mm.rooms),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per scheduler scenario")
    args = parser.parse_args()
    print(f"memory per empty room: {memory_per_empty_room() / 1024:.1f} KiB (1000 rooms)")
    for rooms, clients, objects in ((200, 4, 20), (50, 16, 100)):
        r = scheduler_cost(rooms, clients, objects, args.seconds)
        for label in ("idle", "moving"):
            print(
                f"{rooms} rooms x {clients} clients x {objects} objects @30 Hz, {label}: "
                f"CPU {100 * r[f'{label}.cpu_share']:.1f}% of a core, "
                f"{r[f'{label}.us_per_room_tick']:.1f} us per room tick, "
                f"held {r[f'{label}.held_hz']:.1f} Hz, p99 room tick "
                f"{r[f'{label}.p99_tick_ms']:.2f} ms"
            )
    p50, p99, made = join_burst()
    print(f"500 join_or_create: p50 {p50:.1f} us, p99 {p99:.1f} us ({made} rooms of 4)")


if __name__ == "__main__":
    main()
