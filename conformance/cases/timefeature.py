"""Group 12: the feature "time" (§13): server time on welcome, syncs and pongs, a sync every
tick, and nothing of it on connections that did not ask.

A server need not implement ``"time"``: when it does not grant it, the cases that need it are
non-strict. The descriptions carry the design's names (time-01 .. time-07).
"""

from __future__ import annotations

import json
import time
from typing import Any

from conformance.cases.common import bad_payload
from conformance.context import Ctx
from conformance.driver import CaseFailure, Conn, Msg, RecvTimeout, ServerViolation
from conformance.model import Outcome, case, non_strict

G = 12
TIME = "time"


def _is_time(value: Any) -> bool:
    return type(value) in (int, float) and value >= 0


def _collect(conn: Conn, seconds: float, ping: bool = False) -> list[Msg]:
    """Every message received for ``seconds`` (book-kept as usual); one ``ping`` first."""
    if ping:
        conn.send({"type": "ping", "nonce": 4242})
    seen: list[Msg] = []
    deadline = time.monotonic() + seconds
    while True:
        try:
            msg = conn.recv_msg(deadline)
        except RecvTimeout:
            return seen
        seen.append(msg)
        conn.pump(msg)


def _time_conn(ctx: Ctx, features: list[Any] | None = None) -> tuple[Conn, Msg, bool]:
    """A connection that asked for "time" (and its first full sync); whether granted."""
    conn = ctx.connect()
    welcome = conn.handshake(features=features if features is not None else [TIME])
    granted = welcome.get("features", [])
    if not isinstance(granted, list) or not all(isinstance(f, str) for f in granted):
        raise ServerViolation(f"welcome.features is not an array of strings (§4.11): {granted}")
    asked = set(features if features is not None else [TIME])
    if not set(granted) <= asked:
        raise ServerViolation(f"welcome.features grants what was not asked (§4.11): {granted}")
    conn.wait(lambda: conn.table.applied > 0, None, "the first full sync")
    return conn, welcome, TIME in granted


@case(
    "13.1.1",
    G,
    "time-01: without hello.features: no welcome.time, no sync.time, no pong.time, no empty syncs",
    exclusive=True,
)
def no_time(ctx: Ctx) -> str:
    conn = ctx.connect()
    welcome = conn.handshake()
    for key in ("features", "time"):
        if key in welcome:
            raise ServerViolation(f"welcome.{key} without hello.features (§13.1): {welcome}")
    conn.wait(lambda: conn.table.applied > 0, None, "the first full sync")
    seen = _collect(conn, 1.0, ping=True)
    pongs = [m for m in seen if m["type"] == "pong"]
    if not pongs:
        raise CaseFailure("no pong to the ping within 1 s (§9.1)")
    syncs = [m for m in seen if m["type"] == "sync"]
    for msg in pongs + syncs:
        if "time" in msg:
            raise ServerViolation(f"{msg['type']}.time without the feature (§13.1): {msg}")
    empty = [m for m in syncs if not (m["spawn"] or m["update"] or m["despawn"] or "schema" in m)]
    if empty:
        raise ServerViolation(f"{len(empty)} empty syncs to a plain connection (§7.3, §13.7)")
    return f"{len(syncs)} syncs in 1 s of a quiet world, none empty, none timed"


@case("13.2.1", G, "time-02: hello.features ['time'] is granted, welcome.time is a number")
def granted(ctx: Ctx) -> Outcome | str:
    _, welcome, ok = _time_conn(ctx)
    if not ok:
        if "time" in welcome:
            raise ServerViolation(f"welcome.time without granting 'time' (§13.1): {welcome}")
        return non_strict("the server does not implement 'time'")
    if not _is_time(welcome.get("time")):
        raise ServerViolation(f"welcome.time is not a number >= 0 (§13.2): {welcome}")
    return f"granted; welcome.time {welcome['time']}"


