"""Snapshot interpolation and change hooks for replicas, sans I/O (time is always an argument).

* :class:`SnapshotBuffer` — one object's timestamped states; :meth:`~SnapshotBuffer.sample`
  renders them at a given server time: linear between the two states around it, shortest path
  for wrap-around fields (angles), snapped rather than smeared across a teleport or a jump
  faster than ``snap_speed``, extrapolated for at most ``max_extrapolation`` past the newest
  state and then held. Only declared fields are buffered; a value that is not a finite number
  (a string, a bool, None, NaN) passes through as the newest value.
* :class:`RenderTimeline` — the render clock: ``render_time(now) = now + A - delay`` where
  ``A`` is the smoothed arrival offset of syncs (server time of a sync minus its local arrival
  time, so the latency is included) and ``delay = clamp(k * jitter + 1 tick, 2 ticks,
  max ticks)``, smoothed, with ``jitter`` the RFC 3550 interarrival jitter of syncs. The
  render time never runs backwards: it follows its target by running 10 % slower or faster,
  and only a gap larger than ``snap_threshold`` is jumped (a sync arriving that much earlier
  than the smoothed offset predicts restarts the estimate: network delay cannot explain it).
* :class:`InterpolationManager` — many buffers keyed by object (UID), one timeline, and the
  knowledge of which server time the client has heard up to (an object not in a sync was
  unchanged, so it is held rather than extrapolated).
* :class:`Hooks` and :func:`on_change` — per-field change callbacks collected while a tick is
  applied and fired afterwards, in order; an exception in one is logged and the others run.

The design is in docs/design/smooth.md.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = [
    "DEGREES",
    "RADIANS",
    "Field",
    "Hooks",
    "InterpolationManager",
    "RenderTimeline",
    "SnapshotBuffer",
    "on_change",
]

logger = logging.getLogger("reverb")

DEGREES = 360.0
RADIANS = math.tau

# States kept per object: 32 ticks is a second at 30 Hz, far more than any sane delay needs.
DEFAULT_CAPACITY = 32
# Without a tick interval, extrapolate at most 50 ms (about one tick at 20-30 Hz).
DEFAULT_MAX_EXTRAPOLATION = 0.05

K = TypeVar("K", bound=Hashable)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Field:
    """A declared field. ``period`` makes it wrap around (``DEGREES``, ``RADIANS`` or any
    period): it is then interpolated along the shortest arc. ``snap_speed`` (units per second)
    overrides the buffer's snap threshold for this field."""

    name: str
    period: float | None = None
    snap_speed: float | None = None

    def __post_init__(self) -> None:
        if self.period is not None and not (math.isfinite(self.period) and self.period > 0):
            raise ValueError(f"field {self.name!r}: period must be a positive number")


def _fields(declared: Iterable[str | Field]) -> dict[str, Field]:
    out: dict[str, Field] = {}
    for item in declared:
        spec = Field(item) if isinstance(item, str) else item
        if spec.name in out:
            raise ValueError(f"field {spec.name!r} declared twice")
        out[spec.name] = spec
    return out


