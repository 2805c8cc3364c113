"""Per-client update rates, priorities and a bandwidth budget, sans I/O (issue 11).

The engine keeps one ``ClientQueue`` per client. At each tick, for each client:

1. ``mark(uid, names, now, ...)`` for every object the client holds that changed (the names
   of the changed fields; ``SPAWN`` for an object entering its view). Marks coalesce: an
   object not sent keeps the union of its dirty fields for the next send;
2. ``due(now)`` lists the pending objects whose own rate allows a send now
   (``__reverb_rate__``, Hz; none: every tick). A rated object's sends keep to nominal slots
   ``1 / rate`` apart, due from half a tick before the slot (a server's ticks jitter), so a
   rate that divides the tick rate sends every k-th tick and one that does not keeps its
   average;
3. the engine encodes each due object's entry (the union of its dirty fields, for this
   client's audience) and passes the sizes to ``pick(now, sizes)``, which returns the uids to
   send this tick, highest accumulated priority first, within the client's byte budget.
   Picked uids leave the queue; the others stay pending with their fields.

Accumulated priority is ``priority * (now - waiting_since + one tick)``, where
``waiting_since`` is when the object's oldest unsent change was marked (Unreal's
``NetPriority`` accumulation): it grows while an object waits, so nothing starves.

Budget: a token bucket of bytes, ``bytes_per_second`` filled continuously, holding at most
``burst`` bytes. ``pick`` takes entries in priority order while they fit; it stops at the
first that does not (so that smaller, less urgent entries cannot keep overtaking it: the
tokens accumulate for it). An entry larger than the whole bucket is sent when the bucket is
full, leaving it in debt. Bound: an object waiting behind others is sent within the time its
accumulated priority needs to top the queue plus ``size / bytes_per_second``.

Bytes sent outside ``pick`` (a full sync, despawns, a sync's envelope: never deferred) are
``charge``d to the bucket, which may go into debt. A spawn goes through ``pick`` like an
update (marked ``SPAWN`` when the object enters the view; its age counts from then).

One object's fields are never split across ticks: an entry goes whole or not at all.
Dormant objects (not marked) cost nothing: the queue holds only pending objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_PRIORITY",
    "SPAWN",
    "Budget",
    "ClientQueue",
    "Pending",
    "Scheduler",
    "priority_of",
    "rate_of",
]

DEFAULT_PRIORITY = 1.0
SPAWN = "*"  # the mark of an object to send whole (it enters the client's view)
_SPAWN_ONLY = frozenset((SPAWN,))


def priority_of(obj: Any) -> float:
    """``__reverb_priority__`` of the object (an instance attribute overrides the class's)."""
    value = getattr(obj, "__reverb_priority__", DEFAULT_PRIORITY)
    if type(value) not in (int, float) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"__reverb_priority__ must be a positive number, not {value!r}")
    return float(value)


def rate_of(obj: Any) -> float | None:
    """``__reverb_rate__`` in Hz, or None (every tick)."""
    value = getattr(obj, "__reverb_rate__", None)
    if value is None:
        return None
    if type(value) not in (int, float) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"__reverb_rate__ must be a positive number of Hz, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Budget:
    """A byte budget: ``bytes_per_second`` (None: unlimited) and a ``burst`` allowance."""

    bytes_per_second: float | None = None
    burst: float | None = None  # None: one second's worth

    def capacity(self) -> float:
        if self.bytes_per_second is None:
            return math.inf
        return self.burst if self.burst is not None else self.bytes_per_second


class Pending:
    """One object waiting to be sent to one client."""

    __slots__ = ("names", "priority", "rate", "since")

    def __init__(
        self, names: frozenset[str], since: float, priority: float, rate: float | None
    ) -> None:
        self.names = names  # dirty field names, or {SPAWN}; replaced, never changed in place
        self.since = since  # when its oldest unsent change was marked
        self.priority = priority
        self.rate = rate


