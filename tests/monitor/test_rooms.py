"""Rooms in the monitor, in process: the cap on exported rooms, and reads racing a game
thread that creates, ticks and disposes rooms (the real-process tests are in
test_metrics.py and test_browser.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from reverb import ReverbObject
from reverb.monitor import _observer, _state
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


class Thing(ReverbObject):
    def __init__(self, n=0, uid=None, add_on_init=True, belonging_membership=None):
        self.n = n
        super().__init__(
            n, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


class Den(Room):
    object_types = (Thing,)

    def on_create(self, options):
        self.spawn(Thing, 7)


def test_room_worlds_snapshotted_on_the_game_thread_and_bounded(
    hall: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page asking for a room's world gets a snapshot the game thread took after its tick
    (never one taken on the monitor's thread), for at most MAX_ROOM_WATCHES rooms at once."""
    monkeypatch.setattr(_observer, "MAX_ROOM_WATCHES", 2)
    taken_on: set[int] = set()
    original = _observer.take_snapshot

    def spy(ctx, now):  # type: ignore[no-untyped-def]
        taken_on.add(threading.get_ident())
        return original(ctx, now)

    monkeypatch.setattr(_observer, "take_snapshot", spy)
    hall.server.define_room("den", Den)
    mm = hall.server.matchmaker
    now = time.monotonic()
    ids = [mm.create(RoomClient(200 + i), "den", now=now).room_id for i in range(3)]
    stop = threading.Event()
    game_ident: list[int] = []

    def game() -> None:
        game_ident.append(threading.get_ident())
        while not stop.is_set():
            wait = hall.context.server_step(time.monotonic())
            stop.wait(min(wait, 0.01))  # pacing between steps, as server_sync waits

    thread = threading.Thread(target=game)
    thread.start()
    try:
        for i, rid in enumerate(ids[:2]):
            world = hall.monitor.world(rid)
            assert world["room"] == rid and world["watched"]
            assert [(o["type"], o["fields"]) for o in world["objects"]] == [("Thing", {"n": 7})]
            assert world["peers"] == [200 + i] and world["tick"] is not None
        third = hall.monitor.world(ids[2])
        assert not third["watched"] and third["objects"] == [] and third["tick"] is None
        assert hall.monitor.world(ids[0])["watched"]  # one already watched stays served
        assert {ids[0], ids[1], ids[2]} <= set(third["rooms"]) and third["rooms"][0] == "default"
    finally:
        stop.set()
        thread.join(10)
    assert taken_on == set(game_ident)
