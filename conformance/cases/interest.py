"""Group 14: per-client visibility (§16, §7.3, §8.2): two clients seeing different things.

The host hides objects from one client with the app's ``spawn_hidden``, ``hide_from`` and
``show_to`` controls (conformance/README.md). A server without interest management cannot
hide anything: the controls fail and the cases are non-strict.
"""

from __future__ import annotations

from conformance.cases.common import despawn_all, expect_error, spawn_boxes
from conformance.context import Ctx
from conformance.driver import CaseFailure, Conn, Msg
from conformance.model import NonStrict, case

G = 14
INTEREST = "interest"
NEVER = 10**12  # a UID no conformance run assigns


def _control(conn: Conn, method: str, *args: object) -> object:
    reply = conn.call(conn.control_uid(), method, list(args))
    if reply["type"] != "rpc_result":
        raise NonStrict(f"the server cannot hide objects ({method}: {reply.get('code')})")
    return reply["value"]


def _hidden_box(ctx: Ctx, a: Conn, b: Conn) -> int:
    """A Box that ``b`` holds and ``a`` never saw."""
    uids = _control(b, "spawn_hidden", 1, a.member)
    if not isinstance(uids, list) or len(uids) != 1:
        raise CaseFailure(f"spawn_hidden returned {uids!r}")
    uid = int(uids[0])
    b.wait(lambda: uid in b.table.objects, None, f"spawn of {uid} at the client that sees it")
    return uid


def _ticks(conn: Conn, n: int) -> None:
    """Let ``n`` more syncs reach ``conn`` (a value churned meanwhile keeps them coming)."""
    target = conn.table.applied + n
    conn.wait(lambda: conn.table.applied >= target, None, f"{n} more syncs")


def _settle(a: Conn, b: Conn, uid: int, value: int) -> None:
    """Set the Box's value through ``b`` and wait until ``b`` has it: ``a`` has been sent
    every sync up to the one carrying it (both are served by the same ticks)."""
    b.control("set_value", uid, value)
    b.wait(lambda: b.table.objects[uid].fields.get("value") == value, None, f"value {value}")
    a.call_ok(a.control_uid(), "echo", [])  # a round trip: a's earlier syncs are in


@case("16.1.1", G, "a client never sees an object hidden from it; the other one does")
def never_seen(ctx: Ctx) -> str:
    a, b = ctx.open(), ctx.open()
    uid = _hidden_box(ctx, a, b)
    for value in (1, 2, 3):
        _settle(a, b, uid, value)
    if uid in a.table.named:
        raise CaseFailure(f"uid {uid}, hidden from this client, was named in its syncs (§16.1)")
    late = ctx.open()  # a joiner's full sync lists every visible object (§7.3)
    if uid not in late.table.objects:
        raise CaseFailure(f"a client that may see uid {uid} did not get it in its full sync")
    despawn_all(b, [uid])
    return f"uid {uid}: B held it through 3 updates, A was never told"


@case("16.1.2", G, "an object entering a client's view arrives whole, as a spawn")
def enters_whole(ctx: Ctx) -> str:
    a, b = ctx.open(), ctx.open()
    uid = _hidden_box(ctx, a, b)
    _settle(a, b, uid, 41)
    _settle(a, b, uid, 42)
    _control(b, "show_to", uid, a.member)
    a.wait(lambda: uid in a.table.objects, None, f"spawn of {uid} once shown")
    got = a.table.objects[uid].fields.get("value")
    despawn_all(b, [uid])
    if got != 42:
        raise CaseFailure(f"the spawn carried value {got!r}, the current value is 42 (§16.1)")
    return "spawned with the current value 42 (the driver refuses an update of an unheld uid)"


@case("16.1.3", G, "an object leaving a client's view is despawned there, kept by the other")
def leaves(ctx: Ctx) -> str:
    a, b = ctx.open(), ctx.open()
    (uid,) = spawn_boxes(b, 1, False)
    for conn in (a, b):
        conn.wait(lambda c=conn: uid in c.table.objects, None, f"spawn of {uid}")  # type: ignore[misc]
    _control(b, "hide_from", uid, a.member)
    a.wait(lambda: uid not in a.table.objects, None, f"despawn of {uid}")
    _settle(a, b, uid, 9)  # the driver refuses an update of a uid A no longer holds (§7.6)
    if uid not in b.table.objects:
        raise CaseFailure("the client that may still see it lost it")
    _control(b, "show_to", uid, a.member)  # §7.1: the same UID may come back
    a.wait(lambda: uid in a.table.objects, None, f"the spawn of {uid} again")
    despawn_all(b, [uid])
    return "despawned at A, still held and updated at B; spawned again at A once shown"


