"""Time (and optionally profile) what a client does with one tick: decode a ``sync`` frame
body and apply it to a ``ClientWorld`` of N replicas, against ``json.loads`` of the same bytes
(all the raw baseline's client does). Not a test: a measuring tool for issue 9.

    python -m tests.replication.profile_apply --objects 1000 --churn 1.0
    python -m tests.replication.profile_apply --plain --profile 25

The frames are those a ``ServerWorld`` sends a peer granted "compact" (§12), as Reverb
clients are, or the plain form with ``--plain``. Runs against whatever ``reverb`` is first on
``sys.path`` (run it from the checkout to measure).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import statistics
import time

from reverb.proto import messages as m
from reverb.proto.framing import DEFAULT_MAX_FRAME_SIZE
from reverb.replication.types import TypeRegistry
from reverb.replication.world import ClientWorld
from tests.replication.profile_tick import Thing, build


def frames(objects: int, churn: float, ticks: int, compact: bool) -> tuple[bytes, list[bytes]]:
    """The full snapshot a joiner gets, then ``ticks`` deltas in which ``churn`` of the
    objects change all three fields (as in ``python -m harness bench``)."""
    world, things = build(objects, 0, compact)
    world.peer_joined(1, ("compact",) if compact else ())
    rng = random.Random(1)

    def bodies() -> list[bytes]:
        out = []
        for _, message in world.tick(0.0):
            out.extend(m.encode_sync(message, DEFAULT_MAX_FRAME_SIZE))
        return out

    [full] = bodies()
    deltas = []
    for _ in range(ticks):
        count = int(len(things) * churn)
        for thing in rng.sample(things, count):
            thing.x += rng.random()
            thing.y -= rng.random()
            thing.hp = (thing.hp + 1 + rng.randrange(99)) % 100  # every field changes
        deltas.extend(bodies())
    return full, deltas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--churn", type=float, default=1.0)
    parser.add_argument("--ticks", type=int, default=60)
    parser.add_argument("--plain", action="store_true", help="the plain encoding (§7.2)")
    parser.add_argument("--profile", type=int, default=0, help="print the top N entries")
    opts = parser.parse_args()
    full, deltas = frames(opts.objects, opts.churn, opts.ticks, not opts.plain)
    types = TypeRegistry()
    types.register(Thing)
    client = ClientWorld(types, bind=lambda obj: None)

    def apply(body: bytes) -> None:
        client.apply(m.decode(body))  # type: ignore[arg-type]

    apply(full)
    decode, applied, loads = [], [], []
    for body in deltas:
        start = time.process_time()
        message = m.decode(body)
        decoded = time.process_time()
        client.apply(message)  # type: ignore[arg-type]
        done = time.process_time()
        json.loads(body)
        loads.append(time.process_time() - done)
        decode.append(decoded - start)
        applied.append(done - decoded)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1e3:.3f}"

    total = [a + b for a, b in zip(decode, applied, strict=True)]
    print(
        f"objects={opts.objects} churn={opts.churn:.0%} {'plain' if opts.plain else 'compact'}: "
        f"{statistics.median(len(b) for b in deltas):.0f} bytes; decode {ms(decode)} + "
        f"apply {ms(applied)} = {ms(total)} ms; json.loads {ms(loads)} ms; "
        f"ratio {statistics.median(total) / statistics.median(loads):.2f}"
    )
    if opts.profile:
        client = ClientWorld(types, bind=lambda obj: None)
        apply(full)
        profiler = cProfile.Profile()
        profiler.enable()
        for body in deltas:
            apply(body)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(opts.profile)


if __name__ == "__main__":
    main()
