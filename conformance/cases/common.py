"""Helpers shared by the case modules."""

from __future__ import annotations

import json
import struct
from typing import Any

from conformance.context import Ctx
from conformance.driver import CaseFailure, Conn, Msg, brief, encode
from conformance.model import NonStrict, Outcome, non_strict

LIMIT = 1048576


def header(length: int) -> bytes:
    return struct.pack(">I", length)


def violation(
    ctx: Ctx,
    data: bytes,
    code: int,
    *,
    section: str,
    state: str = "open",
    alternatives: tuple[int, ...] = (),
    timeout: float | None = None,
) -> Outcome | str:
    """Send ``data`` raw (in HANDSHAKE or OPEN), require close ``code``, then check health."""
    conn = ctx.connect() if state == "handshake" else ctx.open()
    conn.send_raw(data)
    verdict: Outcome | None = None
    try:
        detail = ctx.expect_close(
            conn, code, section=section, alternatives=alternatives, timeout=timeout
        )
    except NonStrict as exc:
        verdict, detail = non_strict(str(exc)), str(exc)
    alive = ctx.check_alive()
    if verdict is not None:
        return non_strict(f"{verdict.detail}; {alive}")
    return f"{detail}; {alive}"


def bad_payload(ctx: Ctx, payload: bytes | str, code: int, **kwargs: Any) -> Outcome | str:
    if isinstance(payload, str):
        payload = payload.encode()
    return violation(ctx, header(len(payload)) + payload, code, **kwargs)


def bad_message(ctx: Ctx, msg: Any, code: int, **kwargs: Any) -> Outcome | str:
    return bad_payload(ctx, encode(msg), code, **kwargs)


def rpc_payload(uid: int, method: str, args_json: str, call_id: int = 0, extra: str = "") -> bytes:
    """An rpc payload whose args are given as raw JSON text (to smuggle odd values)."""
    text = (
        f'{{"type":"rpc","id":{call_id},"uid":{uid},"method":{json.dumps(method)},'
        f'"args":{args_json}{extra}}}'
    )
    return text.encode()


def expect_error(reply: Msg, code: str, section: str) -> str:
    if reply["type"] != "rpc_error":
        raise CaseFailure(f"expected rpc_error {code} ({section}), got {brief(reply)}")
    if reply["code"] != code:
        raise CaseFailure(
            f"expected rpc_error {code} ({section}), "
            f"got {reply['code']}: {reply['message'][:120]!r}"
        )
    return f"rpc_error {code}: {reply['message'][:80]!r}"


def expect_result(reply: Msg, value: Any, section: str = "") -> str:
    if reply["type"] != "rpc_result":
        raise CaseFailure(f"expected rpc_result {section}, got {brief(reply)}")
    if not same_json(reply["value"], value):
        raise CaseFailure(f"expected value {brief_value(value)}, got {brief_value(reply['value'])}")
    return f"rpc_result {brief_value(reply['value'])}"


def same_json(a: Any, b: Any) -> bool:
    """Structural JSON equality that keeps ints, floats and bools apart: ``1``, ``1.0`` and
    ``true`` are three different values on the wire (§3.6, §7.2), so a change from one to
    another is a change a server must send."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def brief_value(value: Any, limit: int = 80) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def spawn_boxes(conn: Conn, n: int, owned: bool) -> list[int]:
    uids = conn.control("spawn", n, owned)
    if not isinstance(uids, list) or len(uids) != n:
        raise CaseFailure(f"spawn({n}, {owned}) returned {uids!r}, expected a list of {n} UIDs")
    return [int(uid) for uid in uids]


def despawn_all(conn: Conn, uids: list[int]) -> None:
    """Best-effort cleanup so the world stays small for later cases."""
    control = conn.control_uid()
    ids = [conn.request(control, "despawn", [uid]) for uid in uids]
    for call_id in ids:
        conn.answer(call_id)


def executions(conn: Conn, name: str) -> int:
    count = conn.control("executions", name)
    if not isinstance(count, int):
        raise CaseFailure(f"executions({name!r}) returned {count!r}")
    return count