def _number(value: object) -> float | None:
    """``value`` as a float when it is a finite int or float (bool excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _delta(a: float, b: float, period: float | None) -> float:
    """b - a, along the shortest arc when the field wraps."""
    d = b - a
    if period is not None:
        d = (d + period / 2) % period - period / 2
    return d


def _wrap(value: float, period: float | None, signed: bool) -> float:
    """Bring ``value`` back into [-period/2, period/2) when ``signed``, else [0, period)."""
    if period is None:
        return value
    if signed:
        return (value + period / 2) % period - period / 2
    return value % period


@dataclass
class _State:
    time: float
    given: dict[str, object]
    full: dict[str, object] = field(default_factory=dict)
    teleport: bool = False
    synthetic: bool = False


class SnapshotBuffer:
    """One object's timestamped states, rendered at any server time.

    ``tick_interval`` (seconds per server tick) lets the buffer tell that an object which
    changes after a gap of several ticks held its values until the tick before (a server sends
    only changed fields); it is also the default ``max_extrapolation``.
    """

    def __init__(
        self,
        fields: Iterable[str | Field],
        *,
        capacity: int = DEFAULT_CAPACITY,
        tick_interval: float | None = None,
        max_extrapolation: float | None = None,
        snap_speed: float | None = None,
    ) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self._fields = _fields(fields)
        self._capacity = capacity
        self._tick = tick_interval
        if max_extrapolation is None:
            max_extrapolation = tick_interval if tick_interval else DEFAULT_MAX_EXTRAPOLATION
        self._max_extrapolation = max(0.0, max_extrapolation)
        self._snap_speed = snap_speed
        self._states: list[_State] = []
        self._times: list[float] = []
        self._base: dict[str, object] = {}  # full state of the last dropped entry

    @property
    def fields(self) -> tuple[Field, ...]:
        return tuple(self._fields.values())

    @property
    def times(self) -> tuple[float, ...]:
        """Server times of the buffered states, oldest first."""
        return tuple(self._times)

    @property
    def newest_time(self) -> float | None:
        return self._times[-1] if self._times else None

    def __len__(self) -> int:
        return len(self._states)

    def clear(self) -> None:
        self._states.clear()
        self._times.clear()
        self._base = {}

    def latest(self) -> dict[str, object]:
        """The newest known value of every declared field (exact, not interpolated)."""
        return dict(self._states[-1].full) if self._states else dict(self._base)

    def push(
        self, server_time: float, values: Mapping[str, object], *, teleport: bool = False
    ) -> None:
        """Record the values the object had at ``server_time`` (changed fields suffice).

        Keys that are not declared fields are ignored. ``teleport`` marks a discontinuity: the
        rendered value jumps to this state at its time instead of sliding towards it.
        A state older than everything in a full buffer is dropped.
        """
        if not math.isfinite(server_time):
            raise ValueError("server_time must be finite")
        given = {k: v for k, v in values.items() if k in self._fields}
        i = bisect.bisect_left(self._times, server_time)
        if i < len(self._times) and self._times[i] == server_time:
            state = self._states[i]  # another part of the same tick
            if state.synthetic:
                state.synthetic = False
            state.given.update(given)
            state.teleport = state.teleport or teleport
            self._refill(i)
            return
        if i == 0 and self._states and len(self._states) >= self._capacity:
            return  # older than everything kept: too late to matter
        if (
            i == len(self._states)
            and self._states
            and self._tick
            and not teleport
            and server_time - self._times[-1] > 1.5 * self._tick
        ):
            # No change reached us for several ticks: the object held still until the tick
            # before this one, so it must not slide across the whole gap.
            hold = server_time - self._tick
            self._states.append(_State(hold, {}, synthetic=True))
            self._times.append(hold)
            i += 1
        self._states.insert(i, _State(server_time, given, teleport=teleport))
        self._times.insert(i, server_time)
        self._refill(max(0, i - 1))
        while len(self._states) > self._capacity:
            dropped = self._states.pop(0)
            self._times.pop(0)
            self._base = dropped.full

    def _refill(self, start: int) -> None:
        """Recompute the forward-filled full states from index ``start`` on."""
        previous = self._states[start - 1].full if start > 0 else self._base
        for state in self._states[start:]:
            state.full = {**previous, **state.given}
            previous = state.full

    def sample(self, render_time: float, *, held_until: float | None = None) -> dict[str, object]:
        """The declared fields rendered at server time ``render_time``.

        ``held_until``: a server time up to which the client knows the object did not change
        after its newest state (a later sync did not mention it); past the newest state the
        values are then held rather than extrapolated.
        """
        states = self._states
        if not states:
            return dict(self._base)
        newest = states[-1].full
        i = bisect.bisect_right(self._times, render_time)
        if i == 0:
            return self._passthrough(dict(states[0].full), newest)
        if i == len(states):
            return self._extrapolate(render_time, held_until)
        a, b = states[i - 1], states[i]
        span = b.time - a.time
        f = (render_time - a.time) / span
        out: dict[str, object] = {}
        for name, spec in self._fields.items():
            if name not in a.full and name not in b.full:
                continue
            va, vb = a.full.get(name, b.full.get(name)), b.full.get(name, a.full.get(name))
            na, nb = _number(va), _number(vb)
            if na is None or nb is None:
                out[name] = newest.get(name, vb)
                continue
            d = _delta(na, nb, spec.period)
            if d == 0 or b.teleport or self._too_fast(spec, d, span):
                out[name] = va  # unchanged, or snap: hold the old value until the new state's time
            else:
                out[name] = _wrap(na + d * f, spec.period, min(na, nb) < 0)
        return out

    def _too_fast(self, spec: Field, delta: float, span: float) -> bool:
        limit = spec.snap_speed if spec.snap_speed is not None else self._snap_speed
        return limit is not None and abs(delta) > limit * span

    def _passthrough(self, out: dict[str, object], newest: dict[str, object]) -> dict[str, object]:
        for name, value in out.items():
            if _number(value) is None and name in newest:
                out[name] = newest[name]
        return out

    def _extrapolate(self, render_time: float, held_until: float | None) -> dict[str, object]:
        last = self._states[-1]
        out = dict(last.full)
        if (
            len(self._states) < 2
            or last.teleport
            or (held_until is not None and held_until > last.time)
            or self._max_extrapolation <= 0
        ):
            return out
        prev = self._states[-2]
        span = last.time - prev.time
        ahead = min(render_time - last.time, self._max_extrapolation)
        for name, spec in self._fields.items():
            na, nb = _number(prev.full.get(name)), _number(last.full.get(name))
            if na is None or nb is None:
                continue
            d = _delta(na, nb, spec.period)
            if d == 0 or self._too_fast(spec, d, span):
                continue
            out[name] = _wrap(nb + d / span * ahead, spec.period, min(na, nb) < 0)
        return out


class RenderTimeline:
    """The server time to render at, from sync arrivals (see the module docstring).

    ``observe(server_time, arrival)`` once per sync (its final part), ``render_time(now)`` once
    per frame. ``jitter_factor`` is *k*; the delay lies between ``min_ticks`` and ``max_ticks``
    ticks and moves towards its target by ``delay_smoothing`` of the gap per sync.
    """

    def __init__(
        self,
        *,
        tick_interval: float,
        jitter_factor: float = 2.0,
        min_ticks: float = 2.0,
        max_ticks: float = 10.0,
        delay_smoothing: float = 0.05,
        offset_smoothing: float = 0.05,
        max_rate_change: float = 0.1,
        catch_up_time: float = 0.5,
        snap_threshold: float = 0.5,
    ) -> None:
        if not (math.isfinite(tick_interval) and tick_interval > 0):
            raise ValueError("tick_interval must be a positive number")
        if not 0 < min_ticks <= max_ticks:
            raise ValueError("need 0 < min_ticks <= max_ticks")
        if not 0 <= max_rate_change < 1:
            raise ValueError("max_rate_change must be in [0, 1) so that time never runs back")
        self._tick = tick_interval
        self._k = jitter_factor
        self._min = min_ticks * tick_interval
        self._max = max_ticks * tick_interval
        self._delay_gain = delay_smoothing
        self._offset_gain = offset_smoothing
        self._max_rate_change = max_rate_change
        self._catch_up = catch_up_time
        self._snap = snap_threshold
        self._jitter = 0.0
        self._delay = self._min
        self._arrival_offset: float | None = None
        self._last_offset: float | None = None
        self._render: float | None = None
        self._render_at = 0.0

    def observe(self, server_time: float, arrival: float) -> None:
        """A sync stamped ``server_time`` arrived at local time ``arrival``."""
        if not (math.isfinite(server_time) and math.isfinite(arrival)):
            return
        offset = server_time - arrival
        if self._arrival_offset is None or offset > self._arrival_offset + self._snap:
            # First sync, or one far earlier than any delay explains: the server's time jumped
            # ahead (or the latency collapsed). Start over rather than drift there slowly.
            self._arrival_offset = offset
        else:
            assert self._last_offset is not None
            self._jitter += (abs(offset - self._last_offset) - self._jitter) / 16  # RFC 3550
            self._arrival_offset += self._offset_gain * (offset - self._arrival_offset)
        self._last_offset = offset
        target = min(max(self._k * self._jitter + self._tick, self._min), self._max)
        self._delay += self._delay_gain * (target - self._delay)

    @property
    def jitter(self) -> float:
        """RFC 3550 interarrival jitter of syncs, seconds."""
        return self._jitter

    @property
    def delay(self) -> float:
        """The interpolation delay behind the newest expected sync, seconds."""
        return self._delay

    @property
    def ready(self) -> bool:
        return self._arrival_offset is not None

    def target(self, now: float) -> float:
        """Where the render time should be at local ``now`` (``now`` before any sync)."""
        if self._arrival_offset is None:
            return now
        return now + self._arrival_offset - self._delay

    def render_time(self, now: float) -> float:
        """The server time to render at local ``now``; non-decreasing unless it snaps."""
        target = self.target(now)
        if self._arrival_offset is None:
            return target
        if self._render is None or abs(target - self._render) > self._snap:
            self._render = target
        else:
            elapsed = max(0.0, now - self._render_at)
            error = target - self._render
            change = min(max(error / self._catch_up, -self._max_rate_change), self._max_rate_change)
            self._render += elapsed * (1.0 + change)
        self._render_at = max(self._render_at, now)
        return self._render


class InterpolationManager(Generic[K]):
    """Snapshot buffers for many objects (keyed by e.g. UID) and one :class:`RenderTimeline`."""

    def __init__(
        self,
        *,
        tick_interval: float,
        capacity: int = DEFAULT_CAPACITY,
        max_extrapolation: float | None = None,
        snap_speed: float | None = None,
        timeline: RenderTimeline | None = None,
    ) -> None:
        self._tick = tick_interval
        self._capacity = capacity
        self._max_extrapolation = max_extrapolation
        self._snap_speed = snap_speed
        self.timeline = (
            timeline if timeline is not None else RenderTimeline(tick_interval=tick_interval)
        )
        self._buffers: dict[K, SnapshotBuffer] = {}
        self._heard: float | None = None  # newest server time of a sync received

    def track(self, key: K, fields: Iterable[str | Field]) -> SnapshotBuffer:
        """Start buffering ``key``'s declared ``fields``; returns its buffer (a new one)."""
        buffer = SnapshotBuffer(
            fields,
            capacity=self._capacity,
            tick_interval=self._tick,
            max_extrapolation=self._max_extrapolation,
            snap_speed=self._snap_speed,
        )
        self._buffers[key] = buffer
        return buffer

    def untrack(self, key: K) -> None:
        self._buffers.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._buffers

    def __len__(self) -> int:
        return len(self._buffers)

    def buffer(self, key: K) -> SnapshotBuffer:
        return self._buffers[key]

    def observe_sync(self, server_time: float, arrival: float) -> None:
        """A whole sync stamped ``server_time`` arrived at local ``arrival`` (call once per
        tick, even when the sync does not mention a tracked object)."""
        self.timeline.observe(server_time, arrival)
        if math.isfinite(server_time) and (self._heard is None or server_time > self._heard):
            self._heard = server_time

    def push(
        self, key: K, server_time: float, values: Mapping[str, object], *, teleport: bool = False
    ) -> None:
        """Record ``key``'s (changed) values at ``server_time``; unknown keys are ignored."""
        buffer = self._buffers.get(key)
        if buffer is not None:
            buffer.push(server_time, values, teleport=teleport)

    def sample(self, key: K, render_time: float) -> dict[str, object]:
        return self._buffers[key].sample(render_time, held_until=self._heard)

    def sample_all(self, render_time: float) -> dict[K, dict[str, object]]:
        return {
            key: buffer.sample(render_time, held_until=self._heard)
            for key, buffer in self._buffers.items()
        }

    def render_time(self, now: float) -> float:
        return self.timeline.render_time(now)

    def interpolate(self, now: float) -> dict[K, dict[str, object]]:
        """Every tracked object's fields rendered for local time ``now`` (one call per frame)."""
        return self.sample_all(self.render_time(now))


