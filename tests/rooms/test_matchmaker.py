"""reverb/rooms/matchmaker.py: joins, refusals with their codes, seats, switch, dispose."""

from __future__ import annotations

from typing import Any

import pytest

from reverb.proto.session import CloseCode
from reverb.rooms import (
    Joined,
    JoinRequest,
    Left,
    Matchmaker,
    Refusal,
    Refused,
    Reservation,
    Room,
)
from tests.rooms.helpers import Clock, Recording, client, fresh, make


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def mm(clock: Clock) -> Matchmaker:
    fresh()
    return make(clock)


def refused(result: Any, code: Refusal) -> None:
    assert isinstance(result, Refused), result
    assert result.code is code, result
    assert result.reason


class Locked(Recording):
    def on_create(self, options: dict[str, Any]) -> None:
        super().on_create(options)
        self.lock()


class Keep(Recording):
    auto_dispose = False


class Moded(Recording):
    filter_by = ("mode",)


# -- the four joins ---------------------------------------------------------------------------


def test_join_or_create_fills_a_room_before_creating_another(mm: Matchmaker, clock: Clock) -> None:
    results = [mm.join_or_create(client(n), "battle", {"max": 2}, now=clock()) for n in range(5)]
    assert [r.room_id for r in results if isinstance(r, Joined)] == ["r1", "r1", "r2", "r2", "r3"]
    assert [r.created for r in results if isinstance(r, Joined)] == [
        True,
        False,
        True,
        False,
        True,
    ]


def test_join_or_create_matches_filter_by_options(mm: Matchmaker, clock: Clock) -> None:
    mm.define("moded", Moded)
    a = mm.join_or_create(client(1), "moded", {"mode": "duel"}, now=clock())
    b = mm.join_or_create(client(2), "moded", {"mode": "ffa"}, now=clock())
    c = mm.join_or_create(client(3), "moded", {"mode": "duel"}, now=clock())
    assert isinstance(a, Joined) and isinstance(b, Joined) and isinstance(c, Joined)
    assert a.room_id == c.room_id != b.room_id
    assert mm.registry.get(a.room_id) is not None
    assert mm.registry.get(a.room_id).metadata == {"mode": "duel"}  # type: ignore[union-attr]


def test_create_always_makes_a_new_room(mm: Matchmaker, clock: Clock) -> None:
    a = mm.create(client(1), "battle", now=clock())
    b = mm.create(client(2), "battle", now=clock())
    assert isinstance(a, Joined) and isinstance(b, Joined) and a.room_id != b.room_id


def test_join_uses_the_metadata_filter_and_never_creates(mm: Matchmaker, clock: Clock) -> None:
    refused(mm.join(client(1), "battle", now=clock()), Refusal.NO_ROOM)
    mm.create(client(1), "battle", now=clock())
    mm.rooms["r1"].set_metadata(map="dust")
    refused(mm.join(client(2), "battle", {"map": "ice"}, now=clock()), Refusal.NO_ROOM)
    joined = mm.join(client(2), "battle", {"map": "dust"}, now=clock())
    assert isinstance(joined, Joined) and joined.room_id == "r1"


def test_join_by_id(mm: Matchmaker, clock: Clock) -> None:
    mm.create(client(1), "battle", now=clock())
    joined = mm.join_by_id(client(2), "r1", now=clock())
    assert isinstance(joined, Joined) and joined.room_id == "r1"
    refused(mm.join_by_id(client(3), "nope", now=clock()), Refusal.UNKNOWN_ROOM)


# -- refusals ---------------------------------------------------------------------------------


def test_unknown_room_type(mm: Matchmaker, clock: Clock) -> None:
    for result in (
        mm.join_or_create(client(1), "chess", now=clock()),
        mm.create(client(1), "chess", now=clock()),
        mm.join(client(1), "chess", now=clock()),
    ):
        refused(result, Refusal.UNKNOWN_ROOM_TYPE)


def test_full_room_refuses_join_and_join_by_id(mm: Matchmaker, clock: Clock) -> None:
    mm.create(client(1), "battle", {"max": 1}, now=clock())
    refused(mm.join_by_id(client(2), "r1", now=clock()), Refusal.FULL)
    refused(mm.join(client(2), "battle", now=clock()), Refusal.FULL)
    assert mm.registry.get("r1").full  # type: ignore[union-attr]


