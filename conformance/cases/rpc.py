"""Group 7: RPC (§8)."""

from __future__ import annotations

from typing import Any

from conformance.cases.common import (
    despawn_all,
    executions,
    expect_error,
    expect_result,
    same_json,
    spawn_boxes,
)
from conformance.context import Ctx
from conformance.driver import (
    CaseFailure,
    Conn,
    encode,
    frame,
    leaks_internals,
    python_error_text,
)
from conformance.model import Outcome, case

G = 7

ECHO_VALUES: list[tuple[str, Any]] = [
    ("zero", 0),
    ("positive int", 42),
    ("negative int", -42),
    ("float", 3.5),
    ("negative float", -0.125),
    ("true", True),
    ("false", False),
    ("null", None),
    ("string", "hello"),
    ("empty string", ""),
    ("unicode string", "Grüße 漢字 🎲 \u2028"),
    ("escapes", 'quote " backslash \\ newline \n tab \t'),
    ("empty array", []),
    ("array", [1, 2.5, "x", None, True]),
    ("empty object", {}),
    ("object", {"a": 1, "b": [1, 2], "c": {"d": None}}),
    ("nested mix", [{"k": [{"k": [1, {"z": False}]}]}]),
]


def _register_echo(index: int, label: str, value: Any) -> None:
    @case(f"8.1.{index}", G, f"echo returns a {label} argument unchanged")
    def run(ctx: Ctx) -> str:
        conn = ctx.open()
        reply = conn.call(conn.control_uid(), "echo", [value])
        return expect_result(reply, [value], "§8.1")

    run.__name__ = f"echo_{index}"


for _index, (_label, _value) in enumerate(ECHO_VALUES, start=1):
    _register_echo(_index, _label, _value)


def _box(ctx: Ctx, owned: bool = True) -> tuple[Conn, int]:
    conn = ctx.open()
    (uid,) = spawn_boxes(conn, 1, owned)
    return conn, uid


@case("8.1.30", G, "echo with no arguments returns []")
def echo_empty(ctx: Ctx) -> str:
    conn = ctx.open()
    return expect_result(conn.call(conn.control_uid(), "echo", []), [], "§8.1")


@case("8.1.31", G, "echo with 100 mixed arguments returns them in order")
def echo_many(ctx: Ctx) -> str:
    conn = ctx.open()
    args = [v for _label, v in ECHO_VALUES] * 6
    return expect_result(conn.call(conn.control_uid(), "echo", args), args, "§8.1")


@case("8.1.32", G, "set_value returns null; despawn returns true")
def return_values(ctx: Ctx) -> str:
    conn = ctx.open()
    (uid,) = spawn_boxes(conn, 1, False)
    set_reply = conn.call(conn.control_uid(), "set_value", [uid, 1])
    expect_result(set_reply, None, "§8.1")
    return expect_result(conn.call(conn.control_uid(), "despawn", [uid]), True, "§8.1")


@case("8.1.33", G, "bump by the owner returns the new value (3 then 10)")
def bump_returns(ctx: Ctx) -> str:
    conn, uid = _box(ctx)
    expect_result(conn.call(uid, "bump", [3]), 3, "§8.1")
    result = expect_result(conn.call(uid, "bump", [7]), 10, "§8.1")
    conn.control("despawn", uid)
    return result


@case("8.1.34", G, "200 calls in flight are each answered exactly once")
def many_in_flight(ctx: Ctx) -> str:
    conn = ctx.open()
    control = conn.control_uid()
    ids = [conn.request(control, "echo", [n]) for n in range(200)]
    conn.wait(lambda: all(i in conn.results for i in ids), None, "200 answers")
    conn.drain(0.3)
    dupes = [i for i in ids if len(conn.results[i]) != 1]
    wrong = [i for n, i in enumerate(ids) if conn.results[i][0].get("value") != [n]]
    if dupes or wrong:
        raise CaseFailure(f"duplicate answers for {dupes[:5]}, wrong answers for {wrong[:5]}")
    return "200 answers, one each"


@case("8.1.35", G, "an rpc reusing the id of an unanswered call is not run (§8.5)")
def same_id_twice(ctx: Ctx) -> str:
    conn = ctx.open()
    control = conn.control_uid()
    (uid,) = spawn_boxes(conn, 1, False)
    first = {"type": "rpc", "id": 77, "uid": control, "method": "sleep", "args": [0.2]}
    second = {"type": "rpc", "id": 77, "uid": control, "method": "despawn", "args": [uid]}
    conn.send_raw(frame(encode(first)) + frame(encode(second)))
    conn.expect_close(ctx.timeout)
    other = ctx.open()
    other.drain(0.1)
    if uid not in other.table.objects:
        raise CaseFailure("the second call with an id in flight ran: the Box was despawned")
    other.control("despawn", uid)
    return "the duplicate was not run"


