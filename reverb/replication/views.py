"""What each view of peers is sent at a tick (§7.3, §16, §16.6): the ``View`` (peers that hold
the same objects as of the same tick), a view's delta, and the tick with interest management.

A view's sync is assembled from the tick's shared entries (``shared.py``) and the objects'
spawn fragments: ``view_sync`` for a view that takes the tick's changes as they are (or the part
it holds), ``tick_filtered`` for the tick with interest management, where views part, get
what entered and left them, and -- with rates or budgets -- go through their peer's queue
(``_scheduled``). These functions read and update the world's state; ``ServerWorld.tick``
calls them.
"""

from __future__ import annotations

import math
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from reverb.proto import messages as m
from reverb.replication.interest import Delta
from reverb.replication.records import OWNER
from reverb.replication.schedule import SPAWN
from reverb.replication.shared import Batch, Mark, Shared, Sizes

if TYPE_CHECKING:
    from reverb.replication.records import Record
    from reverb.replication.world import ServerWorld

__all__ = ["Outgoing", "View", "fragment_for", "tick_filtered", "view_sync"]

_MISSING = object()
# Marks a client's queue holds besides field names (never identifiers, so never fields):
_OWNER_MARK = "!owner"  # the owner changed: the update carries "owner"
_SNAP_MARK = "!snap"  # the object teleported: the update carries "snap": true (§13.5)
_SPAWN_MARK = frozenset((SPAWN,))
Outgoing = list[tuple[tuple[int, ...], m.Message]]


class View:
    """Peers that hold the same objects as of the same tick: they receive the same frames.

    Without interest management every synced peer shares one view, and a joiner has its own
    until its full snapshot makes it equal. With it (§16), a peer whose visible set changes
    (or that owns an object with owner-only fields) parts from its view; ``view_sync`` sends it
    spawns for what entered, updates for what it holds (re-encoding only that subset) and
    despawns for what left or was destroyed; views whose peers see the same objects merge
    again. All peers of a view see the same objects. With rates or budgets (§16.6) each peer
    has its own view and a queue of the field names changed since it was last sent each
    object: its update entries carry the current baseline values of those names."""

    __slots__ = (
        "_order",
        "compact",
        "heard",
        "held",
        "loud",
        "members",
        "quiet",
        "reasons",
        "tick",
        "time",
    )

    def __init__(
        self,
        members: set[int],
        compact: bool = False,
        time: bool = False,
        reasons: bool = False,
        quiet: bool = False,
    ) -> None:
        self.members = members
        self.compact = compact  # these peers take update entries in the compact form (§12)
        self.time = time  # these peers take sync.time, snap and a sync every tick (§13, §19)
        self.reasons = reasons  # these peers take sync.left (the feature "interest", §16)
        # §19: "time" peers granted "quiet": an empty sync only after a non-empty one or when
        # their heartbeat is due; ``loud``: the last sync sent to them was not empty;
        # ``heard``: the server time of the last sync sent to them
        self.quiet = quiet and time
        self.loud = False
        self.heard = -math.inf
        self.held: set[int] = set()  # the uids these peers hold
        self.tick = 0  # the last tick they were synced at (0: never, a full snapshot is due)
        self._order: tuple[int, ...] | None = None

    def sent(self, frame: m.SyncFrame, stamp: float) -> m.SyncFrame:
        """Note that ``frame``, a non-empty sync, goes to these peers (§19.2)."""
        self.loud = True
        self.heard = stamp
        return frame

    def idle(self, tick: int, stamp: float, interval: float) -> m.SyncFrame | None:
        """The sync of a tick with nothing for these peers: none without "time" (§7.3), an
        empty one every tick with "time" (§13.7), with "quiet" only right after a non-empty
        sync or when the heartbeat is due (§19.2)."""
        if not self.time:
            return None
        if self.quiet:
            if not self.loud and stamp - self.heard < interval:
                return None
            self.loud = False
            self.heard = stamp
        return m.SyncFrame(tick, False, time=stamp)

    @property
    def order(self) -> tuple[int, ...]:
        if self._order is None:
            self._order = tuple(sorted(self.members))
        return self._order

    def drop(self, member: int) -> None:
        self.members.discard(member)
        self._order = None


