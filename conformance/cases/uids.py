"""Group 4: UIDs (§7.1, §7.2)."""

from __future__ import annotations

import threading

from conformance.cases.common import despawn_all, expect_error, spawn_boxes
from conformance.context import Ctx
from conformance.driver import CaseFailure, Conn, is_int
from conformance.model import Outcome, case, non_strict

G = 4


def _wait_for(conn: Conn, uids: list[int], present: bool = True) -> None:
    what = "spawns" if present else "despawns"
    conn.wait(
        lambda: all((uid in conn.table.objects) == present for uid in uids),
        None,
        f"{what} of {uids[:5]}... to reach the client",
    )


@case("7.1.1", G, "every UID in the first full sync is a positive int")
def positive(ctx: Ctx) -> str:
    conn = ctx.open()
    uids = list(conn.table.objects)
    if not all(is_int(uid) and uid > 0 for uid in uids):
        raise CaseFailure(f"non-positive UIDs: {uids}")
    return f"{len(uids)} objects, all UIDs positive"


@case("7.1.2", G, "exactly one Control object exists, with owner null")
def control_object(ctx: Ctx) -> str:
    conn = ctx.open()
    control = conn.control_uid()
    owner = conn.table.objects[control].owner
    if owner is not None:
        raise CaseFailure(f"Control owner is {owner}, expected null")
    return f"Control uid {control}"


@case("7.1.3", G, "spawn(5) returns 5 distinct UIDs that arrive as Box spawn entries")
def spawn_five(ctx: Ctx) -> str:
    conn = ctx.open()
    uids = spawn_boxes(conn, 5, False)
    if len(set(uids)) != 5:
        raise CaseFailure(f"duplicate UIDs {uids}")
    _wait_for(conn, uids)
    wrong = [uid for uid in uids if conn.table.objects[uid].type != "Box"]
    despawn_all(conn, uids)
    if wrong:
        raise CaseFailure(f"objects {wrong} are not of type Box")
    return f"uids {uids}"


@case("7.1.4", G, "the same UIDs are seen by 10 clients")
def same_everywhere(ctx: Ctx) -> str:
    clients = [ctx.open() for _ in range(10)]
    uids = spawn_boxes(clients[0], 4, False)
    for conn in clients:
        _wait_for(conn, uids)
    views = {tuple(sorted(uid for uid in conn.table.objects if uid in uids)) for conn in clients}
    despawn_all(clients[0], uids)
    if len(views) != 1:
        raise CaseFailure(f"clients disagree: {views}")
    return f"10 clients agree on {uids}"


@case("7.1.5", G, "UIDs are never reused after despawn (30 spawn/despawn rounds)")
def never_reused(ctx: Ctx) -> str:
    conn = ctx.open()
    seen: set[int] = set(conn.table.objects)
    for _ in range(30):
        (uid,) = spawn_boxes(conn, 1, False)
        if uid in seen:
            raise CaseFailure(f"UID {uid} was reused (§7.1)")
        seen.add(uid)
        if conn.control("despawn", uid) is not True:
            raise CaseFailure(f"despawn({uid}) did not return true")
    return f"30 fresh UIDs, max {max(seen)}"


