"""The bulk way of comparing a tick (issue 9): objects of a type assigned the same names,
compared a column at a time.

``ServerWorld._compare_bulk`` groups the dirty objects by type and changed names; each group
of the common case -- plain fields holding finite floats, or ints within ±(2^53-1), now and
in the baseline (§3.4) -- is checked and compared here in C loops (``map``). The objects whose
every name changed become one ``Batch`` (its entries made only in the forms peers want,
``shared.py``); those with some changed get their entry here. Anything else is left to the
one-by-one way, untouched. ``BulkComparison`` keeps what the next tick reuses: the last
tick's groups (their records, baselines and values), and which (type, names) may go this way.
"""

from __future__ import annotations

from collections.abc import Collection
from operator import attrgetter, itemgetter, ne
from typing import TYPE_CHECKING, Any

from reverb.proto import messages as m
from reverb.replication.shared import MAX_PLANS, Batch
from reverb.replication.types import META_ATTRIBUTES, TypeRegistry

if TYPE_CHECKING:
    from reverb.replication.records import Record
    from reverb.replication.world import ServerWorld

__all__ = ["BulkComparison"]

_MAX = m.MAX_SAFE_INT
_META = META_ATTRIBUTES  # never fields: "uid", and the owner
_NO_GROUP: tuple[Any, ...] = (-1, None)  # ``BulkComparison.last`` of a group not in it
_uid_of = attrgetter("uid")
_dict_of = attrgetter("__dict__")
_fields_of = attrgetter("fields")


