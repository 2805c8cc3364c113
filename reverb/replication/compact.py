"""The compact encoding's field tables, server side (§12): each type's table of field names
(only ever appended to), the additions of a tick (its ``schema``), and each update's index
plan; the tick's update entries in the compact form (§12.4).
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from reverb.proto import messages as m
from reverb.replication.records import MISSING, Record
from reverb.replication.shared import MAX_PLANS, Batch, Shared

__all__ = ["FieldTables"]


class FieldTables:
    """The field table of each type, name -> index; the names appended during this tick (sent
    to every compact view), by type name; and the index plan of each (type, field names)."""

    __slots__ = ("added", "plans", "tables")

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, int]] = {}
        self.added: dict[str, list[str]] = {}
        self.plans: dict[tuple[str, tuple[str, ...]], tuple[Any, ...] | None] = {}

    def snapshot(self) -> bytes | None:
        """§12.3: every table whole, for a full snapshot's ``schema`` (None when empty)."""
        if not self.tables:
            return None
        return _schema_bytes({name: (0, list(t)) for name, t in self.tables.items() if t})

    def encode(self, shared: Shared, records: dict[int, Record]) -> None:
        """This tick's update entries in the compact form (§12.4), and the table's additions:
        ``[uid, index, value, ...]``; the plain form when the owner changes or the type's
        table is full. A batch's rows are made from its plan when a peer wants them; the
        tables grow as if its entries were met one by one, in uid order."""
        self.added = {}
        plans = self.plans
        compact: list[Any] = []
        append = compact.append
        batches = sorted(shared.batches, key=_first_uid)
        waiting = len(batches)
        for uid, entry in shared.pairs:
            while waiting and batches[-waiting].uids[0] < uid:
                self._plan_batch(batches[-waiting])
                waiting -= 1
            if "owner" in entry:
                append(entry)
                continue
            fields = entry["fields"]
            key = (records[uid].info.name, tuple(fields))
            plan: Any = plans.get(key, MISSING)
            if plan is MISSING:
                plan = self.plan(key)
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
        while waiting:
            self._plan_batch(batches[-waiting])
            waiting -= 1
        shared.rows = compact
        if self.added:
            shared.schema = _schema_bytes(
                {
                    name: (len(self.tables[name]) - len(added), added)
                    for name, added in self.added.items()
                }
            )

    def _plan_batch(self, batch: Batch) -> None:
        key = (batch.type_name, batch.names)
        plan: Any = self.plans.get(key, MISSING)
        batch.plan = self.plan(key) if plan is MISSING else plan

    def entry(self, type_name: str, entry: dict[str, Any]) -> Any:
        """One update entry in the compact form (§12.4), off the hot path (an owner-filtered
        entry, §16); the plain form when the owner changes or the type's table is full."""
        if "owner" in entry:
            return entry
        fields = entry["fields"]
        key = (type_name, tuple(fields))
        plan: Any = self.plans.get(key, MISSING)
        if plan is MISSING:
            plan = self.plan(key)
        if plan is None:
            return entry
        row = [entry["uid"]]
        for i in range(0, len(plan), 2):
            row.append(plan[i])
            row.append(fields[plan[i + 1]])
        return row

    def plan(self, key: tuple[str, tuple[str, ...]]) -> tuple[Any, ...] | None:
        """The field indexes of an update of these names, with the names, in index order,
        flat: ``(index, name, index, name, ...)``; None when the table is full."""
        type_name, names = key
        table = self.tables.setdefault(type_name, {})
        for name in names:
            if name not in table:
                if len(table) >= m.MAX_SCHEMA_FIELDS:
                    plan = None
                    break
                table[name] = len(table)
                self.added.setdefault(type_name, []).append(name)
        else:
            plan = tuple(chain.from_iterable(sorted((table[name], name) for name in names)))
        if len(self.plans) >= MAX_PLANS:
            self.plans.clear()
        self.plans[key] = plan
        return plan


def _schema_bytes(tables: dict[str, tuple[int, list[str]]]) -> bytes:
    return m.dumpb({name: {"at": at, "add": add} for name, (at, add) in tables.items()})


def _first_uid(batch: Batch) -> int:
    return batch.uids[0]