def test_locked_room_refuses_and_join_or_create_goes_elsewhere(
    mm: Matchmaker, clock: Clock
) -> None:
    mm.define("locked", Locked)
    mm.create(client(1), "locked", now=clock())
    refused(mm.join_by_id(client(2), "r1", now=clock()), Refusal.LOCKED)
    refused(mm.join(client(2), "locked", now=clock()), Refusal.LOCKED)
    other = mm.join_or_create(client(2), "locked", now=clock())
    assert isinstance(other, Joined) and other.room_id == "r2"
    mm.rooms["r1"].unlock()
    assert isinstance(mm.join_by_id(client(3), "r1", now=clock()), Joined)


def test_join_twice_is_refused(mm: Matchmaker, clock: Clock) -> None:
    mm.create(client(1), "battle", now=clock())
    mm.create(client(2), "battle", now=clock())
    refused(mm.join_by_id(client(1), "r1", now=clock()), Refusal.ALREADY_IN_ROOM)
    refused(mm.join_by_id(client(1), "r2", now=clock()), Refusal.ALREADY_IN_ROOM)
    refused(mm.join_or_create(client(1), "battle", now=clock()), Refusal.ALREADY_IN_ROOM)
    assert set(mm.rooms["r1"].clients) == {1} and set(mm.rooms["r2"].clients) == {2}


def test_leave_unknown_is_refused(mm: Matchmaker, clock: Clock) -> None:
    refused(mm.leave(1, now=clock()), Refusal.NOT_IN_ROOM)
    mm.create(client(1), "battle", now=clock())
    assert isinstance(mm.leave(1, now=clock()), Left)
    refused(mm.leave(1, now=clock()), Refusal.NOT_IN_ROOM)


def test_on_auth_reject_carries_its_reason_and_frees_the_seat(mm: Matchmaker, clock: Clock) -> None:
    mm.create(client(1), "battle", {"max": 2}, now=clock())
    mm.rooms["r1"].set_metadata(password="s3cret")
    result = mm.join_by_id(client(2), "r1", {"password": "guess"}, now=clock())
    assert result == Refused(Refusal.REJECTED, "wrong password")
    assert mm.rooms["r1"].reserved == 0 and mm.presence.seat_of(2) is None
    assert isinstance(mm.join_by_id(client(2), "r1", {"password": "s3cret"}, now=clock()), Joined)


def test_rejected_creator_leaves_no_empty_room(mm: Matchmaker, clock: Clock) -> None:
    class Closed(Recording):
        def on_auth(self, client: Any, options: dict[str, Any]) -> Any:
            raise RuntimeError("bug")

    mm.define("closed", Closed)
    refused(mm.create(client(1), "closed", now=clock()), Refusal.REJECTED)
    assert mm.rooms == {} and mm.registry.listings() == []


def test_on_create_raising_is_create_failed(mm: Matchmaker, clock: Clock) -> None:
    class Broken(Room):
        def on_create(self, options: dict[str, Any]) -> None:
            raise KeyError("map")

    mm.define("broken", Broken)
    refused(mm.create(client(1), "broken", now=clock()), Refusal.CREATE_FAILED)
    assert mm.rooms == {} and mm.registry.listings() == []


def test_define_twice_or_not_a_room(mm: Matchmaker) -> None:
    with pytest.raises(ValueError):
        mm.define("battle", Recording)
    with pytest.raises(TypeError):
        mm.define("x", int)  # type: ignore[arg-type]


# -- seat reservations ------------------------------------------------------------------------


def test_reserved_seats_count_and_expire(mm: Matchmaker, clock: Clock) -> None:
    mm.create(client(1), "battle", {"max": 2}, now=clock())
    seat = mm.reserve_seat(client(2), JoinRequest.join_by_id("r1"), now=clock())
    assert isinstance(seat, Reservation) and seat.expires == clock() + mm.reservation_ttl
    assert mm.registry.get("r1").reserved == 1  # type: ignore[union-attr]
    refused(mm.join_by_id(client(3), "r1", now=clock()), Refusal.FULL)  # the seat is held
    refused(
        mm.reserve_seat(client(2), JoinRequest.join_by_id("r1"), now=clock()),
        Refusal.ALREADY_IN_ROOM,
    )
    clock.advance(mm.reservation_ttl)
    mm.step(clock())
    assert mm.registry.get("r1").reserved == 0  # type: ignore[union-attr]
    refused(mm.consume(client(2), seat.token, now=clock()), Refusal.RESERVATION_EXPIRED)
    assert isinstance(mm.join_by_id(client(3), "r1", now=clock()), Joined)


