"""Resume tokens and the failed-attempt limiter (docs/design/resume.md R-3, R-5)."""

from __future__ import annotations

import base64
import hmac
import logging
from typing import Any

import pytest

from reverb import resume
from reverb.resume import (
    TOKEN_BYTES,
    FailureLimiter,
    MembershipKeeper,
    Refusal,
    Refused,
    Resumed,
    ResumeToken,
    token_matches,
)


def _raw(token: ResumeToken) -> bytes:
    value = token.reveal()
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def test_token_has_at_least_128_random_bits() -> None:
    tokens = [ResumeToken.new() for _ in range(2000)]
    assert TOKEN_BYTES * 8 >= 128
    assert all(len(_raw(t)) == TOKEN_BYTES for t in tokens)
    assert len({t.reveal() for t in tokens}) == len(tokens)
    # every bit position takes both values; each is set in roughly half the tokens
    ones = [0] * (TOKEN_BYTES * 8)
    for token in tokens:
        bits = int.from_bytes(_raw(token), "big")
        for i in range(TOKEN_BYTES * 8):
            ones[i] += (bits >> i) & 1
    assert all(800 < n < 1200 for n in ones)


def test_token_comes_from_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake(n: int) -> str:
        calls.append(n)
        return "x" * 43

    monkeypatch.setattr(resume.secrets, "token_urlsafe", fake)
    assert ResumeToken.new().reveal() == "x" * 43
    assert calls == [TOKEN_BYTES]


def test_repr_and_str_hide_the_value() -> None:
    token = ResumeToken.new()
    for text in (repr(token), str(token), f"{token}", f"{token!r}", repr([token])):
        assert token.reveal() not in text
        assert "hidden" in text


def test_compare_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(resume.hmac, "compare_digest", spy)
    token = ResumeToken.new()
    assert token_matches(token.reveal(), token.digest)
    assert not token_matches(token.reveal() + "x", token.digest)
    assert token == ResumeToken(token.reveal())
    assert len(seen) == 3

    keeper = MembershipKeeper()
    first = keeper.join(1)
    keeper.drop(1, 0.0)
    seen.clear()
    assert isinstance(
        keeper.resume(1, first.reveal(), address="a", since_tick=None, now=1.0), Resumed
    )
    assert seen, "the keeper must compare tokens with hmac.compare_digest"


def test_token_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="reverb")
    keeper = MembershipKeeper()
    token = keeper.join(7, identity="alice")
    keeper.drop(7, 0.0)
    bad = keeper.resume(7, "guess", identity="alice", address="a", since_tick=None, now=1.0)
    assert bad == Refused(Refusal.BAD_TOKEN)
    ok = keeper.resume(7, token.reveal(), identity="alice", address="a", since_tick=3, now=1.0)
    assert isinstance(ok, Resumed)
    logging.getLogger("reverb").info("event %r %s", ok, ok.token)
    assert caplog.records
    for secret in (token.reveal(), ok.token.reveal(), "guess"):
        assert secret not in caplog.text


def test_single_use_and_rotated() -> None:
    keeper = MembershipKeeper()
    first = keeper.join(1)
    keeper.drop(1, 0.0)
    ok = keeper.resume(1, first.reveal(), address="a", since_tick=None, now=1.0)
    assert isinstance(ok, Resumed) and ok.member == 1
    assert ok.token.reveal() != first.reveal()
    keeper.drop(1, 2.0)
    again = keeper.resume(1, first.reveal(), address="a", since_tick=None, now=3.0)
    assert again == Refused(Refusal.BAD_TOKEN)
    fresh = keeper.resume(1, ok.token.reveal(), address="a", since_tick=None, now=3.0)
    assert isinstance(fresh, Resumed)


def test_a_live_membership_cannot_be_taken_over() -> None:
    keeper = MembershipKeeper()
    token = keeper.join(1)
    result = keeper.resume(1, token.reveal(), address="a", since_tick=None, now=0.0)
    assert result == Refused(Refusal.EXPIRED)


def test_token_expires_with_the_grace() -> None:
    keeper = MembershipKeeper(grace=5.0)
    token = keeper.join(1)
    keeper.drop(1, 10.0)
    assert keeper.resume(1, token.reveal(), address="a", since_tick=None, now=15.0) == Refused(
        Refusal.EXPIRED
    )


def test_token_is_useless_from_another_identity() -> None:
    keeper = MembershipKeeper()
    token = keeper.join(1, identity={"id": "alice"})
    keeper.drop(1, 0.0)
    for other in ({"id": "mallory"}, None, "alice"):
        result = keeper.resume(
            1, token.reveal(), identity=other, address="a", since_tick=None, now=1.0
        )
        assert result == Refused(Refusal.BAD_TOKEN)
    ok = keeper.resume(
        1, token.reveal(), identity={"id": "alice"}, address="a", since_tick=None, now=1.0
    )
    assert isinstance(ok, Resumed)


def test_failed_attempts_are_limited_per_address() -> None:
    keeper = MembershipKeeper(limiter=FailureLimiter(max_failures=3, window=60.0))
    token = keeper.join(1)
    keeper.drop(1, 0.0)
    for i in range(3):
        assert keeper.resume(1, f"g{i}", address="evil", since_tick=None, now=1.0) == Refused(
            Refusal.BAD_TOKEN
        )
    # blocked: even the right token is not checked from that address
    blocked = keeper.resume(1, token.reveal(), address="evil", since_tick=None, now=2.0)
    assert blocked == Refused(Refusal.RATE_LIMITED)
    assert keeper.stats["refused"] == 4
    # another address is not affected; the window slides
    assert isinstance(
        keeper.resume(1, token.reveal(), address="good", since_tick=None, now=2.0), Resumed
    )


def test_limiter_window_slides() -> None:
    limiter = FailureLimiter(max_failures=2, window=10.0)
    limiter.fail("a", 0.0)
    limiter.fail("a", 5.0)
    assert limiter.blocked("a", 9.0)
    assert not limiter.blocked("a", 10.0)
    assert not limiter.blocked("a", 15.0)
    assert not limiter.blocked("b", 0.0)
    assert limiter._failures == {}  # nothing kept for addresses with no recent failure
