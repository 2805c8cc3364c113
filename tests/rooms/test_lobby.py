"""reverb/rooms/lobby.py and registry.py: the live room list, pushed as it changes."""

from __future__ import annotations

from typing import Any

from reverb.proto.session import CloseCode
from reverb.rooms import (
    LobbyFeed,
    LocalPresence,
    LocalRegistry,
    Presence,
    RoomAdded,
    RoomChanged,
    RoomListing,
    RoomRegistry,
    RoomRemoved,
)
from tests.rooms.helpers import Clock, Recording, client, fresh, make


def kinds(events: list[tuple[int, Any]], member: int) -> list[str]:
    return [type(e).__name__ for m, e in events if m == member]


class Ticking(Recording):
    def on_tick(self, now: float) -> None:
        self.set_metadata(score=self.metadata.get("score", 0) + 1)


def test_subscribers_get_added_changed_removed_as_they_happen() -> None:
    fresh()
    clock = Clock()
    mm = make(clock)
    mm.define("other", Recording)
    mm.create(client(1), "battle", now=clock())  # before anyone watches
    assert [r.room_id for r in mm.lobby.subscribe(10, "battle")] == ["r1"]
    assert mm.lobby.subscribe(11) == mm.registry.listings()
    mm.lobby.subscribe(12, "other")

    mm.join_by_id(client(2), "r1", now=clock())
    events = mm.lobby.events_to_send()
    assert kinds(events, 10) == kinds(events, 11) == ["RoomChanged", "RoomChanged"]
    last = [e for m, e in events if m == 10][-1]
    assert isinstance(last, RoomChanged) and last.listing.clients == 2
    assert last.listing.reserved == 0 and kinds(events, 12) == []

    mm.join_or_create(client(3), "other", now=clock())
    events = mm.lobby.events_to_send()
    assert kinds(events, 10) == []
    assert kinds(events, 12) == ["RoomAdded", "RoomChanged"]  # created, then joined
    added = events[0][1]
    assert isinstance(added, RoomAdded) and added.listing.name == "other"

    mm.rooms["r1"].lock()
    mm.leave(1, now=clock())
    mm.leave(2, now=clock())
    events = mm.lobby.events_to_send()
    assert kinds(events, 10)[-1] == "RoomRemoved"
    removed = [e for m, e in events if m == 10][-1]
    assert removed == RoomRemoved("r1", "battle")
    locked = next(e for m, e in events if m == 10)
    assert isinstance(locked, RoomChanged) and locked.listing.locked
    assert mm.lobby.events_to_send() == []  # drained


def test_changes_made_during_ticks_are_batched_per_step() -> None:
    fresh()
    clock = Clock()
    mm = make(clock)
    mm.define("ticking", Ticking)
    mm.create(client(1), "ticking", now=clock())
    mm.lobby.subscribe(10)
    mm.step(clock())
    (event,) = [e for _, e in mm.lobby.events_to_send()]
    assert isinstance(event, RoomChanged) and event.listing.metadata == {"score": 1}


def test_unsubscribe_and_drop_stop_the_feed() -> None:
    fresh()
    clock = Clock()
    mm = make(clock)
    mm.lobby.subscribe(10)
    mm.lobby.subscribe(11)
    assert mm.lobby.unsubscribe(10) and not mm.lobby.unsubscribe(10)
    mm.drop(11, CloseCode.NORMAL, "bye", now=clock())
    assert mm.lobby.subscribers == frozenset()
    mm.create(client(1), "battle", now=clock())
    assert mm.lobby.events_to_send() == []


def test_a_lobby_watcher_may_also_sit_in_a_room() -> None:
    fresh()
    clock = Clock()
    mm = make(clock)
    mm.lobby.subscribe(1, "battle")
    mm.create(client(1), "battle", now=clock())
    assert mm.presence.seat_of(1) == "r1" and 1 in mm.lobby.subscribers
    assert kinds(mm.lobby.events_to_send(), 1) == ["RoomAdded", "RoomChanged"]


def test_local_registry_notifies_only_real_changes_and_unsubscribes() -> None:
    reg: RoomRegistry = LocalRegistry()
    seen: list[Any] = []
    stop = reg.subscribe(seen.append)
    listing = RoomListing("a", "battle", 0, 4, False, {"map": "dust"})
    reg.put(listing)
    reg.put(listing)  # same listing: nothing a lobby could see changed
    reg.remove("a")
    reg.remove("a")
    assert seen == [RoomAdded(listing), RoomRemoved("a", "battle")]
    stop()
    stop()
    reg.put(listing)
    assert len(seen) == 2 and reg.listings("battle") == [listing] and reg.listings("x") == []


def test_listing_fullness_and_filter() -> None:
    listing = RoomListing("a", "battle", 3, 4, False, {"map": "dust"}, reserved=1)
    assert listing.full and not listing.joinable
    assert listing.matches({"map": "dust"}) and not listing.matches({"map": "ice"})
    assert not listing.matches({"mode": "duel"}) and listing.matches({})
    assert RoomListing("b", "battle", 100, None, False).joinable


def test_local_presence_seats_one_room_per_member() -> None:
    presence: Presence = LocalPresence()
    assert presence.take_seat(1, "a") and not presence.take_seat(1, "b")
    presence.release_seat(1, "b")  # not its room: nothing happens
    assert presence.seat_of(1) == "a"
    presence.release_seat(1, "a")
    assert presence.seat_of(1) is None


def test_a_feed_can_be_closed() -> None:
    reg = LocalRegistry()
    feed = LobbyFeed(reg)
    feed.subscribe(1)
    feed.close()
    reg.put(RoomListing("a", "battle", 0, None, False))
    assert feed.events_to_send() == [] and feed.subscribers == frozenset()
