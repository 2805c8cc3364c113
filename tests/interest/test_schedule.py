"""reverb/replication/schedule.py: budget ordering, starvation-freedom, rates, dormancy,
coalescing; a stepped clock at 30 Hz."""

from __future__ import annotations

import math

import pytest

from reverb.replication.schedule import (
    SPAWN,
    Budget,
    ClientQueue,
    Scheduler,
    priority_of,
    rate_of,
)

HZ = 30.0


def at(k: int) -> float:
    return k / HZ


def send(queue: ClientQueue, k: int, size: int | dict[int, int] = 100) -> list[int]:
    due = queue.due(at(k))
    sizes = {uid: size if isinstance(size, int) else size[uid] for uid in due}
    return queue.pick(at(k), sizes)


def test_unlimited_budget_sends_everything_due() -> None:
    queue = Scheduler(HZ).add_client(1, 0.0)
    for uid in (3, 1, 2):
        queue.mark(uid, {"x"}, at(1))
    assert send(queue, 1) == [1, 2, 3]
    assert queue.pending == {}


def test_budget_ordering_highest_accumulated_priority_first() -> None:
    # 1000 B/s, burst 300: at most 3 entries of 100 B per tick from a full bucket.
    queue = Scheduler(HZ, budget=Budget(1000, burst=300)).add_client(1, 0.0)
    for uid, priority in [(1, 1.0), (2, 5.0), (3, 2.0), (4, 3.0)]:
        queue.mark(uid, {"x"}, at(1), priority=priority)
    assert send(queue, 1) == [2, 4, 3]
    assert set(queue.pending) == {1}
    assert queue.tokens == pytest.approx(0.0)


def test_older_waiting_beats_higher_priority_eventually() -> None:
    queue = ClientQueue(HZ, Budget(1000, burst=100), 0.0)
    queue.mark(1, {"x"}, at(0), priority=1.0)
    queue.mark(2, {"x"}, at(9), priority=2.0)
    # score(1) = 1 * (10/30 + 1/30), score(2) = 2 * (1/30 + 1/30)
    assert send(queue, 10) == [1]


def test_starvation_freedom_low_priority_sent_within_a_bound() -> None:
    """20 high-priority objects change every tick; the budget fits 3 entries per tick; a
    priority-1 object among priority-10 ones is still sent within a bounded number of ticks."""
    queue = ClientQueue(HZ, Budget(9000, burst=300), 0.0)  # 300 B per tick
    last_sent = {uid: 0 for uid in range(1, 22)}
    worst = {uid: 0 for uid in range(1, 22)}
    for k in range(1, 600):
        for uid in range(1, 21):
            queue.mark(uid, {"x"}, at(k), priority=10.0)
        queue.mark(21, {"x"}, at(k), priority=1.0)
        for uid in send(queue, k):
            worst[uid] = max(worst[uid], k - last_sent[uid])
            last_sent[uid] = k
    assert 600 - last_sent[21] < 100
    assert worst[21] <= 100  # bounded; the high ones wait ~7 ticks (21 objects / 3 a tick)
    assert max(worst[uid] for uid in range(1, 21)) <= 10


def test_an_entry_that_does_not_fit_stops_the_tick_so_tokens_build_up_for_it() -> None:
    queue = ClientQueue(HZ, Budget(3000, burst=500), 0.0)
    queue.mark(1, {"x"}, at(0), priority=100.0)  # big and urgent
    queue.mark(2, {"x"}, at(0), priority=1.0)  # small
    queue.tokens = 200.0
    assert send(queue, 0, {1: 400, 2: 50}) == []  # 2 does not overtake 1
    # 200 + 3 ticks * 100 B = 500: 1 goes first, and then 2 fits in what is left
    assert send(queue, 3, {1: 400, 2: 50}) == [1, 2]


