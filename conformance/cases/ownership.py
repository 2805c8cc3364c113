"""Group 5: membership ids and ownership (§4.3, §7.4, §8.2, §3.5)."""

from __future__ import annotations

import time

from conformance.cases.common import expect_error, expect_result, spawn_boxes
from conformance.context import Ctx
from conformance.driver import CaseFailure, Conn
from conformance.model import case

G = 5


def _owned_box(ctx: Ctx) -> tuple[Conn, Conn, int]:
    """An owner and another client, both holding a Box owned by the first one."""
    owner, other = ctx.open(), ctx.open()
    (uid,) = spawn_boxes(owner, 1, True)
    for conn in (owner, other):
        conn.wait(lambda c=conn: uid in c.table.objects, None, f"spawn of {uid}")  # type: ignore[misc]
    return owner, other, uid


def _value(conn: Conn, uid: int) -> object:
    return conn.call_ok(uid, "touch", [])


@case("4.3.10", G, "membership ids of 20 sequential connections are positive and distinct")
def sequential_ids(ctx: Ctx) -> str:
    ids = []
    for _ in range(20):
        conn = ctx.connect()
        ids.append(conn.handshake()["member"])
        conn.goodbye()
    if len(set(ids)) != len(ids) or min(ids) <= 0:
        raise CaseFailure(f"membership ids not unique/positive: {ids}")
    return f"ids {ids[0]}..{ids[-1]}"


@case("4.3.11", G, "membership ids of 30 simultaneous connections are distinct")
def simultaneous_ids(ctx: Ctx) -> str:
    conns = [ctx.connect() for _ in range(30)]
    for conn in conns:
        conn.send({"type": "hello", "version": 1})
    ids = []
    for conn in conns:
        msg = conn.recv_msg(time.monotonic() + conn.timeout)
        ids.append(conn.accept_welcome(msg)["member"])
    if len(set(ids)) != 30:
        raise CaseFailure(f"duplicate membership ids: {sorted(ids)}")
    return f"30 distinct ids, range {min(ids)}..{max(ids)}"


@case("4.3.12", G, "whoami() returns the member announced in welcome")
def whoami(ctx: Ctx) -> str:
    conn = ctx.open()
    got = conn.control("whoami")
    if got != conn.member:
        raise CaseFailure(f"whoami() = {got!r}, welcome.member = {conn.member}")
    return f"member {got}"


@case("4.3.13", G, "a hello claiming a member id is ignored (the server assigns its own)")
def hello_claims_member(ctx: Ctx) -> str:
    conn = ctx.connect()
    conn.handshake(member=987654321)
    if conn.member == 987654321:
        raise CaseFailure("the server adopted the member id claimed in hello (§3.5)")
    conn.wait(lambda: conn.table.applied > 0, None, "full sync")
    got = conn.control("whoami")
    if got != conn.member:
        raise CaseFailure(f"whoami() = {got}, welcome.member = {conn.member}")
    return f"assigned {conn.member}"


@case("7.4.1", G, "spawn(owned=true): the spawn entry's owner is the caller's member")
def owned_spawn(ctx: Ctx) -> str:
    owner, _other, uid = _owned_box(ctx)
    got = owner.table.objects[uid].owner
    owner.control("despawn", uid)
    if got != owner.member:
        raise CaseFailure(f"owner field {got}, expected {owner.member}")
    return f"owner {got}"


@case("7.4.2", G, "spawn(owned=false): owner is null")
def unowned_spawn(ctx: Ctx) -> str:
    conn = ctx.open()
    (uid,) = spawn_boxes(conn, 1, False)
    conn.wait(lambda: uid in conn.table.objects, None, "spawn")
    got = conn.table.objects[uid].owner
    conn.control("despawn", uid)
    if got is not None:
        raise CaseFailure(f"owner {got}, expected null")
    return "owner null"


@case("7.4.3", G, "every client sees the same owner for the same object (5 owners x 5 clients)")
def same_owner_everywhere(ctx: Ctx) -> str:
    clients = [ctx.open() for _ in range(5)]
    boxes = {conn.member: spawn_boxes(conn, 1, True)[0] for conn in clients}
    for conn in clients:
        conn.wait(lambda c=conn: all(u in c.table.objects for u in boxes.values()), None, "spawns")  # type: ignore[misc]
        for member, uid in boxes.items():
            if conn.table.objects[uid].owner != member:
                raise CaseFailure(
                    f"client {conn.member} sees owner {conn.table.objects[uid].owner} for {uid}, "
                    f"expected {member}"
                )
    for conn in clients:
        conn.control("despawn", boxes[conn.member])
    return "all 5 clients agree on all 5 owners"


@case("7.4.4", G, "the owner may call an owner-only method (bump) and gets the new value")
def owner_bump(ctx: Ctx) -> str:
    owner, other, uid = _owned_box(ctx)
    result = expect_result(owner.call(uid, "bump", [5]), 5, "§8.2")
    other.wait(
        lambda: other.table.objects[uid].fields.get("value") == 5, None, "value 5 replicated"
    )
    owner.control("despawn", uid)
    return result + ", replicated"


