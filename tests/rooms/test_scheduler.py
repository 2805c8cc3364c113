"""reverb/rooms/scheduler.py: independent rates on one loop, fairness with a slow room, stats.

The clock is stepped: a room's tick "takes" time by advancing it, the loop "waits" by
advancing it to the next due tick. Nothing sleeps.
"""

from __future__ import annotations

import math

import pytest

from reverb.rooms import TickScheduler, TickStats
from tests.rooms.helpers import Clock


def run(clock: Clock, sched: TickScheduler, seconds: float) -> None:
    end = clock() + seconds
    while clock() < end:
        wait = sched.run_due(clock())
        if wait > 0:
            clock.advance(min(wait, end - clock()) if math.isfinite(wait) else end - clock())


def working(clock: Clock, cost: float, log: list[float] | None = None) -> object:
    def tick(now: float) -> None:
        if log is not None:
            log.append(now)
        clock.advance(cost)

    return tick


def by_key(stats: list[TickStats]) -> dict[str, TickStats]:
    return {s.key: s for s in stats}


def test_independent_rates_on_one_loop() -> None:
    clock = Clock(0.0)
    sched = TickScheduler(clock)
    for key, rate in (("a", 10.0), ("b", 30.0), ("c", 60.0)):
        sched.add(key, rate, working(clock, 0.0), clock())
    run(clock, sched, 9.99)  # ticks at 0, 1/rate, ... up to 9.9
    ticks = {s.key: s.ticks for s in sched.stats()}
    assert ticks == {"a": 100, "b": 300, "c": 600}


def test_a_slow_room_delays_others_by_at_most_its_own_tick() -> None:
    clock = Clock(0.0)
    sched = TickScheduler(clock)
    slow_cost, fast_cost = 0.050, 0.001  # the slow room needs 150 % of its 33 ms period
    for n in range(5):
        sched.add(f"fast{n}", 30.0, working(clock, fast_cost), clock())
    sched.add("slow", 30.0, working(clock, slow_cost), clock())
    run(clock, sched, 10.0)
    stats = by_key(sched.stats())
    for n in range(5):
        fast = stats[f"fast{n}"]
        assert fast.ticks >= 297  # 30 Hz held over 10 s
        # late by at most one slow tick plus the other fast rooms' ticks, never by a backlog
        assert fast.late_max <= slow_cost + 5 * fast_cost + 1e-9
        assert fast.overruns == 0
    slow = stats["slow"]
    assert slow.overruns == slow.ticks  # every tick of it overran, and it alone pays:
    assert 110 <= slow.ticks <= 125  # ≈ 10 s / (50 ms + 33 ms)
    assert slow.mean == pytest.approx(slow_cost) and slow.max == pytest.approx(slow_cost)


def test_without_the_slow_room_lateness_is_the_others_ticks_only() -> None:
    clock = Clock(0.0)
    sched = TickScheduler(clock)
    for n in range(5):
        sched.add(f"fast{n}", 30.0, working(clock, 0.001), clock())
    run(clock, sched, 5.0)
    assert max(s.late_max for s in sched.stats()) <= 0.005 + 1e-9


def test_each_due_room_runs_once_per_call_in_due_order() -> None:
    clock = Clock(5.0)
    sched = TickScheduler(clock)
    order: list[str] = []
    sched.add("late", 10.0, lambda now: order.append("late"), 4.85)
    sched.add("early", 10.0, lambda now: order.append("early"), 4.8)
    assert sched.run_due(5.0) == 0.0  # both are still behind: due again at once
    assert order == ["early", "late"]  # but each ran once, earliest first
    sched.run_due(5.0)
    assert order == ["early", "late", "early", "late"]
    assert sched.run_due(5.0) == pytest.approx(0.0 + 0.05)  # late is due at 5.05
    assert order == ["early", "late", "early", "late", "early"]


def test_a_stalled_loop_restarts_the_schedule_instead_of_bursting() -> None:
    clock = Clock(0.0)
    sched = TickScheduler(clock)
    log: list[float] = []
    sched.add("r", 10.0, working(clock, 0.0, log), 0.0)
    sched.run_due(clock())
    clock.advance(2.0)  # the process was stopped for 20 periods
    run(clock, sched, 0.35)
    assert len(log) == 1 + 4  # one tick on resume, then every 100 ms; no 20-tick burst
    assert by_key(sched.stats())["r"].restarts == 1


def test_remove_stops_ticks_even_from_inside_a_tick() -> None:
    clock = Clock(0.0)
    sched = TickScheduler(clock)
    ran: list[str] = []

    def a(now: float) -> None:
        ran.append("a")
        sched.remove("b")
        sched.remove("a")

    sched.add("a", 10.0, a, 0.0)
    sched.add("b", 10.0, lambda now: ran.append("b"), 0.0)
    assert sched.run_due(0.0) == math.inf
    assert ran == ["a"] and len(sched) == 0 and "a" not in sched
    assert sched.next_due() is None and sched.stats() == []


def test_add_checks_rate_and_key() -> None:
    sched = TickScheduler(Clock())
    sched.add("a", 30.0, lambda now: None, 0.0)
    with pytest.raises(ValueError, match="already"):
        sched.add("a", 30.0, lambda now: None, 0.0)
    for rate in (0.0, -5.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="tick rate"):
            sched.add("b", rate, lambda now: None, 0.0)


def test_stats_percentile_over_recent_ticks() -> None:
    clock = Clock(0.0)
    sched = TickScheduler(clock)
    costs = iter([0.001] * 299 + [0.020])
    sched.add("r", 30.0, lambda now: clock.advance(next(costs)), 0.0)
    run(clock, sched, 300 / 30 - 0.01)
    (s,) = sched.stats()
    assert s.ticks == 300 and s.max == pytest.approx(0.020)
    assert s.p99 == pytest.approx(0.001) or s.p99 == pytest.approx(0.020)
    assert s.mean == pytest.approx((299 * 0.001 + 0.020) / 300)


def test_lateness_percentiles_and_a_measuring_window() -> None:
    clock = Clock(0.0)
    sched = TickScheduler(clock)
    slow_cost, fast_cost = 0.020, 0.001  # the slow room fits its 33 ms period
    sched.add("slow", 30.0, working(clock, slow_cost), clock())
    for n in range(5):
        sched.add(f"fast{n}", 30.0, working(clock, fast_cost), clock())
    run(clock, sched, 2.0)
    sched.reset_stats()
    assert all(s.ticks == 0 and s.late_max == 0.0 and s.late_p99 == 0.0 for s in sched.stats())
    run(clock, sched, 5.0)
    stats = by_key(sched.stats())
    slow = stats["slow"]
    assert 148 <= slow.ticks <= 151 and slow.overruns == 0  # 30 Hz held over the window
    assert slow.late_p99 <= 5 * fast_cost + 1e-9  # due first: only the others before it
    for n in range(5):
        fast = stats[f"fast{n}"]
        assert 148 <= fast.ticks <= 151
        # due with the slow room, they wait for its tick, and for nothing more
        assert slow_cost - 1e-9 <= fast.late_p50 <= fast.late_p99 <= fast.late_max
        assert fast.late_max <= slow_cost + 5 * fast_cost + 1e-9
