"""Group 2: encoding (§3)."""

from __future__ import annotations

import time
from typing import Any

from conformance.cases.common import (
    bad_message,
    bad_payload,
    expect_result,
    header,
    rpc_payload,
    violation,
)
from conformance.context import Ctx
from conformance.driver import CaseFailure, ConnectionEnded, encode
from conformance.model import Outcome, case, info, non_strict

G = 2


def _with_control(ctx: Ctx, build: Any, code: int, section: str) -> Outcome | str:
    """Open a session, build a payload that needs the Control uid, and expect ``code``."""
    conn = ctx.open()
    payload = build(conn.control_uid())
    if isinstance(payload, str):
        payload = payload.encode()
    conn.send_raw(header(len(payload)) + payload)
    detail = ctx.expect_close(conn, code, section=section)
    return f"{detail}; {ctx.check_alive()}"


def _accepted(ctx: Ctx, build: Any, expected: Any, section: str) -> str:
    conn = ctx.open()
    payload = build(conn.control_uid())
    if isinstance(payload, str):
        payload = payload.encode()
    conn.send_frame(payload)
    return expect_result(conn.answer(0), expected, section)


# ----------------------------------------------------------------- §3.1 UTF-8 and JSON


@case("3.1.1", G, "invalid UTF-8 (0xff) in hello: close 1007")
def utf8_hello(ctx: Ctx) -> Outcome | str:
    payload = b'{"type":"hello","version":1,"x":"\xff"}'
    return violation(ctx, header(len(payload)) + payload, 1007, section="§3.1", state="handshake")


@case("3.1.2", G, "invalid UTF-8 inside an rpc string argument: close 1007")
def utf8_rpc(ctx: Ctx) -> Outcome | str:
    return _with_control(
        ctx, lambda c: rpc_payload(c, "echo", '["a"]').replace(b'"a"', b'"a\xfe"'), 1007, "§3.1"
    )


@case("3.1.3", G, "overlong UTF-8 encoding (0xc0 0xaf): close 1007")
def utf8_overlong(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, b'{"type":"ping","nonce":1,"x":"\xc0\xaf"}', 1007, section="§3.1")


@case("3.1.4", G, "UTF-8-encoded surrogate (0xed 0xa0 0x80): close 1007")
def utf8_surrogate(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, b'{"type":"ping","nonce":1,"x":"\xed\xa0\x80"}', 1007, section="§3.1")


@case("3.1.5", G, "truncated multi-byte sequence at the end of a string: close 1007")
def utf8_truncated(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, b'{"type":"ping","nonce":1,"x":"\xe2\x82"}', 1007, section="§3.1")


@case("3.1.6", G, "a UTF-8 byte order mark before the JSON text: close 1007")
def bom(ctx: Ctx) -> Outcome | str:
    conn = ctx.open()
    conn.send_frame(b"\xef\xbb\xbf" + encode({"type": "ping", "nonce": 5}))
    obs = conn.expect_close(ctx.timeout)
    if obs.kind == "close" and obs.code == 1007:
        return f"{obs.describe()}; {ctx.check_alive()}"
    if "pong" in obs.seen:
        return non_strict(
            f"BOM tolerated (answered with pong) instead of 1007 (§3.1); {ctx.check_alive()}"
        )
    raise CaseFailure(f"expected close 1007 (§3.1), got {obs.describe()}")


@case("3.1.7", G, "truncated JSON text: close 1007")
def json_truncated(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, '{"type":"ping","nonce":', 1007, section="§3.1")


@case("3.1.8", G, "single-quoted JSON: close 1007")
def json_single_quotes(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, "{'type':'ping','nonce':1}", 1007, section="§3.1")


@case("3.1.9", G, "trailing comma in an object: close 1007")
def json_trailing_comma(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, '{"type":"ping","nonce":1,}', 1007, section="§3.1")