def view_sync(
    world: ServerWorld,
    view: View,
    tick: int,
    spawned: list[Record],
    removed: list[int],
    shared: Shared,
    stamp: float,
    left: list[int] | None = None,
    mine: set[int] | None = None,
) -> m.SyncFrame | None:
    """One view's sync: spawns, updates and despawns of what its peers hold. ``mine``:
    the updated uids it holds, when already known (``tick_filtered``)."""
    held = view.held
    if left:  # §16.4: what left the view gets no update in the tick it leaves
        held.difference_update(left)
    schema = shared.schema if view.compact else None
    snaps = view.time and bool(shared.snapped)  # §13.5: only "time" peers see snap
    columns = None
    if mine is None and shared.takes_all(held):
        if snaps:
            update = shared.snap_entries(view.compact)
        else:
            update = shared.compact_entries if view.compact else shared.entries
            if view.compact and len(update) >= m.MIN_BLOCK:
                columns = shared.columns  # §20: for the view's "columns" peers
    else:
        if mine is None:
            mine = held & shared.changed()
        update = _picked(world, view, mine, shared, snaps)
    spawn = None
    if spawned:
        spawn = m.Entries()
        for record in spawned:
            if record.uid not in held:
                spawn.uids.append(record.uid)
                spawn.fragments().append(fragment_for(world, view, record))
        held.update(spawn.uids)
    despawn = [uid for uid in removed if uid in held] if removed else []
    if despawn:
        held.difference_update(despawn)
    if left:
        despawn += left
    time = stamp if view.time else None
    if not (spawn or update or despawn or schema):
        return view.idle(tick, stamp, world.quiet_interval)  # §7.3, §13.7, §19.2
    reasons = left if view.reasons and left else None  # §16.3
    frame = m.SyncFrame(tick, False, spawn, update, despawn, schema=schema, time=time, left=reasons)
    if columns is not None:
        frame.offer_columns(columns)
    return view.sent(frame, stamp)


def _picked(
    world: ServerWorld,
    view: View,
    mine: set[int],
    shared: Shared,
    snaps: bool,
) -> m.Entries:
    """The update entries of ``mine`` (this tick's updated uids the view holds), in uid
    order. Each entry is encoded once per tick for every view that holds it, and a view's
    list is gathered from those fragments without a Python loop over its objects (§16: a
    thousand small views of a busy world). Entries that differ per view (owner-only
    fields, §16.2; "snap" for "time" peers, §13.5) are made for this view alone."""
    if not mine:
        return m.Entries()
    order = sorted(mine)
    compact = view.compact
    values = shared.by_uid(compact)
    encoded = shared.encoded(compact)
    missing = mine.difference(encoded)
    special: set[int] | None = None
    if shared.private:
        special = mine & shared.private
    if snaps:
        snapped = mine & shared.snapped
        special = snapped if special is None else special | snapped
    if special:
        missing -= special
    if missing:
        dumpb = m.dumpb
        for uid in missing:
            encoded[uid] = dumpb(values[uid])
    if not special:
        return m.Entries(order, fragments=list(map(encoded.__getitem__, order)))
    plain = shared.by_uid(False)
    pairs = [
        (uid, {**plain[uid], "snap": True} if snaps and uid in shared.snapped else values[uid])
        for uid in sorted(special)
    ]
    if shared.private:
        pairs = _audience(world, view, pairs, shared, snaps)
    own = {uid: m.dumpb(value) for uid, value in pairs}
    order = [uid for uid in order if uid not in special or uid in own]
    return m.Entries(order, fragments=[own.get(uid) or encoded[uid] for uid in order])


def fragment_for(world: ServerWorld, view: View, record: Record) -> bytes:
    """The spawn entry for ``view``'s peers: without owner-only fields unless they own it."""
    owner_only = record.info.owner_only
    if not owner_only or record.owner in view.members:
        return world._spawn_fragment(record)
    full = world._spawn_fragment(record)
    cached = world._others.get(record.uid)
    if cached is not None and cached[0] is full:
        return cached[1]
    assert record.fields is not None
    fields = {k: v for k, v in record.fields.items() if k not in owner_only}
    others = m.spawn_fragment(record.uid, record.info.name, record.owner, record.args, fields)
    world._others[record.uid] = (full, others)
    return others


