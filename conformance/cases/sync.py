"""Group 6: sync convergence (§7.3, §7.5, §7.6, §7.7)."""

from __future__ import annotations

import json
import random
import time
from typing import Any

from conformance.cases.common import despawn_all, same_json, spawn_boxes
from conformance.context import Ctx
from conformance.driver import CaseFailure, Conn, Msg
from conformance.model import Outcome, case, non_strict

G = 6

VALUES: list[Any] = [
    0,
    -7,
    2**53 - 1,
    -(2**53 - 1),
    3.25,
    -1e-300,
    1e308,
    True,
    False,
    None,
    "",
    "text",
    "ünïcødé 漢字 🎲",
    [],
    [1, "two", None, [3.5]],
    {},
    {"nested": {"list": [1, {"deep": True}]}, "n": None},
]


def _expected_view(
    values: dict[int, Any], owners: dict[int, int | None]
) -> dict[int, tuple[str, Any, str]]:
    return {
        uid: ("Box", owners[uid], json.dumps({"value": value}, sort_keys=True))
        for uid, value in values.items()
    }


def _await_view(
    conn: Conn, expected: dict[int, tuple[str, Any, str]], uids: set[int], timeout: float
) -> None:
    try:
        conn.wait(lambda: conn.table.snapshot(uids) == expected, timeout, "convergence")
    except CaseFailure:
        got = conn.table.snapshot(uids)
        diff = [uid for uid in uids if got.get(uid) != expected.get(uid)]
        raise CaseFailure(
            f"client {conn.member} did not converge: {len(diff)} objects differ, "
            f"e.g. uid {diff[0]}: "
            f"expected {expected.get(diff[0])}, got {got.get(diff[0])}"
        ) from None


def _pipeline(conn: Conn, calls: list[tuple[int, str, list[Any]]]) -> list[Msg]:
    ids = [conn.request(uid, method, args) for uid, method, args in calls]
    replies = [conn.answer(i) for i in ids]
    bad = [r for r in replies if r["type"] != "rpc_result"]
    if bad:
        raise CaseFailure(f"{len(bad)} calls failed, e.g. {bad[0]}")
    return replies


@case("7.3.1", G, "the first sync after welcome is full:true and final parts reassemble")
def first_full(ctx: Ctx) -> str:
    conn = ctx.open()
    return f"first sync tick {conn.table.last_tick}, {len(conn.table.objects)} objects"


@case("7.3.2", G, "the first full sync has empty update and despawn arrays")
def full_is_clean(ctx: Ctx) -> str:
    conn = ctx.connect()
    first: list[Msg] = []
    conn.on_sync = lambda msg: first.append(msg) if len(first) == 0 else None
    conn.open()
    msg = first[0] if first else {}
    if msg.get("update") or msg.get("despawn") or msg.get("full") is not True:
        raise CaseFailure(f"first sync not a clean full snapshot: {str(msg)[:200]}")
    return "update=[] despawn=[] full=true"


@case("7.3.3", G, "a late joiner's full snapshot holds objects spawned and mutated earlier")
def late_joiner(ctx: Ctx) -> str:
    early = ctx.open()
    uids = spawn_boxes(early, 3, True)
    _pipeline(early, [(early.control_uid(), "set_value", [uid, f"v{uid}"]) for uid in uids])
    late = ctx.open()
    missing = [uid for uid in uids if late.table.objects.get(uid) is None]
    wrong = [
        uid
        for uid in uids
        if uid not in missing and late.table.objects[uid].fields.get("value") != f"v{uid}"
    ]
    owners = {late.table.objects[uid].owner for uid in uids if uid not in missing}
    despawn_all(early, uids)
    if missing or wrong:
        raise CaseFailure(f"late joiner missing {missing}, stale values for {wrong}")
    if owners != {early.member}:
        raise CaseFailure(f"late joiner sees owners {owners}, expected {early.member}")
    return "3 boxes with current values and owner"


@case("7.3.4", G, "a change made through one client reaches another as a delta (full:false)")
def delta_reaches_other(ctx: Ctx) -> str:
    a, b = ctx.open(), ctx.open()
    deltas: list[bool] = []
    b.on_sync = lambda msg: deltas.append(msg["full"])
    (uid,) = spawn_boxes(a, 1, False)
    a.control("set_value", uid, "seen")
    b.wait(
        lambda: uid in b.table.objects and b.table.objects[uid].fields.get("value") == "seen",
        None,
        "update",
    )
    a.control("despawn", uid)
    if all(deltas):
        return f"change arrived only in full syncs ({len(deltas)} syncs)"
    return f"change arrived in {deltas.count(False)} delta(s)"


