"""Group 13: the messages feature (§14): negotiation, named messages both ways, errors, order.

A server need not implement ``"messages"``: when it does not grant it, the cases that need it
are non-strict. A connection that did not ask must never see a ``message``; the driver fails
any case in which one reaches such a connection (§14.1).
"""

from __future__ import annotations

import json
from typing import Any

from conformance.cases.common import bad_payload, despawn_all, header, same_json, spawn_boxes
from conformance.context import Ctx
from conformance.driver import CaseFailure, Conn, Msg, ServerViolation
from conformance.model import NonStrict, Outcome, case, non_strict

G = 13
MESSAGES = "messages"
VALUES: list[Any] = [None, 0, -7, 2**53 - 1, 3.25, True, "ünï 漢字", [1, [2.5]], {"a": {}}]


def _granted(ctx: Ctx) -> tuple[Conn, bool]:
    """A connection that asked for messages, synced; whether the server granted it."""
    conn = ctx.connect()
    welcome = conn.handshake(features=[MESSAGES])
    granted = welcome.get("features", [])
    if not isinstance(granted, list) or not set(granted) <= {MESSAGES}:
        raise ServerViolation(f"welcome.features grants what was not asked (§4.11): {granted!r}")
    conn.wait(lambda: conn.table.applied > 0, None, "the first full sync")
    return conn, MESSAGES in granted


def _messaging(ctx: Ctx) -> Conn:
    conn, ok = _granted(ctx)
    if not ok:
        raise NonStrict("the server does not implement the messages feature (§14.1)")
    return conn


def _next_message(conn: Conn, kind: str, name: str, what: str) -> Msg:
    def found() -> bool:
        return any(m["type"] == kind and m["name"] == name for m in conn.app_messages)

    conn.wait(found, None, what)
    index = next(
        i for i, m in enumerate(conn.app_messages) if m["type"] == kind and m["name"] == name
    )
    return conn.app_messages.pop(index)


def _violation(ctx: Ctx, payload: bytes, section: str) -> str:
    """Send ``payload`` raw on a connection granted messages; require close 1002."""
    conn = _messaging(ctx)
    conn.send_raw(header(len(payload)) + payload)
    detail = ctx.expect_close(conn, 1002, section=section)
    return f"{detail}; {ctx.check_alive()}"


def _guard(run: Any) -> Outcome | str:
    try:
        return str(run())
    except NonStrict as exc:
        return non_strict(str(exc))


@case("14.1.1", G, "messages is granted when asked for (non-strict when not implemented)")
def granted(ctx: Ctx) -> Outcome | str:
    _, ok = _granted(ctx)
    return "messages granted" if ok else non_strict("the server does not implement messages")


