"""Time (and optionally profile) the server's tick with interest management, in process and
deterministic (not a test: a measuring tool for issue 11's scale target).

The world of ``python -m harness interest``: ``--objects`` dots in a square of side
``--world``, every one moving every tick (``x``, ``y`` and ``t`` assigned, as the harness
does); ``--clients`` protocol-1 clients (no features, as the harness's light clients) joined
over a ``MemoryNetwork``, each focused on one dot, with a ``Grid`` radius in which
``--visible`` dots lie on average. The server context ticks on a stepped clock; the clients
never run (the bytes queued for them are dropped after each tick), so only the server's work
is timed.

Per tick, the CPU time of the server's work (process time: less sensitive to a shared box
than wall time) split into:

- ``move``: the game moving the dots (the harness's loop; not Reverb's);
- ``collect``: change tracking, comparison and encoding of each changed object (per object);
- ``policy``: ``Interest.update`` (the grid and the visibility deltas);
- ``entries``: encoding this tick's update entries for the views (each once, shared);
- ``assembly``: the rest of ``ServerWorld.tick`` (per-view frames);
- ``send``: the hub (encoding each frame once, framing, queueing it on each session);
  ``encode`` is the part of it spent in the sync encoder;
- ``gc``: the garbage collector, wherever it ran during the tick (the others exclude it).

Per object: ``collect``, the grid's placing of moved objects and ``entries``; per client: the grid's
recomputing of ranges, ``assembly`` and ``send``.

    python -m tests.interest.profile_interest --objects 10000 --clients 1000 --stagger 3
    python -m tests.interest.profile_interest --clients 200 --profile 30

Runs against whatever ``reverb`` is first on ``sys.path`` (run it from the checkout).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import math
import pstats
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from harness.interest import _types
from reverb import ReverbContext, ReverbSide
from reverb.hub import server as hub_module
from reverb.memory import MemoryNetwork
from reverb.replication import shared as shared_module
from reverb.replication.interest import Grid

Dot, Vip = _types()  # the benchmark's own types (harness/interest.py), not copies


class Timer:
    """Accumulated CPU time of the calls of some functions, by name, less the time the
    garbage collector ran during them (counted on its own, as ``gc``)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {"gc": 0.0}
        self._gc_start = 0.0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.process_time()
        else:
            self.spent["gc"] += time.process_time() - self._gc_start

    def close(self) -> None:
        gc.callbacks.remove(self._gc)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        spent = self.spent
        spent.setdefault(name, 0.0)
        clock = time.process_time

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            gc0 = spent["gc"]
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += clock() - t0 - (spent["gc"] - gc0)

        return timed

    def take(self) -> dict[str, float]:
        out = dict(self.spent)
        for name in self.spent:
            self.spent[name] = 0.0
        return out


