"""Smoothing for the arena's client: interpolation of remote players and owner prediction.

``RemoteSmoother`` is a thin adapter that feeds ``reverb.interpolation`` from the replicas,
because the library does not wire interpolation into the client yet. It is kept small and
isolated so that it can be replaced by the built-in interpolation (docs/design/smooth.md)
once that lands. Today's wire has no server time in a sync, so a sync's server time is taken
as ``tick / tick_rate`` (ticks follow a fixed schedule) and its arrival is stamped with the
client's ``time.monotonic()`` when the game thread applies it.

``Predictor`` is the owner's prediction: the local input moves your own avatar at once, and
each authoritative position the server sends is compared with where the prediction had the
avatar when the input that state reflects was sent (a round trip plus one tick earlier); the
difference is blended in, and a large one (a respawn) snaps.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

from game import SPEED, clamp_to_arena

from reverb.interpolation import InterpolationManager


class RemoteSmoother:
    """Interpolated positions of replicas, keyed by UID (fields ``x`` and ``y``)."""

    FIELDS = ("x", "y")

    def __init__(self, tick_rate: float) -> None:
        self.tick_rate = tick_rate
        # A jump faster than 4x the top speed is a respawn: snap, do not slide across the map.
        self.manager: InterpolationManager[int] = InterpolationManager(
            tick_interval=1.0 / tick_rate, snap_speed=4 * SPEED
        )
        self._life: dict[int, object] = {}

    def synced(self, tick: int, objects, arrival: float) -> None:
        """Call from the client's ``synced(tick)`` event with the replicas to smooth."""
        server_time = tick / self.tick_rate
        self.manager.observe_sync(server_time, arrival)
        for obj in objects:
            if obj.uid not in self.manager:
                self.manager.track(obj.uid, self.FIELDS)
            life = getattr(obj, "life", None)
            teleport = obj.uid in self._life and self._life[obj.uid] != life
            self._life[obj.uid] = life
            self.manager.push(obj.uid, server_time, {"x": obj.x, "y": obj.y}, teleport=teleport)

    def forget(self, uid: int) -> None:
        self.manager.untrack(uid)
        self._life.pop(uid, None)

    def positions(self, now: float) -> dict[int, tuple[float, float]]:
        """Every tracked replica's rendered position at local time ``now`` (once per frame)."""
        out = {}
        for uid, fields in self.manager.interpolate(now).items():
            x, y = fields.get("x"), fields.get("y")
            if isinstance(x, (int, float)) and isinstance(y, (int, float)):
                out[uid] = (float(x), float(y))
        return out


class Predictor:
    """Client-side prediction of the owner's avatar, reconciled with the server."""

    BLEND = 0.15  # share of the error corrected per authoritative update
    SNAP = 60.0  # px: an error this large (a respawn) is snapped, not blended

    def __init__(self, x: float, y: float, life: int) -> None:
        self.x, self.y = x, y
        self.life = life
        self._times: deque[float] = deque(maxlen=240)
        self._history: deque[tuple[float, float]] = deque(maxlen=240)
        self.errors: list[float] = []  # reconciliation errors, px

    def advance(self, direction: tuple[float, float], dt: float, now: float) -> None:
        """Apply the local input for ``dt`` seconds, as the server will."""
        dx, dy = direction
        self.x, self.y = clamp_to_arena(self.x + dx * SPEED * dt, self.y + dy * SPEED * dt)
        self._times.append(now)
        self._history.append((self.x, self.y))

    def _predicted_at(self, t: float) -> tuple[float, float]:
        i = bisect.bisect_right(list(self._times), t) - 1
        return self._history[i] if i >= 0 else (self.x, self.y)

    def reconcile(self, x: float, y: float, life: int, now: float, lag: float) -> None:
        """The server says the avatar is at ``(x, y)``; this state reflects the input the
        client had sent ``lag`` seconds before ``now`` (a round trip, plus the server's
        delay between computing a state and sending it)."""
        if life != self.life:
            self.life = life
            self._snap(x, y)
            return
        px, py = self._predicted_at(now - lag)
        ex, ey = x - px, y - py
        error = math.hypot(ex, ey)
        if error > self.SNAP:
            self._snap(x, y)
            return
        self.errors.append(error)
        if error > 0.5:
            cx, cy = ex * self.BLEND, ey * self.BLEND
            self.x, self.y = clamp_to_arena(self.x + cx, self.y + cy)
            self._history = deque(((hx + cx, hy + cy) for hx, hy in self._history), maxlen=240)

    def mean_error(self) -> float:
        return round(sum(self.errors) / len(self.errors), 2) if self.errors else 0.0

    def _snap(self, x: float, y: float) -> None:
        self.x, self.y = x, y
        self._times.clear()
        self._history.clear()
