"""Reconnecting and resuming, client side, sans I/O (docs/design/resume.md; issue 13).

- :class:`ReconnectPolicy` and :func:`backoff_delay`: exponential backoff with full jitter,
  bounded attempts, off by option.
- :class:`CallBook`: the client's calls by id, which are in flight, and what to re-send after a
  resume (R-6.3).
- :class:`Reconnector`: the state machine; the I/O layer feeds it (``lost``, ``poll``,
  ``attempt_failed``, ``resumed``, ``refused``) and acts on what it returns. It never blocks:
  ``poll(now)`` answers at once whether to try now.

Events for the game loop: :class:`ConnectionLost`, :class:`Reconnecting`, :class:`Reconnected`,
:class:`ResumeFailed`.
"""

from __future__ import annotations

import enum
import logging
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from reverb.resume import ResumeToken

__all__ = [
    "CallBook",
    "ConnectionLost",
    "OutgoingCall",
    "ReconnectEvent",
    "ReconnectPolicy",
    "ReconnectState",
    "Reconnected",
    "Reconnecting",
    "Reconnector",
    "ResumeFailed",
    "backoff_delay",
]

logger = logging.getLogger("reverb")


@dataclass(frozen=True)
class ReconnectPolicy:
    """How the client retries (R-8). ``enabled=False`` keeps protocol-1 behaviour: a drop is
    final. Attempt ``n`` (1-based) waits ``uniform(0, min(max_delay, base_delay * 2**(n-1)))``
    ("full jitter": clients dropped together by one outage do not come back in step)."""

    enabled: bool = True
    base_delay: float = 0.25
    max_delay: float = 8.0  # well inside the server's 20 s grace
    max_attempts: int = 10

    def __post_init__(self) -> None:
        if self.base_delay <= 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 < base_delay <= max_delay")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")


def backoff_delay(policy: ReconnectPolicy, attempt: int, rng: random.Random) -> float:
    """The wait before attempt ``attempt`` (1-based): full jitter over the capped exponential."""
    ceiling = min(policy.max_delay, policy.base_delay * 2.0 ** min(attempt - 1, 62))
    return rng.uniform(0.0, ceiling)


# --- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionLost:
    code: int
    reason: str


@dataclass(frozen=True)
class Reconnecting:
    attempt: int


@dataclass(frozen=True)
class Reconnected:
    """Resumed as the same member; ``full`` says whether a full snapshot follows (replicas are
    kept and updated in place either way: the same Python objects)."""

    member: int
    full: bool


@dataclass(frozen=True)
class ResumeFailed:
    """Given up: ``reason`` is the server's refusal (``"bad token"``, ``"expired"``, …) or
    ``"attempts exhausted"``. The game may join afresh (a new membership, issue 8 decision 9)."""

    reason: str


ReconnectEvent = ConnectionLost | Reconnecting | Reconnected | ResumeFailed


class ReconnectState(enum.Enum):
    CONNECTED = "connected"
    WAITING = "waiting"  # backing off before the next attempt
    CONNECTING = "connecting"  # an attempt is under way (TCP, then the resume hello)
    FAILED = "failed"  # given up, or reconnection off
    CLOSED = "closed"  # the client closed on purpose


# which inputs each state accepts; a missing key is a bug in the I/O layer.
_ACCEPTS: dict[ReconnectState, frozenset[str]] = {
    ReconnectState.CONNECTED: frozenset({"lost", "close"}),
    ReconnectState.WAITING: frozenset({"poll", "close"}),
    ReconnectState.CONNECTING: frozenset({"attempt_failed", "resumed", "refused", "close"}),
    ReconnectState.FAILED: frozenset({"close"}),
    ReconnectState.CLOSED: frozenset(),
}


# --- the client's calls ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingCall:
    id: int
    uid: int
    method: str
    args: tuple[Any, ...]


@dataclass
class CallBook:
    """The client's calls (R-6.3). Ids strictly increase for the life of the membership, so
    they are never reused across a resume. A call is *in flight* from :meth:`sent` until its
    answer arrives (:meth:`answered`). Calls made while disconnected are *queued*: they have
    not left and are sent after the resume; if the resume fails they fail with ``not_run``."""

    next_id: int = 0
    in_flight: OrderedDict[int, OutgoingCall] = field(default_factory=OrderedDict)
    queued: OrderedDict[int, OutgoingCall] = field(default_factory=OrderedDict)

    def new(self, uid: int, method: str, args: tuple[Any, ...]) -> OutgoingCall:
        call = OutgoingCall(self.next_id, uid, method, args)
        self.next_id += 1
        return call

    def sent(self, call: OutgoingCall) -> None:
        self.queued.pop(call.id, None)
        self.in_flight[call.id] = call

    def queue(self, call: OutgoingCall) -> None:
        self.queued[call.id] = call

    def answered(self, call_id: int) -> OutgoingCall | None:
        return self.in_flight.pop(call_id, None)

    def waiting(self) -> list[int]:
        """The ids for the resume ``hello``: answers the client still waits for."""
        return list(self.in_flight)

    def to_send_after_resume(self) -> list[OutgoingCall]:
        """In flight first (re-sent with the same id, in the original order), then queued."""
        return list(self.in_flight.values()) + list(self.queued.values())

    def abandon(self) -> tuple[list[OutgoingCall], list[OutgoingCall]]:
        """The resume failed: (in flight — outcome unknown, fail with ``ConnectionClosed``;
        queued — never sent, fail with ``not_run``). The book is emptied."""
        lost, never = list(self.in_flight.values()), list(self.queued.values())
        self.in_flight.clear()
        self.queued.clear()
        return lost, never