def _audience(
    world: ServerWorld, view: View, mine: list[tuple[int, Any]], shared: Shared, snaps: bool
) -> list[tuple[int, Any]]:
    """Update entries of objects with owner-only fields, per audience (§16.2): the owner
    gets them (every one of them when it just became the owner), the others never."""
    out = []
    records = world._records
    for uid, value in mine:
        if uid not in shared.private:
            out.append((uid, value))
            continue
        record = records[uid]
        entry = shared.plain[uid]
        snap = snaps and uid in shared.snapped
        owner_only = record.info.owner_only
        if record.owner in view.members:
            if "owner" in entry and record.fields is not None:  # a new owner: all of them
                fields = dict(entry["fields"])
                fields.update((k, v) for k, v in record.fields.items() if k in owner_only)
                value = m.update_entry(uid, fields, entry["owner"], True if snap else m.ABSENT)
            out.append((uid, value))
            continue
        fields = {k: v for k, v in entry["fields"].items() if k not in owner_only}
        if not fields and "owner" not in entry:
            continue
        plain = m.update_entry(uid, fields, entry.get("owner", m.ABSENT))
        if snap:
            plain["snap"] = True
            out.append((uid, plain))
        elif view.compact:
            out.append((uid, world._tables.entry(record.info.name, plain)))
        else:
            out.append((uid, plain))
    return out


def tick_filtered(
    world: ServerWorld,
    tick: int,
    spawned: list[Record],
    updated: list[tuple[int, Any]],
    batches: list[Batch],
    removed: list[int],
    stamp: float,
    out: Outgoing,
) -> None:
    """A tick with interest management (§16): each view gets what its peers see.

    ``updated``: the entries made one by one; ``batches``: those made in bulk (every
    object of a batch changed the same names, and never its owner)."""
    interest = world._interest
    assert interest is not None
    spawned.sort(key=_uid_of)
    records = world._records
    # What the policy reads changed: re-decide those objects (§16.2).
    reads = interest.policy.reads
    grid_fields = frozenset(name for grid in interest._grids for name in grid.fields)
    other_reads = reads - grid_fields
    moved: list[int] = []
    private = world._private
    for record in spawned:
        if record.info.owner_only and record.owner is not None:
            private[record.uid] = record.owner
    for uid in [uid for uid, entry in updated if "owner" in entry]:
        record = records[uid]
        if record.info.owner_only:
            if record.owner is None:
                private.pop(uid, None)
            else:
                private[uid] = record.owner
        if OWNER in reads:
            interest.refresh(uid)
    if grid_fields and reads:
        moved = [uid for uid, entry in updated if not grid_fields.isdisjoint(entry["fields"])]
        for batch in batches:  # the same names for the whole batch
            if not grid_fields.isdisjoint(batch.names):
                moved += batch.uids
    if other_reads:
        for uid in [uid for uid, entry in updated if not other_reads.isdisjoint(entry["fields"])]:
            interest.refresh(uid)
        for batch in batches:
            if not other_reads.isdisjoint(batch.names):
                for uid in batch.uids:
                    interest.refresh(uid)
    deltas = interest.update(moved)
    owners = set(private.values())
    # Peers whose visible set changed, and owners of objects with owner-only fields, part
    # from the peers they shared a view with (§16.2).
    scheduler = world._scheduler
    views: list[View] = []
    for view in world._views:
        if len(view.members) == 1:
            views.append(view)
        elif scheduler is not None:  # one queue per peer, one view per peer (§16.6)
            views.extend(world._split(view, lambda p: p))
        else:
            views.extend(world._split(view, lambda p: _part_key(p, deltas, owners)))
    world._views = views
    # the batches stay batches: their entries are made only in the forms views want
    shared = Shared(updated, batches, world._tables.plans)
    if shared.uids and any(view.compact for view in views):
        world._tables.encode(shared, world._records)
    if world._snap:
        shared.snapped = world._snap.intersection(shared.uids)
        world._snap -= shared.snapped
        world._snap.difference_update([r.uid for r in spawned])  # §13.5: no marker
    if world._owner_only:
        shared.private = world._owner_only & shared.changed()
        if shared.private:
            shared.plain = shared.by_uid(False)
    if scheduler is None and shared.uids and interest._grids:
        # Views in a grid take parts of the tick's entries, encoded from these maps: made
        # now, before any view's work, they are made while little else is alive (the
        # collector's young passes, which they trigger, then scan less).
        for compact in {view.compact for view in views}:
            shared.by_uid(compact)
    cache: dict[Any, bytes | None] = {}  # update entries, shared by peers within the tick
    if scheduler is not None:
        world._weights = {}
        world._class_weights = {}
    # What enters each view, what leaves it; and (without queues) which of this tick's
    # update entries each view that does not hold them all takes: those are encoded
    # together, once each, before any view's frame is assembled.
    spawned_set = {r.uid for r in spawned}
    spawned_of = {r.uid: r for r in spawned}
    plans: list[tuple[View, list[Record], list[int], set[int] | None]] = []
    needed: dict[bool, set[int]] = {}
    visible_of = interest._visible
    nothing: set[int] = set()
    changed = shared.changed() if shared.uids else nothing
    n_updated = len(changed)
    for view in views:
        member = view.order[0]
        delta = deltas.get(member)
        if spawned_set:
            fresh = sorted(visible_of.get(member, nothing) & spawned_set)
            entering = list(map(spawned_of.__getitem__, fresh))
        else:
            entering = []
        left: list[int] = []
        if delta is not None:
            if delta.entered:
                known = {r.uid for r in entering}
                for uid in delta.entered:
                    found = records.get(uid)
                    if (
                        found is not None
                        and uid not in known
                        and found.fields is not None
                        and found.error is None
                    ):
                        entering.append(found)
                entering.sort(key=_uid_of)
            if delta.left:
                left = sorted(uid for uid in delta.left if uid in view.held)
                queue = scheduler.queues.get(member) if scheduler is not None else None
                if queue is not None and len(left) < len(delta.left):
                    for uid in delta.left:  # it left before its spawn went: never sent
                        queue.forget(uid)
        mine: set[int] | None = None
        if scheduler is None and shared.uids:
            held = view.held
            if left:  # §16.4: what left the view gets no update in the tick it leaves
                held.difference_update(left)
            if len(held) < n_updated or not shared.takes_all(held):
                mine = held & changed
                if mine:
                    into = needed.get(view.compact)
                    if into is None:
                        needed[view.compact] = set(mine)
                    else:
                        into |= mine
        plans.append((view, entering, left, mine))
    for compact, uids in needed.items():
        shared.encode(uids - shared.private, compact)
    # The common case of a busy world seen in parts (§16): a view with nothing entering
    # or leaving, in a tick with no removal, no owner-only entry, no schema addition and
    # no snap: its frame is its updated uids' fragments, every one encoded just above.
    simple = not removed and not shared.private
    plain_ok = simple
    compact_ok = simple and shared.schema is None
    snapped = bool(shared.snapped)
    encoded = {compact: shared.encoded(compact) for compact in needed}
    interval = world.quiet_interval
    for view, entering, left, mine in plans:
        if scheduler is not None:
            frame = _scheduled(
                world, view, tick, entering, shared.updated, removed, shared, stamp, left, cache
            )
        elif (
            mine
            and not entering
            and not left
            and (compact_ok if view.compact else plain_ok)
            and not (snapped and view.time)
        ):
            order = sorted(mine)
            update = m.Entries(order, fragments=list(map(encoded[view.compact].__getitem__, order)))
            frame = m.SyncFrame(tick, False, None, update, time=stamp if view.time else None)
            view.sent(frame, stamp)
        elif (
            not mine
            and (mine is not None or not shared.uids)
            and not entering
            and not left
            and not (view.compact and shared.schema is not None)
            and (not removed or view.held.isdisjoint(removed))
        ):  # nothing for this view this tick (§7.3, §13.7, §19.2)
            frame = view.idle(tick, stamp, interval)
        else:
            frame = view_sync(world, view, tick, entering, removed, shared, stamp, left, mine)
        if frame is not None:
            out.append((view.order, frame))
    shared.release()