@case("7.3.5", G, "no sync is sent for ticks in which nothing changed", exclusive=True, budget=6.0)
def quiet_world(ctx: Ctx) -> Outcome | str:
    conn = ctx.open()
    extra: list[Msg] = []
    conn.on_sync = extra.append
    conn.drain(0.6)
    if not extra:
        return "no sync during 0.6 s of a quiet world"
    empty = [m for m in extra if not m["full"] and not (m["spawn"] or m["update"] or m["despawn"])]
    if empty:
        raise CaseFailure(f"{len(empty)} empty delta syncs in 0.6 s of a quiet world (§7.3)")
    return non_strict(f"{len(extra)} repeated full syncs in a quiet world (allowed by §7.3)")


@case(
    "7.3.6",
    G,
    "4 clients converge after ~250 mutations from all of them, and a late joiner agrees",
    budget=20.0,
)
def convergence(ctx: Ctx) -> str:
    rng = random.Random(20240601)
    clients = [ctx.open() for _ in range(4)]
    control = clients[0].control_uid()
    owners: dict[int, int | None] = {}
    values: dict[int, Any] = {}
    gone: set[int] = set()
    for index, conn in enumerate(clients):
        owned = index % 2 == 0
        for uid in spawn_boxes(conn, 6, owned):
            owners[uid] = conn.member if owned else None
            values[uid] = 0
    for round_no in range(5):
        batches: dict[int, list[tuple[int, str, list[Any]]]] = {i: [] for i in range(4)}
        for _ in range(40):
            uid = rng.choice(sorted(values))
            value = rng.choice(VALUES)
            if isinstance(value, str):
                value = f"{value}-{round_no}-{rng.randrange(1000)}"
            values[uid] = value
            batches[rng.randrange(4)].append((control, "set_value", [uid, value]))
        # Calls from different clients may interleave: give each uid one writer per round.
        by_uid: dict[int, int] = {}
        for index in range(4):
            for _c, _m, args in batches[index]:
                by_uid[args[0]] = index
        batches = {i: [] for i in range(4)}
        for uid, index in sorted(by_uid.items()):
            batches[index].append((control, "set_value", [uid, values[uid]]))
        ids = {i: [clients[i].request(*call) for call in batches[i]] for i in range(4)}
        for i, call_ids in ids.items():
            for call_id in call_ids:
                if clients[i].answer(call_id)["type"] != "rpc_result":
                    raise CaseFailure(f"set_value failed: {clients[i].results[call_id]}")
        if round_no in (1, 3):
            victims = rng.sample(sorted(values), 3)
            _pipeline(clients[round_no], [(control, "despawn", [uid]) for uid in victims])
            for uid in victims:
                gone.add(uid)
                del values[uid]
                del owners[uid]
            for uid in spawn_boxes(clients[round_no], 2, True):
                owners[uid] = clients[round_no].member
                values[uid] = 0
    expected = _expected_view(values, owners)
    uids = set(expected)
    for conn in clients:
        _await_view(conn, expected, uids | gone, ctx.timeout)
    late = ctx.open()
    _await_view(late, expected, uids | gone, ctx.timeout)
    despawn_all(clients[0], sorted(uids))
    syncs = sum(conn.table.applied for conn in clients)
    return f"5 clients agree on {len(uids)} objects after {syncs} applied syncs"


@case("7.3.7", G, "a despawn reaches every one of 5 clients")
def despawn_everywhere(ctx: Ctx) -> str:
    clients = [ctx.open() for _ in range(5)]
    uids = spawn_boxes(clients[0], 3, False)
    for conn in clients:
        conn.wait(lambda c=conn: all(u in c.table.objects for u in uids), None, "spawns")  # type: ignore[misc]
    clients[1].control("despawn", uids[1])
    for conn in clients:
        conn.wait(lambda c=conn: uids[1] not in c.table.objects, None, "despawn")  # type: ignore[misc]
    despawn_all(clients[0], [uids[0], uids[2]])
    for conn in clients:
        conn.wait(lambda c=conn: not any(u in c.table.objects for u in uids), None, "despawns")  # type: ignore[misc]
    return "all 5 clients dropped the despawned objects"