@case("3.1.10", G, "a JavaScript comment in the payload: close 1007")
def json_comment(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, '{"type":"ping", /* c */ "nonce":1}', 1007, section="§3.1")


@case("3.1.11", G, "trailing garbage after the JSON object: close 1007")
def json_trailing_garbage(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, '{"type":"ping","nonce":1} xyz', 1007, section="§3.1")


@case("3.1.12", G, "whitespace around the JSON text is valid JSON and accepted")
def json_whitespace(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.send_frame(b' \n\t{"type":"ping","nonce":77} \r\n')
    conn.wait(lambda: 77 in conn.pongs, None, "pong 77")
    return "pong 77"


@case("3.1.13", G, "unescaped control character inside a string: close 1007")
def json_control_char(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, b'{"type":"ping","nonce":1,"x":"a\x01b"}', 1007, section="§3.1")


@case("3.1.14", G, "escaped \\u0000 and non-ASCII text are echoed exactly")
def json_escapes(ctx: Ctx) -> str:
    text = "nul\u0000 é 漢字 🎲"
    return _accepted(
        ctx,
        lambda c: rpc_payload(c, "echo", '["nul\\u0000 \\u00e9 漢字 \\ud83c\\udfb2"]'),
        [text],
        "§3.1",
    )


@case(
    "3.1.15",
    G,
    "a lone surrogate escape (\\ud800) echoed back: refused or answered, the server survives",
    risky=True,
)
def json_lone_surrogate(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.send_frame(rpc_payload(conn.control_uid(), "echo", '["\\ud800"]'))
    obs = conn.expect_close(1.0)
    if obs.kind == "close":
        return f"refused: {obs.describe()}; {ctx.check_alive()}"
    return f"accepted ({obs.seen or obs.kind}); {ctx.check_alive()}"


@case("3.1.16", G, "an empty JSON string key and value are accepted (extra field)")
def json_empty_key(ctx: Ctx) -> str:
    return _accepted(ctx, lambda c: rpc_payload(c, "echo", "[2]", extra=',"":""'), [2], "§3.5")


# ----------------------------------------------------------------- §3.2 top-level object


@case("3.2.1", G, "top-level JSON array: close 1007")
def top_array(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, '[{"type":"ping","nonce":1}]', 1007, section="§3.2")


@case("3.2.2", G, "top-level JSON string: close 1007")
def top_string(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, '"ping"', 1007, section="§3.2")


@case("3.2.3", G, "top-level JSON number: close 1007")
def top_number(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, "12345", 1007, section="§3.2")


@case("3.2.4", G, "top-level JSON null: close 1007")
def top_null(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, "null", 1007, section="§3.2")


@case("3.2.5", G, "top-level JSON true: close 1007")
def top_true(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, "true", 1007, section="§3.2")


@case("3.2.6", G, "top-level empty array before hello: close 1007")
def top_array_handshake(ctx: Ctx) -> Outcome | str:
    return violation(ctx, header(2) + b"[]", 1007, section="§3.2", state="handshake")


# ----------------------------------------------------------------- §3.3 type


@case("3.3.1", G, "message without type: close 1002")
def type_missing(ctx: Ctx) -> Outcome | str:
    return bad_message(ctx, {"nonce": 1}, 1002, section="§3.3")


@case("3.3.2", G, "type is a number: close 1002")
def type_number(ctx: Ctx) -> Outcome | str:
    return bad_message(ctx, {"type": 3, "nonce": 1}, 1002, section="§3.3")


@case("3.3.3", G, "type is null: close 1002")
def type_null(ctx: Ctx) -> Outcome | str:
    return bad_message(ctx, {"type": None, "nonce": 1}, 1002, section="§3.3")


@case("3.3.4", G, "unknown type 'frobnicate': close 1002")
def type_unknown(ctx: Ctx) -> Outcome | str:
    return bad_message(ctx, {"type": "frobnicate"}, 1002, section="§3.3")


@case("3.3.5", G, "empty type string: close 1002")
def type_empty(ctx: Ctx) -> Outcome | str:
    return bad_message(ctx, {"type": "", "nonce": 1}, 1002, section="§3.3")


@case("3.3.6", G, "type with different case ('PING'): close 1002")
def type_case(ctx: Ctx) -> Outcome | str:
    return bad_message(ctx, {"type": "PING", "nonce": 1}, 1002, section="§3.3")


@case("3.3.7", G, "type is an array: close 1002")
def type_array(ctx: Ctx) -> Outcome | str:
    return bad_message(ctx, {"type": ["ping"], "nonce": 1}, 1002, section="§3.3")


@case("3.3.8", G, "unknown type before hello: close 1002")
def type_unknown_handshake(ctx: Ctx) -> Outcome | str:
    payload = encode({"type": "frobnicate"})
    return violation(
        ctx, header(len(payload)) + payload, 1002, section="§3.3, §4.5", state="handshake"
    )


# ----------------------------------------------------------------- §3.4 value restrictions


@case("3.4.1", G, "NaN in an rpc argument: close 1007")
def nan(ctx: Ctx) -> Outcome | str:
    return _with_control(ctx, lambda c: rpc_payload(c, "echo", "[NaN]"), 1007, "§3.4")


@case("3.4.2", G, "Infinity in an rpc argument: close 1007")
def infinity(ctx: Ctx) -> Outcome | str:
    return _with_control(ctx, lambda c: rpc_payload(c, "echo", "[Infinity]"), 1007, "§3.4")


@case("3.4.3", G, "-Infinity in an rpc argument: close 1007")
def neg_infinity(ctx: Ctx) -> Outcome | str:
    return _with_control(ctx, lambda c: rpc_payload(c, "echo", "[-Infinity]"), 1007, "§3.4")


@case("3.4.4", G, "NaN as a ping nonce: close 1007")
def nan_nonce(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, '{"type":"ping","nonce":NaN}', 1007, section="§3.4")


@case("3.4.5", G, "Infinity in hello (extra field) before the session opens: close 1007")
def infinity_hello(ctx: Ctx) -> Outcome | str:
    payload = b'{"type":"hello","version":1,"x":Infinity}'
    return violation(ctx, header(len(payload)) + payload, 1007, section="§3.4", state="handshake")


@case("3.4.6", G, "duplicate key 'type' at the top level: close 1007")
def dup_type(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, '{"type":"ping","type":"ping","nonce":1}', 1007, section="§3.4")


@case("3.4.7", G, "duplicate key inside a nested argument object: close 1007")
def dup_nested(ctx: Ctx) -> Outcome | str:
    return _with_control(ctx, lambda c: rpc_payload(c, "echo", '[{"a":1,"a":2}]'), 1007, "§3.4")


@case("3.4.8", G, "duplicate key in hello: close 1007")
def dup_hello(ctx: Ctx) -> Outcome | str:
    payload = b'{"type":"hello","version":1,"version":1}'
    return violation(ctx, header(len(payload)) + payload, 1007, section="§3.4", state="handshake")


@case("3.4.9", G, "integer 2^53 in an argument: close 1007")
def int_2_53(ctx: Ctx) -> Outcome | str:
    return _with_control(ctx, lambda c: rpc_payload(c, "echo", f"[{2**53}]"), 1007, "§3.4")


@case("3.4.10", G, "integer -2^53 in an argument: close 1007")
def int_neg_2_53(ctx: Ctx) -> Outcome | str:
    return _with_control(ctx, lambda c: rpc_payload(c, "echo", f"[{-(2**53)}]"), 1007, "§3.4")


@case("3.4.11", G, "integer 2^53-1 is accepted and echoed exactly")
def int_max_safe(ctx: Ctx) -> str:
    return _accepted(ctx, lambda c: rpc_payload(c, "echo", f"[{2**53 - 1}]"), [2**53 - 1], "§3.4")


@case("3.4.12", G, "integer -(2^53-1) is accepted and echoed exactly")
def int_min_safe(ctx: Ctx) -> str:
    return _accepted(
        ctx, lambda c: rpc_payload(c, "echo", f"[{-(2**53 - 1)}]"), [-(2**53 - 1)], "§3.4"
    )


@case("3.4.13", G, "integer 10^100: close 1007")
def int_googol(ctx: Ctx) -> Outcome | str:
    return _with_control(ctx, lambda c: rpc_payload(c, "echo", f"[{10**100}]"), 1007, "§3.4")


@case("3.4.14", G, "a 5000-digit integer: close 1007 (and no crash)")
def int_5000_digits(ctx: Ctx) -> Outcome | str:
    return _with_control(
        ctx, lambda c: rpc_payload(c, "echo", "[" + "9" * 5000 + "]"), 1007, "§3.4"
    )


@case("3.4.15", G, "float 1e400 (overflows to infinity): close 1007")
def float_overflow(ctx: Ctx) -> Outcome | str:
    return _with_control(ctx, lambda c: rpc_payload(c, "echo", "[1e400]"), 1007, "§3.4")


@case("3.4.16", G, "float -1e999: close 1007")
def float_neg_overflow(ctx: Ctx) -> Outcome | str:
    return _with_control(ctx, lambda c: rpc_payload(c, "echo", "[-1e999]"), 1007, "§3.4")


@case("3.4.17", G, "finite floats (1.5, 1e308, -2.5e-300) are accepted and echoed")
def floats_ok(ctx: Ctx) -> str:
    return _accepted(
        ctx,
        lambda c: rpc_payload(c, "echo", "[1.5,1e308,-2.5e-300]"),
        [1.5, 1e308, -2.5e-300],
        "§3.4",
    )


@case("3.4.18", G, "2^53 as the rpc id: close 1007 (range check, not 1002)")
def id_2_53(ctx: Ctx) -> Outcome | str:
    return _with_control(ctx, lambda c: rpc_payload(c, "echo", "[]", call_id=2**53), 1007, "§3.4")


@case("3.4.19", G, "1e2 (a float) as the ping nonce: close 1002 (wrong type)")
def nonce_float(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, '{"type":"ping","nonce":1e2}', 1002, section="§3.4, §3.5")


def _nested(depth_total: int, open_: str = "[", close: str = "]") -> str:
    """An args value making the message ``depth_total`` levels deep (message = level 1)."""
    inner = depth_total - 2  # level 1 is the message, level 2 the args array
    return "[" + open_ * inner + close * inner + "]"


def _nested_objects(depth_total: int) -> str:
    inner = depth_total - 2
    return "[" + '{"a":' * inner + "1" + "}" * inner + "]"


@case("3.4.20", G, "nesting of exactly 32 levels is accepted and echoed")
def depth_32(ctx: Ctx) -> str:
    expected = [_deep_list(30)]
    return _accepted(ctx, lambda c: rpc_payload(c, "echo", _nested(32)), expected, "§3.4")


def _deep_list(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


@case("3.4.21", G, "nesting of 33 levels (arrays): close 1007")
def depth_33(ctx: Ctx) -> Outcome | str:
    return _with_control(ctx, lambda c: rpc_payload(c, "echo", _nested(33)), 1007, "§3.4")


@case("3.4.22", G, "nesting of 33 levels (objects): close 1007")
def depth_33_objects(ctx: Ctx) -> Outcome | str:
    return _with_control(ctx, lambda c: rpc_payload(c, "echo", _nested_objects(33)), 1007, "§3.4")


@case("3.4.23", G, "nesting of 100000 levels: close 1007, no crash")
def depth_100000(ctx: Ctx) -> Outcome | str:
    return _with_control(ctx, lambda c: rpc_payload(c, "echo", _nested(100000)), 1007, "§3.4")


@case("3.4.24", G, "nesting of 1000 levels in hello: close 1007")
def depth_hello(ctx: Ctx) -> Outcome | str:
    payload = ('{"type":"hello","version":1,"x":' + "[" * 999 + "]" * 999 + "}").encode()
    return violation(ctx, header(len(payload)) + payload, 1007, section="§3.4", state="handshake")


@case("3.4.25", G, "unclosed 100000-level nesting: close 1007, no crash")
def depth_unclosed(ctx: Ctx) -> Outcome | str:
    return bad_payload(
        ctx, '{"type":"ping","nonce":1,"x":' + "[" * 100000, 1007, section="§3.1, §3.4"
    )


@case("3.4.26", G, "-0.0 and 0.0 are accepted as floats (informational on how they are echoed)")
def negative_zero(ctx: Ctx) -> Outcome:
    conn = ctx.open()
    conn.send_frame(rpc_payload(conn.control_uid(), "echo", "[-0.0,0.0]"))
    reply = conn.answer(0)
    if reply["type"] != "rpc_result":
        raise CaseFailure(f"finite floats refused: {reply}")
    return info(f"echoed as {reply['value']!r}")


# ----------------------------------------------------------------- §3.5 fields


def _rpc(control: int, **overrides: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "rpc", "id": 0, "uid": control, "method": "echo", "args": []}
    for key, value in overrides.items():
        if value is _DROP:
            msg.pop(key)
        else:
            msg[key] = value
    return msg


_DROP = object()


def _rpc_violation(ctx: Ctx, code: int, **overrides: Any) -> Outcome | str:
    return _with_control(ctx, lambda c: encode(_rpc(c, **overrides)), code, "§3.5")


@case("3.5.1", G, "rpc without id: close 1002")
def rpc_no_id(ctx: Ctx) -> Outcome | str:
    return _rpc_violation(ctx, 1002, id=_DROP)


@case("3.5.2", G, "rpc without uid: close 1002")
def rpc_no_uid(ctx: Ctx) -> Outcome | str:
    return _rpc_violation(ctx, 1002, uid=_DROP)


@case("3.5.3", G, "rpc without method: close 1002")
def rpc_no_method(ctx: Ctx) -> Outcome | str:
    return _rpc_violation(ctx, 1002, method=_DROP)


@case("3.5.4", G, "rpc without args: close 1002")
def rpc_no_args(ctx: Ctx) -> Outcome | str:
    return _rpc_violation(ctx, 1002, args=_DROP)


@case("3.5.5", G, "rpc id as a string: close 1002")
def rpc_id_string(ctx: Ctx) -> Outcome | str:
    return _rpc_violation(ctx, 1002, id="0")


@case("3.5.6", G, "rpc id true (bool where int expected): close 1002")
def rpc_id_bool(ctx: Ctx) -> Outcome | str:
    return _rpc_violation(ctx, 1002, id=True)


@case("3.5.7", G, "rpc uid false (bool where int expected): close 1002")
def rpc_uid_bool(ctx: Ctx) -> Outcome | str:
    return _rpc_violation(ctx, 1002, uid=False)


@case("3.5.8", G, "rpc uid as a string: close 1002")
def rpc_uid_string(ctx: Ctx) -> Outcome | str:
    return _rpc_violation(ctx, 1002, uid="1")


@case("3.5.9", G, "rpc method as a number: close 1002")
def rpc_method_number(ctx: Ctx) -> Outcome | str:
    return _rpc_violation(ctx, 1002, method=5)


@case("3.5.10", G, "rpc args as an object: close 1002")
def rpc_args_object(ctx: Ctx) -> Outcome | str:
    return _rpc_violation(ctx, 1002, args={"0": 1})


@case("3.5.11", G, "rpc args as a string: close 1002")
def rpc_args_string(ctx: Ctx) -> Outcome | str:
    return _rpc_violation(ctx, 1002, args="abc")


@case("3.5.12", G, "rpc id null: close 1002")
def rpc_id_null(ctx: Ctx) -> Outcome | str:
    return _rpc_violation(ctx, 1002, id=None)


@case("3.5.13", G, "rpc id 1.0 (a float): close 1002")
def rpc_id_float(ctx: Ctx) -> Outcome | str:
    return _with_control(
        ctx,
        lambda c: rpc_payload(c, "echo", "[]", extra="").replace(b'"id":0', b'"id":1.0'),
        1002,
        "§3.5",
    )


@case("3.5.14", G, "rpc with a negative id (-1): close 1002 (ids are >= 0)")
def rpc_id_negative(ctx: Ctx) -> Outcome | str:
    conn = ctx.open()
    conn.send(_rpc(conn.control_uid(), id=-1))
    deadline = time.monotonic() + ctx.timeout
    while True:
        try:
            msg = conn.recv_msg(deadline)
        except ConnectionEnded:
            raise CaseFailure("connection ended without a close frame") from None
        if msg["type"] == "close":
            if msg.get("code") != 1002:
                raise CaseFailure(f"expected close 1002, got {msg}")
            return f"close 1002 {msg.get('reason')!r}; {ctx.check_alive()}"
        if msg["type"] in ("rpc_result", "rpc_error") and msg.get("id") == -1:
            raise CaseFailure(
                f"negative id answered ({msg['type']}) instead of refused with 1002 (§5.1 id >= 0)"
            )
        conn.pump(msg)


@case("3.5.15", G, "ping without nonce: close 1002")
def ping_no_nonce(ctx: Ctx) -> Outcome | str:
    return bad_message(ctx, {"type": "ping"}, 1002, section="§3.5")


@case("3.5.16", G, "ping nonce as a string: close 1002")
def ping_nonce_string(ctx: Ctx) -> Outcome | str:
    return bad_message(ctx, {"type": "ping", "nonce": "1"}, 1002, section="§3.5")


@case("3.5.17", G, "ping nonce true (bool where int expected): close 1002")
def ping_nonce_bool(ctx: Ctx) -> Outcome | str:
    return bad_message(ctx, {"type": "ping", "nonce": True}, 1002, section="§3.5")


@case("3.5.18", G, "pong without nonce: close 1002")
def pong_no_nonce(ctx: Ctx) -> Outcome | str:
    return bad_message(ctx, {"type": "pong"}, 1002, section="§3.5")


@case("3.5.19", G, "rpc with unknown extra fields is answered normally")
def rpc_extra(ctx: Ctx) -> str:
    conn = ctx.open()
    reply = conn.call(conn.control_uid(), "echo", [3], future={"x": [1, 2]}, note="hi", v2=True)
    return expect_result(reply, [3], "§3.5")


@case("3.5.20", G, "ping with unknown extra fields is answered with pong")
def ping_extra(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.send({"type": "ping", "nonce": 8, "extra": {"deep": [1]}, "z": None})
    conn.wait(lambda: 8 in conn.pongs, None, "pong 8")
    return "pong 8"


@case("3.5.21", G, "close without code: the server closes the connection")
def close_no_code(ctx: Ctx) -> Outcome | str:
    conn = ctx.open()
    conn.send({"type": "close", "reason": "x"})
    obs = conn.expect_close(ctx.timeout)
    if obs.kind in ("eof", "close"):
        if obs.kind == "close" and obs.code not in (1002, 1000):
            raise CaseFailure(f"unexpected close code {obs.describe()}")
        return f"{obs.describe()}; {ctx.check_alive()}"
    raise CaseFailure(f"connection not closed: {obs.describe()}")


@case("3.5.22", G, "an rpc with a 2^53-1 id is answered with the same id")
def rpc_id_max(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.send(_rpc(conn.control_uid(), id=2**53 - 1, args=[1]))
    conn.wait(lambda: 2**53 - 1 in conn.results, None, "answer with id 2^53-1")
    return expect_result(conn.results[2**53 - 1][0], [1], "§5.1")


@case("3.6.1", G, "a 500000-character string argument is echoed exactly")
def long_string(ctx: Ctx) -> str:
    conn = ctx.open()
    text = "abcdefghij" * 50000
    value = conn.call_ok(conn.control_uid(), "echo", [text])
    if value != [text]:
        raise CaseFailure("long string not echoed exactly")
    return "500000 characters round-tripped"


@case("3.6.2", G, "a 100000-character method name is refused with rpc_error not_exposed")
def long_method(ctx: Ctx) -> str:
    conn = ctx.open()
    reply = conn.call(conn.control_uid(), "m" * 100000, [])
    if reply["type"] != "rpc_error" or reply["code"] != "not_exposed":
        raise CaseFailure(f"expected not_exposed, got {str(reply)[:200]}")
    return f"not_exposed, message {len(reply['message'])} chars"


@case("3.6.3", G, "a 10000-character unknown key is ignored")
def long_key(ctx: Ctx) -> str:
    conn = ctx.open()
    reply = conn.call(conn.control_uid(), "echo", [4], **{"k" * 10000: 1})
    return expect_result(reply, [4], "§3.5")


@case("3.6.4", G, "an object argument with 5000 keys is echoed exactly")
def many_keys(ctx: Ctx) -> str:
    conn = ctx.open()
    obj = {f"k{i}": i for i in range(5000)}
    return expect_result(conn.call(conn.control_uid(), "echo", [obj]), [obj], "§3.6")


@case("3.6.5", G, "a UTF-8 payload of multi-byte characters near 300 KB is echoed exactly")
def multibyte_bulk(ctx: Ctx) -> str:
    conn = ctx.open()
    text = "ü漢🎲" * 30000
    value = conn.call_ok(conn.control_uid(), "echo", [text])
    if value != [text]:
        raise CaseFailure("multi-byte text not echoed exactly")
    return f"{len(text.encode())} UTF-8 bytes round-tripped"


@case("3.6.6", G, "bool where int expected in Box.bump(k) handled without closing (informational)")
def bool_arg(ctx: Ctx) -> Outcome:
    conn = ctx.open()
    reply = conn.call(conn.control_uid(), "spawn", [1, True])
    if reply["type"] != "rpc_result":
        raise CaseFailure(f"spawn failed: {reply}")
    uid = reply["value"][0]
    bumped = conn.call(uid, "bump", [True])
    conn.call(conn.control_uid(), "despawn", [uid])
    return info(f"bump(true) answered {bumped['type']} {bumped.get('code', bumped.get('value'))!r}")


@case("3.6.7", G, "hello version as a string '1': close 1002")
def version_string(ctx: Ctx) -> Outcome | str:
    payload = encode({"type": "hello", "version": "1"})
    return violation(ctx, header(len(payload)) + payload, 1002, section="§3.5", state="handshake")


@case("3.6.8", G, "hello version true (bool where int expected): close 1002")
def version_bool(ctx: Ctx) -> Outcome | str:
    payload = encode({"type": "hello", "version": True})
    return violation(
        ctx, header(len(payload)) + payload, 1002, section="§3.5, §3.6", state="handshake"
    )


@case("3.6.9", G, "hello without version: close 1002")
def version_missing(ctx: Ctx) -> Outcome | str:
    payload = encode({"type": "hello"})
    return violation(ctx, header(len(payload)) + payload, 1002, section="§3.5", state="handshake")


@case("3.6.10", G, "hello version 1.0 (a float): close 1002")
def version_float(ctx: Ctx) -> Outcome | str:
    payload = b'{"type":"hello","version":1.0}'
    return violation(
        ctx, header(len(payload)) + payload, 1002, section="§3.5, §3.6", state="handshake"
    )


@case("3.6.11", G, "hello max_frame as a string: close 1002")
def max_frame_string(ctx: Ctx) -> Outcome | str:
    payload = encode({"type": "hello", "version": 1, "max_frame": "65536"})
    return violation(ctx, header(len(payload)) + payload, 1002, section="§3.5", state="handshake")