def _scheduled(
    world: ServerWorld,
    view: View,
    tick: int,
    entering: list[Record],
    updated: list[tuple[int, Any]],
    removed: list[int],
    shared: Shared,
    now: float,
    left: list[int],
    cache: dict[Any, bytes | None],
) -> m.SyncFrame | None:
    """One peer's sync through its queue (§16.6): despawns now; the spawns of what enters
    its view and the changes of what it holds marked and coalesced, then the due entries
    that fit its budget, highest accumulated priority first; each entry whole (a spawn:
    the current state; an update: every dirty field) or not at all."""
    assert world._scheduler is not None
    member = view.order[0]
    queues = world._scheduler.queues
    queue = queues.get(member) or world._scheduler.add_client(member, now)
    held = view.held
    forget = queue.forget
    if left:  # §16.4: what left gets no update, and nothing of it waits any more
        held.difference_update(left)
        for uid in left:
            forget(uid)
    despawn = [uid for uid in removed if uid in held]
    if despawn:
        held.difference_update(despawn)
    for uid in removed:  # held, or waiting for its spawn: nothing more to send
        forget(uid)
    priority_and_rate = world._weight
    if updated and held:
        index = shared.index()
        if len(held) * 4 < len(updated):
            mine = [i for uid in held if (i := index.get(uid)) is not None]
        else:
            mine = [index[uid] for uid, _ in updated if uid in held]
        snapped = shared.snapped if view.time else ()
        made = shared.marks[view.time]
        marks: list[Mark] = []
        for i in mine:
            uid, entry = updated[i]
            found = made.get(uid)
            if found is None:
                names = set(entry["fields"])
                if "owner" in entry:
                    names.add(_OWNER_MARK)
                if snapped and uid in snapped:
                    names.add(_SNAP_MARK)
                found = made[uid] = (uid, frozenset(names), *priority_and_rate(uid))
            marks.append(found)
        queue.mark_many(marks, now)
    if entering:  # §16.6: a spawn waits its turn too, by its priority
        queue.mark_many(
            [
                (uid, _SPAWN_MARK, priority_and_rate(uid)[0], None)
                for record in entering
                if (uid := record.uid) not in held
            ],
            now,
        )
    spawn = m.Entries()
    update = m.Entries()
    if queue.pending:
        due = queue.due(now)
        if due:
            records = world._records

            def encode(uid: int) -> bytes | None:
                names = due[uid]
                if SPAWN not in names:
                    return _entry_for(world, view, member, uid, names, cache)
                record = records.get(uid)
                if record is None or record.fields is None or record.error is not None:
                    return None  # withheld now: spawned again once it is encodable
                return fragment_for(world, view, record)  # the current state, whole

            # encoded as ``pick`` asks, best first: what waits for a later tick is not
            # encoded now (it may change again by then)
            sizes = Sizes(due, encode)
            chosen = sorted(queue.pick(now, sizes))
            # an entry with nothing this peer may see went as 0 bytes: nothing to send
            for uid in chosen:
                fragment = sizes.fragments[uid]
                if fragment is None:
                    continue
                into = spawn if SPAWN in due[uid] else update
                into.uids.append(uid)
                into.fragments().append(fragment)
            held.update(spawn.uids)
    if left:
        despawn += left
    schema = shared.schema if view.compact else None
    time = now if view.time else None
    if not (spawn or update or despawn or schema):
        # §13.7, §19.2: the "time" peer's empty sync; not counted (the feature's floor)
        return view.idle(tick, now, world.quiet_interval)
    reasons = left if view.reasons and left else None  # §16.3
    frame = m.SyncFrame(tick, False, spawn, update, despawn, schema=schema, time=time, left=reasons)
    view.sent(frame, now)
    # the rest of the sync's bytes (its envelope, despawns, the 4-byte frame header)
    # count too: the budget is of bytes on the wire, before any compression (§15)
    entries = len(update.joined()) + (len(spawn.joined()) if spawn else 0)
    queue.charge(now, len(frame.body()) + 4 - entries)
    return frame