@case("7.3.8", G, "an object spawned and despawned between two ticks never lingers on a client")
def blink(ctx: Ctx) -> str:
    watcher = ctx.open()
    actor = ctx.open()
    control = actor.control_uid()
    blinks: list[int] = []
    for _ in range(5):
        spawn_id = actor.request(control, "spawn", [1, False])
        (uid,) = actor.answer(spawn_id)["value"]
        actor.request(control, "despawn", [uid])
        blinks.append(uid)
    actor.wait(lambda: len(actor.results) >= 10, None, "answers")
    ping = 4242
    watcher.send({"type": "ping", "nonce": ping})
    watcher.wait(lambda: ping in watcher.pongs, None, "pong")
    watcher.wait(lambda: not any(u in watcher.table.objects for u in blinks), None, "despawns")
    return "no lingering objects, no sync violation"


@case("7.3.9", G, "set_value with every JSON type replicates exactly to another client")
def every_type(ctx: Ctx) -> str:
    a, b = ctx.open(), ctx.open()
    uids = spawn_boxes(a, len(VALUES), False)
    _pipeline(
        a,
        [
            (a.control_uid(), "set_value", [uid, value])
            for uid, value in zip(uids, VALUES, strict=True)
        ],
    )

    def done() -> bool:
        return all(
            uid in b.table.objects and same_json(b.table.objects[uid].fields.get("value"), value)
            for uid, value in zip(uids, VALUES, strict=True)
        )

    try:
        b.wait(done, None, "all values")
    finally:
        despawn_all(a, uids)
    return f"{len(VALUES)} values replicated exactly"


@case("7.3.10", G, "50 pipelined set_value calls on one Box converge to the last value")
def rapid_updates(ctx: Ctx) -> str:
    a, b = ctx.open(), ctx.open()
    (uid,) = spawn_boxes(a, 1, False)
    _pipeline(a, [(a.control_uid(), "set_value", [uid, n]) for n in range(50)])
    b.wait(
        lambda: uid in b.table.objects and b.table.objects[uid].fields.get("value") == 49,
        None,
        "value 49",
    )
    a.control("despawn", uid)
    return f"converged to 49 after {b.table.applied} syncs"


@case("7.3.11", G, "objects owned by a client that disconnected (informational)")
def orphan(ctx: Ctx) -> Outcome:
    from conformance.model import info

    owner = ctx.open()
    watcher = ctx.open()
    (uid,) = spawn_boxes(owner, 1, True)
    watcher.wait(lambda: uid in watcher.table.objects, None, "spawn")
    owner.goodbye()
    watcher.drain(0.3)
    rep = watcher.table.objects.get(uid)
    if rep is None:
        return info("the owner's objects were despawned when it left")
    watcher.control("despawn", uid)
    return info(f"the object stayed, owner now {rep.owner}")


@case(
    "7.5.1",
    G,
    "a full sync larger than the client's max_frame (65536) is split into parts",
    budget=15.0,
)
def split_full(ctx: Ctx) -> str:
    builder = ctx.open()
    control = builder.control_uid()
    uids = spawn_boxes(builder, 150, False)
    try:
        _pipeline(builder, [(control, "set_value", [uid, "p" * 700 + str(uid)]) for uid in uids])
        small = ctx.connect(max_frame=65536)
        parts: list[Msg] = []
        small.handshake()
        first_tick: list[int] = []

        def record(msg: Msg) -> None:
            if not first_tick:
                first_tick.append(msg["tick"])
            if msg["tick"] == first_tick[0]:
                parts.append(msg)

        small_sizes_before = len(small.frame_sizes)
        deadline = time.monotonic() + ctx.timeout
        while small.table.applied == 0:
            msg = small.recv_msg(deadline)
            if msg["type"] == "sync":
                record(msg)
            small.pump(msg)
        missing = [uid for uid in uids if small.table.objects.get(uid) is None]
        wrong = [
            uid
            for uid in uids
            if uid not in missing
            and small.table.objects[uid].fields.get("value") != "p" * 700 + str(uid)
        ]
    finally:
        despawn_all(builder, uids)
    sizes = small.frame_sizes[small_sizes_before:]
    if len(parts) < 2:
        raise CaseFailure(f"a ~110 KB snapshot arrived in {len(parts)} part(s) (§7.5)")
    if any(p["final"] for p in parts[:-1]) or not parts[-1]["final"]:
        raise CaseFailure("final flags wrong: all parts but the last must have final:false (§7.5)")
    if missing or wrong:
        raise CaseFailure(
            f"reassembled snapshot lacks {len(missing)} boxes, {len(wrong)} wrong values"
        )
    return f"{len(parts)} parts, largest frame {max(sizes)} bytes <= 65536"


