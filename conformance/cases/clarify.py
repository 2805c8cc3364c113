"""Cases for the clarifications of issue 8 and for what the suite used to be too kind about:
contracts (§4.9), the pre-handshake frame cap and max_frame floor (§2.3, §5.1), lone
surrogates (§3.4), value types and changed fields in deltas (§7.2), owner changes (§7.4),
the first sync of an empty world (§7.3), unencodable state (§7.7), entries too large for
one client (§7.5), duplicate call ids (§8.1) and Python's error text (§8.4)."""

from __future__ import annotations

import copy
import time
from typing import Any

from conformance.app import APP_CONTRACT
from conformance.cases.common import (
    bad_payload,
    despawn_all,
    expect_error,
    expect_result,
    header,
    rpc_payload,
    same_json,
    spawn_boxes,
)
from conformance.context import Ctx, check_close_frame
from conformance.driver import (
    CaseFailure,
    Conn,
    Msg,
    brief,
    encode,
    frame,
    python_error_text,
)
from conformance.model import Outcome, case, info, non_strict

FRAMING, ENCODING, HANDSHAKE, OWNERSHIP, SYNC, RPC = 1, 2, 3, 5, 6, 7
PRE_HANDSHAKE_CAP = 65536  # §2.3 (decision 2): frames before welcome


# --------------------------------------------------------------------------- helpers


def _value_of(conn: Conn, uid: int, name: str = "value") -> Any:
    rep = conn.table.objects.get(uid)
    return None if rep is None else rep.fields.get(name, KeyError)


def _await_exact(conn: Conn, uid: int, value: Any, name: str = "value") -> None:
    """Wait until the replica's field is ``value`` with the same JSON type (1 ≠ 1.0 ≠ true)."""
    try:
        conn.wait(
            lambda: (
                uid in conn.table.objects
                and same_json(conn.table.objects[uid].fields.get(name), value)
            ),
            None,
            f"{name} = {encode(value).decode()} on uid {uid}",
        )
    except CaseFailure:
        raise CaseFailure(
            f"client {conn.member} never saw uid {uid}.{name} = {encode(value).decode()} "
            f"(it holds {_value_of(conn, uid, name)!r:.80}): the change was "
            "not sent (§7.2)"
        ) from None


class UpdateLog:
    """Records every update entry a connection receives, per uid."""

    def __init__(self, conn: Conn) -> None:
        self.entries: dict[int, list[dict[str, Any]]] = {}
        conn.on_sync = self.feed

    def feed(self, msg: Msg) -> None:
        for entry in msg.get("update", []):
            if isinstance(entry, dict) and isinstance(entry.get("uid"), int):
                self.entries.setdefault(entry["uid"], []).append(entry)

    def of(self, uid: int) -> list[dict[str, Any]]:
        return self.entries.get(uid, [])


def _rec(conn: Conn, owned: bool = False) -> int:
    uid = conn.control("spawn_rec", owned)
    if not isinstance(uid, int):
        raise CaseFailure(f"spawn_rec returned {uid!r}")
    return uid


# --------------------------------------------------------------------------- §2.3 / §5.1


@case("2.3.20", FRAMING, "hello.max_frame 65535 (one below the floor): close 1002")
def max_frame_65535(ctx: Ctx) -> str:
    conn = ctx.connect(max_frame=65535)
    conn.send({"type": "hello", "version": 1, "max_frame": 65535})
    return ctx.expect_close(conn, 1002, section="§5.1") + "; " + ctx.check_alive()


@case("2.3.21", FRAMING, "a frame header of 65537 bytes before hello: close 1009 at once")
def pre_handshake_cap(ctx: Ctx) -> str:
    conn = ctx.connect()
    conn.send_raw(header(PRE_HANDSHAKE_CAP + 1))
    return ctx.expect_close(conn, 1009, section="§2.3", timeout=2.0) + "; " + ctx.check_alive()


