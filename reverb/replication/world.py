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

import logging
import math
import re
from collections.abc import Collection, Iterable, Iterator
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any

from reverb.errors import EncodeError, InvalidState
from reverb.proto import messages as m
from reverb.replication.replica import Change, ClientWorld, Despawned, Spawned
from reverb.replication.rpc import current_caller, dispatch
from reverb.replication.types import META_ATTRIBUTES, TypeInfo, TypeRegistry

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

_MISSING = object()
_WITHHELD = object()
_set = object.__setattr__
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX = m.MAX_SAFE_INT
# Nesting levels inside a sync (§3.4): sync > spawn/update list > entry > args/fields > value.
ARGS_DEPTH = 4
FIELD_DEPTH = 5
OWNER = "belonging_membership"
_META = META_ATTRIBUTES  # never fields: "uid", and the owner (sent as "owner", §7.2)
COMPACT = "compact"  # the feature name of the compact encoding (§12.1)
TIME = "time"  # the feature name of server time and a sync every tick (§13)
_MAX_PLANS = 4096  # (type, field names) pairs whose index plan is remembered
Outgoing = list[tuple[tuple[int, ...], m.Message]]


class _Record:
    """What the world knows of one object besides the object itself."""

    __slots__ = ("args", "error", "fields", "fragment", "info", "obj", "owner", "seen", "uid")

    def __init__(self, obj: Any, uid: int, info: TypeInfo, args: bytes) -> None:
        self.obj = obj
        self.uid = uid
        self.info = info
        self.args = args  # the constructor arguments, encoded once
        self.fields: dict[str, Any] | None = None  # the baseline; None until first synced
        self.owner: int | None = None
        self.fragment: bytes | None = None  # the baseline's spawn entry, encoded when needed
        self.error: EncodeError | None = None  # set while withheld (issue 8, decision 7)
        self.seen = 0  # the last tick that compared it