@case("13.3.1", G, "time-03: every sync carries time, equal on parts, increasing with tick")
def sync_time(ctx: Ctx) -> Outcome | str:
    conn, welcome, ok = _time_conn(ctx)
    if not ok:
        return non_strict("the server does not implement 'time'")
    syncs = [m for m in _collect(conn, 1.0) if m["type"] == "sync"]
    last: tuple[int, float] | None = None
    for msg in syncs:
        stamp = msg.get("time")
        if not _is_time(stamp):
            raise ServerViolation(f"sync without a number time (§13.3): {json.dumps(msg)[:200]}")
        if last is not None:
            tick, before = last
            if msg["tick"] == tick and stamp != before:
                raise ServerViolation(f"parts of tick {tick} differ in time (§13.3)")
            if msg["tick"] > tick and not stamp > before:
                raise ServerViolation(f"sync.time {stamp} after {before} does not increase (§13.3)")
        last = (msg["tick"], stamp)
    if len(syncs) < 2:
        raise CaseFailure(f"only {len(syncs)} syncs in 1 s on a 'time' connection (§13.7)")
    if syncs[0]["time"] < welcome["time"]:
        raise ServerViolation("a sync.time before welcome.time: the clock went back (§13.1)")
    return f"{len(syncs)} syncs, times increasing with their ticks"


@case("13.7.1", G, "time-04: a tick with no change still yields an empty sync", exclusive=True)
def empty_syncs(ctx: Ctx) -> Outcome | str:
    conn, _, ok = _time_conn(ctx)
    if not ok:
        return non_strict("the server does not implement 'time'")
    tick_rate = float(conn.welcome["tick_rate"]) if conn.welcome else 30.0
    syncs = [m for m in _collect(conn, 1.0) if m["type"] == "sync"]
    empty = [m for m in syncs if not (m["spawn"] or m["update"] or m["despawn"])]
    if not empty:
        raise ServerViolation("no empty sync in 1 s of a quiet world (§13.7)")
    ticks = [m["tick"] for m in syncs if m["final"]]
    if len(ticks) < tick_rate / 2:
        raise ServerViolation(
            f"{len(ticks)} syncs in 1 s at tick_rate {tick_rate}: not one per tick (§13.7)"
        )
    for msg in empty:
        if msg["full"] is not False or msg["final"] is not True:
            raise ServerViolation(f"an empty sync must be full:false, final:true (§13.7): {msg}")
    return f"{len(ticks)} syncs in 1 s ({len(empty)} empty) at tick_rate {tick_rate}"


@case("13.4.1", G, "time-05: a pong carries time, at least the preceding sync's time")
def pong_time(ctx: Ctx) -> Outcome | str:
    conn, _, ok = _time_conn(ctx)
    if not ok:
        return non_strict("the server does not implement 'time'")
    latest: float | None = None
    deadline = time.monotonic() + 1.0
    while latest is None:  # a sync first, so that the pong has a time to follow
        msg = conn.recv_msg(deadline)
        conn.pump(msg)
        if msg["type"] == "sync":
            latest = msg.get("time")
    seen = _collect(conn, 0.5, ping=True)
    for msg in seen:
        if msg["type"] == "sync":
            latest = msg.get("time")
        elif msg["type"] == "pong" and msg.get("nonce") == 4242:
            stamp = msg.get("time")
            if not _is_time(stamp):
                raise ServerViolation(f"pong without a number time (§13.4): {msg}")
            if latest is not None and stamp < latest:
                raise ServerViolation(f"pong.time {stamp} before the sync.time {latest} (§13.4)")
            return f"pong.time {stamp}, latest sync.time before it {latest}"
    raise CaseFailure("no pong to the ping within 0.5 s (§9.1)")


@case("4.11.6", G, "time-06: hello.features that is a string, not an array, closes 1002")
def features_string(ctx: Ctx) -> Outcome | str:
    payload = json.dumps({"type": "hello", "version": 1, "features": "time"})
    return bad_payload(ctx, payload, 1002, section="4.11", state="handshake")


@case("13.1.2", G, "time-07: unknown feature names beside 'time' are ignored, not granted")
def unknown_beside_time(ctx: Ctx) -> Outcome | str:
    _, welcome, ok = _time_conn(ctx, ["warp-drive", TIME, "z" * 32])
    granted = welcome.get("features", [])
    if "warp-drive" in granted or "z" * 32 in granted:
        raise ServerViolation(f"welcome.features grants unknown names (§4.11): {granted}")
    return f"granted {granted}" if ok else non_strict("the server does not implement 'time'")
