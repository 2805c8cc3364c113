"""Group 11: optional features (§4.11) and the compact encoding (§12).

A server need not implement ``"compact"``: when it grants nothing, the cases that need it are
non-strict. A connection that asks for nothing must see protocol 1 exactly as without features.
"""

from __future__ import annotations

import json
from typing import Any

from conformance.cases.common import bad_payload, despawn_all, same_json, spawn_boxes
from conformance.context import Ctx
from conformance.driver import CaseFailure, Conn, Msg, ServerViolation
from conformance.model import Outcome, case, non_strict

G = 11
COMPACT = "compact"

VALUES: list[Any] = [0, -7, 2**53 - 1, 3.25, True, None, "", "ünï 漢字", [1, [2.5]], {"a": {}}]


def _compact_conn(ctx: Ctx) -> tuple[Conn, bool]:
    """A connection that asked for compact; whether the server granted it."""
    conn = ctx.connect()
    conn.table.compact = True
    welcome = conn.handshake(features=[COMPACT])
    granted = welcome.get("features", [])
    if not isinstance(granted, list) or not all(isinstance(f, str) for f in granted):
        raise ServerViolation(f"welcome.features is not an array of strings (§4.11): {granted!r}")
    if not set(granted) <= {COMPACT}:
        raise ServerViolation(f"welcome.features grants what was not asked (§4.11): {granted}")
    conn.wait(lambda: conn.table.applied > 0, None, "the first full sync")
    return conn, COMPACT in granted


def _watch(conn: Conn) -> list[Msg]:
    """Keep every sync this connection receives from now on (for checks on their form)."""
    seen: list[Msg] = []
    feed = conn.table.feed

    def recording(msg: Msg) -> bool:
        seen.append(msg)
        return feed(msg)

    conn.table.feed = recording  # type: ignore[method-assign]
    return seen


def _set_all(conn: Conn, uids: list[int], values: list[Any]) -> None:
    control = conn.control_uid()
    ids = [
        conn.request(control, "set_value", [uid, value])
        for uid, value in zip(uids, values, strict=True)
    ]
    for call_id in ids:
        reply = conn.answer(call_id)
        if reply["type"] != "rpc_result":
            raise CaseFailure(f"set_value failed: {reply}")


def _converged(conn: Conn, uids: list[int], name: str, values: list[Any]) -> bool:
    return all(
        uid in conn.table.objects and same_json(conn.table.objects[uid].fields.get(name), value)
        for uid, value in zip(uids, values, strict=True)
    )


@case("4.11.1", G, "a hello without features gets no welcome.features, no schema, object entries")
def no_features(ctx: Ctx) -> str:
    writer = ctx.open()
    plain = ctx.connect()
    welcome = plain.handshake()
    if "features" in welcome:
        raise ServerViolation(f"welcome.features without hello.features (§4.11): {welcome}")
    plain.wait(lambda: plain.table.applied > 0, None, "the first full sync")
    seen = _watch(plain)
    uids = spawn_boxes(writer, 3, False)
    try:
        _set_all(writer, uids, [1.5, 2.5, 3.5])
        plain.wait(lambda: _converged(plain, uids, "value", [1.5, 2.5, 3.5]), None, "updates")
    finally:
        despawn_all(writer, uids)
    for msg in seen:
        if "schema" in msg or any(not isinstance(e, dict) for e in msg["update"]):
            raise ServerViolation(f"compact form sent to a plain connection (§4.11): {msg}")
    return f"{len(seen)} syncs, all in the plain form of §7.2"


@case("4.11.2", G, "unknown feature names are ignored: not granted, no close")
def unknown_feature(ctx: Ctx) -> str:
    conn = ctx.connect()
    welcome = conn.handshake(features=["no-such-feature", "x" * 32])
    granted = welcome.get("features", [])
    if granted:
        raise ServerViolation(f"welcome.features grants unknown names (§4.11): {granted}")
    conn.wait(lambda: conn.table.applied > 0, None, "the first full sync")
    return "handshake completed, nothing granted"


@case("4.11.3", G, "hello.features that is not an array of strings closes 1002")
def features_not_strings(ctx: Ctx) -> Outcome | str:
    payload = json.dumps({"type": "hello", "version": 1, "features": ["compact", 7]})
    return bad_payload(ctx, payload, 1002, section="4.11", state="handshake")


@case("4.11.4", G, "hello.features with 17 entries closes 1002")
def too_many_features(ctx: Ctx) -> Outcome | str:
    names = [f"f{i}" for i in range(17)]
    payload = json.dumps({"type": "hello", "version": 1, "features": names})
    return bad_payload(ctx, payload, 1002, section="4.11", state="handshake")


@case("4.11.5", G, "a hello.features name of 33 characters closes 1002")
def long_feature(ctx: Ctx) -> Outcome | str:
    payload = json.dumps({"type": "hello", "version": 1, "features": ["f" * 33]})
    return bad_payload(ctx, payload, 1002, section="4.11", state="handshake")


@case("12.1.1", G, "compact is granted when asked for (informational when not implemented)")
def granted(ctx: Ctx) -> Outcome | str:
    _, ok = _compact_conn(ctx)
    return "compact granted" if ok else non_strict("the server does not implement compact")


