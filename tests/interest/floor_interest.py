"""What a minimal hand-written server needs per tick for issue 11's workload, in CPython
(not a test: a measuring tool, to tell how far Reverb's tick is from the floor).

10,000 objects (``__slots__``, no change tracking) each move every tick, as the harness
moves them; they are bucketed in cells of the view radius and each one's update is encoded
once (a JSON array of its uid and three numbers); each of 1000 clients gathers the objects
of the 3 x 3 cells around its focus within the radius (~50; no hysteresis, no per-client
state) and gets one frame (a 4-byte length and a JSON body joining their fragments), queued
on a ``bytearray`` (no socket). CPU time per part, median of the ticks.

    python -m tests.interest.floor_interest
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import time


class Dot:
    __slots__ = ("t", "uid", "x", "y")

    def __init__(self, uid: int, x: float, y: float) -> None:
        self.uid = uid
        self.x = x
        self.y = y
        self.t = 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--visible", type=float, default=50.0)
    parser.add_argument("--world", type=float, default=1000.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--ticks", type=int, default=20)
    opts = parser.parse_args()
    rng = random.Random(1)
    n, side = opts.objects, opts.world
    radius = math.sqrt(opts.visible / (math.pi * n / side**2))
    dots = [Dot(i + 1, rng.uniform(0, side), rng.uniform(0, side)) for i in range(n)]
    speeds = []
    for _ in range(n):
        angle = rng.uniform(0, 2 * math.pi)
        speeds.append((5 / opts.rate * math.cos(angle), 5 / opts.rate * math.sin(angle)))
    focus = [dots[(c * 7919) % n] for c in range(opts.clients)]
    queues = [bytearray() for _ in focus]
    s = radius  # 3 x 3 cells around each focus
    r2 = radius * radius

    def tick(now: float) -> tuple[float, float, float, int]:
        clock = time.process_time
        t0 = clock()
        for dot, (dx, dy) in zip(dots, speeds, strict=True):
            dot.x = round((dot.x + dx) % side, 2)
            dot.y = round((dot.y + dy) % side, 2)
            dot.t = now
        t1 = clock()
        cells: dict[tuple[int, int], list[Dot]] = {}
        fragments: dict[int, bytes] = {}
        for dot in dots:
            key = (int(dot.x // s), int(dot.y // s))
            bucket = cells.get(key)
            if bucket is None:
                cells[key] = [dot]
            else:
                bucket.append(dot)
            fragments[dot.uid] = b"[%d,%r,%r,%r]" % (dot.uid, dot.x, dot.y, dot.t)
        t2 = clock()
        seen = 0
        for f, queue in zip(focus, queues, strict=True):
            fx, fy = f.x, f.y
            cx, cy = int(fx // s), int(fy // s)
            near = [
                fragments[d.uid]
                for i in (cx - 1, cx, cx + 1)
                for j in (cy - 1, cy, cy + 1)
                for d in cells.get((i, j), ())
                if (d.x - fx) ** 2 + (d.y - fy) ** 2 <= r2
            ]
            seen += len(near)
            body = b'{"type":"sync","tick":1,"update":[' + b",".join(near) + b"]}"
            queue += len(body).to_bytes(4, "big")
            queue += body
        t3 = clock()
        for queue in queues:
            queue.clear()
        return t1 - t0, t2 - t1, t3 - t2, seen

    gc.freeze()
    rows = [tick(i / opts.rate) for i in range(opts.ticks + 3)][3:]
    move, bucket, clients = (statistics.median(row[k] for row in rows) * 1e3 for k in range(3))
    seen = statistics.fmean(row[3] for row in rows) / max(1, opts.clients)
    server = bucket + clients
    print(
        f"objects={n} clients={opts.clients} ~{seen:.0f} visible each; CPU ms per tick "
        f"(median): move {move:.1f}, bucket + encode {bucket:.1f}, per-client gather + frame "
        f"{clients:.1f}; server {server:.1f} ({1000 / server:.0f} Hz), with the moves "
        f"{move + server:.1f} ({1000 / (move + server):.0f} Hz) on one core"
    )


if __name__ == "__main__":
    main()