class View:
    """Peers that hold the same objects as of the same tick: they receive the same frames.

    Today every synced peer shares one view, and a joiner has its own until its full snapshot
    makes it equal. Per-peer visibility (issue 11) gives a peer its own view whose ``held``
    set follows its interest: ``_delta`` already sends it spawns for what it lacks, updates
    for what it holds (re-encoding only that subset) and despawns. Per-peer rates give a view
    a ``tick`` behind the world's: that needs the tick each baseline field last changed at
    (not kept yet), so that its update holds every field changed since ``view.tick``."""

    __slots__ = ("_order", "compact", "held", "members", "tick", "time")

    def __init__(self, members: set[int], compact: bool = False, time: bool = False) -> None:
        self.members = members
        self.compact = compact  # these peers take update entries in the compact form (§12)
        self.time = time  # these peers take sync.time, snap and a sync every tick (§13)
        self.held: set[int] = set()  # the uids these peers hold
        self.tick = 0  # the last tick they were synced at (0: never, a full snapshot is due)
        self._order: tuple[int, ...] | None = None

    @property
    def order(self) -> tuple[int, ...]:
        if self._order is None:
            self._order = tuple(sorted(self.members))
        return self._order

    def drop(self, member: int) -> None:
        self.members.discard(member)
        self._order = None


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
        self._records: dict[int, _Record] = {}
        self._dirty: list[Any] = []  # objects assigned to since the last tick (by their hook)
        self._pending: dict[int, _Record] = {}  # new or withheld: compared whole at each tick
        self._watched: dict[int, tuple[_Record, set[str]]] = {}  # fields holding containers
        self._removed: list[int] = []  # synced uids removed since the last tick
        self._views: list[View] = []
        self._joining: set[int] = set()  # peers that get a full snapshot next tick
        self._compact: set[int] = set()  # peers granted the compact encoding (§12)
        self._timed: set[int] = set()  # peers granted the feature "time" (§13)
        self._snap: set[int] = set()  # uids teleported: their next update says so (§13.5)
        self._last_time: float | None = None  # §13.3: the server time of the last tick
        # §12.2: the field table of each type, name -> index, only ever appended to; and the
        # names appended during this tick (sent to every compact view), by type name.
        self._tables: dict[str, dict[str, int]] = {}
        self._added: dict[str, list[str]] = {}
        self._plans: dict[tuple[str, tuple[str, ...]], tuple[Any, ...] | None] = {}

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
        record = _Record(obj, uid, info, m.dumpb(wire_args))
        self._records[uid] = record
        self._pending[uid] = record
        _set(obj, "_reverb_dirty", self._dirty)
        _set(obj, "_reverb_changed", set())
        return uid

    def remove(self, uid: int) -> Any:
        obj = self.objects.pop(uid, None)
        if obj is None:
            raise InvalidState(f"no object with uid {uid}")
        record = self._records.pop(uid)
        self._pending.pop(uid, None)
        self._watched.pop(uid, None)
        self._snap.discard(uid)
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

    def peer_left(self, member: int) -> None:
        self._joining.discard(member)
        self._compact.discard(member)
        self._timed.discard(member)
        for view in self._views:
            if member in view.members:
                view.drop(member)
                if not view.members:
                    self._views.remove(view)
                return

    @property
    def peers(self) -> frozenset[int]:
        return frozenset(self._joining.union(*(v.members for v in self._views)))

    def observers(self, uid: int) -> frozenset[int]:
        """The peers that hold ``uid`` as of the last tick: it was in a sync they were sent
        and not despawned since (§14.6). A joiner awaiting its first sync holds nothing."""
        return frozenset().union(*(v.members for v in self._views if uid in v.held))

    # -- rpc ---------------------------------------------------------------------------------

    def call(self, member: int, rpc: m.Rpc) -> m.Message:
        """Run an ``rpc`` for ``member`` after the checks of §8.2; return the reply."""
        return dispatch(self.objects, self.types, member, rpc)

    # -- sync --------------------------------------------------------------------------------

    def tick(self, now: float) -> Outgoing:
        """Advance one tick: a delta for synced views, a full snapshot for joiners (§7.3)."""
        self.tick_count += 1
        tick = self.tick_count
        self.sync_errors = []
        if self.strict:
            self._check_strictly()
        spawned: list[_Record] = []  # encodable now, and some views may lack them
        updated: list[tuple[int, Any]] = []
        if self._pending or self._dirty or self._watched:
            self._collect(tick, spawned, updated)
        removed, self._removed = self._removed, []
        out: Outgoing = []
        stamp = self._stamp(now)
        if spawned or updated or removed:
            spawned.sort(key=_uid_of)
            updated.sort(key=_first)
            shared = _Shared()
            if updated and any(view.compact for view in self._views):
                self._encode_compact(updated, shared)
            if self._snap:
                shared.snapped = self._snap.intersection([uid for uid, _ in updated])
                self._snap -= shared.snapped
                self._snap.difference_update([r.uid for r in spawned])  # §13.5: no marker
            for view in self._views:
                frame = self._delta(view, tick, spawned, updated, removed, shared, stamp)
                if frame is not None:
                    out.append((view.order, frame))
        elif self._timed:  # §13.7: "time" peers get a sync every tick, empty or not
            timed = sorted(m for view in self._views if view.time for m in view.members)
            if timed:
                out.append((tuple(timed), m.SyncFrame(tick, False, time=stamp)))
        for view in self._views:
            view.tick = tick
        if self._joining:
            for is_compact in (False, True):
                for is_timed in (False, True):
                    members = {
                        p
                        for p in self._joining
                        if (p in self._compact) is is_compact and (p in self._timed) is is_timed
                    }
                    if members:
                        view = View(members, is_compact, is_timed)
                        out.append((view.order, self._full(view, tick, stamp)))
                        self._views.append(view)
            self._joining = set()
        if len(self._views) > 1:
            self._merge_views()
        return out

    def _collect(self, tick: int, spawned: list[_Record], updated: list[tuple[int, Any]]) -> None:
        """Compare what may have changed with the baselines; encode each change once."""
        for record in list(self._pending.values()):
            record.seen = tick
            changed = record.obj._reverb_changed
            if changed:
                changed.clear()  # compared whole below; its place on the dirty list is moot
            self._compare_all(record, spawned, updated)
        dirty = self._dirty
        if dirty:
            self._compare(self._dirty_names(dirty, tick, spawned, updated), spawned, updated)
            dirty.clear()
        for record, names in list(self._watched.values()):
            if record.seen == tick:
                continue
            base = record.fields
            assert base is not None
            obj = record.obj
            moved = {n for n in names if not _equal(getattr(obj, n, _MISSING), base.get(n))}
            if moved:
                record.seen = tick
                self._compare(((record, moved),), spawned, updated)

    def _dirty_names(
        self, dirty: list[Any], tick: int, spawned: list[_Record], updated: list[tuple[int, Any]]
    ) -> Iterator[tuple[_Record, set[str]]]:
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
                value = getattr(obj, name, _MISSING)
                if value is _MISSING:
                    raise _unset(record, name)
                try:
                    _to_wire(value, record, name)
                except EncodeError as exc:
                    raise _holding(exc, name, value) from exc
            owner = obj.belonging_membership
            if owner is not None and (type(owner) is not int or not -_MAX <= owner <= _MAX):
                raise _bad_owner(record, owner)

    def _compare(
        self,
        batch: Iterable[tuple[_Record, set[str]]],
        spawned: list[_Record],
        updated: list[tuple[int, Any]],
    ) -> None:
        """The fast path: compare the named attributes of synced, encodable objects.

        Per attribute, the common case costs a dict read, an identity test against the
        baseline and, for a new value, a type test (§3.4 range checks for numbers only);
        containers, strings and everything else go through ``_to_wire``."""
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
            owner: Any = _MISSING
            containers = False
            for name in names:
                if declared is None:
                    value = odict.get(name, _MISSING)
                    if value is _MISSING or name in _META or name in exclude:
                        if name == OWNER:
                            owner = self._owner_change(record)
                            if owner is _WITHHELD:
                                break
                        elif name in base:  # the attribute was deleted: clients keep theirs
                            del base[name]
                            record.fragment = None
                            containers = True
                        continue
                elif name == OWNER:
                    owner = self._owner_change(record)
                    if owner is _WITHHELD:
                        break
                    continue
                elif name in declared:
                    value = getattr(obj, name, _MISSING)
                    if value is _MISSING:
                        self._withhold(record, _unset(record, name), name, value)
                        break
                else:
                    continue
                old = base.get(name, _MISSING)
                if value is old:  # the very object clients hold: a scalar, unchanged
                    continue
                kind = type(value)
                if kind is float:
                    if value - value != 0.0:  # nan or infinity
                        self._withhold(record, _encode_error(record, name, value), name, value)
                        break
                elif kind is int:
                    if not -_MAX <= value <= _MAX:
                        self._withhold(record, _encode_error(record, name, value), name, value)
                        break
                elif kind is not bool and value is not None:
                    try:
                        value = _to_wire(value, record, name)
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
                if changed or owner is not _MISSING:
                    base.update(changed)
                    record.fragment = None
                    uid = record.uid
                    if owner is _MISSING:
                        append((uid, {"uid": uid, "fields": changed}))
                    else:
                        record.owner = owner
                        append((uid, m.update_entry(uid, changed, owner)))
                if containers:
                    self._watch(record)

    def _owner_change(self, record: _Record) -> Any:
        """The new owner of a synced object, ``_MISSING`` when unchanged, or ``_WITHHELD``
        (after withholding the object) when it is not a membership id."""
        owner = record.obj.belonging_membership
        if owner is not None and (type(owner) is not int or not -_MAX <= owner <= _MAX):
            self._withhold(record, _bad_owner(record, owner), OWNER, owner)
            return _WITHHELD
        if owner == record.owner and type(owner) is type(record.owner):
            return _MISSING
        return owner

    def _compare_all(
        self, record: _Record, spawned: list[_Record], updated: list[tuple[int, Any]]
    ) -> None:
        """Check every field of a new, withheld or wholly marked object; spawn or update it."""
        obj = record.obj
        info = record.info
        wire: dict[str, Any] = {}
        for name in info.field_names(obj):
            value = getattr(obj, name, _MISSING)
            if value is _MISSING:
                self._withhold(record, _unset(record, name), name, value)
                return
            try:
                wire[name] = _to_wire(value, record, name)
            except EncodeError as exc:
                self._withhold(record, exc, name, value)
                return
        owner = obj.belonging_membership
        if owner is not None and (type(owner) is not int or not -_MAX <= owner <= _MAX):
            self._withhold(record, _bad_owner(record, owner), OWNER, owner)
            return
        returning = record.error is not None
        if returning:
            logger.info("%s uid=%d can be sent again", info.name, record.uid)
            record.error = None
        self._pending.pop(record.uid, None)
        base = record.fields
        if base is None:  # its first sync: a spawn for everyone
            record.fields = wire
            record.owner = owner
            spawned.append(record)
            self._watch(record)
            return
        changed = {k: v for k, v in wire.items() if not _same(base.get(k, _MISSING), v)}
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

    def _watch(self, record: _Record) -> None:
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

    def _withhold(self, record: _Record, error: EncodeError, name: str, value: Any) -> None:
        """Decision 7: no spawn and no update for this object until it can be encoded."""
        if record.error is None:
            error = _holding(error, name, value)
            logger.error(
                "cannot sync %s: %s; withheld from clients until it can be encoded",
                type(record.obj).__qualname__,
                error,
            )
            self.sync_errors.append((record.obj, error))
            record.error = error
        self._pending[record.uid] = record

    def _spawn_fragment(self, record: _Record) -> bytes:
        fragment = record.fragment
        if fragment is None:
            fragment = record.fragment = m.spawn_fragment(
                record.uid, record.info.name, record.owner, record.args, record.fields
            )
        return fragment

    # -- the compact encoding (§12) -----------------------------------------------------------

    def _encode_compact(self, updated: list[tuple[int, Any]], shared: _Shared) -> None:
        """This tick's update entries in the compact form (§12.4), and the table's additions:
        ``[uid, index, value, ...]``; the plain form when the owner changes or the type's
        table is full."""
        self._added = {}
        records = self._records
        plans = self._plans
        compact: list[Any] = []
        append = compact.append
        for uid, entry in updated:
            if "owner" in entry:
                append(entry)
                continue
            fields = entry["fields"]
            key = (records[uid].info.name, tuple(fields))
            plan: Any = plans.get(key, _MISSING)
            if plan is _MISSING:
                plan = self._plan(key)
            if plan is None:
                append(entry)
                continue
            # the plan is (index, name, index, name, ...)
            if len(plan) == 6:
                i0, n0, i1, n1, i2, n2 = plan
                append([uid, i0, fields[n0], i1, fields[n1], i2, fields[n2]])
            elif len(plan) == 2:
                append([uid, plan[0], fields[plan[1]]])
            else:
                row = [uid]
                for i in range(0, len(plan), 2):
                    row.append(plan[i])
                    row.append(fields[plan[i + 1]])
                append(row)
        shared.compact = compact
        shared.compact_entries = m.Entries([uid for uid, _ in updated], values=compact)
        if self._added:
            shared.schema = _schema_bytes(
                {
                    name: (len(self._tables[name]) - len(added), added)
                    for name, added in self._added.items()
                }
            )

    def _plan(self, key: tuple[str, tuple[str, ...]]) -> tuple[Any, ...] | None:
        """The field indexes of an update of these names, with the names, in index order,
        flat: ``(index, name, index, name, ...)``; None when the table is full."""
        type_name, names = key
        table = self._tables.setdefault(type_name, {})
        for name in names:
            if name not in table:
                if len(table) >= m.MAX_SCHEMA_FIELDS:
                    plan = None
                    break
                table[name] = len(table)
                self._added.setdefault(type_name, []).append(name)
        else:
            plan = tuple(chain.from_iterable(sorted((table[name], name) for name in names)))
        if len(self._plans) >= _MAX_PLANS:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def _delta(
        self,
        view: View,
        tick: int,
        spawned: list[_Record],
        updated: list[tuple[int, Any]],
        removed: list[int],
        shared: _Shared,
        stamp: float,
    ) -> m.SyncFrame | None:
        held = view.held
        if updated is not shared.source:  # the entries of this tick, for views holding them all
            shared.source = updated
            shared.uids = [uid for uid, _ in updated]
            shared.entries = m.Entries(shared.uids, values=[entry for _, entry in updated])
        schema = shared.schema if view.compact else None
        snaps = view.time and bool(shared.snapped)  # §13.5: only "time" peers see snap
        if held.issuperset(shared.uids):
            if snaps:
                update = shared.snap_entries(updated, view.compact)
            else:
                update = shared.compact_entries if view.compact else shared.entries
        else:
            if snaps:
                values = shared.snap_values(updated, view.compact)
            else:
                values = shared.compact if view.compact else [entry for _, entry in updated]
            mine = [(uid, v) for (uid, _), v in zip(updated, values, strict=True) if uid in held]
            update = m.Entries([uid for uid, _ in mine], values=[v for _, v in mine])
        spawn = m.Entries()
        for record in spawned:
            if record.uid not in held:
                spawn.uids.append(record.uid)
                spawn.fragments().append(self._spawn_fragment(record))
        held.update(spawn.uids)
        despawn = [uid for uid in removed if uid in held]
        held.difference_update(despawn)
        time = stamp if view.time else None
        if not (spawn or update or despawn or schema):
            return m.SyncFrame(tick, False, time=time) if view.time else None  # §13.7
        return m.SyncFrame(tick, False, spawn, update, despawn, schema=schema, time=time)

    def _stamp(self, now: float) -> float:
        """§13.3: the tick's server time (the clock's ``now``), strictly increasing."""
        stamp = float(now)
        last = self._last_time
        if last is not None and not stamp > last:
            stamp = math.nextafter(last, math.inf)
        self._last_time = stamp
        return stamp

    def _full(self, view: View, tick: int, stamp: float | None = None) -> m.SyncFrame:
        """§7.3: every object the peers may hold, for peers that hold nothing yet."""
        records = [r for r in self._records.values() if r.fields is not None and r.error is None]
        view.held = {r.uid for r in records}
        view.tick = tick
        spawn = m.Entries(
            [r.uid for r in records], fragments=[self._spawn_fragment(r) for r in records]
        )
        schema = None
        if view.compact and self._tables:
            schema = _schema_bytes({name: (0, list(t)) for name, t in self._tables.items() if t})
        time = stamp if view.time else None
        return m.SyncFrame(tick, True, spawn, schema=schema, time=time)

    def _merge_views(self) -> None:
        """Views holding the same objects become one, so they share their frames again."""
        merged: list[View] = []
        for view in self._views:
            for into in merged:
                if (
                    into.tick == view.tick
                    and into.compact == view.compact
                    and into.time == view.time
                    and into.held == view.held
                ):
                    into.members |= view.members
                    into._order = None
                    break
            else:
                merged.append(view)
        self._views = merged


