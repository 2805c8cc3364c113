"""Time (and optionally profile) one server tick in process: a ``ServerWorld`` of N objects
with three fields, M peers with the same view, encoded as the hub does (once per frame limit,
then framed for each peer). Not a test: a measuring tool for issue 9.

    python -m tests.replication.profile_tick --objects 1000 --peers 8 --churn 0.1
    python -m tests.replication.profile_tick --churn 1.0 --profile 25
    python -m tests.replication.profile_tick --compact --churn 1.0  # what Reverb clients get

Runs against whatever ``reverb`` is first on ``sys.path`` (run it from the checkout to measure).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import time
from typing import Any

from reverb import ReverbObject
from reverb.proto import messages as m
from reverb.proto.framing import DEFAULT_MAX_FRAME_SIZE, encode_frame
from reverb.replication.types import TypeRegistry
from reverb.replication.world import ServerWorld


class Thing(ReverbObject):
    def __init__(
        self,
        x: float = 0.0,
        y: float = 0.0,
        *,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        self.x = x
        self.y = y
        self.hp = 100
        super().__init__(
            x, y, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


def build(objects: int, peers: int, compact: bool = False) -> tuple[ServerWorld, list[Thing]]:
    types = TypeRegistry()
    types.register(Thing)
    world = ServerWorld(types)
    things = []
    for i in range(objects):
        thing = Thing(float(i), float(-i))
        world.add(thing, thing._reverb_args)
        things.append(thing)
    for member in range(1, peers + 1):
        world.peer_joined(member, ("compact",) if compact else ())
    world.tick(0.0)
    return world, things


def send(out: list[Any], peers: int) -> int:
    """What the hub does: encode each message once per frame limit, frame it for each peer."""
    sent = 0
    for members, message in out:
        bodies = m.encode_sync(message, DEFAULT_MAX_FRAME_SIZE)
        for _ in members:
            for body in bodies:
                sent += len(encode_frame(body))
    return sent // max(peers, 1)


def step(
    world: ServerWorld, things: list[Thing], churn: float, rng: random.Random, peers: int
) -> tuple[int, float, float, float]:
    """Mutate ``churn`` of the objects, tick, send; return (bytes, mutate s, tick s, send s)."""
    count = int(len(things) * churn)
    chosen = rng.sample(things, count) if count < len(things) else things
    values = [(rng.random(), rng.random(), rng.randrange(100)) for _ in chosen]
    start = time.process_time()
    for thing, (dx, dy, hp) in zip(chosen, values, strict=True):
        thing.x += dx
        thing.y -= dy
        thing.hp = hp
    mutated = time.process_time()
    out = world.tick(0.0)
    ticked = time.process_time()
    size = send(out, peers)
    return size, mutated - start, ticked - mutated, time.process_time() - ticked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--peers", type=int, default=8)
    parser.add_argument("--churn", type=float, default=1.0)
    parser.add_argument("--ticks", type=int, default=60)
    parser.add_argument("--profile", type=int, default=0, help="print the top N entries")
    parser.add_argument(
        "--compact", action="store_true", help='peers granted "compact" (§12), as Reverb clients'
    )
    opts = parser.parse_args()
    rng = random.Random(1)
    world, things = build(opts.objects, opts.peers, opts.compact)
    for _ in range(5):  # warm up
        step(world, things, opts.churn, rng, opts.peers)
    rows = [step(world, things, opts.churn, rng, opts.peers) for _ in range(opts.ticks)]
    total = [sum(row[1:]) for row in rows]

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1e3:.3f}"

    print(
        f"objects={opts.objects} peers={opts.peers} churn={opts.churn:.0%} "
        f"{'compact' if opts.compact else 'plain'}: "
        f"median {ms(total)} ms/tick (min {min(total) * 1e3:.3f}) = "
        f"mutate {ms([r[1] for r in rows])} + tick {ms([r[2] for r in rows])} + "
        f"send {ms([r[3] for r in rows])}; "
        f"{statistics.median(r[0] for r in rows):.0f} bytes/client/tick"
    )
    if opts.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(opts.ticks):
            step(world, things, opts.churn, rng, opts.peers)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(opts.profile)


if __name__ == "__main__":
    main()
