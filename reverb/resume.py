"""Session resume, server side, sans I/O (docs/design/resume.md; issue 13).

Three parts, each taking ``now`` as an argument and reading no clock:

- :class:`ResumeToken` and :class:`FailureLimiter`: the private token a client presents to
  come back as itself (R-3), and the per-address budget of failed attempts (R-5).
- :class:`CallLedger`: per membership, which call ids are running and the remembered answers
  of finished ones, so that a call re-sent after a resume never runs twice (R-6).
- :class:`MembershipKeeper`: memberships whose connection dropped without a consented close,
  held for a grace period, then resumed or expired (R-2), with a policy for owned objects.

Nothing here touches sockets, sessions or the world: the I/O layer feeds it and applies the
events it returns (``Dropped``, ``Resumed``, ``Expired``).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_GRACE",
    "MAX_RESULTS",
    "MAX_RESULT_BYTES",
    "TOKEN_BYTES",
    "CallLedger",
    "Decision",
    "Dropped",
    "Expired",
    "FailureLimiter",
    "KeeperEvent",
    "MemberInfo",
    "MembershipKeeper",
    "NotRun",
    "OwnedPolicy",
    "Refusal",
    "Refused",
    "Replay",
    "ResumeToken",
    "Resumed",
    "Run",
    "Wait",
    "resumable",
    "token_matches",
]

logger = logging.getLogger("reverb")

# A phone crossing a tunnel or a Wi-Fi hand-over is back within seconds; 20 s covers most of it
# while not holding a seat (and its owned objects) for someone who closed the app.
DEFAULT_GRACE = 20.0
# 256 bits from ``secrets``; the issue asks for at least 128.
TOKEN_BYTES = 32
# answers remembered per membership until the client has seen them. 1024 matches
# MAX_PENDING_CALLS; 1 MiB bounds a membership's memory whatever the game returns.
MAX_RESULTS = 1024
MAX_RESULT_BYTES = 1 << 20
# like failed auth, a handful of mistakes per minute per address is a human; more is a guess.
MAX_FAILURES = 10
FAILURE_WINDOW = 60.0


# --- tokens -------------------------------------------------------------------------------------


class ResumeToken:
    """A resume token: 256 random bits, URL-safe base64 on the wire (R-3).

    Its ``repr`` and ``str`` hide the value, so it cannot reach a log line by accident; the value
    is read only with :meth:`reveal`, by the code that puts it into ``welcome``. The server keeps
    only its SHA-256 digest (:attr:`digest`) and compares digests in constant time.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    @classmethod
    def new(cls) -> ResumeToken:
        return cls(secrets.token_urlsafe(TOKEN_BYTES))

    def reveal(self) -> str:
        return self._value

    @property
    def digest(self) -> bytes:
        return _digest(self._value)

    def __repr__(self) -> str:
        return "ResumeToken(<hidden>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResumeToken):
            return NotImplemented
        return hmac.compare_digest(self.digest, other.digest)

    def __hash__(self) -> int:
        return hash(self.digest)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def token_matches(presented: str, digest: bytes) -> bool:
    """Whether ``presented`` is the token whose digest is ``digest``, in constant time (R-3)."""
    return hmac.compare_digest(_digest(presented), digest)


class FailureLimiter:
    """Failed resume attempts per address in a sliding window (R-5): at most ``max_failures``
    in ``window`` seconds; past that, further attempts from the address are refused unchecked."""

    def __init__(self, *, max_failures: int = MAX_FAILURES, window: float = FAILURE_WINDOW) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._failures.get(address)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
        return times

    def blocked(self, address: str, now: float) -> bool:
        return len(self._recent(address, now)) >= self.max_failures

    def fail(self, address: str, now: float) -> None:
        self._recent(address, now)
        self._failures.setdefault(address, deque()).append(now)


# --- the call ledger ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """The call is new: run it, then :meth:`CallLedger.finish` it."""


@dataclass(frozen=True)
class Replay:
    """The call already ran: send this remembered answer (an encoded ``rpc_result`` or
    ``rpc_error`` body) again; do not run it."""

    reply: bytes


