"""Group 17: the feature "quiet" (§19): on a connection granted "time" and "quiet", an idle
tick's empty sync only as the follow-up of a non-empty sync or as a heartbeat; a connection
without it still gets a sync every tick (§13.7).

A server need not implement ``"quiet"``: when it does not grant it the cases are non-strict.
A server that grants it and still sends every tick breaks no MUST (§19.2 lets it send more
empty syncs): that is non-strict too. The descriptions carry the names quiet-01 .. quiet-05.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from conformance.cases.common import despawn_all, spawn_boxes
from conformance.context import Ctx
from conformance.driver import CaseFailure, Conn, Msg, RecvTimeout, ServerViolation
from conformance.model import Outcome, case, non_strict

G = 17
TIME = "time"
QUIET = "quiet"
IDLE = 2.0  # seconds of an idle world watched: at least one heartbeat of a 1 s interval
MAX_INTERVAL = 1.0  # §19.3: a heartbeat interval SHOULD NOT exceed 1 s


def _empty(msg: Msg) -> bool:
    return not (
        msg["full"]
        or msg["spawn"]
        or msg["update"]
        or msg["despawn"]
        or "schema" in msg
        or msg.get("left")
    )


def _syncs(conn: Conn, seconds: float) -> list[Msg]:
    """The final parts of the syncs received for ``seconds`` (every message book-kept)."""
    seen: list[Msg] = []
    deadline = time.monotonic() + seconds
    while True:
        try:
            msg = conn.recv_msg(deadline)
        except RecvTimeout:
            return seen
        conn.pump(msg)
        if msg["type"] == "sync" and msg["final"]:
            seen.append(msg)


def _quiet_conn(ctx: Ctx, features: list[Any] | None = None) -> tuple[Conn, bool]:
    """A connection that asked for "time" and "quiet", its full sync applied; whether both
    were granted."""
    conn = ctx.connect()
    conn.open(features=features if features is not None else [TIME, QUIET])
    return conn, {TIME, QUIET} <= conn.granted


def _check_times(syncs: list[Msg]) -> None:
    last: Msg | None = None
    for msg in syncs:
        if last is not None and not (msg["tick"] > last["tick"] and msg["time"] > last["time"]):
            raise ServerViolation(
                f"sync tick/time {msg['tick']}/{msg['time']} after {last['tick']}/{last['time']}: "
                "not strictly increasing (§7.6, §13.3, §19.2)"
            )
        if _empty(msg) and (msg["full"] is not False or msg["final"] is not True):
            raise ServerViolation(f"an empty sync must be full:false, final:true (§13.7): {msg}")
        last = msg


@case("19.1.1", G, "quiet-01: hello.features ['time', 'quiet'] is granted both")
def granted(ctx: Ctx) -> Outcome | str:
    conn, ok = _quiet_conn(ctx)
    if not ok:
        return non_strict(f"the server does not grant 'time' and 'quiet': {sorted(conn.granted)}")
    return f"granted {sorted(conn.granted)}"


@case(
    "19.2.1",
    G,
    "quiet-02: an idle world sends a quiet connection heartbeats only, at most 1 s apart",
    exclusive=True,
    budget=IDLE + 4.0,
)
def heartbeats(ctx: Ctx) -> Outcome | str:
    conn, ok = _quiet_conn(ctx)
    if not ok:
        return non_strict("the server does not grant 'time' and 'quiet'")
    tick_rate = float(conn.welcome["tick_rate"]) if conn.welcome else 30.0
    conn.drain(0.3)  # the follow-up of the full sync (§19.2 (b)) and anything in flight
    syncs = _syncs(conn, IDLE)
    _check_times(syncs)
    busy = [m for m in syncs if not _empty(m)]
    if busy:
        return non_strict(f"the world was not idle: {len(busy)} non-empty syncs; rerun alone")
    if not syncs:
        return non_strict(f"no sync in {IDLE} s of an idle world: an interval over 2 s (§19.3)")
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(syncs)]
    widest = max(gaps, default=0.0)
    detail = f"{len(syncs)} empty syncs in {IDLE} s at {tick_rate} Hz, widest gap {widest:.3f} s"
    if len(syncs) > tick_rate * IDLE / 2:
        return non_strict(f"'quiet' granted, yet about a sync every tick: {detail} (§19.2)")
    if widest > MAX_INTERVAL + 2 / tick_rate:
        return non_strict(f"heartbeats further apart than 1 s (§19.3 SHOULD): {detail}")
    return detail


@case(
    "19.2.2",
    G,
    "quiet-03: the tick after a non-empty sync is always sent (the follow-up)",
    exclusive=True,
    budget=8.0,
)
def follow_up(ctx: Ctx) -> Outcome | str:
    conn, ok = _quiet_conn(ctx)
    if not ok:
        return non_strict("the server does not grant 'time' and 'quiet'")
    (uid,) = spawn_boxes(conn, 1, False)
    checked = 0
    seen: list[Msg] = []
    conn.on_sync = lambda msg: seen.append(msg) if msg["final"] else None
    try:
        for value in (1, 2, 3):
            conn.drain(0.2)
            seen.clear()
            conn.control("set_value", uid, value)  # its update may come before its answer
            conn.drain(0.6)
            syncs = list(seen)
            _check_times(syncs)
            changed = [
                i for i, msg in enumerate(syncs) if any(_uid(e) == uid for e in msg["update"])
            ]
            if not changed:
                raise CaseFailure(f"no update of box {uid} within 0.6 s of set_value (§7.3)")
            at = changed[-1]
            if at + 1 >= len(syncs):
                raise ServerViolation(
                    f"tick {syncs[at]['tick']} updated box {uid}; no sync of the next tick "
                    "followed within 0.6 s (§19.2 (b))"
                )
            following = syncs[at + 1]
            if following["tick"] != syncs[at]["tick"] + 1:
                raise ServerViolation(
                    f"tick {syncs[at]['tick']} updated box {uid}; the next sync is tick "
                    f"{following['tick']}, not the next tick (§19.2 (b))"
                )
            checked += 1
    finally:
        despawn_all(conn, [uid])
    return f"{checked} changes, each followed by a sync of the next tick"


def _uid(entry: Any) -> Any:
    """The uid of an update entry in either form (§7.2, §12.4)."""
    if isinstance(entry, dict):
        return entry.get("uid")
    if isinstance(entry, list) and entry:
        return entry[0]
    return None


@case(
    "19.1.2",
    G,
    "quiet-04: beside a quiet connection, a 'time'-only one still gets a sync every tick",
    exclusive=True,
    budget=6.0,
)
def time_only_unchanged(ctx: Ctx) -> Outcome | str:
    _quiet, ok = _quiet_conn(ctx)  # open beside it: the server serves both
    timed, _ = _quiet_conn(ctx, [TIME])
    if TIME not in timed.granted:
        return non_strict("the server does not grant 'time'")
    tick_rate = float(timed.welcome["tick_rate"]) if timed.welcome else 30.0
    timed.drain(0.3)
    syncs = _syncs(timed, 1.0)
    _check_times(syncs)
    if len(syncs) < tick_rate / 2:
        raise ServerViolation(
            f"{len(syncs)} syncs in 1 s at {tick_rate} Hz on a 'time' connection without "
            "'quiet': not one per tick (§13.7, §19.1)"
        )
    ticks = [m["tick"] for m in syncs]
    skipped = sum(b - a - 1 for a, b in itertools.pairwise(ticks))
    if skipped > len(ticks):
        raise ServerViolation(f"{skipped} ticks skipped on a 'time' connection (§13.7, §19.1)")
    note = "" if ok else "; the server does not grant 'quiet'"
    return f"{len(syncs)} syncs in 1 s, {skipped} ticks skipped{note}"


@case(
    "19.1.3",
    G,
    "quiet-05: 'quiet' without 'time': no time, no empty syncs (as §7.3)",
    exclusive=True,
    budget=5.0,
)
def quiet_without_time(ctx: Ctx) -> Outcome | str:
    conn, _ = _quiet_conn(ctx, [QUIET])
    if "time" in (conn.welcome or {}):
        raise ServerViolation("welcome.time without 'time' granted (§13.1)")
    syncs = _syncs(conn, 1.0)
    for msg in syncs:
        if "time" in msg:
            raise ServerViolation(f"sync.time without 'time' (§13.1, §19.1): tick {msg['tick']}")
        if _empty(msg):
            raise ServerViolation(f"an empty sync without 'time' (§7.3, §19.1): {msg}")
    granted = "granted" if QUIET in conn.granted else "not granted"
    return f"'quiet' {granted}; {len(syncs)} syncs in 1 s, none empty, none timed"