def _entry_for(
    world: ServerWorld,
    view: View,
    member: int,
    uid: int,
    names: frozenset[str],
    cache: dict[Any, Any],
) -> bytes | None:
    """The update entry of ``uid`` with the *current* baseline values of ``names`` (a
    coalesced update carries the latest values, §16.6), for ``member``'s audience;
    encoded once per tick for every peer waiting for the same fields. None when it
    would carry nothing this peer may see."""
    record = world._records.get(uid)
    if record is None or record.fields is None:
        return None
    owner_only = record.info.owner_only
    sees_all = not owner_only or record.owner == member
    key = (uid, names, sees_all, view.compact)
    found = cache.get(key, _MISSING)
    if found is not _MISSING:
        return found  # type: ignore[no-any-return]
    base = record.fields
    fields = {n: base[n] for n in sorted(names) if n in base and (sees_all or n not in owner_only)}
    if sees_all and owner_only and _OWNER_MARK in names:  # a new owner: all of them
        fields.update((k, v) for k, v in base.items() if k in owner_only)
    owner = record.owner if _OWNER_MARK in names else m.ABSENT
    result: bytes | None = None
    if fields or owner is not m.ABSENT:
        snap = _SNAP_MARK in names
        plain = m.update_entry(uid, fields, owner, True if snap else m.ABSENT)
        value = plain if snap or not view.compact else world._tables.entry(record.info.name, plain)
        result = m.dumpb(value)
    cache[key] = result
    return result


def _part_key(member: int, deltas: dict[int, Delta], owners: set[int]) -> Any:
    """Which peers of a view may keep sharing it this tick (§16.2)."""
    if member in owners:
        return member
    delta = deltas.get(member)
    if delta is None or not (delta.entered or delta.left):
        return None
    return (delta.entered, delta.left)


_uid_of = attrgetter("uid")  # sort keys, in C
