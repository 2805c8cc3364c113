"""``python -m harness smooth``: smoothness of a remote object through the fault proxy.

A server process (``python -m harness.smooth serve``, 30 Hz) moves one object along a known
trajectory: a 400 x 300 px rectangle at 200 px/s with a 0.4 s pause at each corner. A client
in this process connects through ``FaultProxy`` (default 60 ms ± 20 ms each way), renders the
object at 60 FPS and compares, on every frame, what it would draw against the true position:

- **off**: the replicated attribute as it is (latest value);
- **on**: the library's interpolation (``ReverbManager``/``ctx.interpolate()``, ``obj.rendered``).

Error is the distance to the true trajectory delayed by the constant lag that fits that mode
best (every renderer shows the past; what matters is how faithfully); *frozen* is the share of
frames where the drawn position did not move while the (lagged) truth did. The server-time
estimate is compared with the server's real clock: on one machine both are
``time.monotonic()`` (protocol §13.1, Reverb's server time).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import threading
import time
from typing import Any

from harness.procs import ROOT
from harness.proxy import FaultProxy, Toxics
from reverb import Client, ReverbContext, ReverbObject, ReverbSide, Server

__all__ = ["main", "position"]

SPEED = 200.0  # px/s
PAUSE = 0.4  # s at each corner
CORNERS = [(100.0, 100.0), (500.0, 100.0), (500.0, 400.0), (100.0, 400.0)]
FPS = 60.0
TICK_RATE = 30.0


def _legs() -> list[tuple[float, tuple[float, float], tuple[float, float]]]:
    legs = []
    for i, a in enumerate(CORNERS):
        b = CORNERS[(i + 1) % len(CORNERS)]
        legs.append((math.dist(a, b) / SPEED, a, b))
    return legs


LEGS = _legs()
LOOP = sum(d + PAUSE for d, _, _ in LEGS)


def position(s: float) -> tuple[float, float]:
    """The true position ``s`` seconds after the start (before it: the start)."""
    s = max(0.0, s) % LOOP
    for duration, a, b in LEGS:
        if s < PAUSE:
            return a
        s -= PAUSE
        if s < duration:
            f = s / duration
            return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)
        s -= duration
    return CORNERS[0]  # pragma: no cover - float rounding at the loop's end


class Runner(ReverbObject):
    __reverb_fields__ = ("x", "y", "t0")
    __reverb_interpolate__ = ("x", "y")

    def __init__(self, t0=0.0, uid=None, add_on_init=True, belonging_membership=None):  # type: ignore[no-untyped-def]
        self.t0 = t0
        self.x, self.y = position(0.0)
        super().__init__(
            t0, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


def serve() -> None:
    """The server process: prints ``READY <port>``, runs until stdin closes."""
    ctx = ReverbContext(ReverbSide.SERVER)
    ctx.register(Runner)
    server = Server("127.0.0.1", 0, tick_rate=TICK_RATE, context=ctx)
    server.start_server()
    t0 = time.monotonic()
    with ctx.activate():
        runner = Runner(t0)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print(f"READY {server.port}", flush=True)
    while not done.is_set():
        now = time.monotonic()
        runner.x, runner.y = position(now - t0)
        wait = ctx.server_step(now)  # ticks with the position of this very moment
        if wait > 0:
            time.sleep(min(wait, 0.002))
    server.stop_server()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _score(frames: list[tuple[float, float, float]], t0: float) -> dict[str, float]:
    """(local time, x, y) per frame against the truth, at the best constant lag."""

    def errors(lag: float) -> list[float]:
        return [math.dist((x, y), position(now - lag - t0)) for now, x, y in frames]

    best = min((i * 0.002 for i in range(0, 200)), key=lambda lag: _percentile(errors(lag), 0.5))
    errs = errors(best)
    frozen = moving = 0
    for (n0, x0, y0), (n1, x1, y1) in itertools.pairwise(frames):
        truth_moved = math.dist(position(n0 - best - t0), position(n1 - best - t0)) > 1e-6
        if truth_moved:
            moving += 1
            frozen += (x0, y0) == (x1, y1)
    return {
        "frozen_pct": round(100.0 * frozen / max(1, moving), 2),
        "error_p50_px": round(_percentile(errs, 0.5), 2),
        "error_p99_px": round(_percentile(errs, 0.99), 2),
        "lag_ms": round(1000 * best, 1),
    }


def measure(seconds: float, latency: float, jitter: float, seed: int = 1) -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.smooth", "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(20.0)
        if not ready or not ready[0].startswith("READY "):
            raise RuntimeError(f"the server did not start: {ready}")
        port = int(ready[0].split()[1])
        with FaultProxy(port, lambda i: Toxics(latency=latency, jitter=jitter), seed=seed) as px:
            return _run_client(px.port, seconds) | {
                "link": Toxics(latency=latency, jitter=jitter).describe(),
                "seconds": seconds,
                "fps": FPS,
                "tick_rate": TICK_RATE,
                "one_tick_px": round(SPEED / TICK_RATE, 2),
            }
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_client(port: int, seconds: float) -> dict[str, Any]:
    ctx = ReverbContext()
    ctx.register(Runner)
    clt = Client("127.0.0.1", port, context=ctx)
    clt.connect()
    try:
        deadline = time.monotonic() + 15.0
        while not (clt.clock_ready and ctx.objects):
            if time.monotonic() > deadline:
                raise RuntimeError("no clock estimate and no object within 15 s")
            ctx.client_sync(timeout=0.05)
        warm_until = time.monotonic() + 2.0  # let the delay and the clock settle
        off: list[tuple[float, float, float]] = []
        on: list[tuple[float, float, float]] = []
        clock_errors: list[float] = []
        runner = next(iter(ctx.objects.values()))
        t0 = float(runner.t0)
        end = warm_until + seconds
        next_frame = time.monotonic()
        while True:
            next_frame += 1.0 / FPS
            while (left := next_frame - time.monotonic()) > 0:
                ctx.client_sync(timeout=left)
            now = time.monotonic()
            if now >= end:
                break
            ctx.client_sync()
            ctx.interpolate(now)
            if now < warm_until:
                continue
            off.append((now, float(runner.x), float(runner.y)))
            rendered = runner.rendered
            on.append((now, float(rendered["x"]), float(rendered["y"])))  # type: ignore[arg-type]
            clock_errors.append(abs(clt.server_time(now) - now))
        return {
            "frames": len(on),
            "off": _score(off, t0),
            "on": _score(on, t0),
            "interpolation_delay_ms": round(1000 * clt.interpolation_delay, 1),
            "rtt_ms": round(1000 * clt.rtt, 1),
            "server_time_error_ms": {
                "p50": round(1000 * _percentile(clock_errors, 0.5), 2),
                "p99": round(1000 * _percentile(clock_errors, 0.99), 2),
            },
        }
    finally:
        clt.disconnect()


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve()
        return 0
    p = argparse.ArgumentParser(prog="python -m harness smooth", description=__doc__)
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds (20)")
    p.add_argument("--latency", type=float, default=0.060, help="one-way latency, s (0.060)")
    p.add_argument("--jitter", type=float, default=0.020, help="± jitter, s (0.020)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    result = measure(args.seconds, args.latency, args.jitter)
    print(
        f"smooth: {result['link']}, {result['frames']} frames at {FPS:g} FPS, "
        f"one tick = {result['one_tick_px']} px"
    )
    for mode in ("off", "on"):
        r = result[mode]
        print(
            f"  interpolation {mode:3}: frozen {r['frozen_pct']:5.2f} %  error p50 "
            f"{r['error_p50_px']:6.2f} px  p99 {r['error_p99_px']:6.2f} px  lag {r['lag_ms']} ms"
        )
    clock = result["server_time_error_ms"]
    print(
        f"  server-time estimate error: p50 {clock['p50']} ms, p99 {clock['p99']} ms "
        f"(rtt {result['rtt_ms']} ms, interpolation delay {result['interpolation_delay_ms']} ms)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
