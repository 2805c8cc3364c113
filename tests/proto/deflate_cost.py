"""What compressed frames (feature "deflate", protocol §15) cost and save on one tick of the
benchmark world: N objects of three fields, every field changed, encoded by the engine for
compact peers and for plain peers, then compressed as the hub does and inflated as a client
does. Not a test: a measuring tool (issue 9), run from the checkout.

    python -m tests.proto.deflate_cost --objects 1000 --repeat 50
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from reverb.hub.common import COMPRESS_LEVEL
from reverb.hub.server import _deflated
from reverb.proto import messages as m
from reverb.proto.framing import DEFAULT_MAX_FRAME_SIZE
from reverb.proto.session import Role, Session
from tests.replication.profile_tick import build


def bodies(objects: int, compact: bool) -> list[bytes]:
    world, things = build(objects, 0)
    world.peer_joined(1, ("compact",) if compact else ())
    world.tick(0.0)
    rng = random.Random(1)
    for thing in things:
        thing.x, thing.y, thing.hp = rng.random() * 800, rng.random() * 600, rng.randrange(100)
    ((_, frame),) = world.tick(1.0)
    return m.encode_sync(frame, DEFAULT_MAX_FRAME_SIZE)


def median_ms(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=10)
    median = 1000 * statistics.median(samples)
    return f"{median:.3f} ms (p10 {1000 * q[0]:.3f}, p90 {1000 * q[-1]:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    client = Session(Role.CLIENT, 0, features=("deflate",))
    client._inflate = True  # as if granted: only the inflation step is timed
    for compact in (True, False):
        plain = bodies(args.objects, compact)
        packs, inflates = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            packed = _deflated(plain)
            packs.append(time.perf_counter() - started)
            assert isinstance(packed, list)
            started = time.perf_counter()
            for body in packed:
                client._inflated(body)
            inflates.append(time.perf_counter() - started)
        size, packed_size = sum(map(len, plain)), sum(map(len, packed))
        print(
            f"{'compact' if compact else 'plain  '} delta of {args.objects} objects: "
            f"{size} -> {packed_size} bytes ({packed_size / size:.2f}x) at level {COMPRESS_LEVEL}; "
            f"compress {median_ms(packs)} per view; inflate {median_ms(inflates)} per client"
        )


if __name__ == "__main__":
    main()