class ClientQueue:
    """One client's pending objects, last-send times and byte bucket."""

    def __init__(self, tick_rate: float, budget: Budget, now: float) -> None:
        if not tick_rate > 0:
            raise ValueError("tick_rate must be positive")
        self.tick = 1.0 / tick_rate
        self.pending: dict[int, Pending] = {}
        # Objects with a rate: the slot of their last send (its nominal time, so that a rate
        # that does not divide the tick rate keeps its average: 12 Hz under 30 Hz sends 2 of 5
        # ticks). A send is due half a tick before the next slot: a server's ticks jitter.
        self.last_sent: dict[int, float] = {}
        self._slack = self.tick / 2
        self.budget = budget
        self.tokens = budget.capacity()
        self._filled_at = now
        self.sent_bytes = 0

    def set_budget(self, budget: Budget, now: float) -> None:
        self._refill(now)
        self.budget = budget
        self.tokens = min(self.tokens, budget.capacity())

    def mark(
        self,
        uid: int,
        names: Iterable[str],
        now: float,
        *,
        priority: float = DEFAULT_PRIORITY,
        rate: float | None = None,
    ) -> None:
        """Note that ``uid`` has changes (or ``{SPAWN}``) for this client; coalesces."""
        self.mark_many(((uid, frozenset(names), priority, rate),), now)

    def mark_many(
        self, marks: Iterable[tuple[int, frozenset[str], float, float | None]], now: float
    ) -> None:
        """``mark`` for each ``(uid, names, priority, rate)``: the engine's per-tick path
        (one tuple per changed object, shared by every client that holds it)."""
        pending = self.pending
        for uid, names, priority, rate in marks:
            entry = pending.get(uid)
            if entry is None:
                pending[uid] = Pending(names, now, priority, rate)
                continue
            if SPAWN in entry.names:
                continue  # a spawn carries the whole current state anyway
            if SPAWN in names:
                entry.names = _SPAWN_ONLY
            elif not names <= entry.names:  # the same fields again: nothing to add
                entry.names = entry.names | names
            entry.priority = priority
            entry.rate = rate

    def forget(self, uid: int) -> None:
        """The object left the client's view or was destroyed: nothing more to send."""
        self.pending.pop(uid, None)
        self.last_sent.pop(uid, None)

    def due(self, now: float) -> dict[int, frozenset[str]]:
        """Pending objects whose rate allows a send at ``now``, with their dirty fields."""
        out: dict[int, frozenset[str]] = {}
        last_sent = self.last_sent
        for uid, entry in self.pending.items():
            rate = entry.rate
            if rate is not None and SPAWN not in entry.names:
                last = last_sent.get(uid)
                if last is not None and now - last < 1.0 / rate - self._slack:
                    continue
            out[uid] = entry.names
        return out

    def score(self, uid: int, now: float) -> float:
        entry = self.pending[uid]
        return entry.priority * (now - entry.since + self.tick)

    def pick(self, now: float, sizes: Mapping[int, int]) -> list[int]:
        """The uids to send at ``now`` among ``sizes`` (due uid -> encoded entry bytes),
        best accumulated priority first (ties: lower uid), within the budget."""
        self._refill(now)
        pending, tick = self.pending, self.tick
        # (-score, uid) pairs: ``score`` for each, sorted by C tuple comparison
        ranked = sorted(
            [
                (-(e.priority * (now - e.since + tick)), uid)
                for uid in sizes
                for e in (pending[uid],)
            ]
        )
        order = [uid for _, uid in ranked]
        capacity = self.budget.capacity()
        chosen: list[int] = []
        for uid in order:
            size = sizes[uid]
            if size <= self.tokens:
                self.tokens -= size
            elif not chosen and self.tokens >= capacity:
                self.tokens -= size  # larger than the bucket: sent from a full one, in debt
            else:
                break
            chosen.append(uid)
        pending = self.pending
        for uid in chosen:
            entry = pending.pop(uid)
            rate = entry.rate
            if rate is not None:
                last = self.last_sent.get(uid)
                self.last_sent[uid] = now if last is None else max(last + 1.0 / rate, now)
            self.sent_bytes += sizes[uid]
        return chosen

    def charge(self, now: float, size: int) -> None:
        """Bytes sent outside ``pick`` (a full sync, despawns: never deferred, §16.6) count
        against the budget too: the bucket may go into debt, repaid before the next update."""
        self._refill(now)
        self.tokens -= size
        self.sent_bytes += size

    def _refill(self, now: float) -> None:
        rate = self.budget.bytes_per_second
        if rate is None:
            self.tokens = math.inf
        else:
            elapsed = max(0.0, now - self._filled_at)
            self.tokens = min(self.budget.capacity(), self.tokens + elapsed * rate)
        self._filled_at = now


class Scheduler:
    """The queues of every client, with a server-wide default budget."""

    def __init__(self, tick_rate: float, *, budget: Budget | None = None) -> None:
        self.tick_rate = tick_rate
        self.budget = budget if budget is not None else Budget()
        self.queues: dict[int, ClientQueue] = {}

    def add_client(self, client: int, now: float, budget: Budget | None = None) -> ClientQueue:
        queue = ClientQueue(self.tick_rate, budget or self.budget, now)
        self.queues[client] = queue
        return queue

    def remove_client(self, client: int) -> None:
        self.queues.pop(client, None)

    def set_budget(self, client: int, budget: Budget, now: float) -> None:
        """Adjust one client's budget (e.g. from its measured bandwidth)."""
        self.queues[client].set_budget(budget, now)

    def __getitem__(self, client: int) -> ClientQueue:
        return self.queues[client]
