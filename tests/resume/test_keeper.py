"""The membership keeper: grace, resume, expiry and owned-object policy (design R-2)."""

from __future__ import annotations

import pytest

from reverb.resume import (
    DEFAULT_GRACE,
    Dropped,
    Expired,
    MemberInfo,
    MembershipKeeper,
    OwnedPolicy,
    Refusal,
    Refused,
    Resumed,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def step(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def test_default_grace_is_20_seconds() -> None:
    assert DEFAULT_GRACE == 20.0
    keeper = MembershipKeeper()
    keeper.join(1)
    assert keeper.drop(1, 100.0) == [Dropped(1, 120.0)]


def test_held_during_grace_and_expired_at_deadline() -> None:
    clock = Clock()
    keeper = MembershipKeeper(grace=10.0)
    keeper.join(1)
    keeper.own(1, {5, 6})
    assert keeper.drop(1, clock.now) == [Dropped(1, 110.0)]
    assert keeper.held() == [1]
    for _ in range(9):
        assert keeper.tick(clock.step(1.0)) == []
    assert keeper.tick(clock.step(0.999)) == []
    events = keeper.tick(clock.step(0.001))
    assert events == [Expired(1, frozenset({5, 6}), OwnedPolicy.RELEASE)]
    assert 1 not in keeper and keeper.held() == []
    assert keeper.tick(clock.step(1.0)) == []
    assert keeper.stats["expired"] == 1


@pytest.mark.parametrize("policy", list(OwnedPolicy))
def test_expiry_reports_the_policy(policy: OwnedPolicy) -> None:
    keeper = MembershipKeeper(grace=1.0, policy=policy)
    keeper.join(3)
    keeper.own(3, [10, 11])
    keeper.drop(3, 0.0)
    assert keeper.tick(1.0) == [Expired(3, frozenset({10, 11}), policy)]


def test_resume_inside_grace_keeps_membership_and_ownership() -> None:
    clock = Clock()
    keeper = MembershipKeeper(grace=10.0)
    token = keeper.join(1)
    keeper.own(1, {5})
    keeper.drop(1, clock.now)
    result = keeper.resume(1, token.reveal(), address="a", since_tick=None, now=clock.step(9.9))
    assert isinstance(result, Resumed) and result.member == 1
    assert keeper.held() == []
    assert keeper.tick(clock.step(100.0)) == []  # live again: no expiry
    assert 1 in keeper
    # dropped again: a new grace from the new drop, ownership still recorded
    assert keeper.drop(1, clock.now) == [Dropped(1, clock.now + 10.0)]
    assert keeper.tick(clock.step(10.0)) == [Expired(1, frozenset({5}), OwnedPolicy.RELEASE)]


def test_resume_after_grace_is_refused_as_expired() -> None:
    keeper = MembershipKeeper(grace=10.0)
    token = keeper.join(1)
    keeper.drop(1, 0.0)
    # no tick ran in between: resume itself expires what is due
    assert keeper.resume(1, token.reveal(), address="a", since_tick=None, now=10.0) == Refused(
        Refusal.EXPIRED
    )


def test_unknown_member_is_expired() -> None:
    # e.g. a restarted server: the client gets a clean refusal, then joins afresh
    keeper = MembershipKeeper()
    assert keeper.resume(42, "t", address="a", since_tick=None, now=0.0) == Refused(Refusal.EXPIRED)


def test_consented_close_holds_nothing() -> None:
    keeper = MembershipKeeper()
    token = keeper.join(1)
    keeper.leave(1)
    assert keeper.drop(1, 0.0) == []
    assert keeper.resume(1, token.reveal(), address="a", since_tick=None, now=0.0) == Refused(
        Refusal.EXPIRED
    )


def test_on_drop_hook_chooses_the_grace() -> None:
    seen: list[MemberInfo] = []

    def on_drop(info: MemberInfo) -> float | None:
        seen.append(info)
        return {1: 3.0, 2: 0.0}.get(info.member)

    keeper = MembershipKeeper(grace=20.0, on_drop=on_drop)
    for member in (1, 2, 3):
        keeper.join(member, identity=f"p{member}")
    keeper.own(1, {9})
    assert keeper.drop(1, 0.0) == [Dropped(1, 3.0)]
    # 0: not held, expires at once
    assert keeper.drop(2, 0.0) == [
        Dropped(2, 0.0),
        Expired(2, frozenset(), OwnedPolicy.RELEASE),
    ]
    assert keeper.drop(3, 0.0) == [Dropped(3, 20.0)]  # None: the default
    assert seen[0] == MemberInfo(1, "p1", frozenset({9}))
    assert keeper.tick(3.0) == [Expired(1, frozenset({9}), OwnedPolicy.RELEASE)]


def test_drop_twice_is_one_drop() -> None:
    keeper = MembershipKeeper(grace=5.0)
    keeper.join(1)
    assert keeper.drop(1, 0.0) == [Dropped(1, 5.0)]
    assert keeper.drop(1, 4.0) == []  # the deadline does not move
    assert keeper.tick(5.0) != []


def test_full_snapshot_unless_the_client_has_the_baseline() -> None:
    keeper = MembershipKeeper()
    token = keeper.join(1)
    keeper.sent_tick(1, 41)
    keeper.sent_tick(1, 42)
    for since, full in ((42, False), (41, True), (None, True)):
        keeper.drop(1, 0.0)
        result = keeper.resume(1, token.reveal(), address="a", since_tick=since, now=1.0)
        assert isinstance(result, Resumed)
        assert result.full is full
        token = result.token


def test_join_twice_and_negative_grace_are_errors() -> None:
    keeper = MembershipKeeper()
    keeper.join(1)
    with pytest.raises(ValueError):
        keeper.join(1)
    with pytest.raises(ValueError):
        MembershipKeeper(grace=-1.0)