@case("8.2.20", G, "a non-owner calling bump gets not_owner and the value is unchanged")
def non_owner_bump(ctx: Ctx) -> str:
    owner, other, uid = _owned_box(ctx)
    detail = expect_error(other.call(uid, "bump", [5]), "not_owner", "§8.2")
    value = _value(owner, uid)
    owner.control("despawn", uid)
    if value != 0:
        raise CaseFailure(f"the refused bump ran: value is {value}")
    return detail + ", value still 0"


@case("8.2.21", G, "bump on an unowned (owner null) Box: not_owner")
def unowned_bump(ctx: Ctx) -> str:
    conn = ctx.open()
    (uid,) = spawn_boxes(conn, 1, False)
    detail = expect_error(conn.call(uid, "bump", [1]), "not_owner", "§8.2")
    value = _value(conn, uid)
    conn.control("despawn", uid)
    if value != 0:
        raise CaseFailure(f"the refused bump ran: value is {value}")
    return detail


@case("8.2.22", G, "a non-owner may call an exposed-to-anyone method (touch)")
def non_owner_touch(ctx: Ctx) -> str:
    owner, other, uid = _owned_box(ctx)
    result = expect_result(other.call(uid, "touch", []), 0, "§8.2")
    owner.control("despawn", uid)
    return result


@case("8.2.23", G, "non-owner bump with wrong arguments: not_owner is checked before bad_arguments")
def not_owner_before_args(ctx: Ctx) -> str:
    owner, other, uid = _owned_box(ctx)
    detail = expect_error(other.call(uid, "bump", [1, 2, 3]), "not_owner", "§8.2 order")
    owner.control("despawn", uid)
    return detail


@case("8.2.24", G, "non-owner calling an unexposed method: not_exposed is checked before not_owner")
def not_exposed_before_owner(ctx: Ctx) -> str:
    owner, other, uid = _owned_box(ctx)
    detail = expect_error(other.call(uid, "hidden", []), "not_exposed", "§8.2 order")
    owner.control("despawn", uid)
    return detail


@case("8.2.25", G, "many refused non-owner bumps (50) never change the value")
def many_refused(ctx: Ctx) -> str:
    owner, other, uid = _owned_box(ctx)
    ids = [other.request(uid, "bump", [1]) for _ in range(50)]
    codes = {other.answer(i)["type"] for i in ids}
    errors = {other.results[i][0].get("code") for i in ids}
    value = _value(owner, uid)
    owner.control("despawn", uid)
    if codes != {"rpc_error"} or errors != {"not_owner"} or value != 0:
        raise CaseFailure(f"answers {codes} {errors}, value {value}")
    return "50 x not_owner, value 0"


@case("3.5.30", G, "an rpc claiming member=<owner> from a non-owner is still not_owner")
def claimed_member(ctx: Ctx) -> str:
    owner, other, uid = _owned_box(ctx)
    reply = other.call(uid, "bump", [1], member=owner.member)
    detail = expect_error(reply, "not_owner", "§3.5")
    value = _value(owner, uid)
    owner.control("despawn", uid)
    if value != 0:
        raise CaseFailure(f"value changed to {value}")
    return detail


@case("3.5.31", G, "an rpc claiming owner=<owner> from a non-owner is still not_owner")
def claimed_owner(ctx: Ctx) -> str:
    owner, other, uid = _owned_box(ctx)
    detail = expect_error(other.call(uid, "bump", [1], owner=owner.member), "not_owner", "§3.5")
    owner.control("despawn", uid)
    return detail


@case("3.5.32", G, "an rpc claiming sender=<owner> from a non-owner is still not_owner")
def claimed_sender(ctx: Ctx) -> str:
    owner, other, uid = _owned_box(ctx)
    detail = expect_error(other.call(uid, "bump", [1], sender=owner.member), "not_owner", "§3.5")
    owner.control("despawn", uid)
    return detail


@case("3.5.33", G, "whoami with claimed member/owner/sender fields returns the real member")
def claimed_whoami(ctx: Ctx) -> str:
    conn = ctx.open()
    reply = conn.call(conn.control_uid(), "whoami", [], member=999999, owner=999999, sender=999999)
    return expect_result(reply, conn.member, "§3.5")


@case("3.5.34", G, "spawn(owned=true) with a claimed member field is owned by the real caller")
def claimed_spawn(ctx: Ctx) -> str:
    conn = ctx.open()
    reply = conn.call(conn.control_uid(), "spawn", [1, True], member=999999)
    if reply["type"] != "rpc_result":
        raise CaseFailure(f"spawn failed: {reply}")
    (uid,) = reply["value"]
    conn.wait(lambda: uid in conn.table.objects, None, "spawn")
    got = conn.table.objects[uid].owner
    conn.control("despawn", uid)
    if got != conn.member:
        raise CaseFailure(f"owner {got}, expected {conn.member}")
    return f"owner {got}"
