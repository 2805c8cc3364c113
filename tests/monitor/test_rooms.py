"""Rooms in the monitor, in process: the cap on exported rooms, and reads racing a game
thread that creates, ticks and disposes rooms (the real-process tests are in
test_metrics.py and test_browser.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from reverb.monitor import _state
from reverb.monitor._metrics import families, write_text
from reverb.rooms import Room, RoomClient
from tests.monitor.conftest import Local


class Hall(Room):
    tick_rate = 200.0


@pytest.fixture
def hall() -> Iterator[Local]:
    loc = Local()
    try:
        loc.server.define_room("hall", Hall)
        yield loc
    finally:
        loc.close()


def samples(fams: list, name: str) -> dict[tuple[str, ...], float]:
    for fam in fams:
        if fam.name == name:
            return dict(fam.samples)
    raise KeyError(name)


def test_room_series_capped_fullest_first(hall: Local, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_state, "MAX_ROOMS", 3)
    mm = hall.server.matchmaker
    now = time.monotonic()
    ids = []
    for i in range(6):
        joined = mm.create(RoomClient(100 + 10 * i), "hall", now=now)
        ids.append(joined.room_id)
    for member in (1, 2):  # the third room gets two more clients, the fifth one more
        mm.join_by_id(RoomClient(member), ids[2], now=now)
    mm.join_by_id(RoomClient(3), ids[4], now=now)
    view, observer = hall.monitor.view, hall.monitor.observer

    fams = families(view, observer)
    assert samples(fams, "reverb_rooms") == {("hall",): 6, ("default",): 1}
    assert samples(fams, "reverb_rooms_exported") == {(): 3}
    clients = samples(fams, "reverb_room_clients")
    assert clients == {("default", "default"): 0, (ids[2], "hall"): 3, (ids[4], "hall"): 2}
    # every client still maps to its room, exported or not
    assert len(samples(fams, "reverb_client_room")) == 9
    shown = view.rooms()
    assert shown is not None and shown["truncated"] and shown["total"] == 7
    # the fallback writer (no prometheus_client) writes them as the parser expects
    parser = pytest.importorskip("prometheus_client.parser")
    parsed = {f.name: f for f in parser.text_string_to_metric_families(write_text(fams))}
    assert parsed["reverb_room_tick_duration_seconds"].type == "summary"
    assert {s.labels["room"] for s in parsed["reverb_room_clients"].samples} == {
        "default",
        ids[2],
        ids[4],
    }

    mm.dispose(ids[2])
    fams = families(view, observer)
    assert samples(fams, "reverb_rooms") == {("hall",): 5, ("default",): 1}
    assert ids[2] not in {labels[0] for labels in samples(fams, "reverb_room_objects")}
    assert ids[2] not in view._marks  # its held-rate memory goes with it


def test_room_reads_race_the_game_thread(hall: Local) -> None:
    """The monitor reads rooms from its own thread while the game thread makes, ticks and
    disposes them: no read fails, none shows a room twice."""
    mm = hall.server.matchmaker
    stop = threading.Event()
    errors: list[BaseException] = []

    def game() -> None:
        member = 1000
        live: list[str] = []
        try:
            while not stop.is_set():
                member += 1
                now = time.monotonic()
                joined = mm.create(RoomClient(member), "hall", now=now)
                live.append(joined.room_id)
                if len(live) > 20:
                    mm.dispose(live.pop(0))
                mm.step(now)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=game)
    thread.start()
    reads, most = 0, 0
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            shown = hall.monitor.view.rooms()
            assert shown is not None
            ids = [row["id"] for row in shown["rooms"]]
            assert len(ids) == len(set(ids))
            most = max(most, len(ids))
            fams = families(hall.monitor.view, hall.monitor.observer)
            assert samples(fams, "reverb_rooms_exported")[()] <= _state.MAX_ROOMS
            reads += 1
    finally:
        stop.set()
        thread.join(10)
    assert not errors, errors
    assert reads > 10 and most > 10  # it read while many rooms came and went
