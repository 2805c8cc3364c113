"""reverb/timesync.py: the server clock estimate, on a stepped clock."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from reverb.timesync import ServerClock

OFFSET = -1000.0  # server time minus client time in these tests


def pong(clock: ServerClock, t0: float, up: float, down: float) -> float:
    """Feed one ping/pong with the given one-way delays; returns the local receive time."""
    ts = t0 + up + OFFSET
    t1 = t0 + up + down
    assert clock.add_pong(t0, ts, t1)
    return t1


def test_rtt_of_a_steady_link() -> None:
    clock = ServerClock()
    assert clock.rtt == 0.0 and not clock.ready
    for i in range(10):
        pong(clock, i * 1.0, 0.05, 0.05)
    assert clock.rtt == pytest.approx(0.1)
    assert clock.rtt_jitter == pytest.approx(0.0)
    assert clock.min_rtt == pytest.approx(0.1)
    assert clock.offset == pytest.approx(OFFSET)
    assert clock.ready and clock.samples == 10


def test_rtt_follows_a_change_and_measures_jitter() -> None:
    clock = ServerClock()
    rng = random.Random(3)
    for i in range(200):
        pong(clock, i * 0.5, 0.1 + rng.uniform(-0.02, 0.02), 0.1 + rng.uniform(-0.02, 0.02))
    assert clock.rtt == pytest.approx(0.2, abs=0.01)
    # mean |deviation| of the sum of two U(-20, 20) ms: about 13 ms
    assert 0.008 < clock.rtt_jitter < 0.02


@pytest.mark.parametrize("seed", range(5))
def test_converges_under_20ms_jitter_and_60ms_latency(seed: int) -> None:
    rng = random.Random(seed)
    clock = ServerClock()
    t = 0.0
    for _ in range(30):
        t = pong(clock, t, 0.06 + rng.uniform(-0.02, 0.02), 0.06 + rng.uniform(-0.02, 0.02))
        t += 1.0
    assert abs(clock.offset - OFFSET) < 0.005
    # the offset the game sees has slewed there too
    assert abs(clock.server_time(t) - (t + OFFSET)) < 0.005
    assert clock.rtt == pytest.approx(0.12, abs=0.015)


def test_a_queued_sample_does_not_move_the_estimate() -> None:
    clock = ServerClock()
    t = 0.0
    for _ in range(10):
        t = pong(clock, t, 0.05, 0.05) + 1.0
    pong(clock, t, 0.05, 0.45)  # stuck 400 ms in a queue on the way back
    assert clock.offset == pytest.approx(OFFSET)


def test_syncs_tighten_the_interval_and_measure_jitter() -> None:
    rng = random.Random(1)
    clock = ServerClock(tick_rate=30.0)
    for i in range(90):
        ts = i / 30
        clock.add_sync(i, ts + OFFSET, ts + 0.06 + rng.uniform(-0.02, 0.02))
    # Without pongs: the least-delayed sync, a lower bound (about 40 ms low here).
    assert not clock.ready
    assert OFFSET - 0.045 < clock.offset <= OFFSET
    assert 0.008 < clock.sync_jitter < 0.02  # RFC 3550 jitter of U(-20, 20) ms: ~13 ms


def test_tick_rate_announced_or_estimated_from_syncs() -> None:
    assert ServerClock(tick_rate=20.0).tick_rate == 20.0
    clock = ServerClock()
    assert clock.tick_rate is None
    assert clock.server_tick(0.0) is None
    for i in range(0, 60, 2):  # a sync every other tick (nothing changed in between)
        clock.add_sync(i, i / 30 + OFFSET, i / 30 + 0.05)
    assert clock.tick_rate == pytest.approx(30.0)
    tick = clock.server_tick(58 / 30 + 0.05 + 0.1)
    assert tick is not None and tick == pytest.approx(58 + 3, abs=0.1)


def test_impossible_samples_are_ignored() -> None:
    clock = ServerClock()
    assert not clock.add_pong(1.0, 5.0, 0.5)  # received before sent
    assert not clock.add_pong(0.0, math.nan, 0.1)
    assert not clock.add_sync(1, math.inf, 0.1)
    assert clock.samples == 0 and clock.server_time(7.0) == 7.0


def test_server_time_never_decreases_under_a_backwards_correction() -> None:
    clock = ServerClock()
    t = 0.0
    for _ in range(20):
        t = pong(clock, t, 0.05, 0.05) + 0.5
    frames = []
    shift = -0.1  # the server clock turns out to be 100 ms behind what we thought
    for i in range(20 * 60):  # 20 s at 60 FPS, a pong every 0.5 s
        now = t + i / 60
        if i % 30 == 0:
            ts = now + 0.05 + OFFSET + shift
            clock.add_pong(now, ts, now + 0.1)
        frames.append(clock.server_time(now))
    steps = [b - a for a, b in itertools.pairwise(frames)]
    assert min(steps) >= (1 - 0.05) / 60 - 1e-9  # slews at most 5 % slower, never backwards
    assert frames[-1] == pytest.approx(t + (20 * 60 - 1) / 60 + OFFSET + shift, abs=0.002)


def test_a_large_backwards_step_holds_time_still_rather_than_reversing() -> None:
    clock = ServerClock(window=4, best=1)
    t = 0.0
    for _ in range(8):
        t = pong(clock, t, 0.05, 0.05) + 0.5
    before = clock.server_time(t)
    for _ in range(12):  # the server clock jumped 1 s back (a restart): step, not slew
        ts = t + 0.05 + OFFSET - 1.0
        clock.add_pong(t, ts, t + 0.1)
        t += 0.01
    t += 0.1
    assert clock.offset == pytest.approx(OFFSET - 1.0, abs=0.001)
    values = [clock.server_time(t + i / 60) for i in range(180)]
    assert all(b >= a for a, b in zip([before, *values], values, strict=False))
    assert values[0] == values[30]  # held still...
    assert values[-1] == pytest.approx(t + 179 / 60 + OFFSET - 1.0)  # ...until caught up


def test_a_forward_correction_beyond_the_step_threshold_is_stepped() -> None:
    clock = ServerClock()
    for i in range(5):
        pong(clock, i * 1.0, 0.05, 0.05)
    assert clock.server_time(5.0) == pytest.approx(5.0 + OFFSET)
    for i in range(5, 30):
        clock.add_pong(i * 1.0, i + 0.05 + OFFSET + 2.0, i + 0.1)
    assert clock.server_time(30.0) == pytest.approx(30.0 + OFFSET + 2.0, abs=0.001)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        ServerClock(window=2, best=3)
    with pytest.raises(ValueError):
        ServerClock(slew_rate=1.0)
    with pytest.raises(ValueError):
        ServerClock(smoothing=0.0)
    with pytest.raises(ValueError):
        ServerClock(tick_rate=0.0)