# -- change hooks ----------------------------------------------------------------------------

_HOOK_ATTR = "__reverb_on_change__"
Callback = Callable[[Any, Any, Any], object]


def on_change(*fields: str) -> Callable[[F], F]:
    """Mark a method ``method(self, old, new)`` to run when any of ``fields`` changes."""
    if not fields:
        raise ValueError("on_change needs at least one field name")

    def mark(function: F) -> F:
        previous: tuple[str, ...] = getattr(function, _HOOK_ATTR, ())
        setattr(function, _HOOK_ATTR, previous + fields)
        return function

    return mark


class Hooks:
    """Collects field changes while a tick is applied; :meth:`fire` runs the callbacks after.

    For a change of ``field`` on ``obj`` the callbacks are, in this order: the methods of
    ``type(obj)`` marked ``@on_change(field)`` (in definition order), its method
    ``on_<field>_changed(old, new)``, then listeners added with :meth:`on` (``fn(obj, old,
    new)``). Changes fire in the order recorded (tick order, then apply order).
    """

    def __init__(self) -> None:
        self._pending: list[tuple[object, str, object, object]] = []
        self._listeners: dict[str, list[Callback]] = {}
        self._methods: dict[tuple[type, str], tuple[str, ...]] = {}

    @property
    def listening(self) -> bool:
        """Whether any listener was added with :meth:`on`."""
        return bool(self._listeners)

    def has_methods(self, cls: type) -> bool:
        """Whether ``cls`` has a method marked ``@on_change`` or named ``on_<field>_changed``."""
        for klass in cls.__mro__:
            for attr, value in vars(klass).items():
                if getattr(value, _HOOK_ATTR, None) or (
                    attr.startswith("on_") and attr.endswith("_changed") and callable(value)
                ):
                    return True
        return False

    def on(self, field_name: str, callback: Callback) -> Callback:
        """Call ``callback(obj, old, new)`` whenever ``field_name`` changes on any object."""
        self._listeners.setdefault(field_name, []).append(callback)
        return callback

    def record(self, obj: object, field_name: str, old: object, new: object) -> None:
        """Note that ``field_name`` of ``obj`` went from ``old`` to ``new`` (no call yet)."""
        if old is new or _same(old, new):
            return
        self._pending.append((obj, field_name, old, new))

    @property
    def pending(self) -> int:
        return len(self._pending)

    def fire(self) -> int:
        """Run the callbacks of the changes recorded so far; returns how many ran.

        Changes recorded by a callback wait for the next :meth:`fire`.
        """
        pending, self._pending = self._pending, []
        ran = 0
        for obj, name, old, new in pending:
            for method in self._method_names(type(obj), name):
                ran += self._call(getattr(obj, method), (old, new), obj, name)
            for listener in list(self._listeners.get(name, ())):
                ran += self._call(listener, (obj, old, new), obj, name)
        return ran

    def _method_names(self, cls: type, name: str) -> tuple[str, ...]:
        key = (cls, name)
        found = self._methods.get(key)
        if found is None:
            marked: list[str] = []
            seen: set[str] = set()
            for klass in reversed(cls.__mro__):
                for attr, value in vars(klass).items():
                    if name in getattr(value, _HOOK_ATTR, ()) and attr not in seen:
                        seen.add(attr)
                        marked.append(attr)
            conventional = f"on_{name}_changed"
            if callable(getattr(cls, conventional, None)) and conventional not in seen:
                marked.append(conventional)
            found = self._methods[key] = tuple(marked)
        return found

    @staticmethod
    def _call(
        function: Callable[..., object], args: tuple[object, ...], obj: object, name: str
    ) -> int:
        try:
            function(*args)
        except Exception:
            logger.exception("change hook %r for %s.%s raised", function, type(obj).__name__, name)
        return 1


def _same(old: object, new: object) -> bool:
    try:
        return bool(old == new) and type(old) is type(new)
    except Exception:  # an exotic __eq__: treat as a change
        return False