@case("12.4.1", G, "a compact client converges to exactly what a plain client sees, every type")
def same_state(ctx: Ctx) -> Outcome | str:
    compact, ok = _compact_conn(ctx)
    plain = ctx.open()
    seen = _watch(compact)
    uids = spawn_boxes(plain, len(VALUES), False)
    try:
        compact.wait(lambda: all(u in compact.table.objects for u in uids), None, "spawns")
        _set_all(plain, uids, VALUES)
        for conn in (plain, compact):
            conn.wait(lambda c=conn: _converged(c, uids, "value", VALUES), None, "all values")
        compact.wait(
            lambda: compact.table.snapshot(set(uids)) == plain.table.snapshot(set(uids)),
            None,
            "equal tables",
        )
    finally:
        despawn_all(plain, uids)
    entries = compact.table.compact_entries
    if not ok:
        return non_strict("compact not granted; plain form checked instead")
    if entries == 0:
        return non_strict(f"compact granted, yet none of {len(seen)} syncs used compact entries")
    return f"{len(VALUES)} values equal on both; {entries} compact entries"


def _spawn_recs(conn: Conn, n: int) -> list[int]:
    uids = [conn.control("spawn_rec", False) for _ in range(n)]
    if not all(isinstance(uid, int) for uid in uids):
        raise CaseFailure(f"spawn_rec returned {uids!r}")
    return [int(uid) for uid in uids]


def _set_fields(conn: Conn, uids: list[int], name: str, values: list[Any]) -> None:
    control = conn.control_uid()
    ids = [
        conn.request(control, "set_field", [uid, name, value])
        for uid, value in zip(uids, values, strict=True)
    ]
    for call_id in ids:
        reply = conn.answer(call_id)
        if reply["type"] != "rpc_result":
            raise CaseFailure(f"set_field failed: {reply}")


@case("12.3.1", G, "field names are announced by schema before use, 'at' continuous")
def schema_grows(ctx: Ctx) -> Outcome | str:
    compact, ok = _compact_conn(ctx)
    if not ok:
        return non_strict("the server does not implement compact")
    writer = ctx.open()
    uids = _spawn_recs(writer, 2)
    try:
        compact.wait(lambda: all(u in compact.table.objects for u in uids), None, "spawns")
        for n, name in enumerate(("c", "a", "b"), start=1):
            _set_fields(writer, uids, name, [n, -n])
            compact.wait(lambda nm=name, k=n: _converged(compact, uids, nm, [k, -k]), None, name)
    finally:
        despawn_all(writer, uids)
    table = compact.table.field_tables.get("Rec", [])
    if sorted(table) != ["a", "b", "c"]:
        raise CaseFailure(f"Rec's field table is {table}, expected a, b and c in some order")
    return f"Rec table {table}; {compact.table.compact_entries} compact entries"


@case("12.3.2", G, "a late compact joiner gets the whole table at 0 in its first sync")
def late_joiner(ctx: Ctx) -> Outcome | str:
    first, ok = _compact_conn(ctx)
    if not ok:
        return non_strict("the server does not implement compact")
    writer = ctx.open()
    uids = _spawn_recs(writer, 2)
    try:
        first.wait(lambda: all(u in first.table.objects for u in uids), None, "spawns")
        _set_fields(writer, uids, "b", [1, 2])
        first.wait(lambda: _converged(first, uids, "b", [1, 2]), None, "b")
        late, _ = _compact_conn(ctx)
        if "b" not in late.table.field_tables.get("Rec", []):
            raise ServerViolation(
                "a joiner's first sync lacks names already in use (§12.3): "
                f"{late.table.field_tables}"
            )
        _set_fields(writer, uids, "b", [3, 4])
        late.wait(lambda: _converged(late, uids, "b", [3, 4]), None, "later deltas")
    finally:
        despawn_all(writer, uids)
    return f"joiner's table {late.table.field_tables.get('Rec')}"


@case("12.5.1", G, "bytes of a compact delta against a plain one (informational)")
def compactness(ctx: Ctx) -> Outcome | str:
    compact, ok = _compact_conn(ctx)
    if not ok:
        return non_strict("the server does not implement compact")
    plain = ctx.open()
    seen = {"compact": _watch(compact), "plain": _watch(plain)}
    uids = spawn_boxes(plain, 50, False)
    try:
        for conn in (plain, compact):
            conn.wait(lambda c=conn: all(u in c.table.objects for u in uids), None, "spawns")
        for watched in seen.values():
            watched.clear()
        values = [i * 0.5 for i in range(50)]
        _set_all(plain, uids, values)
        for conn in (plain, compact):
            conn.wait(lambda c=conn: _converged(c, uids, "value", values), None, "values")
    finally:
        despawn_all(plain, uids)
    sizes = {
        k: sum(len(json.dumps(e)) for msg in v for e in msg["update"]) for k, v in seen.items()
    }
    if not sizes["plain"]:
        return non_strict("no update entries observed")
    ratio = sizes["compact"] / sizes["plain"]
    return f"update entries: compact {sizes['compact']} B, plain {sizes['plain']} B ({ratio:.2f})"