@case("16.5.1", G, "an RPC on a hidden uid answers unknown_object, as on a missing uid")
def hidden_rpc(ctx: Ctx) -> str:
    a, b = ctx.open(), ctx.open()
    uid = _hidden_box(ctx, a, b)
    hidden: Msg = a.call(uid, "touch", [])
    missing: Msg = a.call(NEVER, "touch", [])
    expect_error(hidden, "unknown_object", "§8.2")
    expect_error(missing, "unknown_object", "§8.2")
    want = missing["message"].replace(str(NEVER), str(uid))
    if hidden["message"] != want:
        raise CaseFailure(
            f"the answers differ (§16.5): {hidden['message']!r} vs {missing['message']!r}"
        )
    seen = b.call(uid, "touch", [])
    despawn_all(b, [uid])
    if seen["type"] != "rpc_result":
        raise CaseFailure(f"the client that sees it was refused: {seen}")
    return f"both {hidden['message']!r} (uid substituted); B's call ran"


@case("16.3.1", G, "with interest granted, sync.left lists what left the view, not what died")
def left_list(ctx: Ctx) -> str:
    a = ctx.connect()
    a.handshake(features=[INTEREST])
    a.wait(lambda: a.table.applied > 0, None, "the first full sync")
    if INTEREST not in a.granted:
        raise NonStrict("the server does not grant the feature interest (§16.3)")
    b = ctx.open()
    hide, kill = spawn_boxes(b, 2, False)
    a.wait(lambda: {hide, kill} <= a.table.objects.keys(), None, "both spawns")
    _control(b, "hide_from", hide, a.member)
    a.wait(lambda: hide not in a.table.objects, None, f"despawn of {hide}")
    b.control("despawn", kill)
    a.wait(lambda: kill not in a.table.objects, None, f"despawn of {kill}")
    if hide not in a.table.left:
        raise CaseFailure(f"the despawn of hidden uid {hide} was not listed in left (§16.3)")
    if kill in a.table.left:
        raise CaseFailure(f"destroyed uid {kill} was listed in left (§16.3)")
    despawn_all(b, [hide])
    return f"left {a.table.left}; destroyed {kill} not in it; B (no feature) never saw left"


def _safe(owner: Conn) -> int:
    uid = owner.control("spawn_safe", True)
    if not isinstance(uid, int):
        raise CaseFailure(f"spawn_safe returned {uid!r}")
    return uid


@case("16.2.1", G, "owner-only fields reach only the owner, in spawns and in updates")
def owner_fields(ctx: Ctx) -> str:
    a, b = ctx.open(), ctx.open()
    uid = _safe(a)
    for conn in (a, b):
        conn.wait(lambda c=conn: uid in c.table.objects, None, f"spawn of {uid}")  # type: ignore[misc]
    if "secret" not in a.table.objects[uid].fields:
        raise CaseFailure("the owner's spawn lacks its owner-only field secret (§16.2)")
    if "secret" in b.table.objects[uid].fields:
        raise CaseFailure("another client's spawn carried the owner-only field secret (§16.2)")
    a.control("set_field", uid, "secret", 5)
    a.control("set_field", uid, "value", 1)
    for conn in (a, b):
        conn.wait(
            lambda c=conn: c.table.objects[uid].fields.get("value") == 1,  # type: ignore[misc]
            None,
            "value 1",
        )
    if a.table.objects[uid].fields.get("secret") != 5:
        raise CaseFailure(f"the owner holds secret={a.table.objects[uid].fields.get('secret')!r}")
    if "secret" in b.table.objects[uid].fields:
        raise CaseFailure("an update to another client carried the owner-only field (§16.2)")
    # a new owner receives every owner-only field at its current value (§16.2)
    a.control("set_owner", uid, b.member)
    b.wait(lambda: b.table.objects[uid].owner == b.member, None, "the owner change")
    got = b.table.objects[uid].fields.get("secret")
    despawn_all(a, [uid])
    if got != 5:
        raise CaseFailure(f"the new owner got secret={got!r} with the owner change, not 5")
    return "secret only at the owner (spawn and update); the new owner got it with the change"


@case("16.4.1", G, "an object hidden, changed and shown again arrives whole, as a fresh spawn")
def reenters_whole(ctx: Ctx) -> str:
    a, b = ctx.open(), ctx.open()
    (uid,) = spawn_boxes(b, 1, False)
    for conn in (a, b):
        conn.wait(lambda c=conn: uid in c.table.objects, None, f"spawn of {uid}")  # type: ignore[misc]
    before = a.table.objects[uid]
    _control(b, "hide_from", uid, a.member)
    a.wait(lambda: uid not in a.table.objects, None, f"despawn of {uid}")
    _settle(a, b, uid, 77)  # changed while hidden (the driver refuses an update to A, §7.6)
    _control(b, "show_to", uid, a.member)
    a.wait(lambda: uid in a.table.objects, None, f"the spawn of {uid} again")
    again = a.table.objects[uid]
    despawn_all(b, [uid])
    if again is before:
        raise CaseFailure("the object came back without a spawn entry (§16.1)")
    if again.fields.get("value") != 77:
        raise CaseFailure(f"the spawn carried value {again.fields.get('value')!r}, not 77 (§16.4)")
    return "despawned, changed while hidden, spawned again with the current value 77"