@case("7.1.6", G, "UIDs from 6 clients spawning concurrently are all distinct")
def concurrent_unique(ctx: Ctx) -> str:
    clients = [ctx.open() for _ in range(6)]
    results: dict[int, list[int]] = {}
    errors: list[str] = []

    def work(index: int, conn: Conn) -> None:
        try:
            got: list[int] = []
            for _ in range(5):
                got += spawn_boxes(conn, 3, False)
            results[index] = got
        except CaseFailure as exc:
            errors.append(str(exc))

    threads = [
        threading.Thread(target=work, args=(i, c), daemon=True) for i, c in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(ctx.timeout)
    if errors or len(results) != 6:
        raise CaseFailure(f"spawning failed: {errors or 'timeout'}")
    everything = [uid for got in results.values() for uid in got]
    despawn_all(clients[0], everything)
    if len(set(everything)) != len(everything):
        raise CaseFailure("duplicate UIDs across concurrent spawns")
    return f"{len(everything)} distinct UIDs"


@case("7.1.7", G, "rpc on a never-spawned UID (2^53-1): rpc_error unknown_object")
def unknown_uid(ctx: Ctx) -> str:
    conn = ctx.open()
    return expect_error(conn.call(2**53 - 1, "touch", []), "unknown_object", "§8.2")


@case("7.1.8", G, "rpc on UID 0: rpc_error unknown_object")
def uid_zero(ctx: Ctx) -> str:
    conn = ctx.open()
    return expect_error(conn.call(0, "touch", []), "unknown_object", "§8.2")


@case("7.1.9", G, "rpc on a negative UID: rpc_error unknown_object")
def uid_negative(ctx: Ctx) -> Outcome | str:
    conn = ctx.open()
    call_id = conn.request(-5, "touch", [])
    try:
        reply = conn.answer(call_id)
    except CaseFailure:
        if conn.close_msg is not None and conn.close_msg.get("code") == 1002:
            return non_strict(
                f"closed with 1002 instead of answering unknown_object; {ctx.check_alive()}"
            )
        raise
    return expect_error(reply, "unknown_object", "§8.2")


@case("7.1.10", G, "rpc on a despawned UID: rpc_error unknown_object")
def despawned_uid(ctx: Ctx) -> str:
    conn = ctx.open()
    (uid,) = spawn_boxes(conn, 1, False)
    conn.control("despawn", uid)
    return expect_error(conn.call(uid, "touch", []), "unknown_object", "§8.2, §8.3")


@case("7.1.11", G, "despawn of an unknown UID returns false and changes nothing")
def despawn_unknown(ctx: Ctx) -> str:
    conn = ctx.open()
    value = conn.control("despawn", 2**52)
    if value is not False:
        raise CaseFailure(f"despawn(unknown) returned {value!r}, expected false")
    return "false"


@case("7.1.12", G, "a UID despawned on one client is unknown_object for another client")
def cross_client_unknown(ctx: Ctx) -> str:
    a, b = ctx.open(), ctx.open()
    (uid,) = spawn_boxes(a, 1, False)
    _wait_for(b, [uid])
    a.control("despawn", uid)
    _wait_for(b, [uid], present=False)
    return expect_error(b.call(uid, "touch", []), "unknown_object", "§8.3")


@case("7.2.1", G, "Box spawn entries carry type, owner, args [0] and fields {value: 0}")
def spawn_entry_shape(ctx: Ctx) -> str:
    conn = ctx.open()
    (uid,) = spawn_boxes(conn, 1, False)
    _wait_for(conn, [uid])
    rep = conn.table.objects[uid]
    conn.control("despawn", uid)
    if (
        rep.type != "Box"
        or rep.owner is not None
        or rep.args != [0]
        or rep.fields.get("value") != 0
    ):
        raise CaseFailure(f"unexpected spawn entry {rep}")
    return f"{rep}"


@case("7.2.2", G, "an update entry holds only the changed fields (value)")
def update_entry_shape(ctx: Ctx) -> str:
    conn = ctx.open()
    (uid,) = spawn_boxes(conn, 1, False)
    _wait_for(conn, [uid])
    updates: list[dict[str, object]] = []
    conn.on_sync = lambda msg: updates.extend(e for e in msg["update"] if e.get("uid") == uid)
    conn.control("set_value", uid, 17)
    conn.wait(
        lambda: conn.table.objects[uid].fields.get("value") == 17, None, "the update of value"
    )
    conn.control("despawn", uid)
    if not updates:
        raise CaseFailure("the change arrived without an update entry")
    keys = sorted(updates[0]["fields"])  # type: ignore[call-overload]
    if keys != ["value"]:
        raise CaseFailure(f"update entry fields {keys}, expected only ['value'] (§7.2)")
    return f"update entry {updates[0]}"


@case("7.2.3", G, "a late joiner's spawn entry for a mutated Box holds the current fields")
def late_spawn_fields(ctx: Ctx) -> str:
    conn = ctx.open()
    (uid,) = spawn_boxes(conn, 1, False)
    conn.control("set_value", uid, {"hp": 3, "tags": ["a"]})
    late = ctx.open()
    rep = late.table.objects.get(uid)
    conn.control("despawn", uid)
    if rep is None or rep.fields.get("value") != {"hp": 3, "tags": ["a"]}:
        raise CaseFailure(f"late joiner saw {rep}")
    return f"late joiner saw {rep.fields}"
