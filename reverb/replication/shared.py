"""A tick's update entries, shared by the views that take them (§7.5, §12, §16, §20).

``Shared`` holds the entries of one tick, made one by one (``(uid, plain entry)`` pairs) or in
bulk (``Batch``: objects of one type that changed the same plain-number fields, kept as
columns), and makes each form a view asks for -- plain, compact, column blocks, encoded --
once for every view that wants it. A batch's entries are formatted from its columns with a
``bytes %`` template, byte for byte what the encoder would make of them. ``Sizes`` gives a
peer's queue (§16.6) the encoded size of each due entry, encoding it when first asked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import chain
from operator import itemgetter
from typing import Any

from reverb.proto import messages as m

__all__ = ["MAX_PLANS", "Batch", "Mark", "Shared", "Sizes"]

_MISSING = object()
MAX_PLANS = 4096  # (type, field names) pairs whose index plan (or template) is remembered
# A batch of at least this many objects has each column of one value (a time stamp set on
# every object) written once into its template.
_FOLD_MIN = 8
Mark = tuple[int, frozenset[str], float, "float | None"]  # a queue's (uid, names, priority, rate)


class Sizes(Mapping[int, int]):
    """The encoded sizes of the due entries of one peer, each encoded when first asked."""

    def __init__(self, due: dict[int, frozenset[str]], encode: Any) -> None:
        self.due = due
        self.encode = encode
        self.fragments: dict[int, bytes | None] = {}

    def __getitem__(self, uid: int) -> int:
        fragment = self.fragments.get(uid, _MISSING)
        if fragment is _MISSING:
            fragment = self.fragments[uid] = self.encode(uid)
        return 0 if fragment is None else len(fragment) + 1  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        return iter(self.due)

    def __len__(self) -> int:
        return len(self.due)


class Batch:
    """Objects of one type whose every changed name (the same names for all) changed this
    tick, each to a plain number (``BulkComparison.group``): their update entries, plain
    (§7.2) or compact (§12.4) or as one column block (§20), each made only when wanted."""

    __slots__ = ("columns", "names", "plan", "type_name", "uids")

    def __init__(
        self, type_name: str, names: tuple[str, ...], uids: list[int], columns: list[list[Any]]
    ) -> None:
        self.type_name = type_name
        self.names = names  # in the order of the plain entries' fields
        self.uids = uids
        self.columns = columns  # one per name: the values, in the order of ``uids``
        self.plan: tuple[Any, ...] | None = None  # §12.4, set by ``FieldTables.encode``

    def sort(self) -> None:
        """Put the objects in uid order (the order of a sync's entries)."""
        uids = self.uids
        ordered = sorted(uids)
        if ordered != uids:
            order = sorted(range(len(uids)), key=uids.__getitem__)
            self.uids = ordered
            self.columns = [list(map(column.__getitem__, order)) for column in self.columns]

    def entries(self) -> list[tuple[int, Any]]:
        """``(uid, plain update entry)`` of each object."""
        names = self.names
        uids = self.uids
        if len(names) == 3:  # the common shapes without a zip per object
            n0, n1, n2 = names
            return [
                (u, {"uid": u, "fields": {n0: a, n1: b, n2: c}})
                for u, a, b, c in zip(uids, *self.columns, strict=True)
            ]
        if len(names) == 2:
            n0, n1 = names
            return [
                (u, {"uid": u, "fields": {n0: a, n1: b}})
                for u, a, b in zip(uids, *self.columns, strict=True)
            ]
        return [
            (uid, {"uid": uid, "fields": dict(zip(names, row, strict=True))})
            for uid, row in zip(self.uids, zip(*self.columns, strict=True), strict=True)
        ]

    def _ordered(self) -> tuple[tuple[int, ...], list[list[Any]]]:
        """The plan's indexes, and the columns in their order."""
        plan = self.plan
        assert plan is not None
        at = self.names.index
        return plan[0::2], [self.columns[at(name)] for name in plan[1::2]]

    def rows(self) -> list[Any]:
        """The compact entries ``[uid, index, value, ...]`` (the plain ones when the type's
        table is full)."""
        if self.plan is None:
            return [entry for _, entry in self.entries()]
        indexes, columns = self._ordered()
        uids = self.uids
        if len(indexes) == 3:
            i0, i1, i2 = indexes
            return [[u, i0, a, i1, b, i2, c] for u, a, b, c in zip(uids, *columns, strict=True)]
        if len(indexes) == 2:
            i0, i1 = indexes
            return [[u, i0, a, i1, b] for u, a, b in zip(uids, *columns, strict=True)]
        if len(indexes) == 1:
            i0 = indexes[0]
            return [[u, i0, a] for u, a in zip(uids, columns[0], strict=True)]
        return [
            [uid, *chain.from_iterable(zip(indexes, row, strict=True))]
            for uid, row in zip(uids, zip(*columns, strict=True), strict=True)
        ]

    def block(self) -> list[Any]:
        """Its entries as one column block (§20.2): what ``m.column_blocks`` makes of
        ``rows()``, without making them."""
        indexes, columns = self._ordered()
        return [list(indexes), self.uids, *columns]

    def fragments(self, compact: bool, rows: list[int] | None = None) -> list[bytes]:
        """Each object's update entry encoded, plain (``entries()``) or compact (``rows()``):
        the bytes ``m.dumpb`` makes of them, formatted from the columns without making the
        entries; ``rows``: only those (positions in ``uids``), in that order.

        The same bytes: every value of a batch is an exact float (finite) or int, whose JSON
        text is its ``repr`` (the JSON encoder's own way, §3.1); the rest of an entry is
        fixed per batch, made once with the encoder (``_template``)."""
        if compact and self.plan is not None:
            names = None
            indexes, columns = self._ordered()
        else:
            names, indexes, columns = self.names, None, self.columns
        uids = self.uids
        if rows is not None:
            uids = list(map(uids.__getitem__, rows))
            columns = [list(map(column.__getitem__, rows)) for column in columns]
        fixed: list[Any] | None = None
        if len(uids) >= _FOLD_MIN:  # a column of one value (a time stamp): its text once
            for k, column in enumerate(columns):
                first = column[0]
                # equal values of one type (the batch's columns are) have one text, but 0.0
                # and -0.0
                if column.count(first) == len(column) and not (type(first) is float and not first):
                    if fixed is None:
                        fixed = [_VARIES] * len(columns)
                    fixed[k] = first
        if fixed is None:
            template = _template(names, indexes)
        else:
            template = _template(names, indexes, fixed)
            columns = [c for c, value in zip(columns, fixed, strict=True) if value is _VARIES]
        return list(map(template.__mod__, zip(uids, *columns, strict=True)))


class Shared:
    """This tick's update entries, encoded once for every view that holds all of them.

    The entries come as ``pairs`` (``(uid, plain entry)``, made one by one) and ``batches``
    (made in bulk); each form a view may want -- every plain entry, every compact one, the
    column blocks -- is made for the first view that wants it."""

    def __init__(
        self,
        pairs: list[tuple[int, Any]],
        batches: list[Batch] | None = None,
        plans: dict[tuple[str, tuple[str, ...]], tuple[Any, ...] | None] | None = None,
    ) -> None:
        pairs.sort(key=_first)
        self.pairs = pairs
        self.batches = batches or []
        # §16: ``encode`` formats the batches' entries from their columns; ``plans``: the
        # world's compact index plans, for their compact form (§12.4; without: one by one)
        self._formed = self.batches
        self._plans = plans if plans is not None else {}
        for batch in self.batches:
            batch.sort()
        self._updated: list[tuple[int, Any]] | None = None
        if not self.batches:
            self._updated = pairs
            self.uids = list(map(_first, pairs))
        elif not pairs and len(self.batches) == 1:
            self.uids = self.batches[0].uids
        else:
            self.uids = sorted(chain(map(_first, pairs), *(b.uids for b in self.batches)))
        self.rows: list[Any] = []  # §12.4: the compact form of ``pairs`` (``FieldTables.encode``)
        self.schema: bytes | None = None  # §12.3: the tables' additions of this tick
        self.snapped: set[int] = set()  # §13.5: uids whose update says "snap": true
        self.private: set[int] = set()  # §16.2: updated uids of types with owner-only fields
        self.plain: dict[int, Any] = {}  # their plain update entries
        self._snap: dict[bool, tuple[list[Any], m.Entries]] = {}
        self._index: dict[int, int] | None = None
        self._plain: list[Any] | None = None
        self._compact: list[Any] | None = None
        self._changed: set[int] | None = None
        self._entries: dict[bool, m.Entries] = {}
        self._by_uid: dict[bool, dict[int, Any]] = {}
        self._encoded: dict[bool, dict[int, bytes]] = {}
        self._columns: tuple[bytes, m.Entries] | bool | None = None  # False: none this tick
        # §16.6: each updated object's queue mark (uid, names, priority, rate), made once for
        # every peer's queue; by whether the peer has "time" (a snap mark only then)
        self.marks: dict[bool, dict[int, Mark]] = {False: {}, True: {}}

    @property
    def updated(self) -> list[tuple[int, Any]]:
        """Every ``(uid, plain entry)`` of the tick, in uid order."""
        found = self._updated
        if found is None:
            made = chain(self.pairs, *(batch.entries() for batch in self.batches))
            found = self._updated = sorted(made, key=_first)
        return found

    @property
    def entries(self) -> m.Entries:
        """The plain entries, for the views that hold them all."""
        return self._listed(False)

    @property
    def compact_entries(self) -> m.Entries:
        """The compact entries (§12.4), for the views that hold them all."""
        return self._listed(True)

    def release(self) -> None:
        """The tick's frames are built: forget the shared entries. Each refers to this object
        until its values are made (``make``), so keeping them here made a reference cycle
        that held a whole tick's entries until the garbage collector ran (the send-budget
        memory test on Python 3.13)."""
        self._entries = {}

    def _listed(self, compact: bool) -> m.Entries:
        found = self._entries.get(compact)
        if found is None:
            if self.batches:
                encode = self.plain_fragments if not compact else self.compact_fragments
                found = m.Entries(self.uids, encode=encode)
            else:
                make = self.compact_values if compact else self.plain_values
                found = m.Entries(self.uids, make=make)
            self._entries[compact] = found
        return found

    def plain_fragments(self) -> list[bytes]:
        return self._fragments(False)

    def compact_fragments(self) -> list[bytes]:
        return self._fragments(True)

    def _fragments(self, compact: bool) -> list[bytes]:
        """Every entry encoded, in uid order (compact: after ``FieldTables.encode``): the
        batches' formatted from their columns, the others with the encoder."""
        batches = self.batches
        pairs = self.pairs
        if not pairs and len(batches) == 1:
            return batches[0].fragments(compact)
        values = self.rows if compact else list(map(_second, pairs))
        made = chain(
            zip(map(_first, pairs), m.dumpb_each(values), strict=True),
            *(zip(batch.uids, batch.fragments(compact), strict=True) for batch in batches),
        )
        return list(map(_second, sorted(made, key=_first)))

    def takes_all(self, held: set[int]) -> bool:
        """Whether a view holding ``held`` takes every entry of the tick, as they are."""
        return held.issuperset(self.uids) and not self.private

    def encode(self, uids: set[int], compact: bool) -> None:
        """Encode the entries of ``uids`` not encoded yet, together (``m.dumpb_each``)."""
        encoded = self.encoded(compact)
        todo = sorted(uids.difference(encoded))
        if todo and self._formed:
            todo = self._encode_formed(todo, compact, encoded)
        if todo:
            values = self.by_uid(compact)
            fragments = m.dumpb_each(list(map(values.__getitem__, todo)))
            encoded.update(zip(todo, fragments, strict=True))

    def _encode_formed(
        self, todo: list[int], compact: bool, encoded: dict[int, bytes]
    ) -> list[int]:
        """``encode`` of the entries of ``todo`` that batches made (``_formed``): formatted
        from their columns (``Batch.fragments``); returns the others. Compact ones only
        with the plan ``FieldTables.encode`` gave their names (the table was not
        full): the same indexes, so the same bytes."""
        done = False
        for batch in self._formed:
            if compact:
                plan = self._plans.get((batch.type_name, batch.names))
                if plan is None:  # no plan (or a full table: the plain form), one by one
                    continue
                batch.plan = plan
            at = {uid: i for i, uid in enumerate(batch.uids)}
            rows = [i for i in map(at.get, todo) if i is not None]
            if rows:
                uids = batch.uids
                encoded.update(
                    zip(map(uids.__getitem__, rows), batch.fragments(compact, rows), strict=True)
                )
                done = True
        return [uid for uid in todo if uid not in encoded] if done else todo

    def changed(self) -> set[int]:
        """The uids updated this tick (``uids`` as a set)."""
        changed = self._changed
        if changed is None:
            changed = self._changed = set(self.uids)
        return changed

    def by_uid(self, compact: bool) -> dict[int, Any]:
        """uid -> its update entry this tick, plain or compact (§12.4)."""
        found = self._by_uid.get(compact)
        if found is None:
            if compact:
                found = dict(zip(self.uids, self.compact_values(), strict=True))
            else:
                found = dict(self.updated)
            self._by_uid[compact] = found
        return found

    def encoded(self, compact: bool) -> dict[int, bytes]:
        """uid -> its update entry encoded, plain or compact, as views ask for them (each
        encoded once per tick, for every view holding it)."""
        found = self._encoded.get(compact)
        if found is None:
            found = self._encoded[compact] = {}
        return found

    def columns(self) -> tuple[bytes, m.Entries] | None:
        """§20: the compact entries as column blocks (encoded) and the entries left as rows,
        made once per tick for every "columns" peer; None when no block is worth it."""
        found = self._columns
        if found is None:
            batches = self.batches
            if (
                not self.pairs
                and len(batches) == 1
                and batches[0].plan is not None
                and len(self.uids) >= m.MIN_BLOCK
            ):  # one block of the whole tick, straight from the batch's columns
                found = (m.dumpb([batches[0].block()]), m.Entries([], values=[]))
            else:
                blocks, uids, rows = m.column_blocks(self.uids, self.compact_values())
                found = (m.dumpb(blocks), m.Entries(uids, values=rows)) if blocks else False
            self._columns = found
        return None if found is False else found  # type: ignore[return-value]

    def plain_values(self) -> list[Any]:
        """The plain entries, in uid order (made once per tick)."""
        plain = self._plain
        if plain is None:
            plain = self._plain = list(map(_second, self.updated))
        return plain

    def compact_values(self) -> list[Any]:
        """The compact entries, in uid order (made once per tick, after ``FieldTables.encode``)."""
        found = self._compact
        if found is None:
            batches = self.batches
            if not batches:
                found = self.rows
            elif not self.pairs and len(batches) == 1:
                found = batches[0].rows()
            else:
                made = chain(
                    zip(map(_first, self.pairs), self.rows, strict=True),
                    *(zip(batch.uids, batch.rows(), strict=True) for batch in batches),
                )
                found = list(map(_second, sorted(made, key=_first)))
            self._compact = found
        return found

    def index(self) -> dict[int, int]:
        """uid -> its position in ``updated`` (made once per tick, when a view needs it)."""
        index = self._index
        if index is None:
            index = self._index = {uid: i for i, (uid, _) in enumerate(self.updated)}
        return index

    def snap_entries(self, compact: bool) -> m.Entries:
        done = self._snap.get(compact)
        if done is None:
            updated = self.updated
            base = self.compact_values() if compact else self.plain_values()
            snapped = self.snapped
            values = [
                {**entry, "snap": True} if uid in snapped else value
                for (uid, entry), value in zip(updated, base, strict=True)
            ]
            done = self._snap[compact] = (values, m.Entries(self.uids, values=values))
        return done[1]


_first = itemgetter(0)
_second = itemgetter(1)
_TEMPLATES: dict[Any, bytes] = {}
_VARIES = object()  # a column of a template whose values vary: a ``%r``


def _template(
    names: tuple[str, ...] | None,
    indexes: tuple[int, ...] | None,
    fixed: list[Any] | None = None,
) -> bytes:
    """A ``bytes %`` template of an update entry of a batch, for ``(uid, value, ...)``:
    plain, ``{"uid":%r,"fields":{"<name>":%r,...}}`` (§7.2), or compact,
    ``[%r,<index>,%r,...]`` (§12.4). The names are encoded as the encoder encodes them;
    ``fixed``: per column, the value every entry has (its text written in), or ``_VARIES``."""
    key = (names, indexes)
    found = None if fixed is not None else _TEMPLATES.get(key)
    if found is None:
        count = len(names) if names is not None else len(indexes or ())
        values = [
            b"%r" if value is _VARIES else (b"%r" % (value,)).replace(b"%", b"%%")
            for value in (fixed or [_VARIES] * count)
        ]
        if names is not None:
            pairs = b",".join(
                m.dumpb(name).replace(b"%", b"%%") + b":" + value
                for name, value in zip(names, values, strict=True)
            )
            found = b'{"uid":%r,"fields":{' + pairs + b"}}"
        else:
            assert indexes is not None
            found = b"[%r" + b"".join(
                b",%d," % index + value for index, value in zip(indexes, values, strict=True)
            )
            found += b"]"
        if fixed is None:
            if len(_TEMPLATES) >= MAX_PLANS:
                _TEMPLATES.clear()
            _TEMPLATES[key] = found
    return found