@dataclass(frozen=True)
class Wait:
    """Do not run the call and send nothing now: it is running (received before the drop, not
    yet finished) and its answer goes out when it finishes, or its answer was already written on
    this connection (the re-sent ``rpc`` crossed it)."""


@dataclass(frozen=True)
class NotRun:
    """The ledger is full of answers the client has not confirmed: refuse the call with
    ``rpc_error`` code ``not_run`` (it did not run and will not; send it again later)."""


Decision = Run | Replay | Wait | NotRun


class CallLedger:
    """One membership's calls by id, across connections (R-6).

    A call id is *running* from :meth:`receive` returning :class:`Run` until :meth:`finish`;
    then its answer is *remembered* until the client proves it has it, or the membership ends.
    Proof is one of: the resume ``hello`` does not list the id among those it waits for
    (:meth:`keep_only`); or a ``pong`` arrives for a ``ping`` written after the answer on the
    same connection (one TCP stream delivers in order): the I/O layer sends each ``ping`` with
    :meth:`mark` and calls :meth:`confirm_through` with that mark when its ``pong`` arrives.
    Only answers written on the *current* connection count: a drop (:meth:`disconnected`)
    makes every remembered answer unsent again.

    The ledger never forgets an unconfirmed answer to make room: when the remembered answers
    reach ``max_results`` or ``max_bytes``, :meth:`receive` answers :class:`NotRun` for new
    calls (they did not run; the client may send them again). So a re-sent id is replayed,
    waited for, or was never received, never "ran, but forgotten".
    """

    def __init__(
        self, *, max_results: int = MAX_RESULTS, max_bytes: int = MAX_RESULT_BYTES
    ) -> None:
        self.max_results = max_results
        self.max_bytes = max_bytes
        self.running: set[int] = set()
        self._answers: dict[int, bytes] = {}
        self._sent: dict[int, int] = {}  # id -> write sequence on the current connection
        self._bytes = 0
        self._seq = 0

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def size(self) -> int:
        """Bytes of remembered answers."""
        return self._bytes

    def full(self) -> bool:
        return len(self._answers) >= self.max_results or self._bytes >= self.max_bytes

    def receive(self, call_id: int) -> Decision:
        """What to do with an ``rpc`` carrying ``call_id`` (a new one, or one re-sent).
        A :class:`Replay` counts as written: the caller sends it on the current connection."""
        if call_id in self.running or call_id in self._sent:
            # running: its answer goes out when it finishes; written on this connection
            # already: it is on its way (a re-sent id overtaken by its answer)
            return Wait()
        remembered = self._answers.get(call_id)
        if remembered is not None:
            self._written(call_id)
            return Replay(remembered)
        if self.full():
            return NotRun()
        self.running.add(call_id)
        return Run()

    def finish(self, call_id: int, reply: bytes, *, sent: bool) -> None:
        """Remember the answer of a call that ran. ``sent``: it was written to a live
        connection now (False while the member is dropped: it goes out as a replay)."""
        if call_id not in self.running:
            raise KeyError(f"call {call_id} is not running")
        self.running.discard(call_id)
        self._answers[call_id] = reply
        self._bytes += len(reply)
        if sent:
            self._written(call_id)

    def _written(self, call_id: int) -> None:
        self._seq += 1
        self._sent[call_id] = self._seq

    def mark(self) -> int:
        """The write position now: send it along with a ``ping`` (kept by the I/O layer)."""
        return self._seq

    def confirm_through(self, mark: int) -> None:
        """The ``pong`` for the ``ping`` sent at ``mark`` arrived: the client has every answer
        written on this connection before it."""
        self.confirm([i for i, seq in self._sent.items() if seq <= mark])

    def confirm(self, call_ids: Iterable[int]) -> None:
        """The client has these answers: forget them."""
        for call_id in call_ids:
            self._sent.pop(call_id, None)
            remembered = self._answers.pop(call_id, None)
            if remembered is not None:
                self._bytes -= len(remembered)

    def unconfirmed(self) -> bool:
        """Whether answers were written on this connection that the client has not
        confirmed yet (the I/O layer then sends a ``ping``, R-6.7)."""
        return bool(self._sent)

    def disconnected(self) -> None:
        """The connection ended: what was written on it may not have arrived."""
        self._sent.clear()

    def keep_only(self, waiting: Iterable[int]) -> None:
        """At a resume: the client lists the ids it still waits for; every other remembered
        answer reached it, so forget those."""
        keep = set(waiting)
        self.confirm([i for i in self._answers if i not in keep])