class _Shared:
    """This tick's update entries, encoded once for every view that holds all of them."""

    def __init__(self) -> None:
        self.source: list[tuple[int, Any]] | None = None
        self.uids: list[int] = []
        self.entries = m.Entries()
        self.compact: list[Any] = []  # §12.4, in the order of the plain entries
        self.compact_entries = m.Entries()
        self.schema: bytes | None = None  # §12.3: the tables' additions of this tick
        self.snapped: set[int] = set()  # §13.5: uids whose update says "snap": true
        self._snap: dict[bool, tuple[list[Any], m.Entries]] = {}

    def snap_values(self, updated: list[tuple[int, Any]], compact: bool) -> list[Any]:
        """The update entries for "time" peers: teleported objects' in the object form with
        ``"snap": true`` (also on compact connections, §13.5)."""
        return self._snapping(updated, compact)[0]

    def snap_entries(self, updated: list[tuple[int, Any]], compact: bool) -> m.Entries:
        return self._snapping(updated, compact)[1]

    def _snapping(
        self, updated: list[tuple[int, Any]], compact: bool
    ) -> tuple[list[Any], m.Entries]:
        done = self._snap.get(compact)
        if done is None:
            base = self.compact if compact else [entry for _, entry in updated]
            snapped = self.snapped
            values = [
                {**entry, "snap": True} if uid in snapped else value
                for (uid, entry), value in zip(updated, base, strict=True)
            ]
            done = self._snap[compact] = (values, m.Entries(self.uids, values=values))
        return done