@case("14.1.2", G, "a connection that did not ask receives no message while others do")
def not_asked(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        plain = ctx.open()
        if MESSAGES in plain.granted:
            raise ServerViolation("welcome grants messages without hello.features (§4.11)")
        other = _messaging(ctx)
        control = other.control_uid()
        count = other.call_ok(control, "tell_all", ["news-14.1.2", 1])
        _next_message(other, "message", "news-14.1.2", "the broadcast")
        uids = spawn_boxes(other, 1, False)  # a sync after the broadcast, on both
        try:
            plain.wait(lambda: uids[0] in plain.table.objects, None, "the spawn")
        finally:
            despawn_all(other, uids)
        if plain.app_messages:  # the driver raises first; kept for clarity
            raise ServerViolation("a message reached a connection without the feature (§14.1)")
        return f"broadcast reached {count} connection(s), none without the feature"

    return _guard(run)


@case("14.1.3", G, "a message on a connection without the feature closes 1002")
def without_feature(ctx: Ctx) -> Outcome | str:
    payload = json.dumps({"type": "message", "name": "echo", "data": 1})
    return bad_payload(ctx, payload, 1002, section="14.1")


@case("14.2.1", G, "a message whose name is empty closes 1002")
def empty_name(ctx: Ctx) -> Outcome | str:
    payload = json.dumps({"type": "message", "name": "", "data": 1}).encode()
    return _guard(lambda: _violation(ctx, payload, "14.2"))


@case("14.2.2", G, "a message whose name has 65 characters closes 1002")
def long_name(ctx: Ctx) -> Outcome | str:
    payload = json.dumps({"type": "message", "name": "n" * 65}).encode()
    return _guard(lambda: _violation(ctx, payload, "14.2"))


@case("14.2.3", G, "a message whose name is not a string closes 1002")
def name_not_string(ctx: Ctx) -> Outcome | str:
    payload = json.dumps({"type": "message", "name": 7, "data": 1}).encode()
    return _guard(lambda: _violation(ctx, payload, "14.2"))


@case("14.2.4", G, "a message without data is handled as data null")
def no_data(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _messaging(ctx)
        conn.send({"type": "message", "name": "echo"})
        reply = _next_message(conn, "message", "echo", "the echo")
        if not same_json(reply.get("data"), {"from": conn.member, "data": None}):
            raise CaseFailure(f"expected data null echoed, got {reply!r}")
        return "echoed with data null"

    return _guard(run)


@case("14.3.1", G, "a message to one client carries its data exactly, every JSON type")
def to_one(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _messaging(ctx)
        control = conn.control_uid()
        for value in VALUES:
            call_id = conn.request(control, "tell", ["hi", value])
            answer = conn.answer(call_id)
            got = _next_message(conn, "message", "hi", "the message")
            if answer["type"] != "rpc_result" or not same_json(got.get("data"), value):
                raise CaseFailure(f"tell('hi', {value!r}): {answer!r}, message {got!r}")
        return f"{len(VALUES)} values received exactly"

    return _guard(run)


@case("14.3.2", G, "a broadcast reaches every connection granted messages")
def to_all(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conns = [_messaging(ctx) for _ in range(3)]
        control = conns[0].control_uid()
        count = conns[0].call_ok(control, "tell_all", ["news-14.3.2", {"n": 3}])
        for conn in conns:
            got = _next_message(conn, "message", "news-14.3.2", "the broadcast")
            if not same_json(got.get("data"), {"n": 3}):
                raise CaseFailure(f"broadcast data differs: {got!r}")
        return f"3 connections received it (the server counted {count})"

    return _guard(run)


@case("14.3.3", G, "a message to an object's observers reaches the clients holding it")
def to_observers(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        a, b = _messaging(ctx), _messaging(ctx)
        uids = spawn_boxes(a, 1, False)
        try:
            for conn in (a, b):
                conn.wait(lambda c=conn: uids[0] in c.table.objects, None, "the spawn")
            a.call_ok(a.control_uid(), "tell_around", [uids[0], "near", uids[0]])
            for conn in (a, b):
                got = _next_message(conn, "message", "near", "the observers' message")
                if got.get("data") != uids[0]:
                    raise CaseFailure(f"unexpected data: {got!r}")
        finally:
            despawn_all(a, uids)
        return "both holders received it"

    return _guard(run)


@case("14.4.1", G, "a client message reaches its handler with the sender derived by the server")
def to_handler(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _messaging(ctx)
        conn.send({"type": "message", "name": "echo", "data": [1, "x"], "member": 999999})
        got = _next_message(conn, "message", "echo", "the echo")
        expected = {"from": conn.member, "data": [1, "x"]}
        if not same_json(got.get("data"), expected):
            raise CaseFailure(f"expected {expected!r}, got {got!r} (§3.5: sender from the link)")
        return "handled, sender is this connection's member id"

    return _guard(run)


@case("14.4.2", G, "an unknown message name is answered message_error unknown_message")
def unknown_name(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _messaging(ctx)
        conn.send({"type": "message", "name": "no-such-handler", "data": 1})
        got = _next_message(conn, "message_error", "no-such-handler", "the message_error")
        if got.get("code") != "unknown_message":
            raise CaseFailure(f"expected code unknown_message, got {got!r}")
        conn.send({"type": "message", "name": "echo", "data": "after"})
        _next_message(conn, "message", "echo", "an echo on the same connection")
        return "unknown_message; the connection stays open"

    return _guard(run)


@case("14.4.3", G, "a failing handler is answered handler_error without internals")
def handler_error(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _messaging(ctx)
        conn.send({"type": "message", "name": "crash"})
        got = _next_message(conn, "message_error", "crash", "the message_error")
        if got.get("code") != "handler_error":
            raise CaseFailure(f"expected code handler_error, got {got!r}")
        conn.call_ok(conn.control_uid(), "echo", ["alive"])
        return f"handler_error {got.get('reason')!r}; the connection stays open"

    return _guard(run)


@case("14.5.1", G, "a message sent before a tick precedes its sync; one sent after follows")
def order_with_sync(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _messaging(ctx)
        uids = spawn_boxes(conn, 1, False)
        uid = uids[0]
        seen: list[tuple[str, Any]] = []

        def record(msg: Msg) -> None:
            if msg["type"] == "message" and msg["name"] in ("before", "after"):
                replica = conn.table.objects.get(uid)
                seen.append((msg["name"], replica.fields.get("value") if replica else None))

        conn.on_message = record
        try:
            conn.wait(lambda: uid in conn.table.objects, None, "the spawn")
            for value in (1, 2, 3):
                conn.call_ok(conn.control_uid(), "ordered", [uid, value])
                conn.wait(lambda: len(seen) >= 2, None, "before and after")
                got, seen[:] = list(seen), []
                if got != [("before", value - 1), ("after", value)]:
                    raise CaseFailure(
                        f"value {value}: expected before (holding {value - 1}) then after "
                        f"(holding {value}), got {got} (§14.5)"
                    )
        finally:
            conn.on_message = None
            despawn_all(conn, uids)
        return "3 rounds: before precedes the sync, after follows it"

    return _guard(run)


@case("14.5.2", G, "a client's messages and rpcs are handled in arrival order")
def order_with_rpc(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _messaging(ctx)
        control = conn.control_uid()
        ids: list[int] = []
        # for each echo: its data, and how many of our calls were answered when it arrived
        order: list[tuple[Any, int]] = []

        def record(msg: Msg) -> None:
            if msg["type"] == "message" and msg["name"] == "echo":
                answered = sum(1 for call_id in ids if call_id in conn.results)
                order.append((msg["data"]["data"], answered))

        conn.on_message = record
        try:
            for i in range(3):
                conn.send({"type": "message", "name": "echo", "data": i})
                ids.append(conn.request(control, "echo", [i]))
            for call_id in ids:
                conn.answer(call_id)
            conn.wait(lambda: len(order) >= 3, None, "three echoes")
        finally:
            conn.on_message = None
        expected = [(i, i) for i in range(3)]  # echo i after answer i-1, before answer i
        if order != expected:
            raise CaseFailure(
                "expected each echo i after call i-1's answer and before call i's: "
                f"(echo, answers before it) {expected}, got {order} (§14.5)"
            )
        return "message, call, message, call... answered in that order"

    return _guard(run)