@case("8.5.1", G, "a second rpc with an id in flight: close 1002 (§8.5)")
def same_id_in_flight(ctx: Ctx) -> Outcome | str:
    conn = ctx.open()
    control = conn.control_uid()
    # one frame each, sent together: the first is in flight when the second arrives
    call = {"type": "rpc", "id": 77, "uid": control, "method": "echo"}
    conn.send_raw(b"".join(frame(encode({**call, "args": [arg]})) for arg in ("first", "second")))
    detail = ctx.expect_close(conn, 1002, section="§8.5")
    return f"{detail}; {ctx.check_alive()}"


@case("8.5.2", G, "an answered id may be used again (§8.5)")
def same_id_after_answer(ctx: Ctx) -> str:
    conn = ctx.open()
    control = conn.control_uid()
    values = []
    for arg in ("first", "second"):
        conn.send({"type": "rpc", "id": 78, "uid": control, "method": "echo", "args": [arg]})
        conn.wait(lambda: 78 in conn.results, None, "answer")
        values.append(conn.results.pop(78)[-1].get("value"))
    if values != [["first"], ["second"]]:
        raise CaseFailure(f"answers {values}, expected [['first'], ['second']]")
    return "both calls answered in turn"


@case("8.1.36", G, "a call interleaved with syncs from another client's churn is answered")
def answer_under_churn(ctx: Ctx) -> str:
    a, b = ctx.open(), ctx.open()
    uids = spawn_boxes(b, 10, False)
    control = b.control_uid()
    churn = [b.request(control, "set_value", [uid, "x" * 100]) for uid in uids]
    reply = a.call(a.control_uid(), "echo", ["mid"])
    for call_id in churn:
        b.answer(call_id)
    despawn_all(b, uids)
    return expect_result(reply, ["mid"], "§8.1")


@case("8.3.1", G, "fail(message): rpc_error rejected carrying exactly that message")
def rejected(ctx: Ctx) -> str:
    conn = ctx.open()
    reply = conn.call(conn.control_uid(), "fail", ["no such thing as a free lunch"])
    detail = expect_error(reply, "rejected", "§8.3")
    if reply["message"] != "no such thing as a free lunch":
        raise CaseFailure(f"message changed: {reply['message']!r}")
    return detail


@case("8.3.2", G, "fail with a unicode message keeps it exactly")
def rejected_unicode(ctx: Ctx) -> str:
    conn = ctx.open()
    text = "nicht erlaubt — 禁止 🎲"
    reply = conn.call(conn.control_uid(), "fail", [text])
    expect_error(reply, "rejected", "§8.3")
    if reply["message"] != text:
        raise CaseFailure(f"message changed: {reply['message']!r}")
    return "message intact"


@case("8.3.3", G, "fail with an empty message: rejected with an empty message")
def rejected_empty(ctx: Ctx) -> str:
    conn = ctx.open()
    reply = conn.call(conn.control_uid(), "fail", [""])
    expect_error(reply, "rejected", "§8.3")
    if reply["message"] != "":
        raise CaseFailure(f"message changed: {reply['message']!r}")
    return "empty message kept"


@case("8.3.4", G, "set_value on an unknown uid: rejected")
def set_unknown(ctx: Ctx) -> str:
    conn = ctx.open()
    return expect_error(
        conn.call(conn.control_uid(), "set_value", [2**50, 1]), "rejected", "app contract"
    )


