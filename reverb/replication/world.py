"""The server's authoritative world, sans I/O (§7): UIDs, change tracking, per-peer views, and
the ``sync`` each view receives.

A tick costs in proportion to what changed:

- an object in the world records the public attributes assigned since the last tick
  (``ReverbObject.__setattr__``, or ``mark_changed``); its first such write puts it on the
  world's dirty list. Fields holding a list, tuple or dict are also compared at every tick
  (unless the type narrows that with ``__reverb_mutable__``), so in-place mutation replicates;
- each changed object is checked (§3.4), compared with its baseline (the wire values every
  peer holding it was last sent) and encoded once, as an entry fragment;
- peers that hold the same objects share a ``View`` and one ``SyncFrame`` assembled from the
  fragments; the I/O layer splits it per frame limit without encoding again (§7.5).

A tick in which nothing changed touches no object. An object whose state cannot be encoded is
withheld from every peer until it can be (``sync_errors``); it never stops the others.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Collection, Iterable, Iterator
from operator import attrgetter
from typing import Any

from reverb.errors import EncodeError, InvalidState
from reverb.proto import messages as m
from reverb.replication.bulk import BulkComparison
from reverb.replication.compact import FieldTables
from reverb.replication.interest import Everyone, Interest, Policy, rpc_target
from reverb.replication.records import (
    MISSING,
    OWNER,
    Record,
    bad_owner,
    encode_error,
    field_to_wire,
    holding,
    unset,
)
from reverb.replication.replica import Change, ClientWorld, Despawned, Spawned
from reverb.replication.rpc import current_caller, dispatch
from reverb.replication.schedule import (
    Budget,
    ClientQueue,
    Scheduler,
    priority_of,
    rate_of,
)
from reverb.replication.shared import Shared
from reverb.replication.types import META_ATTRIBUTES, TypeRegistry
from reverb.replication.views import Outgoing, View, fragment_for, tick_filtered, view_sync

__all__ = [
    "Change",
    "ClientWorld",
    "Despawned",
    "ServerWorld",
    "Spawned",
    "View",
    "current_caller",
]

logger = logging.getLogger("reverb")

_WITHHELD = object()
_set = object.__setattr__
_MAX = m.MAX_SAFE_INT
# Nesting levels inside a sync (§3.4): sync > spawn/update list > entry > args/fields > value.
ARGS_DEPTH = 4
_META = META_ATTRIBUTES  # never fields: "uid", and the owner (sent as "owner", §7.2)
COMPACT = "compact"  # the feature name of the compact encoding (§12.1)
TIME = "time"  # the feature name of server time and a sync every tick (§13)
INTEREST = "interest"  # the feature name of despawn reasons, sync.left (§16)
QUIET = "quiet"  # the feature name of skipping idle ticks' empty syncs on "time" (§19)
# §19.3: a "quiet" peer gets a sync at least this often (seconds of server time) even when
# nothing changes for it: two jitter/clock samples a second, and a client can tell a frozen
# server from an idle world within about half a second -- yet 15x fewer frames than one per
# tick at 30 Hz.
QUIET_INTERVAL = 0.5
# A group of at least this many objects of a type assigned the same names is compared in
# bulk (``ServerWorld._compare_bulk``); fewer cost less one by one. Tests lower it to 1.
_BULK_MIN = 8


class ServerWorld:
    """Objects, UIDs, peers and what each peer holds."""

    def __init__(self, types: TypeRegistry) -> None:
        self.types = types
        self.objects: dict[int, Any] = {}
        self.tick_count = 0
        # Objects that became unencodable during the last tick, with the error (decision 7).
        self.sync_errors: list[tuple[Any, EncodeError]] = []
        self.strict = False  # raise the EncodeError from tick() instead (development)
        self._next_uid = 1
        self._records: dict[int, Record] = {}
        self._dirty: list[Any] = []  # objects assigned to since the last tick (by their hook)
        # an object was removed while on ``_dirty``: it may be another world's by the tick
        self._left_dirty = False
        self._pending: dict[int, Record] = {}  # new or withheld: compared whole at each tick
        self._watched: dict[int, tuple[Record, set[str]]] = {}  # fields holding containers
        self._removed: list[int] = []  # synced uids removed since the last tick
        self._views: list[View] = []
        self._joining: set[int] = set()  # peers that get a full snapshot next tick
        self._compact: set[int] = set()  # peers granted the compact encoding (§12)
        self._timed: set[int] = set()  # peers granted the feature "time" (§13)
        self._quiet: set[int] = set()  # peers granted both "time" and "quiet" (§19)
        self.quiet_interval = QUIET_INTERVAL  # §19.3: the server option
        self._snap: set[int] = set()  # uids teleported: their next update says so (§13.5)
        self._last_time: float | None = None  # §13.3: the server time of the last tick
        self._tables = FieldTables()  # §12.2: the compact encoding's field tables
        # The bulk way of comparing (``_compare_bulk``): what it keeps between ticks.
        self._bulk = BulkComparison(types)
        # An object was added that had been in a world: it may be on the dirty list twice
        # (``BulkComparison.group`` then checks for repeated uids) until the next tick's comparison.
        self._readded = False
        # Baselines changed other than by the bulk way, counted: its last tick's groups are
        # reused only while this count stands (``BulkComparison``).
        self._rebased = 0
        self._fragments_made = 0  # spawn fragments made (``_spawn_fragment``), counted
        # Interest management (issue 11, §16): None until a policy, an override or a type
        # with owner-only fields asks for it -- until then every peer sees every object.
        self._interest: Interest | None = None
        self._reasons: set[int] = set()  # peers granted the feature "interest" (§16)
        self._private: dict[int, int] = {}  # uid -> owner, objects with owner-only fields
        self._owner_only: set[int] = set()  # uids of types with owner-only fields
        self._foci: dict[int, tuple[int | None, float | None]] = {}  # member -> focus, radius
        self._others: dict[int, tuple[bytes, bytes]] = {}  # uid -> (fragment, others' spawn)
        # Rates, priorities and budgets (§16.6): None until an object has a rate or a budget
        # is set -- until then every change goes out in the tick it is made.
        self.tick_rate = 30.0  # the server's (the context keeps it up to date)
        self._scheduler: Scheduler | None = None
        self._own_budget: set[int] = set()  # peers given their own budget (set_budget)
        self._weights: dict[int, tuple[float, float | None]] = {}  # this tick's, per uid
        self._class_weights: dict[type, tuple[float, float | None]] = {}  # and per class

    # -- objects -----------------------------------------------------------------------------

    def add(self, obj: Any, args: tuple[Any, ...]) -> int:
        """Give ``obj`` a fresh UID (never reused, §7.1) and add it to the world."""
        info = self.types.of(obj)
        uid = self._next_uid
        self._next_uid += 1
        wire_args = m.to_wire(
            list(args), f"{info.name} uid={uid} constructor arguments", depth=ARGS_DEPTH
        )
        _set(obj, "uid", uid)
        self.objects[uid] = obj
        record = Record(obj, uid, info, m.dumpb(wire_args))
        self._records[uid] = record
        if getattr(obj, "_reverb_dirty", None) is not None:
            self._readded = True
        self._pending[uid] = record
        _set(obj, "_reverb_dirty", self._dirty)
        _set(obj, "_reverb_changed", set())
        if info.owner_only:
            self._owner_only.add(uid)
        if self._interest is not None:
            self._interest.add_object(uid, obj)
        elif info.owner_only:  # owner-only fields need per-peer views
            self._activate(Interest(Everyone()))
        if self._scheduler is None and rate_of(obj) is not None:
            self.schedule()  # an update rate needs per-peer queues (§16.6)
        return uid

    def remove(self, uid: int) -> Any:
        obj = self.objects.pop(uid, None)
        if obj is None:
            raise InvalidState(f"no object with uid {uid}")
        record = self._records.pop(uid)
        self._pending.pop(uid, None)
        self._watched.pop(uid, None)
        self._snap.discard(uid)
        self._private.pop(uid, None)
        self._owner_only.discard(uid)
        self._others.pop(uid, None)
        if self._interest is not None:
            self._interest.remove_object(uid)
        if obj._reverb_changed:  # on ``_dirty``, where it stays until the tick
            self._left_dirty = True
        _set(obj, "_reverb_changed", None)
        if record.fields is not None:
            self._removed.append(uid)
        return obj

    def teleport(self, uid: int) -> None:
        """Mark the object's next update entry ``"snap": true`` for "time" peers (§13.5)."""
        if uid not in self._records:
            raise InvalidState(f"no object with uid {uid}")
        self._snap.add(uid)

    def withheld(self) -> list[tuple[Any, EncodeError]]:
        """Objects withheld from every peer because their state cannot be encoded."""
        return [(r.obj, r.error) for r in self._pending.values() if r.error is not None]

    # -- peers -------------------------------------------------------------------------------

    def peer_joined(self, member: int, features: Collection[str] = ()) -> None:
        """A peer completed its handshake; ``features`` are those it was granted (§4.11)."""
        self._joining.add(member)
        if COMPACT in features:
            self._compact.add(member)
        if TIME in features:
            self._timed.add(member)
            if QUIET in features:  # §19.1: it changes nothing without "time"
                self._quiet.add(member)
        if INTEREST in features:
            self._reasons.add(member)
        if self._interest is not None:
            self._interest.add_client(member)
        if self._scheduler is not None:
            self._scheduler.add_client(member, self._last_time or 0.0)

    def peer_left(self, member: int) -> None:
        self._joining.discard(member)
        self._compact.discard(member)
        self._timed.discard(member)
        self._quiet.discard(member)
        self._reasons.discard(member)
        self._foci.pop(member, None)
        if self._interest is not None:
            self._interest.remove_client(member)
        if self._scheduler is not None:
            self._scheduler.remove_client(member)
            self._own_budget.discard(member)
        for view in self._views:
            if member in view.members:
                view.drop(member)
                if not view.members:
                    self._views.remove(view)
                return

    def peer_paused(self, member: int) -> None:
        """§18.5: a "resume" peer dropped and is held: it leaves its view (nothing is sent
        to it) but keeps its features and its interest state (groups, focus, overrides,
        what it may see), so that a resume finds it as it was."""
        self._joining.discard(member)
        for view in self._views:
            if member in view.members:
                view.drop(member)
                if not view.members:
                    self._views.remove(view)
                return

    def peer_resumed(self, member: int) -> None:
        """§18.4: a held peer resumed: a full snapshot at the next tick (which its client
        reconciles with the replicas it kept)."""
        self._joining.add(member)

    @property
    def peers(self) -> frozenset[int]:
        return frozenset(self._joining.union(*(v.members for v in self._views)))

    def observers(self, uid: int) -> frozenset[int]:
        """The peers that hold ``uid`` as of the last tick: it was in a sync they were sent
        and not despawned since (§14.6). A joiner awaiting its first sync holds nothing."""
        return frozenset().union(*(v.members for v in self._views if uid in v.held))

    # -- rpc ---------------------------------------------------------------------------------

    def call(self, member: int, rpc: m.Rpc) -> m.Message:
        """Run an ``rpc`` for ``member`` after the checks of §8.2; return the reply.

        An object the caller cannot see is answered exactly as a missing one (§8.2, §16.5):
        the dispatch gets no object at all, so the reply cannot differ."""
        if rpc_target(self.objects, self._interest, member, rpc.uid) is None:
            return dispatch({}, self.types, member, rpc)
        return dispatch(self.objects, self.types, member, rpc)

    # -- interest management (issue 11, §16) ----------------------------------------------------

    @property
    def interest(self) -> Interest:
        """The per-peer visibility state; asking for it turns interest management on
        (with ``Everyone()`` until ``set_interest``)."""
        if self._interest is None:
            self._activate(Interest(Everyone()))
        assert self._interest is not None
        return self._interest

    @property
    def filtering(self) -> bool:
        """Whether peers may see different objects (interest management is on)."""
        return self._interest is not None

    def set_interest(self, policy: Policy) -> None:
        """Decide visibility with ``policy`` from the next tick on. Overrides (``show_to``,
        ``hide_from``), groups and foci set so far are kept."""
        self._activate(Interest(policy))

    def _activate(self, interest: Interest) -> None:
        old = self._interest
        for uid, obj in self.objects.items():
            interest.add_object(uid, obj)
        for member in self.peers:
            groups = old.groups(member) if old is not None else ()
            interest.add_client(member, groups=groups)
        # What each peer holds is its visible set so far: the first update re-decides every
        # pair from there, so what it stops seeing leaves (§16.4).
        for view in self._views:
            held = {uid for uid in view.held if uid in self.objects}
            for member in view.members:
                interest._visible[member] = set(held)
                for uid in held:
                    interest._holders.setdefault(uid, set()).add(member)
        for member, (focus, radius) in self._foci.items():
            if focus is not None and focus not in self.objects:
                focus = None
            interest.set_focus(member, focus, radius=radius)
        if old is not None:
            for uid in self.objects:
                for member in old._hidden.get(uid, ()):
                    interest.hide_from(uid, member)
                for member in old._shown.get(uid, ()):
                    interest.show_to(uid, member)
        self._interest = interest
        if old is None:  # views mixing peers with and without sync.left part ways
            views = []
            for view in self._views:
                for part in self._split(view, self._reasons.__contains__):
                    part.reasons = next(iter(part.members)) in self._reasons
                    views.append(part)
            self._views = views

    def set_focus(self, member: int, uid: int | None, radius: float | None = None) -> None:
        """The object ``member``'s grid range is centred on (``Grid`` policies)."""
        self._foci[member] = (uid, radius)
        self.interest.set_focus(member, uid, radius=radius)

    def show_to(self, uid: int, member: int) -> None:
        self._check_pair(uid, member)
        self.interest.show_to(uid, member)

    def hide_from(self, uid: int, member: int) -> None:
        self._check_pair(uid, member)
        self.interest.hide_from(uid, member)

    def _check_pair(self, uid: int, member: int) -> None:
        if uid not in self.objects:
            raise InvalidState(f"no object with uid {uid}")
        if member not in self.peers:
            raise InvalidState(f"no connected client with membership id {member}")

    # -- rates, priorities and budgets (issue 11, §16.6) -------------------------------------

    @property
    def scheduling(self) -> bool:
        """Whether changes go through per-peer queues (an object has a rate, or a budget is
        set): each peer then has its own view."""
        return self._scheduler is not None

    def schedule(self) -> Scheduler:
        """Turn per-peer queues on (and interest management, which gives each peer its own
        view); done by the first rated object or ``set_budget``. Never turned off."""
        scheduler = self._scheduler
        if scheduler is None:
            scheduler = self._scheduler = Scheduler(self.tick_rate)
            now = self._last_time or 0.0
            for member in self.peers:
                scheduler.add_client(member, now)
            if self._interest is None:
                self._activate(Interest(Everyone()))
        return scheduler

    def set_budget(
        self, member: int | None, bytes_per_second: float | None, burst: float | None = None
    ) -> None:
        """The bytes per second ``member``'s syncs may use (None: unlimited), with a
        ``burst`` allowance (default one second's worth). ``member=None`` sets the default
        of every peer not given its own."""
        for value, what in ((bytes_per_second, "bytes_per_second"), (burst, "burst")):
            if value is not None and not (
                type(value) in (int, float) and value > 0 and math.isfinite(value)
            ):
                raise ValueError(f"{what} must be a positive number or None, not {value!r}")
        budget = Budget(bytes_per_second, burst)
        if member is not None and member not in self.peers:
            raise InvalidState(f"no connected client with membership id {member}")
        if self._scheduler is None and bytes_per_second is None:
            return  # unlimited is what every peer has already
        scheduler = self.schedule()
        now = self._last_time or 0.0
        if member is None:
            scheduler.budget = budget
            for peer, queue in scheduler.queues.items():
                if peer not in self._own_budget:
                    queue.set_budget(budget, now)
            return
        self._own_budget.add(member)
        own = scheduler.queues.get(member) or scheduler.add_client(member, now)
        own.set_budget(budget, now)

    def budget(self, member: int) -> Budget:
        """``member``'s budget (unlimited when no budget was ever set)."""
        if self._scheduler is None or member not in self._scheduler.queues:
            return Budget()
        return self._scheduler.queues[member].budget

    def queue(self, member: int) -> ClientQueue | None:
        """``member``'s queue of pending changes (None when nothing is scheduled)."""
        return None if self._scheduler is None else self._scheduler.queues.get(member)

    def _weight(self, uid: int) -> tuple[float, float | None]:
        """The object's priority and rate, read once per tick (an instance may change them)."""
        weights = self._weights
        found = weights.get(uid)
        if found is None:
            obj = self.objects[uid]
            odict = obj.__dict__
            if "__reverb_priority__" in odict or "__reverb_rate__" in odict:
                found = self._read_weight(obj, uid)  # the instance's own
            else:  # its class's, read once per tick per class (unless computed per object)
                cls = type(obj)
                found = self._class_weights.get(cls)
                if found is None:
                    found = self._read_weight(obj, uid)
                    if _plain_weights(cls):
                        self._class_weights[cls] = found
            weights[uid] = found
        return found

    @staticmethod
    def _read_weight(obj: Any, uid: int) -> tuple[float, float | None]:
        try:
            return (priority_of(obj), rate_of(obj))
        except ValueError as exc:
            logger.error("%s uid=%d: %s; using the defaults", type(obj).__qualname__, uid, exc)
            return (1.0, None)

    def can_see(self, member: int, uid: int) -> bool:
        """Whether ``member`` sees ``uid`` as of the last tick (always, without interest)."""
        if self._interest is None:
            return uid in self.objects
        return self._interest.can_see(member, uid)

    @staticmethod
    def _split(view: View, key: Any) -> list[View]:
        """``view``'s members grouped by ``key(member)``: one view per group, same state."""
        groups: dict[Any, set[int]] = {}
        for member in view.members:
            groups.setdefault(key(member), set()).add(member)
        if len(groups) == 1:
            return [view]
        out = []
        for members in groups.values():
            part = View(members, view.compact, view.time, view.reasons, view.quiet)
            part.held = set(view.held)
            part.tick = view.tick
            part.loud, part.heard = view.loud, view.heard  # §19.2
            out.append(part)
        return out

    # -- sync --------------------------------------------------------------------------------

    def tick(self, now: float) -> Outgoing:
        """Advance one tick: a delta for synced views, a full snapshot for joiners (§7.3)."""
        self.tick_count += 1
        tick = self.tick_count
        self.sync_errors = []
        if self._left_dirty:
            # one added to another world since holds that world's mark (and maybe a uid that
            # is one of ours there): off our list, so that we neither take it for ours nor
            # clear the mark the other world's tick needs
            dirty = self._dirty
            dirty[:] = [obj for obj in dirty if getattr(obj, "_reverb_dirty", None) is dirty]
            self._left_dirty = False
        if self.strict:
            self._check_strictly()
        spawned: list[Record] = []  # encodable now, and some views may lack them
        updated: list[tuple[int, Any]] = []
        if self._pending or self._dirty or self._watched:
            self._collect(tick, spawned, updated)
        batches = self._bulk.turn()
        removed, self._removed = self._removed, []
        out: Outgoing = []
        stamp = self._stamp(now)
        if self._interest is not None:
            tick_filtered(self, tick, spawned, updated, batches, removed, stamp, out)
        elif spawned or updated or batches or removed:
            spawned.sort(key=_uid_of)
            shared = Shared(updated, batches, self._tables.plans)
            if shared.uids and any(view.compact for view in self._views):
                self._tables.encode(shared, self._records)
            if self._snap:
                shared.snapped = self._snap.intersection(shared.uids)
                self._snap -= shared.snapped
                self._snap.difference_update([r.uid for r in spawned])  # §13.5: no marker
            for view in self._views:
                frame = view_sync(self, view, tick, spawned, removed, shared, stamp)
                if frame is not None:
                    out.append((view.order, frame))
            shared.release()
        elif self._timed and not self._quiet:  # §13.7: "time" peers: a sync every tick
            timed = sorted(m for view in self._views if view.time for m in view.members)
            if timed:
                out.append((tuple(timed), m.SyncFrame(tick, False, time=stamp)))
        elif self._timed:  # §19.2: "quiet" ones only after a non-empty sync, or a heartbeat
            timed = []
            interval = self.quiet_interval
            for view in self._views:
                if view.idle(tick, stamp, interval) is not None:
                    timed.extend(view.members)
            if timed:
                out.append((tuple(sorted(timed)), m.SyncFrame(tick, False, time=stamp)))
        for view in self._views:
            view.tick = tick
        if self._joining:  # each joiner's first sync is a full one (§7.3), even of no objects
            if self._interest is not None:
                self._join_each(tick, stamp, out)
            else:
                self._join_grouped(tick, stamp, out)
            self._joining = set()
        if len(self._views) > 1:
            self._merge_views()
        return out

    def _join_each(self, tick: int, stamp: float, out: Outgoing) -> None:
        """With interest management: each joiner its own view (merged later when equal)."""
        scheduler = self._scheduler
        for p in sorted(self._joining):
            view = View(
                {p}, p in self._compact, p in self._timed, p in self._reasons, p in self._quiet
            )
            frame = self._full(view, tick, stamp)
            out.append((view.order, frame))
            self._views.append(view)
            if scheduler is not None:  # the snapshot counts against the budget (§16.6)
                queue = scheduler.queues.get(p) or scheduler.add_client(p, stamp)
                queue.charge(stamp, len(frame.lists[0].joined()))

    def _join_grouped(self, tick: int, stamp: float, out: Outgoing) -> None:
        """Without it: one view for the joiners of each wire form, one full sync each."""
        for is_compact in (False, True):
            for is_timed in (False, True):
                for is_quiet in (False, True):
                    members = {
                        p
                        for p in self._joining
                        if (p in self._compact) is is_compact
                        and (p in self._timed) is is_timed
                        and (p in self._quiet) is is_quiet
                    }
                    if members:
                        view = View(members, is_compact, is_timed, quiet=is_quiet)
                        out.append((view.order, self._full(view, tick, stamp)))
                        self._views.append(view)

    def _collect(self, tick: int, spawned: list[Record], updated: list[tuple[int, Any]]) -> None:
        """Compare what may have changed with the baselines; encode each change once."""
        for record in list(self._pending.values()):
            record.seen = tick
            changed = record.obj._reverb_changed
            if changed:
                changed.clear()  # compared whole below; its place on the dirty list is moot
            self._compare_all(record, spawned, updated)
        dirty = self._dirty
        if dirty:
            bulk = len(dirty) >= _BULK_MIN and _same is _SAME  # (not with a patched _same)
            if not (bulk and self._compare_bulk(dirty, updated)):
                # what the bulk way left (every object, or those whose marks it kept)
                self._compare(self._dirty_names(dirty, tick, spawned, updated), spawned, updated)
            dirty.clear()
            self._readded = False
        for record, names in list(self._watched.values()):
            if record.seen == tick:
                continue
            base = record.fields
            assert base is not None
            obj = record.obj
            moved = {n for n in names if not _equal(getattr(obj, n, MISSING), base.get(n))}
            if moved:
                record.seen = tick
                self._compare(((record, moved),), spawned, updated)

    def _dirty_names(
        self, dirty: list[Any], tick: int, spawned: list[Record], updated: list[tuple[int, Any]]
    ) -> Iterator[tuple[Record, set[str]]]:
        """The records of the objects on the dirty list, each with the names to compare
        (its watched containers included); one marked whole is compared whole on the way."""
        records = self._records
        watched = self._watched
        for obj in dirty:
            names = obj._reverb_changed
            if not names:  # removed (None), or already compared whole
                continue
            obj.__dict__["_reverb_changed"] = set()  # _set's effect (a plain attribute), cheaper
            record = records[obj.uid]
            record.seen = tick
            if watched:
                held = watched.get(record.uid)
                if held is not None:
                    names |= held[1]
            if "*" in names:
                self._compare_all(record, spawned, updated)
            else:
                yield record, names

    def _check_strictly(self) -> None:
        """Strict mode: raise the first ``EncodeError`` among what may have changed, before
        anything is recorded, so that the next tick finds the same changes."""
        candidates = {r.uid: r for r in self._pending.values()}
        candidates.update((r.uid, r) for r, _ in self._watched.values())
        records = self._records
        candidates.update((obj.uid, records[obj.uid]) for obj in self._dirty if obj._reverb_changed)
        for uid in sorted(candidates):
            record = candidates[uid]
            obj = record.obj
            for name in record.info.field_names(obj):
                value = getattr(obj, name, MISSING)
                if value is MISSING:
                    raise unset(record, name)
                try:
                    field_to_wire(value, record, name)
                except EncodeError as exc:
                    raise holding(exc, name, value) from exc
            owner = obj.belonging_membership
            if owner is not None and (type(owner) is not int or not -_MAX <= owner <= _MAX):
                raise bad_owner(record, owner)

    def _compare(
        self,
        batch: Iterable[tuple[Record, set[str]]],
        spawned: list[Record],
        updated: list[tuple[int, Any]],
    ) -> None:
        """The fast path: compare the named attributes of synced, encodable objects.

        Per attribute, the common case costs a dict read, an identity test against the
        baseline and, for a new value, a type test (§3.4 range checks for numbers only);
        containers, strings and everything else go through ``field_to_wire``."""
        patched = _same is not _SAME
        append = updated.append
        for record, names in batch:
            obj = record.obj
            info = record.info
            declared = info.fields
            base = record.fields
            assert base is not None
            odict = obj.__dict__
            exclude = info.exclude
            changed: dict[str, Any] = {}
            owner: Any = MISSING
            containers = False
            for name in names:
                if declared is None:
                    value = odict.get(name, MISSING)
                    if value is MISSING or name in _META or name in exclude:
                        if name == OWNER:
                            owner = self._owner_change(record)
                            if owner is _WITHHELD:
                                break
                        elif name in base:  # the attribute was deleted: clients keep theirs
                            del base[name]
                            self._rebased += 1
                            record.fragment = None
                            containers = True
                        continue
                elif name == OWNER:
                    owner = self._owner_change(record)
                    if owner is _WITHHELD:
                        break
                    continue
                elif name in declared:
                    value = getattr(obj, name, MISSING)
                    if value is MISSING:
                        self._withhold(record, unset(record, name), name, value)
                        break
                else:
                    continue
                old = base.get(name, MISSING)
                if value is old:  # the very object clients hold: a scalar, unchanged
                    continue
                kind = type(value)
                if kind is float:
                    if value - value != 0.0:  # nan or infinity
                        self._withhold(record, encode_error(record, name, value), name, value)
                        break
                elif kind is int:
                    if not -_MAX <= value <= _MAX:
                        self._withhold(record, encode_error(record, name, value), name, value)
                        break
                elif kind is not bool and value is not None:
                    try:
                        value = field_to_wire(value, record, name)
                    except EncodeError as exc:
                        self._withhold(record, exc, name, value)
                        break
                    kind = type(value)
                    if kind is list or kind is dict:
                        if not _same(old, value):
                            changed[name] = value
                            containers = True
                        continue
                if patched:
                    if _same(old, value):
                        continue
                elif kind is type(old) and old == value:  # _same for scalars, without a call
                    continue
                changed[name] = value
                if type(old) is list or type(old) is dict:
                    containers = True
            else:  # every name compared: nothing withheld
                if changed or owner is not MISSING:
                    base.update(changed)
                    self._rebased += 1
                    record.fragment = None
                    uid = record.uid
                    if owner is MISSING:
                        append((uid, {"uid": uid, "fields": changed}))
                    else:
                        record.owner = owner
                        append((uid, m.update_entry(uid, changed, owner)))
                if containers:
                    self._watch(record)

    def _compare_bulk(self, dirty: list[Any], updated: list[tuple[int, Any]]) -> bool:
        """The bulk way of ``_compare`` for the common tick: many objects of a type that were
        assigned the same names. Each such group (of at least ``_BULK_MIN``) whose names are
        plain fields holding finite floats, or ints within ±(2^53-1), now and in the baseline
        (§3.4), is checked and compared a column at a time (``BulkComparison``), in C loops
        (``map``); the objects whose every name changed become one ``Batch`` (its entries
        made only when a peer wants that form), those with some changed get their entry
        here. A group with anything else -- a NaN, a bool, a string, a container, a missing
        attribute, a watched object, an object twice on the list -- is left untouched for
        ``_compare`` (its objects keep their marks). True when no object is left."""
        sets: list[set[str] | None] = list(map(_changed_of, dirty))
        first = sets[0]
        kinds = list(map(type, dirty))
        if first and sets.count(first) == len(sets) and kinds.count(kinds[0]) == len(kinds):
            return self._bulk.group(self, type(dirty[0]), first, dirty, sets, updated)  # type: ignore[arg-type]
        groups: dict[tuple[type, frozenset[str]], tuple[list[Any], list[set[str]]]] = {}
        for obj, names in zip(dirty, sets, strict=True):
            if names:  # else removed (None), or compared whole already
                key = (type(obj), frozenset(names))
                group = groups.get(key)
                if group is None:
                    groups[key] = ([obj], [names])
                else:
                    group[0].append(obj)
                    group[1].append(names)
        done = True
        for (kind, marked), (objs, marks) in groups.items():
            if len(objs) < _BULK_MIN or not self._bulk.group(
                self, kind, marked, objs, marks, updated
            ):
                done = False
        return done

    def _owner_change(self, record: Record) -> Any:
        """The new owner of a synced object, ``MISSING`` when unchanged, or ``_WITHHELD``
        (after withholding the object) when it is not a membership id."""
        owner = record.obj.belonging_membership
        if owner is not None and (type(owner) is not int or not -_MAX <= owner <= _MAX):
            self._withhold(record, bad_owner(record, owner), OWNER, owner)
            return _WITHHELD
        if owner == record.owner and type(owner) is type(record.owner):
            return MISSING
        return owner

    def _compare_all(
        self, record: Record, spawned: list[Record], updated: list[tuple[int, Any]]
    ) -> None:
        """Check every field of a new, withheld or wholly marked object; spawn or update it."""
        obj = record.obj
        info = record.info
        wire: dict[str, Any] = {}
        for name in info.field_names(obj):
            value = getattr(obj, name, MISSING)
            if value is MISSING:
                self._withhold(record, unset(record, name), name, value)
                return
            try:
                wire[name] = field_to_wire(value, record, name)
            except EncodeError as exc:
                self._withhold(record, exc, name, value)
                return
        owner = obj.belonging_membership
        if owner is not None and (type(owner) is not int or not -_MAX <= owner <= _MAX):
            self._withhold(record, bad_owner(record, owner), OWNER, owner)
            return
        returning = record.error is not None
        if returning:
            logger.info("%s uid=%d can be sent again", info.name, record.uid)
            record.error = None
        self._pending.pop(record.uid, None)
        base = record.fields
        self._rebased += 1
        if base is None:  # its first sync: a spawn for everyone
            record.fields = wire
            record.owner = owner
            spawned.append(record)
            self._watch(record)
            return
        changed = {k: v for k, v in wire.items() if not _same(base.get(k, MISSING), v)}
        owner_changed = owner != record.owner or type(owner) is not type(record.owner)
        if changed or owner_changed or base.keys() != wire.keys():
            record.fields = wire
            record.owner = owner
            record.fragment = None
        if changed or owner_changed:
            entry = m.update_entry(record.uid, changed, owner if owner_changed else m.ABSENT)
            updated.append((record.uid, entry))
        if returning:  # views that never got it spawn it now
            spawned.append(record)
        self._watch(record)

    def _watch(self, record: Record) -> None:
        """Keep the set of fields holding containers, compared at every tick."""
        base = record.fields
        assert base is not None
        info = record.info
        names = {
            k for k, v in base.items() if (type(v) is list or type(v) is dict) and info.watches(k)
        }
        if names:
            self._watched[record.uid] = (record, names)
        else:
            self._watched.pop(record.uid, None)

    def _withhold(self, record: Record, error: EncodeError, name: str, value: Any) -> None:
        """Decision 7: no spawn and no update for this object until it can be encoded."""
        if record.error is None:
            error = holding(error, name, value)
            logger.error(
                "cannot sync %s: %s; withheld from clients until it can be encoded",
                type(record.obj).__qualname__,
                error,
            )
            self.sync_errors.append((record.obj, error))
            record.error = error
        self._pending[record.uid] = record

    def _spawn_fragment(self, record: Record) -> bytes:
        fragment = record.fragment
        if fragment is None:
            self._fragments_made += 1
            fragment = record.fragment = m.spawn_fragment(
                record.uid, record.info.name, record.owner, record.args, record.fields
            )
        return fragment

    def _stamp(self, now: float) -> float:
        """§13.3: the tick's server time (the clock's ``now``), strictly increasing."""
        stamp = float(now)
        last = self._last_time
        if last is not None and not stamp > last:
            stamp = math.nextafter(last, math.inf)
        self._last_time = stamp
        return stamp

    def _full(self, view: View, tick: int, stamp: float) -> m.SyncFrame:
        """§7.3: every object the peers may hold, for peers that hold nothing yet."""
        records = [r for r in self._records.values() if r.fields is not None and r.error is None]
        if self._interest is not None:  # §7.3, §16.2: what the peers may see
            visible = self._interest._visible.get(view.order[0], set())
            records = [r for r in records if r.uid in visible]
        view.held = {r.uid for r in records}
        view.tick = tick
        spawn = m.Entries(
            [r.uid for r in records], fragments=[fragment_for(self, view, r) for r in records]
        )
        schema = self._tables.snapshot() if view.compact else None
        time = stamp if view.time else None
        return view.sent(m.SyncFrame(tick, True, spawn, schema=schema, time=time), stamp)

    def _merge_views(self) -> None:
        """Views holding the same objects become one, so they share their frames again.

        With interest management (§16) they must also see the same objects, and no peer
        owning an object with owner-only fields shares its view; with per-peer queues
        (§16.6) no view is shared. Views are bucketed by what must be equal, so merging
        costs one pass over the views, not a comparison of every pair."""
        if self._scheduler is not None:
            return
        merged: list[View] = []
        interest = self._interest
        owners = set(self._private.values()) if interest is not None else set()
        visible = interest._visible if interest is not None else {}
        nothing: frozenset[int] = frozenset()
        # bucketed by a cheap key (flags, size and sum of what they hold); the sets
        # themselves are compared only within a bucket
        buckets: dict[Any, list[View]] = {}
        for view in self._views:
            if owners and not owners.isdisjoint(view.members):
                merged.append(view)
                continue
            held = view.held
            key = (
                view.tick,
                view.compact,
                view.time,
                view.reasons,
                view.quiet,
                len(held),
                sum(held),
            )
            found = buckets.get(key)
            if found is None:
                buckets[key] = [view]
                merged.append(view)
                continue
            sees = visible.get(view.order[0], nothing)
            for into in found:
                if into.held == held and visible.get(into.order[0], nothing) == sees:
                    into.members |= view.members
                    into._order = None
                    # §19.2: a follow-up due to either is due to both; the older heartbeat
                    into.loud = into.loud or view.loud
                    into.heard = min(into.heard, view.heard)
                    break
            else:
                found.append(view)
                merged.append(view)
        self._views = merged


def _plain_weights(cls: type) -> bool:
    """Whether ``cls``'s priority and rate are plain class attributes (or absent), the same
    for every instance without its own, rather than computed per object (a property)."""
    for name in ("__reverb_priority__", "__reverb_rate__"):
        value = inspect.getattr_static(cls, name, None)
        if hasattr(type(value), "__get__"):
            return False
    return True


_uid_of = attrgetter("uid")  # sort keys, in C
_changed_of = attrgetter("_reverb_changed")


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: same types all the way down (1, 1.0 and True differ on the wire)."""
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    return bool(a == b)


_SAME = _same  # the harness's "drop-updates" breakage replaces _same: it must then be called


def _equal(live: Any, wire: Any) -> bool:
    """Whether a live value still encodes as the wire value (tuples as lists), without a copy."""
    kind = type(live)
    if kind is list or kind is tuple:
        return (
            type(wire) is list
            and len(live) == len(wire)
            and all(_equal(x, y) for x, y in zip(live, wire, strict=True))
        )
    if kind is dict:
        return (
            type(wire) is dict
            and live.keys() == wire.keys()
            and all(_equal(v, wire[k]) for k, v in live.items())
        )
    return kind is type(wire) and bool(live == wire)
