"""A uniform spatial hash for interest management, sans I/O (issue 11).

Each client has a *focus* object (its avatar, its camera) and a view radius ``r``. An object
enters the client's range when its distance to the focus is at most ``r`` and leaves it when
the distance exceeds ``r + margin`` (hysteresis: an object on the edge does not flicker).
Between the two it keeps the state it had.

Objects and client foci are bucketed in square cells, so the work of one update is
proportional to the objects and clients near what moved, never to the size of the world:

- an object that moved is checked against the clients whose focus lies within reach of it
  (found through the cells of their focus) and the clients that had it in range;
- a client whose focus moved is recomputed from the cells around its focus;
- when most objects moved in one update, every client is recomputed from its cells instead
  (the same result, fewer set operations).

Positions are read from two attributes of the object (``x`` and ``y`` by default); an object
without them (or with a non-finite value) is in no cell and in no client's range. A client
without a focus, or whose focus has no position, has nothing in range.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

__all__ = ["SpatialGrid"]

Cell = tuple[int, int]
Point = tuple[float, float]
K = TypeVar("K")

# Above this share of moved objects, recomputing each client from its cells is cheaper than
# checking each moved object against the clients around it (measured with the benchmark in
# tests/interest/bench_grid.py: the crossover lies near 10 %).
BULK_SHARE = 0.1
BULK_MIN = 64  # and never for a handful of objects in a small world


class SpatialGrid:
    """Which placed objects each client has in range; see the module docstring."""

    def __init__(
        self,
        radius: float,
        *,
        margin: float | None = None,
        cell: float | None = None,
        fields: tuple[str, str] = ("x", "y"),
        stagger: int = 1,
    ) -> None:
        if not radius > 0:
            raise ValueError("radius must be positive")
        if stagger < 1:
            raise ValueError("stagger must be >= 1")
        self.radius = float(radius)
        # In an update where most objects moved, recompute only the clients of one of
        # ``stagger`` groups (client id modulo stagger), in turn: each client's range is then
        # at most ``stagger`` updates behind, for 1/stagger of the cost (Mirror rebuilds
        # observers at an interval for the same reason). Clients passed to ``update`` are
        # always recomputed.
        self.stagger = stagger
        self._phase = 0
        # 10 % by default: wide enough that jitter on the edge does not flicker, narrow
        # enough that a client keeps little it cannot see.
        self.margin = float(self.radius * 0.1 if margin is None else margin)
        if self.margin < 0:
            raise ValueError("margin must be >= 0")
        # Half the leave distance by default: a client's block of cells is then 5 x 5 half
        # cells (6.25 reach^2 of area) instead of 3 x 3 whole ones (9 reach^2), and the cells
        # wholly inside the radius are taken without a distance test.
        self.cell = float(cell if cell is not None else (self.radius + self.margin) / 2)
        if not self.cell > 0:
            raise ValueError("cell must be positive")
        self.fields = fields
        # Positions as two maps of floats, not one of (x, y) tuples: every move would make a
        # new tuple that outlives the tick, and the garbage collector would scan them all.
        self._x: dict[int, float] = {}
        self._y: dict[int, float] = {}
        self._cell_of: dict[int, Cell] = {}
        self._cells: dict[Cell, set[int]] = {}  # cell -> uids
        self._focus: dict[int, int | None] = {}  # client -> focus uid
        self._focused_by: dict[int, set[int]] = {}  # focus uid -> clients
        self._radius: dict[int, float] = {}  # per-client radius overrides
        self._client_cell: dict[int, Cell] = {}
        self._client_cells: dict[Cell, set[int]] = {}
        # Clients are bucketed in coarser cells (the default leave distance): an object that
        # moved looks up 3 x 3 of them, not 5 x 5.
        self._client_cell_size = self.radius + self.margin if self.margin else self.radius
        self._reach = self.radius + self.margin  # the largest leave distance of any client
        self.in_range: dict[int, set[int]] = {}  # client -> uids
        self.seen_by: dict[int, set[int]] = {}  # uid -> clients having it in range

    # -- objects -----------------------------------------------------------------------------

    def place(self, uid: int, obj: Any) -> None:
        """Put (or move) ``uid`` where ``obj`` says it is. Does not update any range."""
        fx, fy = self.fields
        x: Any = getattr(obj, fx, None)
        y: Any = getattr(obj, fy, None)
        old = self._cell_of.get(uid)
        if (
            (type(x) is float or type(x) is int)
            and (type(y) is float or type(y) is int)
            and x - x == 0
            and y - y == 0
        ):
            x, y = float(x), float(y)
        else:  # no position (or not a finite number): in no cell
            self._x.pop(uid, None)
            self._y.pop(uid, None)
            if old is not None:
                del self._cell_of[uid]
                self._drop(old, uid)
            return
        self._x[uid] = x
        self._y[uid] = y
        s = self.cell
        key = (math.floor(x / s), math.floor(y / s))
        if key == old:
            return
        if old is not None:
            self._drop(old, uid)
        self._cell_of[uid] = key
        bucket = self._cells.get(key)
        if bucket is None:
            self._cells[key] = {uid}
        else:
            bucket.add(uid)

    def _place_all(self, moved: list[int], objects: Mapping[int, Any]) -> None:
        """``place`` for each of ``moved``, inlined for the common case (finite floats,
        the same cell as before: only the position is written)."""
        fx, fy = self.fields
        s = self.cell
        floor = math.floor
        xs, ys = self._x, self._y
        cell_of = self._cell_of
        place = self.place
        for uid in moved:
            obj = objects[uid]
            x: Any = getattr(obj, fx, None)
            y: Any = getattr(obj, fy, None)
            if type(x) is float and type(y) is float and x - x == 0 and y - y == 0:
                if cell_of.get(uid) == (floor(x / s), floor(y / s)):
                    xs[uid] = x
                    ys[uid] = y
                    continue
            place(uid, obj)

    def _drop(self, key: Cell, uid: int) -> None:
        bucket = self._cells[key]
        bucket.discard(uid)
        if not bucket:
            del self._cells[key]

    def unplace(self, uid: int) -> set[int]:
        """Remove ``uid``; return the clients that had it in range (their ranges drop it)."""
        self._x.pop(uid, None)
        self._y.pop(uid, None)
        old = self._cell_of.pop(uid, None)
        if old is not None:
            self._drop(old, uid)
        holders = self.seen_by.pop(uid, set())
        for client in holders:
            self.in_range[client].discard(uid)
        return holders

    @staticmethod
    def _discard(table: dict[K, set[int]], key: K, item: int) -> None:
        bucket = table.get(key)
        if bucket is not None:
            bucket.discard(item)
            if not bucket:
                del table[key]

    # -- clients -----------------------------------------------------------------------------

    def set_client(self, client: int, focus: int | None, radius: float | None = None) -> None:
        """Give ``client`` a focus object and optionally its own radius (its margin scales)."""
        old = self._focus.get(client)
        if old is not None:
            self._discard(self._focused_by, old, client)
        self._focus[client] = focus
        if focus is not None:
            self._focused_by.setdefault(focus, set()).add(client)
        if radius is None:
            self._radius.pop(client, None)
        else:
            if not radius > 0:
                raise ValueError("radius must be positive")
            self._radius[client] = float(radius)
            self._reach = max(self._reach, self._leave(client))
        self.in_range.setdefault(client, set())

    def focused_by(self, uid: int) -> frozenset[int]:
        """The clients whose focus is ``uid``."""
        return frozenset(self._focused_by.get(uid, ()))

    def drop_client(self, client: int) -> None:
        focus = self._focus.pop(client, None)
        if focus is not None:
            self._discard(self._focused_by, focus, client)
        self._radius.pop(client, None)
        key = self._client_cell.pop(client, None)
        if key is not None:
            self._discard(self._client_cells, key, client)
        for uid in self.in_range.pop(client, set()):
            self._discard(self.seen_by, uid, client)

    def _enter(self, client: int) -> float:
        return self._radius.get(client, self.radius)

    def _leave(self, client: int) -> float:
        r = self._radius.get(client)
        if r is None:
            return self.radius + self.margin
        return r + self.margin * r / self.radius

    def _focus_point(self, client: int) -> Point | None:
        focus = self._focus.get(client)
        return None if focus is None else self._point(focus)

    def _point(self, uid: int) -> Point | None:
        x = self._x.get(uid)
        return None if x is None else (x, self._y[uid])

    # -- updates -----------------------------------------------------------------------------

    def update(
        self, moved: Iterable[int], objects: Mapping[int, Any], clients: Iterable[int] = ()
    ) -> dict[int, set[int]]:
        """Re-place ``moved`` objects (read from ``objects``), recompute ``clients`` whole;
        return, per client, the uids whose in-range state changed (entered or left)."""
        moved = [uid for uid in moved if uid in objects]
        self._place_all(moved, objects)
        recompute = set(clients)
        focused_by = self._focused_by
        if focused_by:
            for uid in focused_by.keys() & moved:
                recompute |= focused_by[uid]
        changes: dict[int, set[int]] = {}
        if len(moved) > max(BULK_MIN, BULK_SHARE * len(self._x)):
            k = self.stagger
            if k == 1:
                recompute = set(self._focus)
            else:
                for client in recompute:
                    self._relocate(client)  # keep its bucket right even when it waits
                phase, self._phase = self._phase, (self._phase + 1) % k
                recompute = set(clients) | {c for c in self._focus if c % k == phase}
        else:
            skip = recompute
            for uid in moved:
                for client in self._near(uid):
                    if client not in skip and self._check(client, uid):
                        changes.setdefault(client, set()).add(uid)
        for client in recompute:
            self._relocate(client)
            diff = self._recompute(client)
            if diff:
                changes.setdefault(client, set()).update(diff)
        return changes

    def _near(self, uid: int) -> set[int]:
        """Clients whose range may have to gain or lose ``uid``."""
        out = set(self.seen_by.get(uid, ()))
        p = self._point(uid)
        if p is not None and self._client_cells:
            for key in self._block(p, self._reach, self._client_cell_size):
                bucket = self._client_cells.get(key)
                if bucket:
                    out |= bucket
        return out

    @staticmethod
    def _block(p: Point, reach: float, s: float) -> Iterable[Cell]:
        x0, x1 = math.floor((p[0] - reach) / s), math.floor((p[0] + reach) / s)
        y0, y1 = math.floor((p[1] - reach) / s), math.floor((p[1] + reach) / s)
        return ((i, j) for i in range(x0, x1 + 1) for j in range(y0, y1 + 1))

    def _relocate(self, client: int) -> None:
        p = self._focus_point(client)
        old = self._client_cell.get(client)
        s = self._client_cell_size
        key = None if p is None else (math.floor(p[0] / s), math.floor(p[1] / s))
        if key == old:
            return
        if old is not None:
            self._discard(self._client_cells, old, client)
            del self._client_cell[client]
        if key is not None:
            self._client_cell[client] = key
            self._client_cells.setdefault(key, set()).add(client)

    def _check(self, client: int, uid: int) -> bool:
        """Apply the hysteresis rule to one pair; return whether its state changed."""
        held = self.in_range.setdefault(client, set())
        was = uid in held
        f = self._focus_point(client)
        p = self._point(uid)
        if f is None or p is None:
            now = False
        else:
            dx, dy = p[0] - f[0], p[1] - f[1]
            d2 = dx * dx + dy * dy
            r = self._enter(client)
            if d2 <= r * r:
                now = True
            else:
                leave = self._leave(client)
                now = was and d2 <= leave * leave
        if now == was:
            return False
        if now:
            held.add(uid)
            self.seen_by.setdefault(uid, set()).add(client)
        else:
            held.discard(uid)
            self._discard(self.seen_by, uid, client)
        return True

    def _recompute(self, client: int) -> set[int]:
        """Recompute one client's range from the cells around its focus; return the diff."""
        old = self.in_range.setdefault(client, set())
        f = self._focus_point(client)
        new: set[int] = set()
        if f is not None:
            fx, fy = f
            r = self._enter(client)
            leave = self._leave(client)
            r2, l2 = r * r, leave * leave
            cells = self._cells
            s = self.cell
            i0, i1 = math.floor((fx - leave) / s), math.floor((fx + leave) / s)
            j0, j1 = math.floor((fy - leave) / s), math.floor((fy + leave) / s)
            # the y distances from the focus to the near and far edges of each row
            rows = [(j, *_span(j * s - fy, (j + 1) * s - fy)) for j in range(j0, j1 + 1)]
            edge: list[set[int]] = []  # cells partly inside: each object tested
            for i in range(i0, i1 + 1):
                near_x, far_x = _span(i * s - fx, (i + 1) * s - fx)
                if near_x > l2:
                    continue
                for j, near_y, far_y in rows:
                    bucket = cells.get((i, j))
                    if not bucket or near_x + near_y > l2:
                        continue  # empty, or wholly beyond the leave distance
                    if far_x + far_y <= r2:
                        new.update(bucket)  # wholly inside the radius
                    else:
                        edge.append(bucket)
            if edge:
                xs, ys = self._x, self._y
                new.update(
                    {
                        uid
                        for bucket in edge
                        for uid in bucket
                        if (d2 := (dx := xs[uid] - fx) * dx + (dy := ys[uid] - fy) * dy) <= r2
                        or (d2 <= l2 and uid in old)
                    }
                )
        if new == old:
            return set()
        diff = old ^ new
        seen_by = self.seen_by
        for uid in diff:
            if uid in new:
                seen_by.setdefault(uid, set()).add(client)
            else:
                self._discard(seen_by, uid, client)
        self.in_range[client] = new
        return diff


def _span(a: float, b: float) -> tuple[float, float]:
    """The least and greatest squared distance from 0 to a point of [a, b]."""
    if a > 0:
        return a * a, b * b
    if b < 0:
        return b * b, a * a
    a2, b2 = a * a, b * b
    return 0.0, (a2 if a2 > b2 else b2)
