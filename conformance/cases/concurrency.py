"""Group 9: concurrency and limits (§9.2, §11)."""

from __future__ import annotations

import time

from conformance.cases.common import despawn_all, spawn_boxes
from conformance.context import Ctx
from conformance.driver import CaseFailure, ConnectionEnded, RecvTimeout, encode, frame
from conformance.model import Outcome, case

G = 9


@case(
    "11.1.1",
    G,
    "50 connections at once all complete the handshake and their full sync",
    budget=15.0,
)
def fifty(ctx: Ctx) -> str:
    conns = [ctx.connect() for _ in range(50)]
    for conn in conns:
        conn.send({"type": "hello", "version": 1})
    for conn in conns:
        conn.accept_welcome(conn.recv_msg(time.monotonic() + ctx.timeout))
    for conn in conns:
        conn.wait(lambda c=conn: c.table.applied > 0, None, "full sync")  # type: ignore[misc]
    members = {conn.member for conn in conns}
    if len(members) != 50:
        raise CaseFailure(f"only {len(members)} distinct membership ids among 50 connections")
    return "50 sessions open, 50 distinct ids"


@case("11.1.2", G, "50 connections each calling at once are all answered", budget=15.0)
def fifty_calls(ctx: Ctx) -> str:
    conns = [ctx.open() for _ in range(50)]
    control = conns[0].control_uid()
    ids = [conn.request(control, "echo", [n]) for n, conn in enumerate(conns)]
    for n, (conn, call_id) in enumerate(zip(conns, ids, strict=True)):
        value = conn.answer(call_id).get("value")
        if value != [n]:
            raise CaseFailure(f"connection {n} got {value!r}")
    return "50 answers"


@case("11.1.3", G, "50 clients all receive the same spawn", budget=15.0)
def fifty_see_spawn(ctx: Ctx) -> str:
    conns = [ctx.open() for _ in range(50)]
    uids = spawn_boxes(conns[0], 2, False)
    for conn in conns:
        conn.wait(lambda c=conn: all(u in c.table.objects for u in uids), None, "spawn")  # type: ignore[misc]
    despawn_all(conns[0], uids)
    return "50 clients saw the spawn"


@case(
    "11.1.4",
    G,
    "100 sequential connect/handshake/disconnect cycles leave the server serving",
    budget=20.0,
)
def churn(ctx: Ctx) -> str:
    for n in range(100):
        conn = ctx.connect()
        if n % 3 == 0:
            conn.close()
            continue
        conn.handshake()
        if n % 3 == 1:
            conn.goodbye()
        else:
            conn.close()
    return ctx.check_alive()


@case(
    "11.2.1",
    G,
    "a slow reader that never reads does not stall other clients' syncs",
    exclusive=True,
    budget=30.0,
    slow=True,
)
def slow_reader(ctx: Ctx) -> Outcome | str:
    slow = ctx.connect(rcvbuf=4096)
    slow.handshake()
    watcher = ctx.open()
    actor = ctx.open()
    control = actor.control_uid()
    uids = spawn_boxes(actor, 10, False)
    worst = 0.0
    pushed = 0
    try:
        for round_no in range(20):
            ids = [
                actor.request(control, "set_value", [uid, f"{round_no}:" + "z" * 100000])
                for uid in uids
            ]
            for call_id in ids:
                if actor.answer(call_id)["type"] != "rpc_result":
                    raise CaseFailure(f"set_value failed: {actor.results[call_id]}")
            pushed += 10 * 100000
            start = time.monotonic()
            watcher.wait(
                lambda r=round_no: all(  # type: ignore[misc]
                    u in watcher.table.objects
                    and str(watcher.table.objects[u].fields.get("value")).startswith(f"{r}:")
                    for u in uids
                ),
                None,
                f"round {round_no} updates",
            )
            worst = max(worst, time.monotonic() - start)
    finally:
        despawn_all(actor, uids)
    if worst > 2.0:
        raise CaseFailure(f"a watcher waited {worst:.2f}s for updates while a reader stalled")
    fate = "still connected"
    try:
        slow.sock.settimeout(0.5)
        drained = 0
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            chunk = slow.sock.recv(1 << 20)
            if not chunk:
                fate = f"dropped by the server (EOF after {drained} bytes)"
                break
            drained += len(chunk)
            if b'"close"' in chunk and b"1013" in chunk:
                fate = "closed with 1013"
    except TimeoutError:
        fate = "still connected (buffered or paused)"
    except OSError as exc:
        fate = f"dropped ({exc.__class__.__name__})"
    return f"~{pushed // 1000000} MB pushed; watcher's worst wait {worst:.2f}s; slow reader {fate}"