class BulkComparison:
    """The bulk way's state: which (type, set of changed names) it takes; this tick's batches;
    and the last tick's groups, by (type, names): their uids, records, baselines and the
    values now in those baselines -- the next tick's "old" columns when the same objects
    change again in the same order and no baseline changed otherwise since (the world's
    ``_rebased`` counts the changes made by the other ways)."""

    __slots__ = ("batches", "last", "now", "plans", "types")

    def __init__(self, types: TypeRegistry) -> None:
        self.types = types
        self.plans: dict[tuple[type, frozenset[str]], bool] = {}
        self.batches: list[Batch] = []
        self.last: dict[tuple[type, tuple[str, ...]], tuple[Any, ...]] = {}
        self.now: dict[tuple[type, tuple[str, ...]], tuple[Any, ...]] = {}

    def turn(self) -> list[Batch]:
        """The tick's comparison is over: its groups become the last tick's; its batches,
        returned (and forgotten here)."""
        self.last, self.now = self.now, {}
        batches, self.batches = self.batches, []
        return batches

    def group(
        self,
        world: ServerWorld,
        kind: type,
        marked: Collection[str],
        objs: list[Any],
        marks: list[set[str]],
        updated: list[tuple[int, Any]],
    ) -> bool:
        """``ServerWorld._compare_bulk`` for one group: objects of type ``kind`` whose changed
        names (``marks``, one set each) are all ``marked``. False, having changed nothing, when
        the group is not of the common case."""
        if not self._bulkable(kind, marked):
            return False
        names = tuple(marks[0])  # the order _compare would give the first one's fields
        n = len(objs)
        uids: list[int] = list(map(_uid_of, objs))
        watched = world._watched
        if (world._readded and len(set(uids)) != n) or (
            watched and not watched.keys().isdisjoint(uids)
        ):
            return False
        key = (kind, names)
        last = self.last.get(key, _NO_GROUP)
        records: list[Record]
        bases: list[dict[str, Any]]
        try:
            dicts = list(map(_dict_of, objs))
            new = [list(map(itemgetter(name), dicts)) for name in names]
            reused = last[0] == world._rebased and last[1] == uids
            if reused:
                # the same objects as the last tick's group, their baselines changed only by
                # it: they hold its values (a zero maybe of the other sign: equal, one type)
                records, bases, old = last[2], last[3], last[4]
            else:
                records = list(map(world._records.__getitem__, uids))
                bases = list(map(_fields_of, records))
                old = [list(map(itemgetter(name), bases)) for name in names]
        except (KeyError, TypeError):  # not set (deleted), not in the baseline, no baseline
            return False
        kinds: list[type] = []
        for column in new:
            of = list(map(type, column))
            if of.count(float) == n:
                total = sum(column)
                if total - total != 0.0:  # a NaN or an infinity (or a sum that overflows)
                    return False
                kinds.append(float)
            elif of.count(int) == n:
                first = column[0]
                if column[-1] == first and column.count(first) == n:  # one value (hp = 100)
                    low = high = first
                else:
                    low, high = min(column), max(column)
                if not -_MAX <= low <= high <= _MAX:
                    return False
                kinds.append(int)
            else:
                return False
        # Neither side NaN: where != says "changed" the value goes out whatever the baseline
        # held; where it says "equal", the types must be too (1 and 1.0 differ on the wire).
        masks = [list(map(ne, a, b)) for a, b in zip(new, old, strict=True)]
        partial = [False in mask for mask in masks]
        remembered = (uids, records, bases, new)
        whole = True  # every object's entry is in the batch (each of their fragments cleared)
        if any(partial):
            for kind, was, some in zip(kinds, old, partial, strict=True):
                if some and list(map(type, was)).count(kind) != n:
                    return False  # a type change to an equal value: one by one
            keep: list[int] = []
            for i, every in enumerate(map(all, zip(*masks, strict=True))):
                if every:
                    keep.append(i)
                    continue
                changed = {
                    name: column[i]
                    for name, column, mask in zip(names, new, masks, strict=True)
                    if mask[i]
                }
                if changed:  # some names kept their values: an entry of the others
                    bases[i].update(changed)
                    records[i].fragment = None
                    updated.append((uids[i], {"uid": uids[i], "fields": changed}))
            if len(keep) < n:
                whole = False
                uids = [uids[i] for i in keep]
                records = [records[i] for i in keep]
                bases = [bases[i] for i in keep]
                new = [[column[i] for i in keep] for column in new]
        if len(names) == 3:  # the common shapes in one loop each
            n0, n1, n2 = names
            for base, v0, v1, v2 in zip(bases, *new, strict=True):
                base[n0] = v0
                base[n1] = v1
                base[n2] = v2
        elif len(names) == 2:
            n0, n1 = names
            for base, v0, v1 in zip(bases, *new, strict=True):
                base[n0] = v0
                base[n1] = v1
        else:
            for name, column in zip(names, new, strict=True):
                for base, value in zip(bases, column, strict=True):
                    base[name] = value
        if not (reused and last[5] == world._fragments_made):  # else none made since: all None
            for record in records:
                record.fragment = None
        any(map(set.clear, marks))  # compared: off the dirty list (``_dirty_names`` skips it)
        # with every fragment cleared: none is made again until this count moves
        made = world._fragments_made if whole else -1
        self.now[key] = (world._rebased, *remembered, made)
        if uids:
            self.batches.append(Batch(records[0].info.name, names, uids, new))
        return True

    def _bulkable(self, kind: type, marked: Collection[str]) -> bool:
        """Whether objects of type ``kind`` with these changed names may go the bulk way;
        not when ``_compare`` must see them: a name is not a field, is the owner or "*",
        or does not live in the instance's ``__dict__`` (a property, a slot, a name the
        class has not learnt, a class with its own ``__getattribute__``)."""
        key = (kind, frozenset(marked))
        found = self.plans.get(key)
        if found is None:
            info = self.types.info(kind)
            plain = kind.__dict__.get("_reverb_plain")
            found = (
                info is not None
                and isinstance(plain, set)
                and getattr(kind, "__getattribute__", None) is object.__getattribute__
                and "*" not in key[1]
                and all(
                    name in plain
                    and name not in _META
                    and name not in info.exclude
                    and (info.fields is None or name in info.fields)
                    for name in key[1]
                )
            )
            if len(self.plans) >= MAX_PLANS:
                self.plans.clear()
            self.plans[key] = found
        return found
