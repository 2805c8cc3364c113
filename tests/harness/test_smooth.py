"""``python -m harness smooth`` (harness/smooth.py): the trajectory, and a short real run
through the fault proxy showing interpolation beating raw replicas."""

from __future__ import annotations

import math

import pytest

from harness.smooth import CORNERS, LOOP, PAUSE, SPEED, measure, position

pytestmark = pytest.mark.timeout(60)


def test_the_trajectory_pauses_at_corners_and_moves_at_speed() -> None:
    assert position(0.0) == CORNERS[0] and position(PAUSE - 0.01) == CORNERS[0]
    a, b = position(PAUSE + 0.5), position(PAUSE + 0.6)
    assert math.dist(a, b) == pytest.approx(SPEED * 0.1)
    assert position(LOOP + 0.1) == position(0.1)


def test_interpolation_through_the_proxy_freezes_less_than_raw_replicas() -> None:
    result = measure(seconds=2.0, latency=0.03, jitter=0.01)
    off, on = result["off"], result["on"]
    assert result["frames"] > 60
    assert on["frozen_pct"] < off["frozen_pct"]
    assert on["error_p99_px"] < off["error_p99_px"] + 1.0
    assert result["server_time_error_ms"]["p50"] < 5.0