def _schema_bytes(tables: dict[str, tuple[int, list[str]]]) -> bytes:
    return m.dumpb({name: {"at": at, "add": add} for name, (at, add) in tables.items()})


_uid_of = attrgetter("uid")  # sort keys, in C
_first = itemgetter(0)


def _to_wire(value: Any, record: _Record, name: str) -> Any:
    """``m.to_wire`` for a field, with the common scalars checked inline."""
    kind = type(value)
    if kind is float:
        if value - value == 0.0:
            return value
    elif kind is int:
        if -_MAX <= value <= _MAX:
            return value
    elif kind is str:
        if value.isascii() or not _SURROGATE.search(value):
            return value
    elif kind is bool or value is None:
        return value
    return m.to_wire(value, f"{record.info.name} uid={record.uid} attribute {name!r}", FIELD_DEPTH)


def _encode_error(record: _Record, name: str, value: Any) -> EncodeError:
    try:
        _to_wire(value, record, name)
    except EncodeError as exc:
        return exc
    raise AssertionError("not an encode error")  # pragma: no cover


def _holding(error: EncodeError, name: str, value: Any) -> EncodeError:
    """The error, saying what the attribute holds (the log and ``sync_error`` show it)."""
    if value is _MISSING or name == OWNER:
        return error
    return EncodeError(f"{error} (the attribute holds a {type(value).__name__})")


def _unset(record: _Record, name: str) -> EncodeError:
    return EncodeError(f"{record.info.name} uid={record.uid}: declared field {name!r} is not set")


def _bad_owner(record: _Record, owner: Any) -> EncodeError:
    return EncodeError(
        f"{record.info.name} uid={record.uid} attribute {OWNER!r}: "
        f"a {type(owner).__name__} is not a membership id (an int or None)"
    )


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
