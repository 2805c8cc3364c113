"""``python -m harness rooms --slow-ms`` at a tiny size: both runs (without and with the slow
room) and the scheduler-only check happen, and the JSON splits every figure between the slow
room and the others. A smoke test of the tool, not a measurement: no timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.rooms import main


@pytest.mark.timeout(120)
def test_the_slow_room_option_reports_slow_and_other_rooms_apart(tmp_path: Path) -> None:
    out = tmp_path / "rooms.json"
    code = main(
        [
            "--rooms", "3", "--clients", "2", "--objects", "3", "--seconds", "0.5",
            "--processes", "1", "--slow-ms", "5", "--slow-rooms", "1", "--json", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    slow = result["slow_room"]
    assert slow["slow_ms"] == 5 and slow["slow_rooms"] == 1
    for figures in (slow, slow["scheduler_only"]):
        for run in ("without", "with"):
            assert figures[run]["slow"]["rooms"] == 1 and figures[run]["others"]["rooms"] == 2
            for group in ("slow", "others"):
                g = figures[run][group]
                assert set(g["rate_held_hz"]) == {"min", "median"}
                assert set(g["tick_interval_ms"]) == {"p50", "p99", "max"}
                assert set(g["tick_late_ms"]) == {"p50", "p99", "max"}
                assert g["rate_held_hz"]["median"] > 0
    # the slow room burnt its 5 ms per tick only in the run with the burn
    assert slow["with"]["slow"]["tick_duration_ms"]["mean"] >= 5
    assert slow["without"]["slow"]["tick_duration_ms"]["mean"] < 5
    assert slow["with"]["others"]["tick_duration_ms"]["mean"] < 5
