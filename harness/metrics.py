"""Small measurement helpers shared by the harness and its child programs (stdlib only)."""

from __future__ import annotations

import math
import random
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = [
    "CallPlan",
    "Progress",
    "Reservoir",
    "StampWindow",
    "cpu_seconds",
    "percentile",
    "proc_status_kb",
    "summary",
]


class Reservoir:
    """A uniform random sample of at most ``cap`` values out of all values added (Algorithm R)."""

    def __init__(self, cap: int = 20000, seed: int = 0) -> None:
        self.cap = cap
        self.count = 0
        self.values: list[float] = []
        self._rng = random.Random(seed)

    def add(self, value: float) -> None:
        self.count += 1
        if len(self.values) < self.cap:
            self.values.append(value)
            return
        slot = self._rng.randrange(self.count)
        if slot < self.cap:
            self.values[slot] = value

    def clear(self) -> None:
        self.count = 0
        self.values = []


class StampWindow:
    """Freshness of the updates stamped in a window ``[start, until)``: how many arrived, and a
    sample of their ages (arrival - stamp).

    The window is known only when the ``stream`` command arrives, after the server marked its
    start; a client process slow to read that command may already have received updates
    stamped inside it. So from ``reset()`` until ``open()`` every arrival is held (a bounded
    list: that gap is short), and ``open()`` counts the held ones that fall in the window."""

    MAX_HELD = 200_000  # arrivals held before the window opens (the gap is short: load resets
    # its samples just before it marks the window)

    def __init__(self, seed: int = 0) -> None:
        self.window: tuple[float, float] | None = None
        self.ages = Reservoir(20000, seed=seed)
        self.count = 0
        self._held: list[tuple[float, float]] | None = None

    def reset(self) -> None:
        """Forget everything; hold arrivals until ``open``."""
        self.window = None
        self.ages.clear()
        self.count = 0
        self._held = []

    def open(self, start: float, until: float) -> None:
        self.window = (start, until)
        held, self._held = self._held or [], None
        for stamp, now in held:
            self.see(stamp, now)

    def see(self, stamp: float, now: float) -> None:
        window = self.window
        if window is not None:
            if window[0] <= stamp < window[1]:
                self.count += 1
                self.ages.add(now - stamp)
        elif self._held is not None and len(self._held) < self.MAX_HELD:
            self._held.append((stamp, now))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: Sequence[float], scale: float = 1.0) -> dict[str, Any]:
    """``{count, p50, p90, p99, max}`` of ``values`` times ``scale``, rounded for reading."""

    def r(x: float | None) -> float | None:
        return None if x is None else round(x * scale, 3)

    return {
        "count": len(values),
        "p50": r(percentile(values, 50)),
        "p90": r(percentile(values, 90)),
        "p99": r(percentile(values, 99)),
        "max": r(max(values) if values else None),
    }


def cpu_seconds() -> float:
    """User + system CPU time of this process, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_status_kb(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``); ru_maxrss as fallback."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class Progress:
    """A one-line text progress bar on stderr (only drawn when enabled)."""

    def __init__(self, label: str, total: float, *, enabled: bool, stream: TextIO | None = None):
        self.label = label
        self.total = max(total, 1e-9)
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._last = -1.0
        self._start = time.monotonic()

    def update(self, done: float, note: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.2 and done < self.total:
            return
        self._last = now
        frac = min(max(done / self.total, 0.0), 1.0)
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        self.stream.write(
            f"\r{self.label:<12} [{bar}] {frac * 100:5.1f}% {now - self._start:6.1f}s {note:<30}"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.update(self.total)
            self.stream.write("\n")
            self.stream.flush()


class CallPlan:
    """An open-loop call schedule for ``clients`` clients over the window ``[start, until)``.

    Client *i* calls at ``start + phase_i + k / rate`` for every ``k >= 0`` whose time is before
    ``until`` (``phase_i`` uniform in one period, so the clients do not call in lockstep).
    ``planned`` is fixed up front: a process that falls behind does not plan fewer calls, it
    sends the overdue ones late (``due`` returns them all) and ``late`` / ``max_late_s`` say
    so. Nothing is skipped silently: a call the process could not send stays ``planned`` and
    never becomes ``sent``. Times are ``time.monotonic()`` (one clock for every process).
    """

    def __init__(
        self, clients: int, rate: float, start: float, until: float, rng: random.Random
    ) -> None:
        self.period = 1.0 / rate
        self.until = until
        self.first = [start + rng.random() * self.period for _ in range(clients)]
        self.k = [0] * clients
        # an open-ended stream (until = inf, the churn and faults scenarios) plans no count
        self.planned = sum(self._slots(t) for t in self.first) if math.isfinite(until) else 0
        self.sent = 0
        self.late = 0  # calls sent more than one period after their slot
        self.max_late_s = 0.0

    def _slots(self, first: float) -> int:
        n = 0
        while first + n * self.period < self.until:
            n += 1
        return n

    def due(self, i: int, now: float) -> int:
        """How many of client ``i``'s calls are due at ``now``; the caller adds to ``sent``
        each one it actually sends."""
        n = 0
        while True:
            slot = self.first[i] + self.k[i] * self.period
            if slot > now or slot >= self.until:
                break
            self.k[i] += 1
            n += 1
            lateness = now - slot
            if lateness > self.period:
                self.late += 1
            self.max_late_s = max(self.max_late_s, lateness)
        return n

    def stop(self, now: float) -> None:
        """End the window at ``now`` if it has not ended yet (stream off)."""
        self.until = min(self.until, now)

    def drop(self, i: int) -> None:
        """Client ``i`` can no longer call (its connection closed): its remaining slots stay
        planned and unsent."""
        self.k[i] = 1 << 60