def resumable(code: int, reason: str) -> bool:
    """Whether a connection that ended with ``code``/``reason`` (not a ``close`` the peer
    chose to send, except the server's slow-consumer and idle closes) may be resumed
    (R-2.1, protocol §18.1): a reset or EOF (1006), a TLS failure (1015), a stalled reader
    (1013), a dead link (1008 "idle timeout")."""
    return code in (1006, 1013, 1015) or (code == 1008 and reason == "idle timeout")


# --- the keeper ---------------------------------------------------------------------------------


class OwnedPolicy(enum.Enum):
    """What happens, at expiry, to the objects a dropped member owned (R-2.4)."""

    KEEP = "keep"  # they stay, still owned by the (now gone) membership id: the game decides
    RELEASE = "release"  # ownership handed back: owner None (server-owned); the objects stay
    DESTROY = "destroy"  # despawned, as if the member had owned nothing


class Refusal(enum.Enum):
    """Why a resume was refused (R-4). The wire close code of each is in the design doc."""

    BAD_TOKEN = "bad token"  # wrong, already used, or presented by another identity
    EXPIRED = "expired"  # the membership is not held (grace over, never dropped, restart)
    RATE_LIMITED = "too many failed resume attempts"


class _Phase(enum.Enum):
    LIVE = "live"
    DROPPED = "dropped"


@dataclass(frozen=True)
class MemberInfo:
    """What ``on_drop`` is told about the member that dropped."""

    member: int
    identity: Any
    owned: frozenset[int]


@dataclass(frozen=True)
class Dropped:
    member: int
    deadline: float


@dataclass(frozen=True)
class Resumed:
    """The resume is accepted: send ``welcome`` with ``member`` and the new ``token`` (the old
    one is dead), then replays, then a full snapshot when ``full`` else a delta (R-7)."""

    member: int
    token: ResumeToken
    full: bool


@dataclass(frozen=True)
class Expired:
    """The grace period ended: the membership is gone; apply ``policy`` to ``owned``."""

    member: int
    owned: frozenset[int]
    policy: OwnedPolicy


@dataclass(frozen=True)
class Refused:
    reason: Refusal


KeeperEvent = Dropped | Resumed | Expired


@dataclass
class _Membership:
    member: int
    identity: Any
    digest: bytes
    ledger: CallLedger
    owned: set[int] = field(default_factory=set)
    phase: _Phase = _Phase.LIVE
    deadline: float = 0.0
    baseline_tick: int | None = None  # the last tick whose sync was fully sent