def test_reservation_consumed_in_time(mm: Matchmaker, clock: Clock) -> None:
    seat = mm.reserve_seat(client(1), JoinRequest.create("battle", {"level": 2}), now=clock())
    assert isinstance(seat, Reservation)
    refused(mm.consume(client(9), seat.token, now=clock()), Refusal.RESERVATION_EXPIRED)
    joined = mm.consume(client(1), seat.token, now=clock.advance(mm.reservation_ttl - 0.01))
    assert isinstance(joined, Joined) and mm.rooms["r1"].auth == {1: {"level": 2}}


def test_a_room_whose_only_reservation_expires_is_disposed(mm: Matchmaker, clock: Clock) -> None:
    log = fresh()
    seat = mm.reserve_seat(client(1), JoinRequest.create("battle"), now=clock())
    assert isinstance(seat, Reservation) and "r1" in mm.rooms
    mm.step(clock.advance(mm.reservation_ttl + 1))
    assert mm.rooms == {} and log[-1] == ("dispose", "r1")


def test_cancel_and_drop_give_the_seat_back(mm: Matchmaker, clock: Clock) -> None:
    mm.create(client(1), "battle", {"max": 3}, now=clock())
    a = mm.reserve_seat(client(2), JoinRequest.join_by_id("r1"), now=clock())
    mm.reserve_seat(client(3), JoinRequest.join_by_id("r1"), now=clock())
    assert isinstance(a, Reservation) and mm.rooms["r1"].reserved == 2
    assert mm.cancel(a.token) and not mm.cancel(a.token)
    assert mm.drop(3, CloseCode.ABNORMAL, "gone", now=clock()) is None
    assert mm.rooms["r1"].reserved == 0


# -- leave, drop, switch, dispose --------------------------------------------------------------


def test_drop_is_an_unconsented_leave(mm: Matchmaker, clock: Clock) -> None:
    log = fresh()
    mm.create(client(1), "battle", now=clock())
    mm.join_by_id(client(2), "r1", now=clock())
    left = mm.drop(2, CloseCode.ABNORMAL, "connection lost", now=clock())
    assert left == Left("r1", 2, disposed=False)
    assert ("leave", "r1", 2, False) in log and mm.presence.seat_of(2) is None


def test_dispose_on_last_leave(mm: Matchmaker, clock: Clock) -> None:
    mm.create(client(1), "battle", now=clock())
    mm.join_by_id(client(2), "r1", now=clock())
    assert mm.leave(1, now=clock()) == Left("r1", 1, disposed=False)
    assert mm.leave(2, now=clock()) == Left("r1", 2, disposed=True)
    assert mm.rooms == {} and mm.registry.listings() == []


def test_auto_dispose_false_keeps_the_empty_room(mm: Matchmaker, clock: Clock) -> None:
    log = fresh()
    mm.define("keep", Keep)
    mm.create(client(1), "keep", now=clock())
    assert mm.leave(1, now=clock()) == Left("r1", 1, disposed=False)
    assert "r1" in mm.rooms and mm.registry.get("r1").clients == 0  # type: ignore[union-attr]
    assert len(mm.rooms["r1"].objects) == 1  # the room's world lives on
    assert isinstance(mm.join_by_id(client(2), "r1", now=clock()), Joined)
    mm.leave(2, now=clock())
    assert mm.dispose("r1") and not mm.dispose("r1")
    assert log[-1] == ("dispose", "r1") and mm.rooms == {}


def test_dispose_with_clients_inside_makes_them_leave(mm: Matchmaker, clock: Clock) -> None:
    log = fresh()
    mm.create(client(1), "battle", now=clock())
    mm.dispose("r1")
    assert log[-2:] == [("leave", "r1", 1, False), ("dispose", "r1")]
    assert mm.presence.seat_of(1) is None
    assert isinstance(mm.join_or_create(client(1), "battle", now=clock()), Joined)


def test_switch_moves_without_passing_through_no_room(mm: Matchmaker, clock: Clock) -> None:
    log = fresh()
    mm.create(client(1), "battle", now=clock())
    mm.create(client(2), "battle", now=clock())
    moved = mm.switch(client(1), JoinRequest.join_by_id("r2"), now=clock())
    assert moved == Joined("r2", "battle", 1)
    assert mm.presence.seat_of(1) == "r2" and "r1" not in mm.rooms  # r1 emptied: disposed
    order = [e for e in log if e[0] != "create"][-4:]
    assert order == [
        ("auth", "r2", 1),
        ("leave", "r1", 1, True),
        ("dispose", "r1"),
        ("join", "r2", 1),
    ]