@case(
    "7.5.2",
    G,
    "a large delta to a client with max_frame 65536 arrives within the limit",
    budget=15.0,
)
def split_delta(ctx: Ctx) -> str:
    small = ctx.open(max_frame=65536)
    builder = ctx.open()
    control = builder.control_uid()
    uids = spawn_boxes(builder, 120, False)
    try:
        _pipeline(builder, [(control, "set_value", [uid, "d" * 900 + str(uid)]) for uid in uids])
        small.wait(
            lambda: all(
                uid in small.table.objects
                and small.table.objects[uid].fields.get("value") == "d" * 900 + str(uid)
                for uid in uids
            ),
            None,
            "all large updates",
        )
    finally:
        despawn_all(builder, uids)
    return f"largest frame {max(small.frame_sizes)} bytes, {small.table.multipart} multi-part syncs"


@case("7.6.1", G, "sync ticks strictly increase on a connection during 1 s of churn")
def ticks_increase(ctx: Ctx) -> str:
    watcher = ctx.open()
    actor = ctx.open()
    control = actor.control_uid()
    (uid,) = spawn_boxes(actor, 1, False)
    end = time.monotonic() + 1.0
    n = 0
    while time.monotonic() < end:
        actor.call_ok(control, "set_value", [uid, n])
        n += 1
        watcher.drain(0.0)
    actor.control("despawn", uid)
    watcher.wait(lambda: uid not in watcher.table.objects, None, "despawn")
    ticks = watcher.table.ticks
    return f"{len(ticks)} syncs, ticks {ticks[0]}..{ticks[-1]} strictly increasing"


@case(
    "7.6.2",
    G,
    "update and despawn of one object in one tick apply cleanly (spawn, update, despawn order)",
)
def same_tick_order(ctx: Ctx) -> str:
    watcher = ctx.open()
    actor = ctx.open()
    control = actor.control_uid()
    for _ in range(5):
        (uid,) = spawn_boxes(actor, 1, False)
        first = actor.request(control, "set_value", [uid, "last words"])
        second = actor.request(control, "despawn", [uid])
        actor.answer(first)
        actor.answer(second)
    watcher.drain(0.2)
    return f"{watcher.table.applied} syncs applied without violations"


@case("7.6.3", G, "3 clients watching 2 s of concurrent churn see only legal deltas", budget=10.0)
def churn_legal(ctx: Ctx) -> str:
    watchers = [ctx.open() for _ in range(3)]
    actors = [ctx.open() for _ in range(2)]
    control = actors[0].control_uid()
    mine: list[int] = []
    end = time.monotonic() + 2.0
    rng = random.Random(7)
    while time.monotonic() < end:
        for actor in actors:
            op = rng.random()
            if op < 0.4 or not mine:
                mine += spawn_boxes(actor, 2, rng.random() < 0.5)
            elif op < 0.8:
                actor.call_ok(control, "set_value", [rng.choice(mine), rng.random()])
            else:
                victim = mine.pop(rng.randrange(len(mine)))
                actor.call_ok(control, "despawn", [victim])
        for watcher in watchers:
            watcher.drain(0.0)
    despawn_all(actors[0], mine)
    for watcher in watchers:
        watcher.wait(lambda w=watcher: not any(u in w.table.objects for u in mine), None, "cleanup")  # type: ignore[misc]
    return f"{sum(w.table.applied for w in watchers)} syncs applied without violations"


@case(
    "7.7.1",
    G,
    "a field set to a lone-surrogate string (\\ud800) does not stop the server's syncs",
    risky=True,
    budget=8.0,
)
def unencodable_field(ctx: Ctx) -> str:
    actor = ctx.open()
    watcher = ctx.open()
    control = actor.control_uid()
    (uid,) = spawn_boxes(actor, 1, False)
    payload = (
        f'{{"type":"rpc","id":900,"uid":{control},"method":"set_value","args":[{uid},"\\ud800"]}}'
    ).encode()
    actor.send_frame(payload)
    try:
        reply = actor.answer(900)
        detail = f"set_value answered {reply['type']}"
    except CaseFailure as exc:
        detail = f"set_value not answered ({exc})"
    (probe,) = spawn_boxes(watcher, 1, False)
    watcher.wait(lambda: probe in watcher.table.objects, None, "a later spawn")
    alive = ctx.check_alive()
    despawn_all(watcher, [uid, probe])
    return f"{detail}; later syncs still flow; {alive}"
