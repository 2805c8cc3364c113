"""The call ledger: exactly-once across a drop, and its bounds (design R-6)."""

from __future__ import annotations

import pytest

from reverb.resume import CallLedger, MembershipKeeper, NotRun, Replay, Resumed, Run, Wait


def test_new_call_runs_then_replays() -> None:
    ledger = CallLedger()
    assert ledger.receive(0) == Run()
    assert ledger.receive(0) == Wait()  # received again while running: never a second run
    ledger.finish(0, b"answer0", sent=False)  # finished while dropped
    assert ledger.receive(0) == Replay(b"answer0")
    assert ledger.receive(0) == Wait()  # the replay is on its way on this connection
    ledger.disconnected()
    assert ledger.receive(0) == Replay(b"answer0")  # a new connection: replay again
    assert ledger.receive(1) == Run()


def test_a_resend_crossing_its_answer_is_not_answered_twice() -> None:
    ledger = CallLedger()
    ledger.receive(0)
    ledger.disconnected()  # drop while it runs; the client will re-send 0 after the resume
    ledger.finish(0, b"r0", sent=True)  # resumed before it finished: written at once
    assert ledger.receive(0) == Wait()  # the re-sent rpc arrives after: no second answer


def test_finish_of_a_call_not_running_is_a_bug() -> None:
    ledger = CallLedger()
    with pytest.raises(KeyError):
        ledger.finish(3, b"x", sent=True)


def test_pong_confirms_what_was_written_before_its_ping() -> None:
    ledger = CallLedger()
    for i in range(4):
        ledger.receive(i)
    ledger.finish(0, b"r0", sent=True)
    ledger.finish(1, b"r1", sent=True)
    mark = ledger.mark()
    ledger.finish(2, b"r2", sent=True)
    ledger.finish(3, b"r3", sent=False)  # finished while dropped: not written
    assert len(ledger) == 4 and ledger.size == 8
    ledger.confirm_through(mark)
    assert len(ledger) == 2 and ledger.size == 4
    assert ledger.receive(0) == Run()  # forgotten: the client had it, so this is a new call
    ledger.confirm_through(ledger.mark())
    assert ledger.receive(3) == Replay(b"r3")  # never written before that mark: kept


def test_a_drop_makes_written_answers_unsent() -> None:
    # an answer written on the old connection may have been lost in the cut; a ping on the new
    # connection must not confirm it
    ledger = CallLedger()
    ledger.receive(0)
    ledger.finish(0, b"r0", sent=True)
    ledger.disconnected()
    ledger.confirm_through(ledger.mark())
    assert ledger.receive(0) == Replay(b"r0")
    ledger.confirm_through(ledger.mark())  # the replay was written: now it counts
    assert len(ledger) == 0


def test_keep_only_and_confirm() -> None:
    ledger = CallLedger()
    for i in range(3):
        ledger.receive(i)
        ledger.finish(i, b"r%d" % i, sent=True)
    ledger.disconnected()
    ledger.keep_only([2])
    assert len(ledger) == 1 and ledger.receive(2) == Replay(b"r2")
    ledger.confirm([2, 99])
    assert len(ledger) == 0 and ledger.size == 0


def test_count_bound_refuses_new_calls_never_forgets() -> None:
    ledger = CallLedger(max_results=3)
    for i in range(3):
        assert ledger.receive(i) == Run()
        ledger.finish(i, b"r", sent=False)
    assert ledger.full()
    assert ledger.receive(3) == NotRun()
    assert 3 not in ledger.running  # a refused call is not running and may be sent again
    for i in range(3):
        assert ledger.receive(i) == Replay(b"r")  # nothing remembered was dropped
    ledger.confirm([0])
    assert ledger.receive(3) == Run()


def test_byte_bound() -> None:
    ledger = CallLedger(max_bytes=10)
    ledger.receive(0)
    ledger.finish(0, b"x" * 6, sent=True)
    assert ledger.receive(1) == Run()
    ledger.finish(1, b"x" * 6, sent=True)  # a running call's answer is always kept
    assert ledger.size == 12 and ledger.full()
    assert ledger.receive(2) == NotRun()
    ledger.confirm([0])
    assert not ledger.full()


def test_ledger_survives_a_drop_and_resume() -> None:
    keeper = MembershipKeeper()
    token = keeper.join(1)
    ledger = keeper.ledger(1)
    assert ledger.receive(0) == Run()
    assert ledger.receive(1) == Run()
    ledger.finish(0, b"r0", sent=True)
    keeper.drop(1, 0.0)
    ledger.finish(1, b"r1", sent=False)  # completed during the drop
    result = keeper.resume(1, token.reveal(), address="a", since_tick=None, waiting=[0, 1], now=1.0)
    assert isinstance(result, Resumed)
    assert keeper.ledger(1) is ledger
    assert ledger.receive(0) == Replay(b"r0")
    assert ledger.receive(1) == Replay(b"r1")
    assert ledger.receive(2) == Run()


def test_resume_forgets_what_the_client_no_longer_waits_for() -> None:
    keeper = MembershipKeeper()
    token = keeper.join(1)
    ledger = keeper.ledger(1)
    for i in range(3):
        ledger.receive(i)
        ledger.finish(i, b"r", sent=True)
    keeper.drop(1, 0.0)
    keeper.resume(1, token.reveal(), address="a", since_tick=None, waiting=[2], now=1.0)
    assert len(ledger) == 1