@case(
    "11.2.2",
    G,
    "a client that reads nothing for 1.5 s then catches up has a consistent table",
    budget=10.0,
)
def late_reader(ctx: Ctx) -> str:
    lagging = ctx.open()
    actor = ctx.open()
    control = actor.control_uid()
    uids = spawn_boxes(actor, 5, False)
    end = time.monotonic() + 1.5
    n = 0
    while time.monotonic() < end:
        actor.call_ok(control, "set_value", [uids[n % 5], n])
        n += 1
    final = {uid: actor.call_ok(uid, "touch", []) for uid in uids}
    lagging.wait(
        lambda: all(
            u in lagging.table.objects and lagging.table.objects[u].fields.get("value") == v
            for u, v in final.items()
        ),
        None,
        "catch-up",
    )
    despawn_all(actor, uids)
    return f"caught up after {n} updates, {lagging.table.applied} syncs applied"


@case(
    "11.3.1",
    G,
    "2000 pipelined calls are each answered (result, overloaded or rate_limited), none lost",
    budget=20.0,
)
def pipelined(ctx: Ctx) -> Outcome | str:
    conn = ctx.open()
    control = conn.control_uid()
    conn.send_raw(
        b"".join(
            frame(encode({"type": "rpc", "id": n, "uid": control, "method": "echo", "args": [n]}))
            for n in range(2000)
        )
    )
    conn.wait(lambda: all(n in conn.results for n in range(2000)), 15.0, "2000 answers")
    refusals = ("overloaded", "rate_limited")  # §8.3, §11: limits answer, never drop
    overloaded = sum(1 for n in range(2000) if conn.results[n][0].get("code") in refusals)
    other = [
        n
        for n in range(2000)
        if conn.results[n][0]["type"] == "rpc_error"
        and conn.results[n][0].get("code") not in refusals
    ]
    dupes = [n for n in range(2000) if len(conn.results[n]) != 1]
    if other or dupes:
        raise CaseFailure(f"unexpected errors for {other[:5]}, duplicate answers for {dupes[:5]}")
    return f"2000 answered, {overloaded} refused by a limit"


@case("11.3.2", G, "1000 pings sent without reading are all answered once read")
def unread_pings(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.send_raw(b"".join(frame(encode({"type": "ping", "nonce": n})) for n in range(1000)))
    time.sleep(0.5)
    conn.wait(lambda: len(conn.pongs) >= 1000, None, "1000 pongs")
    if conn.pongs[:1000] != list(range(1000)):
        raise CaseFailure("pongs out of order")
    return "1000 pongs in order"


@case(
    "9.2.1",
    G,
    "an idle connection is pinged by the server within the ping interval",
    exclusive=True,
    slow=True,
    budget=20.0,
)
def idle_ping(ctx: Ctx) -> Outcome | str:
    conn = ctx.open()
    conn.auto_pong = False
    start = time.monotonic()
    deadline = start + ctx.settings.ping_wait
    while not conn.pings:
        try:
            msg = conn.recv_msg(deadline)
        except RecvTimeout:
            raise CaseFailure(
                f"no ping within {ctx.settings.ping_wait:.1f}s of silence (§9.2: a server "
                "pings a peer it has received nothing from for the ping interval; pass "
                "--ping-wait above the server's ping interval)"
            ) from None
        except ConnectionEnded as exc:
            raise CaseFailure(f"idle connection ended without ping: {exc}") from None
        conn.pump(msg)
    elapsed = time.monotonic() - start
    conn.send({"type": "pong", "nonce": conn.pings[0]})
    conn.send({"type": "ping", "nonce": 9})
    conn.wait(lambda: 9 in conn.pongs, None, "pong 9")
    return f"pinged after {elapsed:.2f}s of idleness (nonce {conn.pings[0]}); our pong accepted"