class MembershipKeeper:
    """Memberships across connection drops (R-2).

    ``join`` at ``welcome`` returns the token to send. ``drop`` when the connection ends without
    a consented close (a ``close`` 1000 from the client is consent: call ``leave`` instead).
    ``resume`` checks a resume ``hello``. ``tick(now)`` expires what outlived its grace.

    ``on_drop(info) -> seconds | None`` chooses the grace per member: ``None`` means the
    default ``grace``, ``0`` means do not hold (expire at once).
    """

    def __init__(
        self,
        *,
        grace: float = DEFAULT_GRACE,
        policy: OwnedPolicy = OwnedPolicy.RELEASE,
        on_drop: Callable[[MemberInfo], float | None] | None = None,
        limiter: FailureLimiter | None = None,
        max_results: int = MAX_RESULTS,
        max_result_bytes: int = MAX_RESULT_BYTES,
    ) -> None:
        if grace < 0:
            raise ValueError("grace must be >= 0")
        self.grace = grace
        self.policy = policy
        self.on_drop = on_drop
        self.limiter = limiter if limiter is not None else FailureLimiter()
        self._max_results = max_results
        self._max_result_bytes = max_result_bytes
        self._members: dict[int, _Membership] = {}
        self.stats: dict[str, int] = {"dropped": 0, "resumed": 0, "expired": 0, "refused": 0}

    def __contains__(self, member: object) -> bool:
        return member in self._members

    def __len__(self) -> int:
        return len(self._members)

    def held(self) -> list[int]:
        """Members currently dropped and waiting to be resumed."""
        return [k for k, v in self._members.items() if v.phase is _Phase.DROPPED]

    def ledger(self, member: int) -> CallLedger:
        return self._members[member].ledger

    def join(self, member: int, identity: Any = None) -> ResumeToken:
        if member in self._members:
            raise ValueError(f"member {member} already joined")
        token = ResumeToken.new()
        ledger = CallLedger(max_results=self._max_results, max_bytes=self._max_result_bytes)
        self._members[member] = _Membership(member, identity, token.digest, ledger)
        return token

    def own(self, member: int, uids: Iterable[int]) -> None:
        """Record the uids the member owns now (the replication layer's view)."""
        self._members[member].owned = set(uids)

    def sent_tick(self, member: int, tick: int) -> None:
        """The sync of ``tick`` was written in full to this member's connection."""
        self._members[member].baseline_tick = tick

    def leave(self, member: int) -> None:
        """A consented close (or a refused session): forget the membership, no grace."""
        self._members.pop(member, None)

    def drop(self, member: int, now: float) -> list[KeeperEvent]:
        held = self._members.get(member)
        if held is None or held.phase is not _Phase.LIVE:
            return []
        info = MemberInfo(member, held.identity, frozenset(held.owned))
        seconds = self.on_drop(info) if self.on_drop is not None else None
        grace = self.grace if seconds is None else max(0.0, float(seconds))
        held.phase = _Phase.DROPPED
        held.ledger.disconnected()
        held.deadline = now + grace
        self.stats["dropped"] += 1
        logger.info("member %d dropped; held for %.1f s", member, grace)
        events: list[KeeperEvent] = [Dropped(member, held.deadline)]
        if grace == 0:
            events += self.tick(now)
        return events

    def tick(self, now: float) -> list[KeeperEvent]:
        """Expire the memberships whose grace is over (deadline reached)."""
        events: list[KeeperEvent] = []
        for member in [k for k, v in self._members.items() if v.phase is _Phase.DROPPED]:
            held = self._members[member]
            if now >= held.deadline:
                del self._members[member]
                self.stats["expired"] += 1
                logger.info("member %d expired: %s its objects", member, self.policy.value)
                events.append(Expired(member, frozenset(held.owned), self.policy))
        return events

    def resume(
        self,
        member: int,
        presented: str,
        *,
        identity: Any = None,
        address: str,
        since_tick: int | None,
        waiting: Iterable[int] = (),
        now: float,
    ) -> Resumed | Refused:
        """Check a resume ``hello`` (R-4). On success the token is rotated, the ledger keeps the
        answers the client still waits for, and ``full`` says whether the client needs a full
        snapshot (its ``since_tick`` is not the tick the server last sent in full: R-7)."""
        if self.limiter.blocked(address, now):
            self.stats["refused"] += 1
            logger.warning("resume from %s refused: too many failed attempts", address)
            return Refused(Refusal.RATE_LIMITED)
        self.tick(now)
        held = self._members.get(member)
        if held is None or held.phase is not _Phase.DROPPED:
            # not held: expired, never dropped (still live elsewhere: refusing keeps one
            # connection per membership), or a restarted server. The member id is not secret.
            return self._refuse(Refusal.EXPIRED, member, address, now)
        ok = token_matches(presented, held.digest)
        if identity != held.identity:
            ok = False  # a token is useless from another identity
        if not ok:
            return self._refuse(Refusal.BAD_TOKEN, member, address, now)
        token = ResumeToken.new()
        held.digest = token.digest
        held.phase = _Phase.LIVE
        held.ledger.keep_only(waiting)
        self.stats["resumed"] += 1
        logger.info("member %d resumed from %s", member, address)
        full = since_tick is None or since_tick != held.baseline_tick
        return Resumed(member, token, full)

    def _refuse(self, reason: Refusal, member: int, address: str, now: float) -> Refused:
        self.limiter.fail(address, now)
        self.stats["refused"] += 1
        logger.warning("resume of member %d from %s refused: %s", member, address, reason.value)
        return Refused(reason)