@case("2.3.22", FRAMING, "a 1 MiB hello header (within max_frame) before hello: close 1009")
def pre_handshake_cap_mib(ctx: Ctx) -> str:
    conn = ctx.connect()
    conn.send_raw(header(1048576) + b"{" * 1000)
    return ctx.expect_close(conn, 1009, section="§2.3", timeout=2.0) + "; " + ctx.check_alive()


@case("2.3.23", FRAMING, "a hello of exactly 65536 bytes (the pre-handshake cap) is welcomed")
def pre_handshake_cap_edge(ctx: Ctx) -> str:
    conn = ctx.connect()
    base = encode({"type": "hello", "version": 1, "pad": ""})
    pad = "x" * (PRE_HANDSHAKE_CAP - len(base))
    payload = encode({"type": "hello", "version": 1, "pad": pad})
    assert len(payload) == PRE_HANDSHAKE_CAP
    conn.send_frame(payload)
    conn.accept_welcome(conn.recv_msg(time.monotonic() + ctx.timeout))
    conn.wait(lambda: conn.table.applied > 0, None, "the first full sync")
    return "welcomed"


@case("2.3.24", FRAMING, "after welcome, a 200 KB frame is accepted (the cap is pre-handshake)")
def post_handshake_big(ctx: Ctx) -> str:
    conn = ctx.open()
    text = "y" * 200000
    return expect_result(conn.call(conn.control_uid(), "echo", [text]), [text], "§2.3")


# --------------------------------------------------------------------------- §3.4


def _surrogate(ctx: Ctx, args_json: str) -> Outcome | str:
    conn = ctx.open()
    return bad_payload(
        ctx,
        rpc_payload(conn.control_uid(), "echo", args_json),
        1007,
        section="§3.4",
    )


@case("3.4.40", ENCODING, 'a lone high surrogate escape "\\ud800" in an rpc: close 1007')
def lone_high(ctx: Ctx) -> Outcome | str:
    return _surrogate(ctx, '["\\ud800"]')


@case("3.4.41", ENCODING, 'a lone low surrogate escape "\\udc00" in an rpc: close 1007')
def lone_low(ctx: Ctx) -> Outcome | str:
    return _surrogate(ctx, '["a\\udc00b"]')


@case("3.4.42", ENCODING, 'a reversed surrogate pair "\\udc00\\ud800": close 1007')
def reversed_pair(ctx: Ctx) -> Outcome | str:
    return _surrogate(ctx, '["\\udc00\\ud800"]')


@case("3.4.43", ENCODING, "a lone surrogate in an object key: close 1007")
def lone_key(ctx: Ctx) -> Outcome | str:
    return _surrogate(ctx, '[{"\\ud83c": 1}]')


@case("3.4.44", ENCODING, "a lone surrogate inside hello (handshake): close 1007")
def lone_hello(ctx: Ctx) -> Outcome | str:
    return bad_payload(
        ctx,
        b'{"type":"hello","version":1,"client":"\\udbff"}',
        1007,
        section="§3.4",
        state="handshake",
    )


