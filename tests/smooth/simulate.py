"""Smoothness simulation (a deterministic model, not a timed test).

A server moves one object along waypoints (with pauses) and ticks at 30 Hz; every tick it sends
a ``sync`` stamped with its tick and time, carrying the object's fields when they changed (an
empty sync otherwise, as proposed in docs/design/smooth.md). The link delays each message by
60 ms ± 20 ms (uniform), in order like TCP (a message never overtakes the previous one). The
client pings 8 times 100 ms apart at connect, then once a second, through the same link. The
client's clock is offset from the server's. The client renders at 60 FPS:

* **off** — the latest replicated value, as a game without interpolation shows it;
* **on** — :class:`~reverb.interpolation.InterpolationManager` at its render time.

Figures, per mode:

* *frozen*: share of frames where the rendered position did not move while the true one (at
  the same lag) moved;
* *error p50/p99*: distance between the rendered position and the true trajectory delayed by
  the constant lag that fits that mode best (the least mean error over 0-300 ms): what the eye
  sees as stutter and jitter, independently of how far behind the picture is.

It also reports the server-time estimate's error against the real server clock.

Run: ``python -m tests.smooth.simulate [--seconds 60] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
from dataclasses import dataclass

from reverb.interpolation import InterpolationManager
from reverb.timesync import ServerClock

TICK_RATE = 30.0
FPS = 60.0
LATENCY = 0.060
JITTER = 0.020
SPEED = 200.0  # px per second: one tick's movement is SPEED / TICK_RATE = 6.67 px
CLOCK_OFFSET = 1234.5  # client clock minus server clock, seconds
PING_INTERVAL = 1.0  # steady clock-sync pings (docs/design/smooth.md)
PING_BURST = 8  # pings at connect, PING_BURST_INTERVAL apart
PING_BURST_INTERVAL = 0.1

WAYPOINTS = [(100.0, 100.0), (500.0, 100.0), (500.0, 400.0), (150.0, 350.0), (300.0, 200.0)]
PAUSE = 0.4  # seconds standing still at each waypoint


@dataclass(frozen=True)
class Figures:
    frozen: float  # share of frames, 0..1
    p50: float  # px
    p99: float  # px
    lag: float  # seconds: the constant lag that fits best
    stutter_p99: float  # px: p99 of |rendered step - true step| from one frame to the next


@dataclass(frozen=True)
class Result:
    off: Figures
    on: Figures
    tick_movement: float  # px
    clock_p50: float  # seconds, |estimated - real| server time
    clock_p99: float
    frames: int


def _legs() -> list[tuple[tuple[float, float], tuple[float, float], float]]:
    legs = []
    for i, a in enumerate(WAYPOINTS):
        b = WAYPOINTS[(i + 1) % len(WAYPOINTS)]
        legs.append((a, b, math.dist(a, b) / SPEED))
    return legs


LEGS = _legs()
PERIOD = sum(duration + PAUSE for _, _, duration in LEGS)


def trajectory(t: float) -> tuple[float, float]:
    """The server's true position at server time ``t`` (continuous, loops over waypoints)."""
    t %= PERIOD
    for a, b, duration in LEGS:
        if t < PAUSE:
            return a
        t -= PAUSE
        if t < duration:
            f = t / duration
            return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)
        t -= duration
    return WAYPOINTS[0]