def test_refused_switch_stays_put(mm: Matchmaker, clock: Clock) -> None:
    mm.create(client(1), "battle", now=clock())
    mm.create(client(2), "battle", {"max": 1}, now=clock())
    refused(mm.switch(client(1), JoinRequest.join_by_id("r2"), now=clock()), Refusal.FULL)
    refused(
        mm.switch(client(1), JoinRequest.join_by_id("r1"), now=clock()), Refusal.ALREADY_IN_ROOM
    )
    mm.rooms["r2"].max_clients = 2
    mm.rooms["r2"].changed()
    mm.rooms["r2"].set_metadata(password="x")
    refused(mm.switch(client(1), JoinRequest.join_by_id("r2"), now=clock()), Refusal.REJECTED)
    assert mm.presence.seat_of(1) == "r1" and set(mm.rooms["r1"].clients) == {1}
    assert mm.rooms["r2"].reserved == 0


def test_switch_from_no_room_is_a_join(mm: Matchmaker, clock: Clock) -> None:
    joined = mm.switch(client(1), JoinRequest.join_or_create("battle"), now=clock())
    assert isinstance(joined, Joined) and joined.created


def test_a_seat_freed_in_a_full_room_is_found_again(mm: Matchmaker, clock: Clock) -> None:
    for n in (1, 2):
        mm.join_or_create(client(n), "battle", {"max": 2}, now=clock())
    mm.join_or_create(client(3), "battle", {"max": 2}, now=clock())  # r1 full: r2
    mm.leave(1, now=clock())
    again = mm.join_or_create(client(4), "battle", {"max": 2}, now=clock())
    assert isinstance(again, Joined) and again.room_id == "r1"  # tie on clients: the older
    mm.rooms["r2"].lock()  # r1 is full again, r2 locked: join says why it cannot
    refused(mm.join(client(5), "battle", now=clock()), Refusal.FULL)
    mm.rooms["r1"].lock()
    mm.leave(4, now=clock())
    refused(mm.join(client(5), "battle", now=clock()), Refusal.LOCKED)


def test_dispose_drops_the_rooms_reservations(mm: Matchmaker, clock: Clock) -> None:
    mm.define("keep", Keep)
    seat = mm.reserve_seat(client(1), JoinRequest.create("keep"), now=clock())
    assert isinstance(seat, Reservation) and mm.dispose(seat.room_id)
    refused(mm.consume(client(1), seat.token, now=clock()), Refusal.RESERVATION_EXPIRED)
    assert isinstance(mm.join_or_create(client(1), "keep", now=clock()), Joined)


def test_on_auth_returning_something_else_is_a_rejection(mm: Matchmaker, clock: Clock) -> None:
    class Sloppy(Recording):
        def on_auth(self, client: Any, options: dict[str, Any]) -> Any:
            return True

    mm.define("sloppy", Sloppy)
    assert mm.create(client(1), "sloppy", now=clock()) == Refused(Refusal.REJECTED, "rejected")


def test_room_ids_are_redrawn_on_collision(clock: Clock) -> None:
    ids = iter(["same", "same", "other"])
    mm = Matchmaker(clock, room_ids=lambda: next(ids))
    mm.define("battle", Recording)
    a = mm.create(client(1), "battle", now=clock())
    b = mm.create(client(2), "battle", now=clock())
    assert isinstance(a, Joined) and isinstance(b, Joined)
    assert (a.room_id, b.room_id) == ("same", "other")


def test_default_room_ids_are_random_strings(clock: Clock) -> None:
    mm = Matchmaker(clock)
    mm.define("battle", Recording)
    ids = {mm.create(client(n), "battle", now=clock()).room_id for n in range(20)}
    assert len(ids) == 20 and all(isinstance(i, str) and len(i) == 8 for i in ids)


def test_a_shared_presence_keeps_one_seat_across_matchmakers(clock: Clock) -> None:
    # two processes sharing Presence (the Redis seam): a connection seated by one cannot be
    # seated by the other, and the refused seat is given back
    from reverb.rooms import LocalPresence

    presence = LocalPresence()
    one, two = make(clock, presence=presence), make(clock, presence=presence)
    assert isinstance(one.create(client(1), "battle", now=clock()), Joined)
    refused(two.create(client(1), "battle", now=clock()), Refusal.ALREADY_IN_ROOM)
    seat = two.reserve_seat(client(2), JoinRequest.create("battle"), now=clock())
    assert isinstance(seat, Reservation)
    one.create(client(2), "battle", now=clock())
    refused(two.consume(client(2), seat.token, now=clock()), Refusal.ALREADY_IN_ROOM)
    assert two.rooms == {}  # its room, never joined, went with the seat