@case("3.4.45", ENCODING, 'a valid escaped pair "\\ud83c\\udfb2" is one character, echoed')
def valid_pair(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.send_frame(rpc_payload(conn.control_uid(), "echo", '["\\ud83c\\udfb2"]', call_id=77))
    return expect_result(conn.answer(77), ["\U0001f3b2"], "§3.4")


# --------------------------------------------------------------------------- §4.9


def _contract_close(
    ctx: Ctx, contract: Any, code: int, names: tuple[str, ...] = ()
) -> Outcome | str:
    conn = ctx.connect()
    conn.send({"type": "hello", "version": 1, "contract": contract})
    detail = ctx.expect_close(conn, code, section="§4.9")
    reason = str(conn.close_msg.get("reason") if conn.close_msg else "")
    missing = [name for name in names if name not in reason]
    if missing:
        raise CaseFailure(f"close {code} reason {reason!r} does not name {missing} (§4.9)")
    if code == 1002 and not reason.startswith("malformed contract"):
        # The code is what a client acts on; the reason is for people (§5.1).
        return non_strict(
            f"close 1002 as required, but its reason {reason!r} does not begin "
            f"'malformed contract' (§4.9.1); {ctx.check_alive()}"
        )
    return f"{detail}; {ctx.check_alive()}"


def _contract_welcome(ctx: Ctx, contract: Any) -> str:
    conn = ctx.connect()
    conn.handshake(contract=contract)
    conn.wait(lambda: conn.table.applied > 0, None, "the first full sync")
    return "welcomed"


@case("4.9.1", HANDSHAKE, "hello.contract equal to the app's contract: welcomed and synced")
def contract_match(ctx: Ctx) -> str:
    conn = ctx.connect()
    conn.handshake(contract=copy.deepcopy(APP_CONTRACT))
    conn.wait(lambda: conn.table.applied > 0, None, "the first full sync")
    return "welcomed with a matching contract"


@case("4.9.2", HANDSHAKE, "contract with a different Box.bump signature: close 3001 naming it")
def contract_method_params(ctx: Ctx) -> Outcome | str:
    theirs = copy.deepcopy(APP_CONTRACT)
    theirs["types"]["Box"]["methods"]["bump"]["params"] = ["k", "times"]
    return _contract_close(ctx, theirs, 3001, ("bump",))


@case("4.9.3", HANDSHAKE, "contract without the Rec type: close 3001 naming Rec")
def contract_missing_type(ctx: Ctx) -> Outcome | str:
    theirs = copy.deepcopy(APP_CONTRACT)
    del theirs["types"]["Rec"]
    return _contract_close(ctx, theirs, 3001, ("Rec",))


@case("4.9.4", HANDSHAKE, "contract where Box.touch is owner-only: close 3001 naming touch")
def contract_anyone(ctx: Ctx) -> Outcome | str:
    theirs = copy.deepcopy(APP_CONTRACT)
    theirs["types"]["Box"]["methods"]["touch"]["anyone"] = False
    return _contract_close(ctx, theirs, 3001, ("touch",))


@case("4.9.5", HANDSHAKE, "contract with a different Box constructor: close 3001 naming Box")
def contract_init(ctx: Ctx) -> Outcome | str:
    theirs = copy.deepcopy(APP_CONTRACT)
    theirs["types"]["Box"]["init"] = ["value", "colour"]
    return _contract_close(ctx, theirs, 3001, ("Box",))


@case("4.9.6", HANDSHAKE, "contract lacking an exposed method (Control.echo): close 3001")
def contract_missing_method(ctx: Ctx) -> Outcome | str:
    theirs = copy.deepcopy(APP_CONTRACT)
    del theirs["types"]["Control"]["methods"]["echo"]
    return _contract_close(ctx, theirs, 3001, ("echo",))


@case("4.9.7", HANDSHAKE, "hello.contract that is not an object (5): close 1002")
def contract_not_object(ctx: Ctx) -> Outcome | str:
    return _contract_close(ctx, 5, 1002)


@case("4.9.8", HANDSHAKE, 'hello.contract {"types": 7}: malformed, close 1002')
def contract_types_not_object(ctx: Ctx) -> Outcome | str:
    return _contract_close(ctx, {"types": 7}, 1002)


@case("4.9.9", HANDSHAKE, "hello.contract whose type description is a string: close 1002")
def contract_type_not_object(ctx: Ctx) -> Outcome | str:
    theirs = copy.deepcopy(APP_CONTRACT)
    theirs["types"]["Box"] = "Box"
    return _contract_close(ctx, theirs, 1002)


@case("4.9.10", HANDSHAKE, "hello.contract without the types key: close 1002")
def contract_no_types(ctx: Ctx) -> Outcome | str:
    return _contract_close(ctx, {"kinds": {}}, 1002)


@case("4.9.11", HANDSHAKE, "a client type the server lacks (Ghost): close 3001 naming it")
def contract_extra_type(ctx: Ctx) -> Outcome | str:
    theirs = copy.deepcopy(APP_CONTRACT)
    theirs["types"]["Ghost"] = {"init": [], "fields": None, "methods": {}}
    return _contract_close(ctx, theirs, 3001, ("Ghost",))


@case("4.9.12", HANDSHAKE, "a renamed parameter (bump(n), same count): close 3001 (§4.9.2)")
def contract_param_name(ctx: Ctx) -> Outcome | str:
    theirs = copy.deepcopy(APP_CONTRACT)
    theirs["types"]["Box"]["methods"]["bump"]["params"] = ["n"]
    return _contract_close(ctx, theirs, 3001, ("bump",))


@case("4.9.13", HANDSHAKE, "declared fields where the server has null: close 3001 (§4.9.2)")
def contract_fields(ctx: Ctx) -> Outcome | str:
    theirs = copy.deepcopy(APP_CONTRACT)
    theirs["types"]["Rec"]["fields"] = ["a", "b", "c"]
    return _contract_close(ctx, theirs, 3001, ("Rec",))


@case("4.9.14", HANDSHAKE, "a type description without 'fields': malformed, close 1002")
def contract_missing_key(ctx: Ctx) -> Outcome | str:
    theirs = copy.deepcopy(APP_CONTRACT)
    del theirs["types"]["Box"]["fields"]
    return _contract_close(ctx, theirs, 1002)


@case("4.9.15", HANDSHAKE, "a method whose params is a string: malformed, close 1002")
def contract_params_type(ctx: Ctx) -> Outcome | str:
    theirs = copy.deepcopy(APP_CONTRACT)
    theirs["types"]["Box"]["methods"]["bump"]["params"] = "k"
    return _contract_close(ctx, theirs, 1002)


@case("4.9.16", HANDSHAKE, "unknown keys at every level of the contract are ignored: welcomed")
def contract_extra_keys(ctx: Ctx) -> str:
    theirs = copy.deepcopy(APP_CONTRACT)
    theirs["generator"] = "conformance"
    theirs["types"]["Box"]["doc"] = "a box"
    theirs["types"]["Box"]["methods"]["bump"]["returns"] = "int"
    return _contract_welcome(ctx, theirs)


@case("4.9.17", HANDSHAKE, "the same contract with its object keys in reverse order: welcomed")
def contract_key_order(ctx: Ctx) -> str:
    def reverse(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: reverse(value[k]) for k in reversed(list(value))}
        return value

    return _contract_welcome(ctx, reverse(copy.deepcopy(APP_CONTRACT)))


# --------------------------------------------------------------------------- §7.2 value types


TYPE_STEPS: list[Any] = [1, 1.0, True, 1, False, 0, 0.0, None, 0, "1", 1, [1], [1.0], {"k": 1}]


@case(
    "7.2.10",
    SYNC,
    "value-type changes 1 → 1.0 → true → 1 → false → 0 → 0.0 ... each reach another client",
    budget=12.0,
)
def value_types(ctx: Ctx) -> str:
    actor, watcher = ctx.open(), ctx.open()
    (uid,) = spawn_boxes(actor, 1, False)
    try:
        _await_exact(watcher, uid, 0)
        for value in TYPE_STEPS:
            actor.control("set_value", uid, value)
            _await_exact(watcher, uid, value)
    finally:
        despawn_all(actor, [uid])
    return f"{len(TYPE_STEPS)} type changes each arrived with their exact JSON type"


@case("7.2.11", SYNC, "updates carry only the fields that changed (Rec: a, then c, then b)")
def only_changed(ctx: Ctx) -> str:
    actor, watcher = ctx.open(), ctx.open()
    log = UpdateLog(watcher)
    uid = _rec(actor)
    try:
        watcher.wait(lambda: uid in watcher.table.objects, None, "the Rec spawn")
        for name, value in (("a", 5), ("c", "x"), ("b", [1, 2])):
            seen = len(log.of(uid))
            actor.control("set_field", uid, name, value)
            _await_exact(watcher, uid, value, name)
            entries = log.of(uid)[seen:]
            for entry in entries:
                if set(entry["fields"]) != {name}:
                    raise CaseFailure(
                        f"after setting only {name}, update fields were "
                        f"{sorted(entry['fields'])} (§7.2: only the fields that changed)"
                    )
                if "owner" in entry:
                    raise CaseFailure(f"update carries owner though it did not change: {entry}")
    finally:
        despawn_all(actor, [uid])
    return "each update held exactly the changed field"


@case("7.2.12", SYNC, "setting a field to its current value sends no update for it")
def same_value_no_update(ctx: Ctx) -> str:
    actor, watcher = ctx.open(), ctx.open()
    log = UpdateLog(watcher)
    uid = _rec(actor)
    try:
        actor.control("set_field", uid, "a", 7)
        _await_exact(watcher, uid, 7, "a")
        seen = len(log.of(uid))
        control = actor.control_uid()
        first = actor.request(control, "set_field", [uid, "a", 7])
        second = actor.request(control, "set_field", [uid, "b", 1])
        actor.answer(first)
        actor.answer(second)
        _await_exact(watcher, uid, 1, "b")
        later = log.of(uid)[seen:]
        if any("a" in entry["fields"] for entry in later):
            raise CaseFailure(f"a sent again though unchanged: {later} (§7.2)")
        watcher.drain(0.15)
        if any("a" in entry["fields"] for entry in log.of(uid)[seen:]):
            raise CaseFailure("a sent again though unchanged (§7.2)")
    finally:
        despawn_all(actor, [uid])
    return "only b was sent"


@case("7.2.13", SYNC, "a nested type change ([1, [2]] → [1, [2.0]]) is sent")
def nested_type_change(ctx: Ctx) -> str:
    actor, watcher = ctx.open(), ctx.open()
    (uid,) = spawn_boxes(actor, 1, False)
    try:
        for value in ([1, [2]], [1, [2.0]], {"a": [True]}, {"a": [1]}):
            actor.control("set_value", uid, value)
            _await_exact(watcher, uid, value)
    finally:
        despawn_all(actor, [uid])
    return "nested changes arrived"


@case("7.2.14", SYNC, "a late joiner's spawn of a Rec holds all three fields with their values")
def spawn_all_fields(ctx: Ctx) -> str:
    actor = ctx.open()
    uid = _rec(actor)
    try:
        actor.control("set_field", uid, "b", 2.5)
        late = ctx.open()
        rep = late.table.objects.get(uid)
        if rep is None:
            raise CaseFailure("the late joiner's full sync lacks the Rec")
        if not same_json(rep.fields, {"a": 0, "b": 2.5, "c": 0}):
            raise CaseFailure(f"spawn entry fields {rep.fields} (§7.2: every field)")
    finally:
        despawn_all(actor, [uid])
    return "a=0 b=2.5 c=0"


# --------------------------------------------------------------------------- §7.4 owner changes


@case(
    "7.4.10",
    OWNERSHIP,
    "an owner change reaches every client as an update with owner (fields unchanged omitted)",
)
def owner_change(ctx: Ctx) -> str:
    clients = [ctx.open() for _ in range(3)]
    logs = [UpdateLog(conn) for conn in clients]
    first, second = clients[0], clients[1]
    uid = _rec(first, owned=True)
    try:
        for conn in clients:
            conn.wait(lambda c=conn: uid in c.table.objects, None, "the Rec spawn")  # type: ignore[misc]
            if conn.table.objects[uid].owner != first.member:
                raise CaseFailure(f"spawned with owner {conn.table.objects[uid].owner}")
        for new_owner in (second.member, None, first.member):
            seen = [len(log.of(uid)) for log in logs]
            first.control("set_owner", uid, new_owner)
            for conn, log, before in zip(clients, logs, seen, strict=True):
                conn.wait(
                    lambda c=conn, o=new_owner: c.table.objects[uid].owner == o,  # type: ignore[misc]
                    None,
                    f"owner {new_owner}",
                )
                entries = [e for e in log.of(uid)[before:] if "owner" in e]
                if not entries:
                    raise CaseFailure("the owner changed without an update entry owner (§7.2)")
                if any(entry.get("fields") for entry in entries):
                    raise CaseFailure(
                        f"an owner-only change sent unchanged fields: {entries[-1]} (§7.2)"
                    )
    finally:
        despawn_all(first, [uid])
    return "3 clients saw each owner change (member, null, member) as an owner update"


@case("7.4.11", OWNERSHIP, "after an owner change the new owner may call owner-only methods")
def owner_change_rights(ctx: Ctx) -> str:
    old, new = ctx.open(), ctx.open()
    uid = _rec(old, owned=True)
    try:
        expect_result(old.call(uid, "mine", []), True, "§8.2")
        old.control("set_owner", uid, new.member)
        new.wait(lambda: new.table.objects.get(uid) is not None, None, "the Rec")
        expect_result(new.call(uid, "mine", []), True, "§8.2")
        detail = expect_error(old.call(uid, "mine", []), "not_owner", "§8.2")
        old.control("set_owner", uid, None)
        expect_error(new.call(uid, "mine", []), "not_owner", "§8.2")
    finally:
        despawn_all(old, [uid])
    return f"new owner allowed, old owner {detail}"


@case("7.4.12", OWNERSHIP, "a late joiner's full sync shows the changed owner")
def owner_change_late(ctx: Ctx) -> str:
    a, b = ctx.open(), ctx.open()
    uid = _rec(a, owned=True)
    try:
        a.control("set_owner", uid, b.member)
        late = ctx.open()
        owner = late.table.objects[uid].owner if uid in late.table.objects else "missing"
        if owner != b.member:
            raise CaseFailure(f"late joiner sees owner {owner}, expected {b.member}")
    finally:
        despawn_all(a, [uid])
    return f"owner {b.member}"


@case("7.4.13", OWNERSHIP, "a field and the owner changed together arrive in one update")
def owner_and_field(ctx: Ctx) -> str:
    a, watcher = ctx.open(), ctx.open()
    log = UpdateLog(watcher)
    uid = _rec(a, owned=False)
    try:
        watcher.wait(lambda: uid in watcher.table.objects, None, "the Rec")
        control = a.control_uid()
        ids = [
            a.request(control, "set_field", [uid, "b", "moved"]),
            a.request(control, "set_owner", [uid, a.member]),
        ]
        for call_id in ids:
            a.answer(call_id)
        _await_exact(watcher, uid, "moved", "b")
        watcher.wait(lambda: watcher.table.objects[uid].owner == a.member, None, "owner")
        for entry in log.of(uid):
            if "a" in entry["fields"] or "c" in entry["fields"]:
                raise CaseFailure(f"unchanged fields sent: {entry} (§7.2)")
    finally:
        despawn_all(a, [uid])
    return "b and owner arrived, nothing else"


# --------------------------------------------------------------------------- §7.3 empty world


@case(
    "7.3.20",
    SYNC,
    "a client joining an empty world gets a full sync with no objects at once",
    exclusive=True,
    budget=8.0,
)
def empty_world(ctx: Ctx) -> Outcome | str:
    conn = ctx.open()
    reply = conn.call(conn.control_uid(), "vanish", [1.5])
    if reply["type"] != "rpc_result":
        return info(f"the app cannot empty its world (vanish: {brief(reply)})")
    conn.wait(lambda: not conn.table.objects, None, "the world to empty")
    started = time.monotonic()
    fresh = ctx.connect()
    fresh.handshake()
    try:
        fresh.wait(lambda: fresh.table.applied > 0, 1.0, "the first full sync")
    except CaseFailure:
        raise CaseFailure("no full sync within 1 s of welcome for an empty world (§7.3)") from None
    took = time.monotonic() - started
    if fresh.table.objects:
        raise CaseFailure(f"the empty world's snapshot lists {sorted(fresh.table.objects)}")
    for each in (conn, fresh):
        each.wait(lambda c=each: bool(c.table.find_type("Control")), 4.0, "Control back")  # type: ignore[misc]
    return f"empty full sync {took:.3f}s after connecting; Control came back as a delta"


# --------------------------------------------------------------------------- §7.7 unencodable


def _withheld(ctx: Ctx, kind: str) -> str:
    actor, watcher = ctx.open(), ctx.open()
    bad, good = spawn_boxes(actor, 2, False)
    try:
        actor.control("set_value", bad, "good")
        _await_exact(watcher, bad, "good")
        reply = actor.call(actor.control_uid(), "set_special", [bad, kind])
        if reply["type"] != "rpc_result":
            raise CaseFailure(f"set_special({kind!r}) answered {brief(reply)}")
        actor.control("set_value", good, "after")
        _await_exact(watcher, good, "after")
        watcher.drain(0.1)
        if not same_json(_value_of(watcher, bad), "good"):
            raise CaseFailure(
                f"the object was not withheld: a client holds {_value_of(watcher, bad)!r} (§7.7)"
            )
        late = ctx.open()
        if bad in late.table.objects:
            raise CaseFailure("a late joiner got the object while it is unencodable (§7.7)")
        actor.control("set_value", bad, "fixed")
        _await_exact(watcher, bad, "fixed")
        _await_exact(late, bad, "fixed")
    finally:
        despawn_all(actor, [bad, good])
    return f"{kind}: withheld, others synced, sent again once fixed; {ctx.check_alive()}"


for _n, _kind in enumerate(
    ("nan", "inf", "set", "intkeys", "bigint", "deep", "surrogate", "object")
):

    def _make(kind: str) -> Any:
        def run(ctx: Ctx) -> str:
            return _withheld(ctx, kind)

        run.__name__ = f"withheld_{kind}"
        return run

    case(
        f"7.7.{10 + _n}",
        SYNC,
        f"a field that cannot be encoded ({_kind}) withholds that object only; the server lives",
        risky=True,
        budget=10.0,
    )(_make(_kind))


@case(
    "7.5.10",
    SYNC,
    "an entry too large for one client's max_frame closes that client 1009, others sync",
    risky=True,
    budget=10.0,
)
def entry_too_large(ctx: Ctx) -> str:
    small = ctx.open(max_frame=65536)
    big = ctx.open()
    (uid,) = spawn_boxes(big, 1, False)
    text = "L" * 70000
    try:
        big.control("set_value", uid, text)
        obs = small.expect_close(ctx.timeout)
        check_close_frame(obs)
        if obs.kind != "close" or obs.code != 1009:
            raise CaseFailure(f"expected close 1009 for the small client, got {obs.describe()}")
        if str(uid) not in str(obs.reason):
            raise CaseFailure(f"close 1009 reason does not name uid {uid}: {obs.reason!r}")
        _await_exact(big, uid, text)
    finally:
        despawn_all(big, [uid])
    return f"small client: {obs.describe()}; big client synced; {ctx.check_alive()}"


# --------------------------------------------------------------------------- §8.1 / §8.4


@case("8.1.50", RPC, "two rpc with the same id in flight: close 1002 (id already in flight)")
def duplicate_id(ctx: Ctx) -> str:
    conn = ctx.open()
    control = conn.control_uid()
    call = {"type": "rpc", "id": 7, "uid": control, "method": "echo", "args": [1]}
    hold = {"type": "rpc", "id": 6, "uid": control, "method": "sleep", "args": [0.2]}
    conn.send_raw(frame(encode(hold)) + frame(encode(call)) + frame(encode(call)))
    obs = conn.expect_close(ctx.timeout)
    check_close_frame(obs)
    answers = obs.seen.count("rpc_result") + obs.seen.count("rpc_error")
    if obs.kind != "close" or obs.code != 1002:
        raise CaseFailure(f"expected close 1002 (§8.1), got {obs.describe()}; saw {obs.seen}")
    if answers > 2:
        raise CaseFailure(f"{answers} answers before the close: both calls with id 7 answered")
    return f"{obs.describe()}; {ctx.check_alive()}"


@case("8.1.51", RPC, "an id reused after its answer arrived is a new call, answered")
def reuse_answered_id(ctx: Ctx) -> str:
    conn = ctx.open()
    control = conn.control_uid()
    for n in range(3):
        conn.send({"type": "rpc", "id": 5, "uid": control, "method": "echo", "args": [n]})
        conn.wait(lambda n=n: len(conn.results.get(5, [])) > n, None, f"answer {n}")  # type: ignore[misc]
    values = [msg.get("value") for msg in conn.results[5]]
    if values != [[0], [1], [2]]:
        raise CaseFailure(f"answers to the reused id: {values}")
    return "3 calls with id 5, one after the other, each answered"


@case("8.1.53", RPC, "two connections with the same id in flight are both answered (§8.5)")
def same_id_two_connections(ctx: Ctx) -> str:
    a, b = ctx.open(), ctx.open()
    control = a.control_uid()
    hold = {"type": "rpc", "id": 1, "uid": control, "method": "sleep", "args": [0.2]}
    a.send(hold)
    for conn, tag in ((a, "a"), (b, "b")):
        conn.send({"type": "rpc", "id": 9, "uid": control, "method": "echo", "args": [tag]})
    for conn, tag in ((a, "a"), (b, "b")):
        reply = conn.answer(9)
        if reply.get("value") != [tag]:
            raise CaseFailure(f"connection {tag} got {brief(reply)}")
    return "ids are per connection"


@case("8.1.52", RPC, "20 calls with distinct ids in flight at once are each answered once")
def distinct_ids(ctx: Ctx) -> str:
    conn = ctx.open()
    control = conn.control_uid()
    ids = [1000 + 7 * n for n in range(20)]
    conn.send_raw(
        b"".join(
            frame(encode({"type": "rpc", "id": i, "uid": control, "method": "echo", "args": [i]}))
            for i in ids
        )
    )
    conn.wait(lambda: all(i in conn.results for i in ids), None, "20 answers")
    wrong = [i for i in ids if conn.results[i][0].get("value") != [i]]
    if wrong:
        raise CaseFailure(f"answers carry the wrong id or value for {wrong[:5]}")
    return "20 answers with the right ids"


@case("8.3.20", RPC, "a method returning NaN, a set or 2^53: rpc_error bad_return (§8.3)")
def bad_return(ctx: Ctx) -> str:
    conn = ctx.open()
    control = conn.control_uid()
    codes = []
    for kind in ("nan", "set", "bigint", "surrogate"):
        reply = conn.call(control, "give", [kind])
        expect_error(reply, "bad_return", "§8.3")
        codes.append(kind)
    return f"bad_return for {', '.join(codes)}; the session goes on"


@case(
    "8.3.21",
    RPC,
    "a result that cannot fit the caller's max_frame: rpc_error bad_return, session goes on (§8.3)",
)
def bad_return_too_large(ctx: Ctx) -> str:
    conn = ctx.open(max_frame=65536)
    control = conn.control_uid()
    reply = conn.call(control, "echo", ["x" * 70000])  # echoed back: over 65536 bytes
    expect_error(reply, "bad_return", "§8.3")
    small = conn.call(control, "echo", [1])
    if small.get("type") != "rpc_result" or small.get("value") != [1]:
        raise CaseFailure(f"the next call was not answered normally: {small}")
    return "bad_return for a 70 KB result to a 64 KiB client; the next call is answered"


def _handler_error_text(ctx: Ctx, arg: Any) -> str:
    conn = ctx.open()
    (uid,) = spawn_boxes(conn, 1, True)
    try:
        reply = conn.call(uid, "bump", [arg])
    finally:
        conn.control("despawn", uid)
    if reply["type"] != "rpc_error":
        raise CaseFailure(f"bump({arg!r}) on 0 answered {brief(reply)}: expected an error")
    fragment = python_error_text(reply["message"])
    if fragment is not None:
        raise CaseFailure(f"Python's exception text reached the client ({fragment!r}, §8.4)")
    return f"rpc_error {reply['code']}: {reply['message'][:80]!r}"


@case("8.4.10", RPC, "bump(null): the handler's TypeError text does not reach the client")
def bump_null(ctx: Ctx) -> str:
    return _handler_error_text(ctx, None)


@case("8.4.11", RPC, "bump([]): the handler's TypeError text does not reach the client")
def bump_list(ctx: Ctx) -> str:
    return _handler_error_text(ctx, [])