class Bench:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        rng = random.Random(opts.seed)
        side = float(opts.world)
        self.side = side
        density = opts.objects / side**2
        self.radius = math.sqrt(opts.visible / (math.pi * density))
        ctx = ReverbContext(ReverbSide.SERVER)
        ctx.register(Dot)
        ctx.register(Vip)
        self.ctx = ctx
        self.net = MemoryNetwork(ctx, max_connections=100_000, max_connections_per_ip=100_000)
        ctx.set_interest(Grid(self.radius, stagger=opts.stagger))
        for _ in range(opts.clients):
            client = ReverbContext()
            client.register(Dot)
            client.register(Vip)
            self.net.connect(client, features=())
        ctx.serve()  # the connections
        # The clients' contexts live in this process (in the harness, in others): keep them
        # out of the collector's sight, so that its cost is the server's alone.
        gc.collect()
        gc.freeze()
        self.dots: list[Any] = []
        self.speeds: list[tuple[float, float]] = []
        step = opts.speed / opts.rate
        if opts.budget:  # bytes per second per client (as the harness's budget run)
            ctx.world.set_budget(None, opts.budget)
        with ctx.activate():
            for _ in range(opts.objects):
                cls = Vip if opts.budget and rng.random() < opts.vip else Dot
                self.dots.append(cls(rng.uniform(0, side), rng.uniform(0, side)))
                angle = rng.uniform(0, 2 * math.pi)
                self.speeds.append((step * math.cos(angle), step * math.sin(angle)))
        for member in self.net.server.members:  # each focused on a dot, as in the harness
            ctx.set_focus(member, self.dots[(member * 7919) % len(self.dots)])
        self.now = 0.0
        self.server_tick = ctx.tick
        self.timer = Timer()
        world = ctx.world
        world._collect = self.timer.wrap("collect", world._collect)  # type: ignore[method-assign]
        world.interest.update = self.timer.wrap("policy", world.interest.update)  # type: ignore[method-assign]
        for grid in world.interest._grids:  # the per-client part of the policy
            grid._recompute = self.timer.wrap("recompute", grid._recompute)  # type: ignore[method-assign]
        # this tick's update entries, encoded once each for every view (per object)
        self._shared_encode = getattr(shared_module.Shared, "encode", None)
        if self._shared_encode is not None:
            shared_module.Shared.encode = self.timer.wrap("entries", self._shared_encode)  # type: ignore[method-assign]
        self.hub = self.net.server.hub
        self.hub.send = self.timer.wrap("send", self.hub.send)  # type: ignore[method-assign]
        self._encode = hub_module._encode
        hub_module._encode = self.timer.wrap("encode", hub_module._encode)
        self.tick()  # the full snapshots
        self.drain()
        if opts.freeze:  # as the harness's game server does once its world is made
            gc.collect()
            gc.freeze()

    def close(self) -> None:
        hub_module._encode = self._encode
        self.timer.close()
        gc.unfreeze()
        if self._shared_encode is not None:
            shared_module.Shared.encode = self._shared_encode  # type: ignore[method-assign]

    def move(self) -> None:
        side = self.side
        now = self.now
        moving = max(0, round(len(self.dots) * self.opts.moving))
        for dot, (dx, dy) in zip(self.dots[:moving], self.speeds, strict=False):
            dot.x = round((dot.x + dx) % side, 2)
            dot.y = round((dot.y + dy) % side, 2)
            dot.t = now

    def tick(self) -> None:
        self.now += 1.0 / self.opts.rate
        self.net.clock.now = self.now
        self.server_tick(self.now)

    def drain(self) -> int:
        sent = 0
        for link in self.net.links:
            if link.server is not None:
                sent += len(link.server.data_to_send())
        return sent

    def step(self) -> dict[str, float]:
        clock = time.process_time
        t0 = clock()
        self.move()
        gc0 = self.timer.spent["gc"]
        t1 = clock()
        self.tick()
        t2 = clock()
        sent = self.drain()
        row = self.timer.take()
        row["move"] = t1 - t0
        row["tick"] = t2 - t1
        row["tick_gc"] = row["gc"] - gc0
        row.setdefault("entries", 0.0)
        row["assembly"] = (
            row["tick"]
            - row["tick_gc"]
            - row["collect"]
            - row["policy"]
            - row["send"]
            - row["entries"]
        )
        row["place"] = row["policy"] - row["recompute"]  # the grid's per-object part
        row["per_object"] = row["collect"] + row["place"] + row["entries"]
        row["per_client"] = row["recompute"] + row["assembly"] + row["send"]
        row["bytes"] = sent
        return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--visible", type=float, default=50.0)
    parser.add_argument("--world", type=float, default=1000.0)
    parser.add_argument("--speed", type=float, default=5.0, help="units per second")
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--stagger", type=int, default=1)
    parser.add_argument(
        "--moving", type=float, default=1.0, help="the share of the objects moved each tick"
    )
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=float, default=0.0, help="bytes/s per client (0: none)")
    parser.add_argument("--vip", type=float, default=0.05, help="with --budget: priority-10 share")
    parser.add_argument(
        "--freeze",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="gc.freeze() once the world is made and synced (as harness/interest.py does)",
    )
    parser.add_argument("--profile", type=int, default=0, help="print the top N entries")
    opts = parser.parse_args()
    t0 = time.perf_counter()
    bench = Bench(opts)
    setup = time.perf_counter() - t0
    try:
        for _ in range(5):  # warm up
            bench.step()
        rows = [bench.step() for _ in range(opts.ticks)]

        def ms(key: str) -> float:
            return statistics.fmean(r[key] for r in rows) * 1e3

        n, c = opts.objects, max(1, opts.clients)
        ticks = [r["tick"] * 1e3 for r in rows]
        print(
            f"objects={n} clients={opts.clients} visible~{opts.visible:g} "
            f"radius={bench.radius:.1f} stagger={opts.stagger} (setup {setup:.1f} s); "
            f"CPU ms per tick, mean of {len(rows)} ticks\n"
            f"  tick {ms('tick'):.1f} (median {statistics.median(ticks):.1f}, "
            f"min {min(ticks):.1f}) = collect {ms('collect'):.1f} "
            f"+ policy {ms('policy'):.1f} (grid placing {ms('place'):.1f}, "
            f"per-client recompute {ms('recompute'):.1f}) + entries {ms('entries'):.1f} "
            f"+ assembly {ms('assembly'):.1f} "
            f"+ send {ms('send'):.1f} (of which encode {ms('encode'):.1f}) "
            f"+ gc {ms('tick_gc'):.1f}; game move {ms('move'):.1f}\n"
            f"  per object {ms('per_object') * 1e3 / n:.2f} us (collect, placing, entries), "
            f"per client {ms('per_client') * 1e3 / c:.1f} us (recompute, assembly, send), "
            f"gc {ms('tick_gc'):.1f} ms; "
            f"{statistics.median(r['bytes'] for r in rows) / c:.0f} bytes/client/tick"
        )
        if opts.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(opts.ticks):
                bench.step()
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(opts.profile)
    finally:
        bench.close()


if __name__ == "__main__":
    main()
