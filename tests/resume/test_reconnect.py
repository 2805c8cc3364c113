"""Client reconnection: backoff schedule and the state machine (design R-8)."""

from __future__ import annotations

import random
import statistics

import pytest

from reverb.reconnect import (
    CallBook,
    ConnectionLost,
    Reconnected,
    Reconnecting,
    Reconnector,
    ReconnectPolicy,
    ReconnectState,
    ResumeFailed,
    backoff_delay,
)


def test_backoff_is_bounded_by_the_capped_exponential() -> None:
    policy = ReconnectPolicy(base_delay=0.5, max_delay=4.0, max_attempts=20)
    rng = random.Random(1)
    for attempt in range(1, 21):
        ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
        delays = [backoff_delay(policy, attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.9 * ceiling  # reaches up to the ceiling
    assert backoff_delay(policy, 10_000, rng) <= 4.0  # no overflow for huge attempt numbers


def test_full_jitter_is_uniform() -> None:
    policy = ReconnectPolicy(base_delay=1.0, max_delay=1.0)
    rng = random.Random(7)
    delays = [backoff_delay(policy, 1, rng) for _ in range(20_000)]
    assert abs(statistics.fmean(delays) - 0.5) < 0.02
    # ten equal bins, each about a tenth
    bins = [0] * 10
    for d in delays:
        bins[min(int(d * 10), 9)] += 1
    assert all(1700 < n < 2300 for n in bins)


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        ReconnectPolicy(base_delay=0.0)
    with pytest.raises(ValueError):
        ReconnectPolicy(base_delay=2.0, max_delay=1.0)
    with pytest.raises(ValueError):
        ReconnectPolicy(max_attempts=0)


def connected(policy: ReconnectPolicy | None = None) -> Reconnector:
    machine = Reconnector(policy, rng=random.Random(3))
    machine.welcomed(7, "tok-1")
    assert machine.state is ReconnectState.CONNECTED
    return machine


def test_drop_then_resume() -> None:
    machine = connected()
    machine.applied(12)
    events = machine.lost(10.0, 1006, "connection reset", consented=False)
    assert events == [ConnectionLost(1006, "connection reset")]
    assert machine.state is ReconnectState.WAITING
    assert 10.0 <= machine.next_try <= 10.0 + machine.policy.base_delay
    assert machine.poll(machine.next_try) == [Reconnecting(1)]
    assert machine.state is ReconnectState.CONNECTING
    assert machine.resume_hello() == {
        "member": 7,
        "token": "tok-1",
        "since_tick": 12,
        "waiting": [],
    }
    assert machine.resumed(7, "tok-2", full=False) == [Reconnected(7, False)]
    assert machine.state is ReconnectState.CONNECTED
    assert machine.token is not None and machine.token.reveal() == "tok-2"


def test_poll_never_fires_early_and_never_blocks() -> None:
    machine = connected()
    machine.lost(0.0, 1006, "", consented=False)
    due = machine.next_try
    assert due > 0.0
    assert machine.poll(due - 1e-6) == []
    assert machine.poll(due) == [Reconnecting(1)]
    assert machine.poll(due + 100) == []  # already connecting


def test_attempts_are_bounded() -> None:
    policy = ReconnectPolicy(base_delay=0.1, max_delay=1.0, max_attempts=3)
    machine = connected(policy)
    now = 0.0
    machine.lost(now, 1006, "", consented=False)
    seen = []
    while machine.state is ReconnectState.WAITING:
        now = machine.next_try
        seen += machine.poll(now)
        seen += machine.attempt_failed(now)
    assert seen == [
        Reconnecting(1),
        Reconnecting(2),
        Reconnecting(3),
        ResumeFailed("attempts exhausted"),
    ]
    assert machine.state is ReconnectState.FAILED


def test_refusal_is_final_and_forgets_the_token() -> None:
    machine = connected()
    machine.lost(0.0, 1006, "", consented=False)
    machine.poll(machine.next_try)
    assert machine.refused("expired") == [ResumeFailed("expired")]
    assert machine.state is ReconnectState.FAILED and machine.token is None
    # a fresh join afterwards starts a new membership
    machine.welcomed(8, "tok-9")
    assert machine.member == 8 and machine.state is ReconnectState.CONNECTED


def test_off_by_option_and_consented_close() -> None:
    machine = connected(ReconnectPolicy(enabled=False))
    assert machine.lost(0.0, 1006, "", consented=False) == [
        ConnectionLost(1006, ""),
        ResumeFailed("reconnection off"),
    ]
    assert machine.state is ReconnectState.FAILED
    machine = connected()
    assert machine.lost(0.0, 1001, "going away", consented=True) == [
        ConnectionLost(1001, "going away")
    ]
    assert machine.state is ReconnectState.FAILED


def test_server_without_resume_is_not_resumable() -> None:
    machine = Reconnector()
    machine.welcomed(1, None)  # protocol-1 server: no token in welcome
    assert machine.lost(0.0, 1006, "", consented=False) == [
        ConnectionLost(1006, ""),
        ResumeFailed("not resumable"),
    ]


def test_illegal_inputs_raise() -> None:
    machine = connected()
    with pytest.raises(RuntimeError):
        machine.resumed(7, "t", full=True)
    with pytest.raises(RuntimeError):
        machine.attempt_failed(0.0)
    machine.lost(0.0, 1006, "", consented=False)
    with pytest.raises(RuntimeError):
        machine.lost(0.0, 1006, "", consented=False)
    machine.poll(machine.next_try)
    with pytest.raises(RuntimeError):
        machine.resumed(8, "t", full=True)  # another member: the server broke the rule
    machine.close()
    assert machine.state is ReconnectState.CLOSED


def test_call_book_in_flight_and_queued() -> None:
    book = CallBook()
    a, b, c = (book.new(1, "m", (i,)) for i in range(3))
    assert [a.id, b.id, c.id] == [0, 1, 2]
    book.sent(a)
    book.sent(b)
    book.queue(c)  # made while disconnected
    assert book.answered(a.id) == a
    assert book.answered(a.id) is None
    assert book.waiting() == [1]
    assert book.to_send_after_resume() == [b, c]
    book.sent(c)
    assert book.queued == {} and book.waiting() == [1, 2]
    d = book.new(1, "m", ())
    book.queue(d)
    lost, never = book.abandon()
    assert lost == [b, c] and never == [d]
    assert book.waiting() == [] and book.to_send_after_resume() == []