def test_an_entry_larger_than_the_bucket_goes_from_a_full_bucket_in_debt() -> None:
    queue = ClientQueue(HZ, Budget(300, burst=100), 0.0)
    queue.mark(1, {SPAWN}, at(0))
    assert send(queue, 0, 250) == [1]
    assert queue.tokens == pytest.approx(-150.0)
    queue.mark(2, {"x"}, at(1))
    assert send(queue, 1, 10) == []  # the debt is repaid first (10 B per tick)
    assert send(queue, 16, 10) == [2]


def test_rate_limiting_under_the_tick_rate_coalesces_fields() -> None:
    queue = ClientQueue(HZ, Budget(), 0.0)
    sent_at = []
    for k in range(1, 31):
        queue.mark(1, {f"f{k % 4}"}, at(k), rate=10.0)
        due = queue.due(at(k))
        if due:
            # the fields of the 3 ticks since the last send, coalesced
            expected = {f"f{j % 4}" for j in range(max(1, k - 2), k + 1)}
            assert due[1] == expected
            sent_at.append(k)
            queue.pick(at(k), {1: 10})
    assert sent_at == list(range(1, 31, 3))  # 10 Hz under 30 Hz: every third tick


def test_dormant_objects_cost_nothing() -> None:
    queue = ClientQueue(HZ, Budget(1000, burst=100), 0.0)
    queue.mark(1, {"x"}, at(0))
    assert send(queue, 0) == [1]
    for k in range(1, 100):
        assert queue.due(at(k)) == {}
        assert send(queue, k) == []
    assert queue.pending == {} and queue.sent_bytes == 100
    assert queue.tokens == pytest.approx(100.0)


def test_coalescing_keeps_skipped_fields_and_never_splits_an_object() -> None:
    queue = ClientQueue(HZ, Budget(30, burst=1), 0.0)  # nothing fits for a while
    queue.tokens = 0.0
    queue.mark(1, {"x"}, at(0))
    assert send(queue, 0) == []
    queue.mark(1, {"y"}, at(1))
    queue.mark(1, {"z"}, at(2))
    assert queue.due(at(2)) == {1: frozenset({"x", "y", "z"})}
    queue.tokens = 1.0
    assert send(queue, 2) == [1]  # whole, from a full bucket
    assert queue.pending == {}


def test_spawn_absorbs_later_marks_and_forget_drops_the_object() -> None:
    queue = ClientQueue(HZ, Budget(), 0.0)
    queue.mark(1, {"x"}, at(0))
    queue.mark(1, {SPAWN}, at(0))
    queue.mark(1, {"y"}, at(1))
    assert queue.due(at(1)) == {1: frozenset({SPAWN})}
    queue.forget(1)
    assert queue.due(at(1)) == {}


def test_per_client_budget_is_adjustable_and_the_server_default_applies() -> None:
    scheduler = Scheduler(HZ, budget=Budget(8192))
    a = scheduler.add_client(1, 0.0)
    b = scheduler.add_client(2, 0.0, Budget(100, burst=50))
    assert a.tokens == 8192 and b.tokens == 50
    scheduler.set_budget(1, Budget(1000, burst=10), 0.0)
    assert scheduler[1].tokens == 10
    assert Budget().capacity() == math.inf
    scheduler.remove_client(2)
    assert 2 not in scheduler.queues


def test_priority_and_rate_declarations() -> None:
    class Slow:
        __reverb_rate__ = 10
        __reverb_priority__ = 3

    class Plain:
        pass

    assert rate_of(Slow()) == 10.0 and priority_of(Slow()) == 3.0
    assert rate_of(Plain()) is None and priority_of(Plain()) == 1.0
    fast = Slow()
    fast.__reverb_rate__ = 30  # an instance overrides its class
    assert rate_of(fast) == 30.0
    Bad = type("Bad", (), {"__reverb_rate__": 0, "__reverb_priority__": math.nan})
    with pytest.raises(ValueError):
        rate_of(Bad())
    with pytest.raises(ValueError):
        priority_of(Bad())
