"""Group 18: column blocks (feature ``"columns"``, §20).

A server need not implement ``"columns"``, nor send blocks when it does (§20.4: it chooses
which entries go in blocks): the cases that need blocks are non-strict when none arrive.
Every block a connection receives is checked against §20.2 by the driver's table, and its
rows are applied after the tick's update entries (§20.3).
"""

from __future__ import annotations

from conformance.cases.common import despawn_all, spawn_boxes
from conformance.cases.compact import _converged, _set_all
from conformance.context import Ctx
from conformance.driver import Conn, ServerViolation
from conformance.model import Outcome, case, non_strict

G = 18
COMPACT = "compact"
COLUMNS = "columns"
BOXES = 6  # set together, so that a tick changes the same field of six objects


def _conn(ctx: Ctx, features: list[str]) -> tuple[Conn, list[str]]:
    conn = ctx.connect()
    conn.table.compact = COMPACT in features
    conn.table.columns = COLUMNS in features
    welcome = conn.handshake(features=features)
    granted = welcome.get("features", [])
    if not isinstance(granted, list) or not set(granted) <= set(features):
        raise ServerViolation(f"welcome.features grants what was not asked (§4.11): {granted}")
    conn.wait(lambda: conn.table.applied > 0, None, "the first full sync")
    return conn, granted


ROUNDS = 10


def _rounds(actor: Conn, uids: list[int], watchers: list[Conn]) -> list[int]:
    """Set the value of every Box, ``ROUNDS`` times, each round's calls sent together (so a
    server likely runs them in one tick: one field of six objects); the last round's values."""
    values: list[int] = []
    for n in range(ROUNDS):
        values = [n * 100 + i for i in range(len(uids))]
        _set_all(actor, uids, values)
    for conn in watchers:
        conn.wait(
            lambda c=conn: _converged(c, uids, "value", values), None, "the last round's values"
        )
    return values


@case("20.1.1", G, "columns is granted with compact (informational when not implemented)")
def granted(ctx: Ctx) -> Outcome | str:
    _, granted = _conn(ctx, [COMPACT, COLUMNS])
    if COLUMNS not in granted:
        return non_strict("the server does not implement columns")
    if COMPACT not in granted:
        raise ServerViolation("columns granted without compact (§20.1)")
    return "compact and columns granted"


@case("20.1.2", G, "columns asked without compact is not granted")
def without_compact(ctx: Ctx) -> str:
    _, granted = _conn(ctx, [COLUMNS])
    if COLUMNS in granted:
        raise ServerViolation("columns granted without compact (§20.1)")
    return f"granted {granted}"


@case("20.3.1", G, "a columns client converges to what a compact-only and a plain client see")
def same_state(ctx: Ctx) -> Outcome | str:
    cols, granted = _conn(ctx, [COMPACT, COLUMNS])
    compact, _ = _conn(ctx, [COMPACT])
    plain, _ = _conn(ctx, [])
    watchers = [cols, compact, plain]
    actor = ctx.open()
    uids = spawn_boxes(actor, BOXES, False)
    try:
        for conn in watchers:
            conn.wait(lambda c=conn: all(u in c.table.objects for u in uids), None, "spawns")
        _rounds(actor, uids, watchers)
        tables = [conn.table.snapshot(set(uids)) for conn in watchers]
        if not tables[0] == tables[1] == tables[2]:
            raise ServerViolation(f"the three clients disagree: {tables}")
    finally:
        despawn_all(actor, uids)
    if compact.table.column_rows or plain.table.column_rows:
        raise ServerViolation("column blocks sent to a connection without columns (§20.1)")
    rows = cols.table.column_rows
    if COLUMNS not in granted:
        return non_strict("columns not granted; the tables agree")
    if rows == 0:
        return non_strict("columns granted, but the server sent no block (allowed, §20.4)")
    return f"{rows} rows arrived in column blocks; the three tables agree"
