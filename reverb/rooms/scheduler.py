"""Ticks many rooms, each at its own rate, on one loop: a heap of next-due times, sans I/O.

``run_due(now)`` ticks every room due at ``now``, earliest first, **each at most once per
call**, and returns how long the loop may wait for the next one. Rules (they are what the
fairness test checks):

- a tick is due at its scheduled time; the next is scheduled one period after the previous
  schedule, so a room keeps its rate through jitter;
- a room whose tick took longer than its period (an *overrun*) does not catch up: its next
  tick is due one period after that tick ended. The slow room alone loses rate (a room that
  needs 50 ms per tick at 30 Hz runs at 1/(50 ms + 33 ms) ≈ 12 Hz) and leaves the loop free
  for the others between its ticks;
- a room more than ``max_catch_up`` periods behind for another reason (the loop stalled)
  restarts its schedule from the time its tick ended instead of ticking in a burst;
- because each due room runs once per call and rooms run in due order, a room that is due is
  delayed by at most the ticks of the rooms due before it in that call — a slow room delays
  the others by its own tick, never by its backlog of overruns. After a stall of the whole
  loop every room behind (up to ``max_catch_up`` periods) catches up one tick per call, the
  slow room too, so with a slow room the loop takes longer to be on time again (measured:
  guide §18 "Ticks and performance", ``python -m harness rooms --slow-ms``).

Durations are measured with ``clock`` (a callable passed in, ``time.monotonic`` in the I/O
layer, a stepped fake in tests), and reported per room by ``stats()``: counts and worst cases
since the room was added (or since ``reset_stats()``, which starts a measuring window), and
percentiles of duration and lateness over each room's last 256 ticks.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TickScheduler", "TickStats"]

MAX_CATCH_UP = 4  # periods behind before a room's schedule restarts (as ReverbContext's)
_RING = 256  # recent tick durations kept per room for the percentile


@dataclass(frozen=True)
class TickStats:
    """One room's ticks: how many, how long (seconds), how late, how many restarts."""

    key: str
    rate: float
    ticks: int
    mean: float
    p99: float
    max: float
    overruns: int  # ticks that took longer than the room's period
    late_max: float  # worst delay between a tick's due time and its start
    restarts: int  # schedule restarts after falling max_catch_up periods behind
    late_p50: float = 0.0  # delay between due time and start, over the recent ticks
    late_p99: float = 0.0


class _Entry:
    __slots__ = (
        "due",
        "durations",
        "key",
        "late_max",
        "lates",
        "overruns",
        "period",
        "rate",
        "restarts",
        "tick",
        "ticks",
        "total",
        "worst",
    )

    def __init__(self, key: str, rate: float, tick: Callable[[float], object], due: float) -> None:
        self.key = key
        self.rate = rate
        self.period = 1.0 / rate
        self.tick = tick
        self.due = due
        self.ticks = 0
        self.total = 0.0
        self.worst = 0.0
        self.overruns = 0
        self.late_max = 0.0
        self.restarts = 0
        self.durations: list[float] = []
        self.lates: list[float] = []


class TickScheduler:
    """Rooms (any keyed tick callables) with independent rates on one loop."""

    def __init__(self, clock: Callable[[], float], *, max_catch_up: int = MAX_CATCH_UP) -> None:
        self._clock = clock
        self._max_catch_up = max_catch_up
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, _Entry]] = []
        self._seq = 0

    def add(self, key: str, rate: float, tick: Callable[[float], object], now: float) -> None:
        """Tick ``tick(now)`` at ``rate`` Hz from ``now`` on (first tick due at once)."""
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"tick rate must be a positive number, not {rate!r}")
        if key in self._entries:
            raise ValueError(f"{key!r} is already scheduled")
        entry = _Entry(key, rate, tick, now)
        self._entries[key] = entry
        self._push(entry)

    def remove(self, key: str) -> None:
        """Stop ticking ``key`` (its heap entry is dropped lazily)."""
        self._entries.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def next_due(self) -> float | None:
        self._discard_removed()
        return self._heap[0][0] if self._heap else None

    def run_due(self, now: float) -> float:
        """Tick every room due at ``now`` once, earliest first; return the seconds until the
        next due tick (``math.inf`` when nothing is scheduled, 0.0 when one is due already)."""
        due: list[_Entry] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, entry = heapq.heappop(self._heap)
            if self._entries.get(entry.key) is entry:
                due.append(entry)
        clock = self._clock
        for entry in due:
            if self._entries.get(entry.key) is not entry:
                continue  # removed by an earlier tick in this call (a room disposed another)
            start = clock()
            entry.tick(start)
            end = clock()
            self._record(entry, end - start, max(0.0, start - entry.due))
            if self._entries.get(entry.key) is not entry:
                continue  # the room removed itself
            if end - start > entry.period:
                entry.due = end + entry.period  # an overrunning room pays for it alone
            else:
                entry.due += entry.period
                if end - entry.due >= self._max_catch_up * entry.period:
                    entry.due = end + entry.period  # stalled loop: no burst of ticks
                    entry.restarts += 1
            self._push(entry)
        nxt = self.next_due()
        if nxt is None:
            return math.inf
        return max(0.0, nxt - clock())

    def stats(self) -> list[TickStats]:
        out = []
        for e in self._entries.values():
            lates = sorted(e.lates)
            out.append(
                TickStats(
                    key=e.key,
                    rate=e.rate,
                    ticks=e.ticks,
                    mean=e.total / e.ticks if e.ticks else 0.0,
                    p99=_pct(sorted(e.durations), 0.99),
                    max=e.worst,
                    overruns=e.overruns,
                    late_max=e.late_max,
                    restarts=e.restarts,
                    late_p50=_pct(lates, 0.5),
                    late_p99=_pct(lates, 0.99),
                )
            )
        return out

    def reset_stats(self) -> None:
        """Start a measuring window: every room's counts, worst cases and recent ticks are
        forgotten (the schedule is untouched)."""
        for e in self._entries.values():
            e.ticks = e.overruns = e.restarts = 0
            e.total = e.worst = e.late_max = 0.0
            e.durations = []
            e.lates = []

    def _record(self, entry: _Entry, duration: float, late: float) -> None:
        entry.ticks += 1
        entry.total += duration
        entry.worst = max(entry.worst, duration)
        entry.late_max = max(entry.late_max, late)
        if duration > entry.period:
            entry.overruns += 1
        if len(entry.durations) < _RING:
            entry.durations.append(duration)
            entry.lates.append(late)
        else:
            entry.durations[entry.ticks % _RING] = duration
            entry.lates[entry.ticks % _RING] = late

    def _push(self, entry: _Entry) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (entry.due, self._seq, entry))

    def _discard_removed(self) -> None:
        heap = self._heap
        while heap and self._entries.get(heap[0][2].key) is not heap[0][2]:
            heapq.heappop(heap)


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0
