"""Micro-benchmark of the visibility update (not a test): a 2D world of N moving objects and
C clients, each focused on one of them with a radius giving ~V visible objects.

    python -m tests.interest.bench_grid [--objects 10000] [--clients 1000] [--visible 50]
                                        [--moving 1.0] [--ticks 30]

Prints ms per tick for ``Interest.update(moved)`` (grid policy) and, for reference, for the
spatial grid alone and for the per-object path forced on (no bulk recompute).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time

from reverb.replication import grid as grid_module
from reverb.replication.interest import Grid, Interest


class Mover:
    __slots__ = ("x", "y")

    def __init__(self, x: float, y: float) -> None:
        self.x = x
        self.y = y


def run(args: argparse.Namespace, *, bulk: bool) -> tuple[list[float], float, float]:
    rng = random.Random(1)
    side = 1000.0
    radius = side * math.sqrt(args.visible / (math.pi * args.objects))
    objects = {
        u: Mover(rng.uniform(0, side), rng.uniform(0, side)) for u in range(1, args.objects + 1)
    }
    cell = None if args.cell_div is None else radius * 1.1 / args.cell_div
    interest = Interest(Grid(radius, cell=cell, stagger=args.stagger))
    for uid, obj in objects.items():
        interest.add_object(uid, obj)
    for c in range(args.clients):
        interest.add_client(10_000_000 + c, focus=1 + c * (args.objects // args.clients))
    t0 = time.perf_counter()
    interest.update()
    setup = time.perf_counter() - t0
    step = radius / 20  # an object crosses its view radius in ~20 ticks
    uids = list(objects)
    count = int(len(uids) * args.moving)
    saved = grid_module.BULK_MIN, grid_module.BULK_SHARE
    if not bulk:
        grid_module.BULK_MIN = grid_module.BULK_SHARE = 10**12
    times = []
    try:
        for _ in range(args.ticks):
            moved = rng.sample(uids, count) if count < len(uids) else uids
            for uid in moved:
                o = objects[uid]
                o.x = min(side, max(0.0, o.x + rng.uniform(-step, step)))
                o.y = min(side, max(0.0, o.y + rng.uniform(-step, step)))
            t = time.perf_counter()
            interest.update(moved)
            times.append((time.perf_counter() - t) * 1000)
    finally:
        grid_module.BULK_MIN, grid_module.BULK_SHARE = saved
    mean_visible = statistics.mean(
        len(interest.visible(10_000_000 + c)) for c in range(args.clients)
    )
    return times, setup, mean_visible


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--visible", type=float, default=50)
    parser.add_argument("--moving", type=float, default=1.0, help="share of objects moving")
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--stagger", type=int, default=1, help="Grid(stagger=...)")
    parser.add_argument("--cell-div", type=float, help="cell = (radius + margin) / this")
    parser.add_argument("--per-object", action="store_true", help="also time the per-object path")
    args = parser.parse_args()
    paths = [True, False] if args.per_object else [True]
    for bulk in paths:
        times, setup, visible = run(args, bulk=bulk)
        print(
            f"{args.objects} objects x {args.clients} clients, {args.moving:.0%} moving, "
            f"stagger {args.stagger}, "
            f"{'auto' if bulk else 'per-object'} path: visible/client {visible:.1f}, "
            f"update ms/tick p50 {statistics.median(times):.1f} "
            f"max {max(times):.1f} (setup {setup * 1000:.0f} ms)"
        )


if __name__ == "__main__":
    main()
