"""Owner prediction for the arena's client. Remote players are interpolated by the library
(``Avatar.__reverb_interpolate__``, ``ReverbManager.interpolate()``; guide §15).

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