# --- the state machine ----------------------------------------------------------------------------


class Reconnector:
    """The client's reconnection state machine (R-8), one per client.

    It keeps what a resume needs: the membership id, the current token (rotated at each
    resume), the last tick applied in full, and the :class:`CallBook`. The replicas themselves
    stay in the client's registry, keyed by uid, so a resume keeps the same Python objects.
    """

    def __init__(
        self, policy: ReconnectPolicy | None = None, *, rng: random.Random | None = None
    ) -> None:
        self.policy = policy if policy is not None else ReconnectPolicy()
        self.rng = rng if rng is not None else random.Random()
        self.state = ReconnectState.CLOSED
        self.member: int | None = None
        self.token: ResumeToken | None = None
        self.last_tick: int | None = None
        self.calls = CallBook()
        self.attempt = 0
        self.next_try = 0.0

    def _input(self, name: str) -> None:
        if name not in _ACCEPTS[self.state]:
            raise RuntimeError(f"reconnector: {name!r} not allowed in state {self.state.value}")

    def _set(self, state: ReconnectState) -> None:
        logger.debug("reconnector: %s -> %s", self.state.value, state.value)
        self.state = state

    def welcomed(self, member: int, token: str | None) -> None:
        """A fresh ``welcome`` (first join, or a fresh join after ``resume_failed``)."""
        self.member = member
        self.token = ResumeToken(token) if token is not None else None
        self.last_tick = None
        self.calls = CallBook()
        self.attempt = 0
        self._set(ReconnectState.CONNECTED)

    def applied(self, tick: int) -> None:
        """The client applied the final part of ``tick``'s sync."""
        self.last_tick = tick

    def resume_hello(self) -> dict[str, Any]:
        """The ``resume`` member of the ``hello`` for the attempt under way (R-4.1)."""
        assert self.member is not None and self.token is not None
        return {
            "member": self.member,
            "token": self.token.reveal(),
            "since_tick": self.last_tick,
            "waiting": self.calls.waiting(),
        }

    def lost(self, now: float, code: int, reason: str, *, consented: bool) -> list[ReconnectEvent]:
        """The connection ended. ``consented``: a ``close`` was exchanged (no resume follows)."""
        self._input("lost")
        events: list[ReconnectEvent] = [ConnectionLost(code, reason)]
        if consented or not self.policy.enabled or self.token is None:
            self._set(ReconnectState.FAILED)
            if not consented:
                events.append(ResumeFailed("reconnection off" if self.token else "not resumable"))
            return events
        self.attempt = 0
        self._schedule(now)
        return events

    def _schedule(self, now: float) -> None:
        self.attempt += 1
        self.next_try = now + backoff_delay(self.policy, self.attempt, self.rng)
        self._set(ReconnectState.WAITING)

    def poll(self, now: float) -> list[ReconnectEvent]:
        """Returns ``[Reconnecting(n)]`` when attempt ``n`` should start now (the I/O layer then
        opens a connection and sends the resume ``hello``); else nothing. Never blocks."""
        if self.state is not ReconnectState.WAITING or now < self.next_try:
            return []
        self._set(ReconnectState.CONNECTING)
        return [Reconnecting(self.attempt)]

    def attempt_failed(self, now: float) -> list[ReconnectEvent]:
        """The attempt did not reach the server (refused TCP, timeout, cut during handshake)."""
        self._input("attempt_failed")
        if self.attempt >= self.policy.max_attempts:
            self._set(ReconnectState.FAILED)
            return [ResumeFailed("attempts exhausted")]
        self._schedule(now)
        return []

    def resumed(self, member: int, token: str, full: bool) -> list[ReconnectEvent]:
        """The server accepted: ``welcome`` with ``resumed: true`` (R-4.2)."""
        self._input("resumed")
        if member != self.member:
            raise RuntimeError("resumed as another member")  # the server broke
        self.token = ResumeToken(token)
        self.attempt = 0
        self._set(ReconnectState.CONNECTED)
        return [Reconnected(member, full)]

    def refused(self, reason: str) -> list[ReconnectEvent]:
        """The server refused the resume (close 3002/3003/1008, R-4.3): final."""
        self._input("refused")
        self.token = None
        self._set(ReconnectState.FAILED)
        return [ResumeFailed(reason)]

    def close(self) -> None:
        """The game closed the client on purpose."""
        self._input("close")
        self._set(ReconnectState.CLOSED)