class Link:
    """One direction: latency ± jitter, delivered in order."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._last = -math.inf

    def arrival(self, sent: float) -> float:
        at = sent + LATENCY + self._rng.uniform(-JITTER, JITTER)
        self._last = max(self._last, at)
        return self._last


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _figures(frames: list[tuple[float, tuple[float, float]]]) -> Figures:
    """``frames``: (server time the frame is shown at, rendered position)."""

    def errors(lag: float) -> list[float]:
        return [math.dist(pos, trajectory(t - lag)) for t, pos in frames]

    coarse = min((ms / 1000 for ms in range(0, 301, 10)), key=lambda lg: sum(errors(lg)))
    lag = min(
        (coarse + ms / 1000 for ms in range(-10, 11) if coarse + ms / 1000 >= 0),
        key=lambda lg: sum(errors(lg)),
    )
    errs = errors(lag)
    frozen = 0
    stutter = []
    for (t0, p0), (t1, p1) in itertools.pairwise(frames):
        true0, true1 = trajectory(t0 - lag), trajectory(t1 - lag)
        if true1 != true0 and p1 == p0:
            frozen += 1
        # How far this frame's step differs from the true step: what the eye sees as judder.
        stutter.append(
            math.dist((p1[0] - p0[0], p1[1] - p0[1]), (true1[0] - true0[0], true1[1] - true0[1]))
        )
    return Figures(
        frozen=frozen / max(1, len(frames) - 1),
        p50=_percentile(errs, 0.5),
        p99=_percentile(errs, 0.99),
        lag=lag,
        stutter_p99=_percentile(stutter, 0.99),
    )


def run(seconds: float = 60.0, seed: int = 1) -> Result:
    rng = random.Random(seed)
    down, up = Link(rng), Link(rng)
    # What the server sends, by server time: (time sent, order, kind, payload).
    sends: list[tuple[float, int, str, tuple[float, ...]]] = []
    previous: tuple[float, float] | None = None
    for tick in range(int(seconds * TICK_RATE) + 1):
        ts = tick / TICK_RATE
        pos = trajectory(ts)
        changed = pos != previous
        previous = pos
        payload: tuple[float, ...] = (float(tick), ts, *pos) if changed else (float(tick), ts)
        sends.append((ts, 1, "sync", payload))
    ping = 0.0
    for count in itertools.count():
        if ping >= seconds:
            break
        ts = up.arrival(ping)  # the server answers at once, stamping its time
        sends.append((ts, 0, "pong", (ping + CLOCK_OFFSET, ts)))
        ping += PING_BURST_INTERVAL if count < PING_BURST else PING_INTERVAL
    sends.sort()
    # What the client receives, at local (client) times, in order.
    events = [
        (down.arrival(sent) + CLOCK_OFFSET, kind, payload) for sent, _, kind, payload in sends
    ]
    events.reverse()

    clock = ServerClock(tick_rate=TICK_RATE)
    interp: InterpolationManager[int] = InterpolationManager(tick_interval=1 / TICK_RATE)
    interp.track(1, ("x", "y"))
    latest: tuple[float, float] | None = None
    off: list[tuple[float, tuple[float, float]]] = []
    on: list[tuple[float, tuple[float, float]]] = []
    clock_errors: list[float] = []
    frame = 0
    warmup = 2.0  # seconds before measuring: the first snapshot and pings arrive
    while True:
        now_server = frame / FPS
        if now_server > seconds:
            break
        now = now_server + CLOCK_OFFSET
        while events and events[-1][0] <= now:
            at, kind, payload = events.pop()
            if kind == "sync":
                tick, ts = int(payload[0]), payload[1]
                clock.add_sync(tick, ts, at)
                if len(payload) == 4:
                    latest = (payload[2], payload[3])
                    interp.push(1, ts, {"x": payload[2], "y": payload[3]})
                interp.observe_sync(ts, at)
            else:
                clock.add_pong(payload[0], payload[1], at)
        frame += 1
        if latest is None:
            continue
        estimate = clock.server_time(now)
        rendered = interp.interpolate(now)[1]
        if now_server < warmup:
            continue
        clock_errors.append(abs(estimate - now_server))
        off.append((now_server, latest))
        x, y = rendered["x"], rendered["y"]
        assert isinstance(x, float) and isinstance(y, float)
        on.append((now_server, (x, y)))
    return Result(
        off=_figures(off),
        on=_figures(on),
        tick_movement=SPEED / TICK_RATE,
        clock_p50=_percentile(clock_errors, 0.5),
        clock_p99=_percentile(clock_errors, 0.99),
        frames=len(on),
    )


def report(result: Result) -> str:
    lines = [
        f"{TICK_RATE:g} Hz server, {FPS:g} FPS client, link {LATENCY * 1000:g} ms "
        f"± {JITTER * 1000:g} ms (in order), speed {SPEED:g} px/s "
        f"(one tick = {result.tick_movement:.2f} px), {result.frames} frames",
        f"{'mode':<5} {'frozen':>8} {'err p50':>9} {'err p99':>9} {'step p99':>9} {'lag':>7}",
    ]
    for name, fig in (("off", result.off), ("on", result.on)):
        lines.append(
            f"{name:<5} {fig.frozen * 100:7.2f}% {fig.p50:7.2f}px {fig.p99:7.2f}px "
            f"{fig.stutter_p99:7.2f}px {fig.lag * 1000:4.0f} ms"
        )
    lines.append(
        f"server-time estimate error: p50 {result.clock_p50 * 1000:.2f} ms, "
        f"p99 {result.clock_p99 * 1000:.2f} ms"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(report(run(args.seconds, args.seed)))


if __name__ == "__main__":
    main()
