"""An estimate of the server's clock and of the round-trip time, sans I/O.

The client feeds :class:`ServerClock` two kinds of samples, each with the local time at which it
was observed (time is an input: this module never reads a clock):

* **ping/pong** samples ``(t0, ts, t1)``: the client sent a ``ping`` at local time ``t0``, the
  server stamped its ``pong`` with its own time ``ts``, the client received the ``pong`` at local
  time ``t1``. NTP-style: ``offset = ts - (t0 + t1) / 2`` and ``rtt = t1 - t0``. The sample
  also proves ``ts - t1 <= offset <= ts - t0`` (the server stamped between send and receipt).
* **sync** samples ``(tick, ts, t1)``: a ``sync`` describing server tick ``tick`` stamped at
  server time ``ts`` arrived at local time ``t1``. One-way, so biased by the latency, but it
  proves ``offset >= ts - t1`` and it measures the arrival jitter and the tick rate.

Filtering (robust to jitter): the last ``window`` pong samples and ``2 * window`` sync samples
are kept. Each proves an interval for the offset; when they agree, the candidate offset is the
midpoint of their intersection ``[max(ts - t1), min(ts - t0)]`` -- the NTP estimate of an
imaginary sample with the least delay seen in each direction, so queueing on any sample does
not bias it (30 syncs a second tighten the lower end). When they contradict each other (clock
drift, a server restart), the candidate is the mean offset of the ``best`` lowest-RTT samples
(min-RTT filter). The candidate is smoothed with an EWMA into the *target* offset.

The offset the game sees slews towards the target by at most ``slew_rate`` seconds per second
of local time, so :meth:`ServerClock.server_time` runs at between 0.95 and 1.05 of real speed
by default; a correction larger than ``step_threshold`` is stepped at once; and whatever
happens the returned server time never decreases (a backwards step holds the time still until
the estimate catches up). The design is in docs/design/smooth.md.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

__all__ = ["ServerClock", "Timekeeper"]

# Pong samples kept for the min-RTT filter: 16 pings at one per second cover 16 s, long enough
# to hold a few unqueued samples, short enough that clock drift (< 1e-4) stays below 2 ms.
DEFAULT_WINDOW = 16
# How many of the lowest-RTT samples are averaged: one alone is noisy, half the window lets
# queued samples back in.
DEFAULT_BEST = 3
# EWMA gain applied to each new candidate offset (the candidate is already a filtered value).
DEFAULT_SMOOTHING = 0.5
# Pong samples before the estimate is "ready" for the game.
DEFAULT_MIN_SAMPLES = 3
# The shown offset moves by at most 5 % of the elapsed local time: server time never runs
# backwards and never faster than 1.05x because of a correction.
DEFAULT_SLEW_RATE = 0.05
# A correction larger than this (seconds) is stepped rather than slewed (NTP steps at 128 ms).
DEFAULT_STEP_THRESHOLD = 0.25
# RFC 6298 gains for the smoothed RTT and its mean deviation.
_RTT_GAIN = 1 / 8
_RTT_VAR_GAIN = 1 / 4
# RFC 3550 §6.4.1 gain for the interarrival jitter of syncs.
_JITTER_GAIN = 1 / 16


@dataclass(frozen=True)
class _Pong:
    rtt: float
    offset: float
    low: float  # ts - t1: the offset is at least this
    high: float  # ts - t0: the offset is at most this


@dataclass(frozen=True)
class _Sync:
    tick: int
    server_time: float
    received: float


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


class ServerClock:
    """Server time and RTT estimated from pong and sync samples; every time is an argument.

    ``tick_rate`` is the rate announced by the server (``welcome.tick_rate``); when it is not
    given it is estimated from the ticks and times of syncs.
    """

    def __init__(
        self,
        *,
        tick_rate: float | None = None,
        window: int = DEFAULT_WINDOW,
        best: int = DEFAULT_BEST,
        smoothing: float = DEFAULT_SMOOTHING,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        slew_rate: float = DEFAULT_SLEW_RATE,
        step_threshold: float = DEFAULT_STEP_THRESHOLD,
    ) -> None:
        if window < 1 or not 1 <= best <= window:
            raise ValueError("need window >= 1 and 1 <= best <= window")
        if not 0 < smoothing <= 1:
            raise ValueError("smoothing must be in (0, 1]")
        if not 0 <= slew_rate < 1:
            raise ValueError("slew_rate must be in [0, 1) so that server time never decreases")
        if tick_rate is not None and not (math.isfinite(tick_rate) and tick_rate > 0):
            raise ValueError("tick_rate must be a positive number")
        self._announced_rate = tick_rate
        self._best = best
        self._smoothing = smoothing
        self._min_samples = min_samples
        self._slew_rate = slew_rate
        self._step_threshold = step_threshold
        self._pongs: deque[_Pong] = deque(maxlen=window)
        self._syncs: deque[_Sync] = deque(maxlen=2 * window)
        self._pong_count = 0
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._sync_jitter = 0.0
        self._target: float | None = None  # filtered offset
        self._shown: float | None = None  # offset the game sees (slews towards the target)
        self._shown_at = 0.0  # local time of the last slew
        self._floor: float | None = None  # last server time returned: never go below

    # -- samples ---------------------------------------------------------------------------

    def add_pong(self, sent: float, server_time: float, received: float) -> bool:
        """Record a ping sent at local ``sent``, answered at ``server_time``, back at ``received``.

        Returns False (and ignores the sample) when it is impossible: a non-finite time or a
        pong received before its ping was sent.
        """
        if not _finite(sent, server_time, received) or received < sent:
            return False
        rtt = received - sent
        self._pongs.append(
            _Pong(
                rtt=rtt,
                offset=server_time - (sent + received) / 2,
                low=server_time - received,
                high=server_time - sent,
            )
        )
        self._pong_count += 1
        if self._srtt is None:
            self._srtt = rtt
        else:
            self._rttvar += _RTT_VAR_GAIN * (abs(rtt - self._srtt) - self._rttvar)
            self._srtt += _RTT_GAIN * (rtt - self._srtt)
        candidate = self._candidate()
        if self._pong_count == 1 or self._target is None:
            self._target = candidate
        else:
            self._target = self._clamp(self._target + self._smoothing * (candidate - self._target))
        self._start(received)
        return True

    def add_sync(self, tick: int, server_time: float, received: float) -> bool:
        """Record a sync of server ``tick`` stamped ``server_time``, arriving at ``received``.

        Returns False (and ignores the sample) for a non-finite time.
        """
        if not _finite(server_time, received):
            return False
        if self._syncs:
            prev = self._syncs[-1]
            transit_change = (received - prev.received) - (server_time - prev.server_time)
            self._sync_jitter += _JITTER_GAIN * (abs(transit_change) - self._sync_jitter)
        self._syncs.append(_Sync(tick, server_time, received))
        low = server_time - received
        if self._target is None or self._pong_count == 0:
            # No pong yet: the least-delayed sync is the best (low-biased) guess.
            self._target = max(low, self._target if self._target is not None else low)
        else:
            self._target = self._clamp(max(self._target, low))
        self._start(received)
        return True

    def _candidate(self) -> float:
        low, high = self._bounds()
        if low <= high:
            # Every kept sample holds: the midpoint of what they prove together. It is the
            # NTP estimate of an imaginary sample with the least delay seen in each direction.
            return (low + high) / 2
        # Contradictory samples (clock drift, a server clock reset): the min-RTT filter.
        best = sorted(self._pongs, key=lambda p: p.rtt)[: self._best]
        return sum(p.offset for p in best) / len(best)

    def _bounds(self) -> tuple[float, float]:
        low = max((p.low for p in self._pongs), default=-math.inf)
        low = max(low, max((s.server_time - s.received for s in self._syncs), default=-math.inf))
        high = min((p.high for p in self._pongs), default=math.inf)
        return low, high

    def _clamp(self, offset: float) -> float:
        low, high = self._bounds()
        if low > high:  # contradictory samples (drift, server clock reset): trust the filter
            return offset
        return min(max(offset, low), high)

    def _start(self, now: float) -> None:
        if self._shown is None:
            self._shown = self._target
            self._shown_at = now

    # -- the estimate ----------------------------------------------------------------------

    def _slew(self, now: float) -> float:
        assert self._shown is not None and self._target is not None
        elapsed = max(0.0, now - self._shown_at)
        self._shown_at = max(self._shown_at, now)
        error = self._target - self._shown
        if not self.ready or abs(error) > self._step_threshold:
            self._shown = self._target
        else:
            limit = self._slew_rate * elapsed
            self._shown += min(max(error, -limit), limit)
        return self._shown

    def server_time(self, now: float) -> float:
        """The server's time at local time ``now``; never less than a value returned before.

        Before any sample it is ``now`` (no estimate; see :attr:`ready`).
        """
        if self._shown is None:
            return now
        value = now + self._slew(now)
        if self._floor is not None and value < self._floor:
            value = self._floor
        self._floor = value
        return value

    def server_tick(self, now: float) -> float | None:
        """The (fractional) server tick at local ``now``; None before a sync and a tick rate."""
        rate = self.tick_rate
        if not self._syncs or rate is None:
            return None
        last = self._syncs[-1]
        return last.tick + (self.server_time(now) - last.server_time) * rate

    @property
    def ready(self) -> bool:
        """True once ``min_samples`` pong samples have been taken."""
        return self._pong_count >= self._min_samples

    @property
    def offset(self) -> float:
        """The filtered offset (server time minus local time), seconds; 0.0 before samples."""
        return self._target if self._target is not None else 0.0

    @property
    def rtt(self) -> float:
        """Smoothed round-trip time (RFC 6298 SRTT), seconds; 0.0 before any pong."""
        return self._srtt if self._srtt is not None else 0.0

    @property
    def rtt_jitter(self) -> float:
        """Mean deviation of the RTT (RFC 6298 RTTVAR), seconds."""
        return self._rttvar

    @property
    def min_rtt(self) -> float:
        """The lowest RTT among the kept samples, seconds; 0.0 before any pong."""
        return min((p.rtt for p in self._pongs), default=0.0)

    @property
    def sync_jitter(self) -> float:
        """Interarrival jitter of syncs (RFC 3550 §6.4.1), seconds."""
        return self._sync_jitter

    @property
    def samples(self) -> int:
        """Number of pong samples taken."""
        return self._pong_count

    @property
    def tick_rate(self) -> float | None:
        """The announced tick rate, else one estimated from syncs, else None."""
        if self._announced_rate is not None:
            return self._announced_rate
        if len(self._syncs) >= 2:
            first, last = self._syncs[0], self._syncs[-1]
            span = last.server_time - first.server_time
            if span > 0 and last.tick > first.tick:
                return (last.tick - first.tick) / span
        return None


# Clock pings (docs/protocol.md §13.6): a burst right after welcome fills the filter window
# quickly, then one a second keeps it fresh; at most 8 unanswered (older ones are forgotten).
TIME_PING_INTERVAL = 1.0
TIME_PING_BURST = 8
TIME_PING_SPACING = 0.1
MAX_OUTSTANDING_PINGS = 8


class Timekeeper:
    """One client connection's clock state: a :class:`ServerClock` fed by its session, and the
    schedule of its clock pings (§13.6). Thread-safe: the I/O side feeds samples while the game
    thread reads the estimate. Time is always an argument.

    Without the feature ``"time"`` granted (an old server) no clock pings are sent; the pongs of
    heartbeat pings (§9.2) still measure the RTT (RFC 6298); the server time stays ``now`` and
    ``ready`` False.
    """

    def __init__(
        self,
        *,
        ping_interval: float = TIME_PING_INTERVAL,
        burst: int = TIME_PING_BURST,
        burst_spacing: float = TIME_PING_SPACING,
    ) -> None:
        self._lock = threading.Lock()
        self._interval = ping_interval
        self._burst = burst
        self._spacing = burst_spacing
        self.clock = ServerClock()
        self.granted = False
        self.tick_rate = 0.0
        self._outstanding: dict[int, float] = {}  # nonce -> local time the ping left
        self._left = 0  # pings of the burst still to send
        self._due: float | None = None  # the next clock ping, None before welcome
        self._srtt: float | None = None  # without "time": the RTT alone
        self._rttvar = 0.0

    def opened(
        self, now: float, tick_rate: float, granted: bool, welcome_time: float | None
    ) -> None:
        """``welcome`` arrived at ``now``; ``welcome_time`` is its ``time`` (§13.2)."""
        with self._lock:
            self.clock = ServerClock(tick_rate=tick_rate if tick_rate > 0 else None)
            self.granted = granted
            self.tick_rate = tick_rate
            self._outstanding = {}
            self._left = self._burst
            self._due = now
            if granted and welcome_time is not None:
                # a one-way sample (§13.2): it bounds the offset from below
                self.clock.add_sync(0, welcome_time, now)

    def ping_due(self) -> float | None:
        """When the next clock ping is due (local time), or None (before welcome, or without
        "time" granted: an old server's pongs carry no time, §13.6)."""
        return self._due if self.granted else None

    def ping_sent(self, nonce: int, now: float, *, scheduled: bool) -> None:
        """A ``ping`` with ``nonce`` left at ``now`` (a clock ping when ``scheduled``, else a
        heartbeat, §9.2, whose pong is a sample too)."""
        with self._lock:
            self._outstanding[nonce] = now
            while len(self._outstanding) > MAX_OUTSTANDING_PINGS:
                del self._outstanding[next(iter(self._outstanding))]
            if scheduled and self._due is not None:
                if self._left > 0:
                    self._left -= 1
                step = self._spacing if self._left > 0 else self._interval
                self._due = max(self._due + step, now)

    def pong(self, nonce: int, server_time: float | None, now: float) -> None:
        """A ``pong`` with ``nonce`` (and ``time``, §13.4) arrived at ``now``."""
        with self._lock:
            sent = self._outstanding.pop(nonce, None)
            if sent is None or now < sent:
                return  # not ours, forgotten, or answered twice: not a sample
            if server_time is not None:
                self.clock.add_pong(sent, server_time, now)
                return
            rtt = now - sent
            if self._srtt is None:
                self._srtt = rtt
            else:
                self._rttvar += (abs(rtt - self._srtt) - self._rttvar) / 4
                self._srtt += (rtt - self._srtt) / 8

    def sync(self, tick: int, server_time: float, now: float) -> None:
        """The final part of tick ``tick``'s sync, stamped ``server_time``, arrived at ``now``."""
        with self._lock:
            self.clock.add_sync(tick, server_time, now)

    def server_time(self, now: float) -> float:
        with self._lock:
            return self.clock.server_time(now)

    def server_tick(self, now: float) -> float | None:
        with self._lock:
            return self.clock.server_tick(now)

    @property
    def ready(self) -> bool:
        return self.clock.ready

    @property
    def rtt(self) -> float:
        if self._srtt is not None:
            return self._srtt
        return self.clock.rtt

    @property
    def rtt_jitter(self) -> float:
        if self._srtt is not None:
            return self._rttvar
        return self.clock.rtt_jitter