@case("8.3.5", G, "the session stays usable after a rejected call")
def after_rejected(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.call(conn.control_uid(), "fail", ["x"])
    return expect_result(conn.call(conn.control_uid(), "echo", [1]), [1], "§8.1")


@case("8.4.1", G, "crash(): rpc_error handler_error whose message holds no traceback or file path")
def crash(ctx: Ctx) -> str:
    conn = ctx.open()
    reply = conn.call(conn.control_uid(), "crash", [])
    detail = expect_error(reply, "handler_error", "§8.3")
    marker = leaks_internals(reply["message"])
    if marker is not None:
        raise CaseFailure(
            f"handler_error message leaks internals ({marker!r}): {reply['message'][:200]!r}"
        )
    return detail


@case("8.4.2", G, "the session and server keep working after a handler crash")
def after_crash(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.call(conn.control_uid(), "crash", [])
    expect_result(conn.call(conn.control_uid(), "echo", [2]), [2], "§8.1")
    return ctx.check_alive()


@case("8.4.3", G, "20 crashes in flight are each answered with handler_error")
def many_crashes(ctx: Ctx) -> str:
    conn = ctx.open()
    ids = [conn.request(conn.control_uid(), "crash", []) for _ in range(20)]
    codes = {conn.answer(i).get("code") for i in ids}
    if codes != {"handler_error"}:
        raise CaseFailure(f"answers {codes}")
    return "20 x handler_error"


def _refused_method(
    ctx: Ctx, method: str, code: str, on_box: bool = True, args: list[Any] | None = None
) -> str:
    conn = ctx.open()
    if on_box:
        (uid,) = spawn_boxes(conn, 1, True)
    else:
        uid = conn.control_uid()
    detail = expect_error(conn.call(uid, method, args or []), code, "§8.2")
    if on_box:
        conn.control("despawn", uid)
    return detail


def _never_runs(ctx: Ctx, method: str, counter: str) -> str:
    conn = ctx.open()
    (uid,) = spawn_boxes(conn, 1, True)
    before = executions(conn, counter)
    detail = expect_error(conn.call(uid, method, []), "not_exposed", "§8.2")
    after = executions(conn, counter)
    conn.control("despawn", uid)
    if after != before:
        raise CaseFailure(f"{counter} ran remotely: executions {before} -> {after} (§8.2)")
    return f"{detail}; executions({counter!r}) stayed {after}"


@case(
    "8.2.1",
    G,
    "an unexposed method (hidden) is refused with not_exposed and never runs",
    exclusive=True,
)
def hidden(ctx: Ctx) -> str:
    return _never_runs(ctx, "hidden", "hidden")


@case(
    "8.2.2",
    G,
    "a private method (_private) is refused with not_exposed and never runs",
    exclusive=True,
)
def private(ctx: Ctx) -> str:
    return _never_runs(ctx, "_private", "_private")


@case("8.2.3", G, "hidden called by a non-owner 30 times never runs", exclusive=True)
def hidden_many(ctx: Ctx) -> str:
    owner = ctx.open()
    other = ctx.open()
    (uid,) = spawn_boxes(owner, 1, True)
    before = executions(owner, "hidden")
    ids = [other.request(uid, "hidden", []) for _ in range(30)]
    codes = {other.answer(i).get("code") for i in ids}
    after = executions(owner, "hidden")
    owner.control("despawn", uid)
    if codes != {"not_exposed"} or after != before:
        raise CaseFailure(f"answers {codes}, executions {before} -> {after}")
    return "30 x not_exposed, never ran"


@case("8.2.4", G, "executions('bump') counts only calls that were allowed", exclusive=True)
def bump_counted(ctx: Ctx) -> str:
    owner = ctx.open()
    other = ctx.open()
    (uid,) = spawn_boxes(owner, 1, True)
    before = executions(owner, "bump")
    owner.call_ok(uid, "bump", [1])
    other.call(uid, "bump", [1])
    owner.call(uid, "bump", [])
    owner.call(uid, "bump", [1, 2])
    after = executions(owner, "bump")
    owner.control("despawn", uid)
    if after - before != 1:
        raise CaseFailure(
            f"expected exactly 1 execution, counted {after - before} "
            "(§8.2: refused calls never run)"
        )
    return "1 allowed call ran; not_owner and bad_arguments calls did not"


_DUNDERS = [
    "__init__",
    "__class__",
    "__repr__",
    "__dict__",
    "__getattribute__",
    "__setattr__",
    "__del__",
    "__reduce__",
]


def _register_dunder(index: int, name: str) -> None:
    @case(f"8.2.{index}", G, f"dunder method {name} is refused with not_exposed")
    def run(ctx: Ctx) -> str:
        return _refused_method(ctx, name, "not_exposed")

    run.__name__ = f"dunder_{index}"


for _i, _name in enumerate(_DUNDERS, start=5):
    _register_dunder(_i, _name)


@case("8.2.13", G, "an undefined method name is refused with not_exposed")
def undefined_method(ctx: Ctx) -> str:
    return _refused_method(ctx, "no_such_method", "not_exposed")


@case("8.2.14", G, "a field name used as a method (value) is refused with not_exposed")
def field_as_method(ctx: Ctx) -> str:
    return _refused_method(ctx, "value", "not_exposed")


@case("8.2.15", G, "an empty method name is refused with not_exposed")
def empty_method(ctx: Ctx) -> str:
    return _refused_method(ctx, "", "not_exposed")


@case("8.2.16", G, "method names are case-sensitive ('Bump'): not_exposed")
def case_sensitive(ctx: Ctx) -> str:
    return _refused_method(ctx, "Bump", "not_exposed")


@case("8.2.17", G, "an unexposed method on Control (e.g. a name with a dot) is refused")
def dotted(ctx: Ctx) -> str:
    return _refused_method(ctx, "echo.__globals__", "not_exposed", on_box=False)


@case("8.2.18", G, "bump() with too few arguments: bad_arguments, value unchanged")
def too_few(ctx: Ctx) -> str:
    conn, uid = _box(ctx)
    detail = expect_error(conn.call(uid, "bump", []), "bad_arguments", "§8.2")
    value = conn.call_ok(uid, "touch", [])
    conn.control("despawn", uid)
    if value != 0:
        raise CaseFailure(f"value changed to {value}")
    return detail


@case("8.2.19", G, "bump(1, 2) with too many arguments: bad_arguments, value unchanged")
def too_many(ctx: Ctx) -> str:
    conn, uid = _box(ctx)
    detail = expect_error(conn.call(uid, "bump", [1, 2]), "bad_arguments", "§8.2")
    value = conn.call_ok(uid, "touch", [])
    conn.control("despawn", uid)
    if value != 0:
        raise CaseFailure(f"value changed to {value}")
    return detail


@case("8.2.30", G, "touch(1) on a method without parameters: bad_arguments")
def touch_extra(ctx: Ctx) -> str:
    return _refused_method(ctx, "touch", "bad_arguments", args=[1])


@case("8.2.31", G, "whoami(1) on Control: bad_arguments")
def whoami_extra(ctx: Ctx) -> str:
    return _refused_method(ctx, "whoami", "bad_arguments", on_box=False, args=[1])


@case("8.2.32", G, "spawn() without arguments on Control: bad_arguments")
def spawn_missing(ctx: Ctx) -> str:
    return _refused_method(ctx, "spawn", "bad_arguments", on_box=False)


@case("8.2.33", G, "a call on an unknown UID with an unexposed name: unknown_object comes first")
def unknown_first(ctx: Ctx) -> str:
    conn = ctx.open()
    return expect_error(conn.call(2**51, "_private", []), "unknown_object", "§8.2 order")


@case("8.2.34", G, "calls on an object despawned while they were queued: unknown_object")
def despawned_while_queued(ctx: Ctx) -> str:
    conn = ctx.open()
    (uid,) = spawn_boxes(conn, 1, True)
    kill = conn.request(conn.control_uid(), "despawn", [uid])
    late = conn.request(uid, "touch", [])
    conn.answer(kill)
    return expect_error(conn.answer(late), "unknown_object", "§8.2")


@case("8.2.35", G, 'bump("seven") on 0: an rpc_error whose message is not Python\'s TypeError text')
def bump_wrong_type(ctx: Ctx) -> str:
    conn, uid = _box(ctx)
    reply = conn.call(uid, "bump", ["seven"])
    conn.control("despawn", uid)
    if reply["type"] != "rpc_error":
        raise CaseFailure(f'bump("seven") on 0 answered {reply!r}: 0 + "seven" cannot succeed')
    fragment = python_error_text(reply["message"])
    if fragment is not None:  # also caught in Conn.pump for handler_error
        raise CaseFailure(f"Python's exception text reached the client ({fragment!r}, §8.4)")
    return f"rpc_error {reply['code']}: {reply['message'][:80]!r}"


@case(
    "8.2.36", G, "executions() of an exposed method counts remote runs (touch x3)", exclusive=True
)
def executions_count(ctx: Ctx) -> str:
    conn, uid = _box(ctx)
    before = executions(conn, "touch")
    for _ in range(3):
        conn.call_ok(uid, "touch", [])
    after = executions(conn, "touch")
    conn.control("despawn", uid)
    if after - before != 3:
        raise CaseFailure(
            f"executions('touch') rose by {after - before}, expected 3 (app contract)"
        )
    return "counted 3"


@case("8.2.37", G, "spawned return value is a list of ints and bump values are numbers")
def spawn_return(ctx: Ctx) -> str:
    conn = ctx.open()
    value = conn.control("spawn", 2, False)
    if not (
        isinstance(value, list)
        and all(isinstance(u, int) and not isinstance(u, bool) for u in value)
    ):
        raise CaseFailure(f"spawn returned {value!r}")
    despawn_all(conn, value)
    return f"spawn returned {value}"


@case("8.2.38", G, "echo of a value at the 32-level limit nested in a result is returned")
def echo_deep_ok(ctx: Ctx) -> str:
    conn = ctx.open()
    value: Any = []
    for _ in range(29):
        value = [value]
    reply = conn.call(conn.control_uid(), "echo", [value])
    if reply["type"] != "rpc_result" or not same_json(reply["value"], [value]):
        raise CaseFailure(f"unexpected answer {str(reply)[:200]}")
    return "returned intact"
