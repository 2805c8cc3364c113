"""A uniform spatial hash for interest management, sans I/O (issue 11).

Each client has a *focus* object (its avatar, its camera) and a view radius ``r``. An object
enters the client's range when its distance to the focus is at most ``r`` and leaves it when
the distance exceeds ``r + margin`` (hysteresis: an object on the edge does not flicker).
Between the two it keeps the state it had.

Objects and client foci are bucketed in square cells, so the work of one update is
proportional to the objects and clients near what moved, never to the size of the world:

- an object that moved is checked against the clients whose focus lies within reach of it
  (found through the cells of their focus) and the clients that had it in range;
- a client whose focus moved is recomputed from the cells around its focus: the cells are
  classified once per small square the focus is in (wholly inside the radius, wholly beyond
  the leave distance, or on an edge), so a recompute tests only the objects of edge cells;
- when most objects moved in one update, a pair is tested only when it may have changed
  state: the grid bounds how far any object moved relative to any focus (twice the largest
  step of the update, summed over updates: the *travel*), so a pair ``slack`` away from the
  distance that would change its state (the radius when out of range, the leave distance
  when in) waits in its client's heap until the travel has grown by ``slack``, and a client
  is recomputed whole once the travel has grown by its margin (every pair it did not keep
  in its heap was at least that far from changing). Objects that took a longer step, or
  appeared, are checked on their own. The ranges are exact at every update, at a cost that
  follows what may change: a few tested pairs per client and update at game speeds;
- with no margin (nothing bounds a change), or with ``stagger`` > 1, every client (every
  ``stagger``-th) is recomputed from its cells instead.

Positions are read from two attributes of the object (``x`` and ``y`` by default); an object
without them (or with a non-finite value) is in no cell and in no client's range. A client
without a focus, or whose focus has no position, has nothing in range.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

__all__ = ["SpatialGrid"]

Cell = tuple[int, int]
K = TypeVar("K")
# (the focus's square, cells inside, across both edges, beyond the radius, within the leave
# distance): see ``SpatialGrid._plan``
_Plan = tuple[Cell, list[set[int]], list[set[int]], list[set[int]], list[set[int]]]

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
        # Positions as complex numbers ``x + yj``, not (x, y) tuples: a complex is not a
        # container (the garbage collector never scans it), and a distance is one
        # ``abs(p - f)`` (a C call) instead of a few bytecodes per object.
        self._pos: dict[int, complex] = {}
        self._cell_of: dict[int, Cell] = {}
        # cell -> uids. A cell's set stays (empty) when its last object leaves: the plans
        # of clients refer to the sets themselves (``_plan``); empty ones are pruned, and
        # the plans made again, only when they outnumber the objects (``_prune``).
        self._cells: dict[Cell, set[int]] = {}
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
        # Per client, the cells around its focus classified for ``_recompute``; valid while
        # the focus stays in the same square of side ``_slack`` (see ``_plan``).
        self._plans: dict[int, _Plan] = {}
        self._slack = self.cell / 8
        # Exact incremental ranges (stagger 1 with a margin): ``_travel`` bounds how far any
        # object may have moved relative to any focus since the grid was made (twice the
        # largest step of each update, ``_kinetic``); per client, the pairs that may change
        # state wait in a heap keyed by the travel at which they may (``_watch``), and the
        # travel at which every other object may matter (``_due``): the range is recomputed
        # whole then. An object whose step exceeds ``_jump`` is checked on its own instead.
        self._travel = 0.0
        self._watch: dict[int, list[tuple[float, int]]] = {}
        self._due: dict[int, float] = {}
        self._jump = self.margin / 8
        self._astray = False  # some clients' focus cells may be out of date
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
            self._pos.pop(uid, None)
            if old is not None:
                del self._cell_of[uid]
                self._drop(old, uid)
            return
        self._pos[uid] = complex(x, y)
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

    def _place_all(self, moved: list[int], objects: Mapping[int, Any]) -> tuple[float, list[int]]:
        """``place`` for each of ``moved``, inlined for the common case (finite floats,
        the same cell as before: only the position is written). Returns the largest step of
        an object that moved at most ``_jump``, and the others (placed, unplaced or moved
        further)."""
        fx, fy = self.fields
        s = self.cell
        floor = math.floor
        pos = self._pos
        get = pos.get
        cell_of = self._cell_of
        place = self.place
        jump = self._jump
        largest = 0.0
        jumped: list[int] = []
        for uid in moved:
            obj = objects[uid]
            x: Any = getattr(obj, fx, None)
            y: Any = getattr(obj, fy, None)
            was = get(uid)
            if type(x) is float and type(y) is float and was is not None:
                # the common case first: a short step (so finite: an infinity or a NaN
                # makes it no step at all) within the same cell
                p = complex(x, y)
                step = abs(p - was)
                if step <= jump and cell_of[uid] == (floor(x / s), floor(y / s)):
                    pos[uid] = p
                    if step > largest:
                        largest = step
                    continue
            if type(x) is float and type(y) is float and x - x == 0 and y - y == 0:
                p = complex(x, y)
                if cell_of.get(uid) == (floor(x / s), floor(y / s)):
                    pos[uid] = p
                else:
                    place(uid, obj)
            else:
                place(uid, obj)
                p = get(uid)  # type: ignore[assignment]
                if p is None:
                    if was is not None:
                        jumped.append(uid)
                    continue
            if was is None:
                jumped.append(uid)
                continue
            step = abs(p - was)
            if step > largest:
                if step > jump:
                    jumped.append(uid)
                else:
                    largest = step
        return largest, jumped

    def _drop(self, key: Cell, uid: int) -> None:
        self._cells[key].discard(uid)

    def _prune(self) -> None:
        """Forget the empty cells once they are many (an object wandering far would leave
        a trail of them); the plans referring to them are made again when next used."""
        cells = self._cells
        if len(cells) > 2 * len(self._pos) + 1024:
            self._cells = {key: bucket for key, bucket in cells.items() if bucket}
            self._plans.clear()

    def unplace(self, uid: int) -> set[int]:
        """Remove ``uid``; return the clients that had it in range (their ranges drop it)."""
        self._pos.pop(uid, None)
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
        self._plans.pop(client, None)
        self._due[client] = -math.inf  # recomputed whole at the next update

    def focused_by(self, uid: int) -> frozenset[int]:
        """The clients whose focus is ``uid``."""
        return frozenset(self._focused_by.get(uid, ()))

    def drop_client(self, client: int) -> None:
        focus = self._focus.pop(client, None)
        if focus is not None:
            self._discard(self._focused_by, focus, client)
        self._radius.pop(client, None)
        self._plans.pop(client, None)
        self._due.pop(client, None)
        self._watch.pop(client, None)
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

    def _focus_point(self, client: int) -> complex | None:
        focus = self._focus.get(client)
        return None if focus is None else self._pos.get(focus)

    def _point(self, uid: int) -> complex | None:
        return self._pos.get(uid)

    # -- updates -----------------------------------------------------------------------------

    def update(
        self, moved: Iterable[int], objects: Mapping[int, Any], clients: Iterable[int] = ()
    ) -> dict[int, set[int]]:
        """Re-place ``moved`` objects (read from ``objects``), recompute ``clients`` whole;
        return, per client, the uids whose in-range state changed (entered or left)."""
        moved = [uid for uid in moved if uid in objects]
        self._prune()
        largest, jumped = self._place_all(moved, objects)
        if self.stagger == 1 and self.margin > 0:
            return self._kinetic(moved, largest, jumped, clients)
        recompute = set(clients)
        focused_by = self._focused_by
        if focused_by:
            for uid in focused_by.keys() & moved:
                recompute |= focused_by[uid]
        changes: dict[int, set[int]] = {}
        if len(moved) > max(BULK_MIN, BULK_SHARE * len(self._pos)):
            k = self.stagger
            if k == 1:  # without a margin
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

    def _kinetic(
        self, moved: list[int], largest: float, jumped: list[int], clients: Iterable[int]
    ) -> dict[int, set[int]]:
        """``update`` with exact ranges at a cost proportional to what may change.

        Between two updates no object moved more than ``largest`` relative to the grid,
        except ``jumped``; so no distance between an object and a focus changed by more
        than twice that. A pair whose distance was ``slack`` away from the threshold that
        would change its state (the radius when out of range, the leave distance when in)
        cannot change state before the travel grows by ``slack``: each client's heap holds
        the pairs it tested at its last recompute with the travel at which they are due
        again; every object it did not test was at least the margin away from its
        threshold (inside the radius, or beyond the leave distance), so the client is
        recomputed whole once the travel has grown by its margin. Jumped objects are
        checked against the clients near them and put in their heaps; clients whose focus
        jumped, and ``clients``, are recomputed whole.

        When few objects moved, each of them is checked so (and clients whose focus moved
        are recomputed whole): no other pair can have changed state, so the heaps and the
        whole recomputes that come due wait for the next update where many objects move
        (the travel still grows: what a pair may have covered is bounded all the same)."""
        travel = self._travel + 2 * largest
        if travel > 1e6:  # keep the sums exact enough: start again from 0
            travel = 0.0
            for client in self._due:
                self._due[client] = -math.inf
        self._travel = travel
        recompute = set(clients)
        focused_by = self._focused_by
        changes: dict[int, set[int]] = {}
        bulk = len(moved) > max(BULK_MIN, BULK_SHARE * len(self._pos))
        singles = jumped if bulk else moved  # checked one by one
        if not bulk:
            for uid in focused_by.keys() & moved:
                recompute |= focused_by[uid]
        if singles:
            for uid in jumped:
                found = focused_by.get(uid)
                if found:
                    recompute |= found
            if self._astray:  # ``_near`` finds clients by their focus's cell
                for client in self._focus:
                    self._relocate(client)
                self._astray = False
            else:
                for client in recompute:
                    self._relocate(client)
            watch = self._watch
            for uid in singles:
                p = self._point(uid)
                for client in self._near(uid):
                    if client in recompute:
                        continue
                    if self._check(client, uid):
                        changes.setdefault(client, set()).add(uid)
                    heap = watch.get(client)
                    f = self._focus_point(client)
                    if heap is not None and p is not None and f is not None:
                        due = self._next(client, uid, abs(p - f), f)
                        if due < self._due[client]:
                            heapq.heappush(heap, (due, uid))
        if not bulk:
            return self._recompute_all(recompute, changes)
        self._astray = True  # foci moved, their cells not updated (but those recomputed)
        watch = self._watch
        for client, due in self._due.items():
            if due <= travel or client in recompute:
                recompute.add(client)
                continue
            heap = watch[client]
            if heap and heap[0][0] <= travel:
                diff = self._retest(client, heap, travel)
                if diff:
                    changes.setdefault(client, set()).update(diff)
        return self._recompute_all(recompute, changes)

    def _recompute_all(
        self, recompute: Iterable[int], changes: dict[int, set[int]]
    ) -> dict[int, set[int]]:
        """Recompute each client of ``recompute`` whole; its changes join ``changes``."""
        for client in recompute:
            self._relocate(client)
            diff = self._recompute(client, track=True)
            if diff:
                changes.setdefault(client, set()).update(diff)
        return changes

    def _epsilon(self, client: int, f: complex) -> float:
        """How much earlier than due a pair is tested again: more than the rounding of the
        distances and of the travel (testing early is only a little more work)."""
        return 1e-6 * (1.0 + self._leave(client)) + 1e-9 * abs(f)

    def _next(self, client: int, uid: int, d: float, f: complex) -> float:
        """The travel at which the pair (client, uid) at distance ``d`` is due again."""
        if uid in self.in_range[client]:
            slack = self._leave(client) - d
        else:
            slack = d - self._enter(client)
        return self._travel + slack - self._epsilon(client, f)

    def _retest(self, client: int, heap: list[tuple[float, int]], travel: float) -> set[int]:
        """Test again the pairs of ``client`` that are due; return those that changed."""
        held = self.in_range[client]
        f = self._focus_point(client)
        diff: set[int] = set()
        if f is None:  # (its focus lost its position: it jumped, so it is recomputed)
            return diff
        r = self._enter(client)
        leave = self._leave(client)
        eps = self._epsilon(client, f)
        pos = self._pos
        seen_by = self.seen_by
        pop, push = heapq.heappop, heapq.heappush
        later: list[tuple[float, int]] = []  # put back after: each tested once an update
        again = later.append
        horizon = self._due[client]  # recomputed whole then: later ones need not wait
        while heap and heap[0][0] <= travel:
            uid = pop(heap)[1]
            p = pos.get(uid)
            if p is None:
                continue  # unplaced (its ranges were updated then)
            d = abs(p - f)
            if uid in held:
                if d <= leave:
                    again((travel + leave - d - eps, uid))
                    continue
                held.discard(uid)
                self._discard(seen_by, uid, client)
                again((travel + d - r - eps, uid))
            else:
                if d > r:
                    again((travel + d - r - eps, uid))
                    continue
                held.add(uid)
                seen_by.setdefault(uid, set()).add(client)
                again((travel + leave - d - eps, uid))
            diff.add(uid)
        for item in later:
            if item[0] < horizon:
                push(heap, item)
        return diff

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
    def _block(p: complex, reach: float, s: float) -> Iterable[Cell]:
        x, y = p.real, p.imag
        x0, x1 = math.floor((x - reach) / s), math.floor((x + reach) / s)
        y0, y1 = math.floor((y - reach) / s), math.floor((y + reach) / s)
        return ((i, j) for i in range(x0, x1 + 1) for j in range(y0, y1 + 1))

    def _relocate(self, client: int) -> None:
        p = self._focus_point(client)
        old = self._client_cell.get(client)
        s = self._client_cell_size
        key = None if p is None else (math.floor(p.real / s), math.floor(p.imag / s))
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
            d = abs(p - f)
            now = d <= self._enter(client) or (was and d <= self._leave(client))
        if now == was:
            return False
        if now:
            held.add(uid)
            self.seen_by.setdefault(uid, set()).add(client)
        else:
            held.discard(uid)
            self._discard(self.seen_by, uid, client)
        return True

    def _plan(self, client: int, box: Cell) -> _Plan:
        """The cells around ``client``'s focus, classified for any focus in the square
        ``box`` (of side ``_slack``): a focus moves little per tick, so the classification
        is made again only when it leaves that square, not at every recompute.

        A cell is classified by its least and greatest distance to any point of the square:
        wholly inside the radius (its objects all in range, none tested); wholly beyond the
        leave distance (left out); beyond the radius (only objects in range may stay: only
        they are tested); within the leave distance (objects in range stay: only the others
        are tested); or across both (each object tested)."""
        r = self._enter(client)
        leave = self._leave(client)
        r2, l2 = r * r, leave * leave
        s = self.cell
        q = self._slack
        floor = math.floor
        ax, ay = box[0] * q, box[1] * q  # the square's corners
        bx, by = ax + q, ay + q
        i0, i1 = floor((ax - leave) / s), floor((bx + leave) / s)
        j0, j1 = floor((ay - leave) / s), floor((by + leave) / s)
        rows = [(j, *_reach(j * s, (j + 1) * s, ay, by)) for j in range(j0, j1 + 1)]
        inside: list[set[int]] = []
        edge: list[set[int]] = []
        staying: list[set[int]] = []
        entering: list[set[int]] = []
        cells = self._cells
        for i in range(i0, i1 + 1):
            near_x, far_x = _reach(i * s, (i + 1) * s, ax, bx)
            if near_x > l2:
                continue
            for j, near_y, far_y in rows:
                near = near_x + near_y
                if near > l2:
                    continue
                far = far_x + far_y
                bucket = cells.get((i, j))
                if bucket is None:
                    bucket = cells[i, j] = set()
                if far <= r2:
                    inside.append(bucket)
                elif near > r2:
                    staying.append(bucket)
                elif far <= l2:
                    entering.append(bucket)
                else:
                    edge.append(bucket)
        plan = self._plans[client] = (box, inside, edge, staying, entering)
        return plan

    def _recompute(self, client: int, track: bool = False) -> set[int]:
        """Recompute one client's range from the cells around its focus; return the diff.
        ``track``: also note when each pair may change state (``_kinetic``)."""
        old = self.in_range.setdefault(client, set())
        f = self._focus_point(client)
        new: set[int] = set()
        if track:
            if f is None:  # nothing in range until its focus is placed (it then jumps)
                self._due[client] = math.inf
                self._watch[client] = []
            else:
                new = self._track(client, f, old)
        elif f is not None:
            q = self._slack
            box = (math.floor(f.real / q), math.floor(f.imag / q))
            plan = self._plans.get(client)
            if plan is None or plan[0] != box:
                plan = self._plan(client, box)
            _, inside, edge, staying, entering = plan
            for bucket in inside:
                new.update(bucket)
            r = self._enter(client)
            leave = self._leave(client)
            pos = self._pos
            if edge:
                new.update(
                    {
                        uid
                        for bucket in edge
                        for uid in bucket
                        if (d := abs(pos[uid] - f)) <= r or (d <= leave and uid in old)
                    }
                )
            if staying and old:
                new.update(
                    {
                        uid
                        for bucket in staying
                        for uid in bucket
                        if uid in old and abs(pos[uid] - f) <= leave
                    }
                )
            if entering:
                new.update(
                    {
                        uid
                        for bucket in entering
                        for uid in bucket
                        if uid in old or abs(pos[uid] - f) <= r
                    }
                )
        return self._replace(client, old, new)

    def _track(self, client: int, f: complex, old: set[int]) -> set[int]:
        """``client``'s range from its cells, each object of an edge cell tested and put in
        its heap with the travel at which it may change state (``_kinetic``)."""
        q = self._slack
        box = (math.floor(f.real / q), math.floor(f.imag / q))
        plan = self._plans.get(client)
        if plan is None or plan[0] != box:
            plan = self._plan(client, box)
        _, inside, edge, staying, entering = plan
        new: set[int] = set()
        for bucket in inside:
            new.update(bucket)
        r = self._enter(client)
        leave = self._leave(client)
        travel = self._travel
        eps = self._epsilon(client, f)
        pos = self._pos
        # Only pairs between the radius and the leave distance may change state before the
        # travel grows by the margin (when the client is recomputed whole): only they wait
        # in the heap. (Every object not tested was inside the radius or beyond the leave
        # distance too.)
        heap: list[tuple[float, int]] = []
        add, append = new.add, heap.append
        for cells in (edge, staying, entering):
            for bucket in cells:
                for uid in bucket:
                    d = abs(pos[uid] - f)
                    if d <= r:
                        add(uid)
                    elif d <= leave:
                        if uid in old:
                            add(uid)
                            append((travel + leave - d - eps, uid))
                        else:
                            append((travel + d - r - eps, uid))
        heapq.heapify(heap)
        self._watch[client] = heap
        self._due[client] = travel + (leave - r) - eps
        return new

    def _replace(self, client: int, old: set[int], new: set[int]) -> set[int]:
        """Make ``new`` the client's range; return what changed."""
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


def _reach(a: float, b: float, c: float, d: float) -> tuple[float, float]:
    """The least and greatest squared distance between a point of [a, b] and one of
    [c, d] (on one axis)."""
    near = c - b if c > b else (a - d if a > d else 0.0)
    far = b - c if b - c > d - a else d - a
    return near * near, far * far
