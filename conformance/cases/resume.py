"""Group 16: session resume (§18): tokens, the resume hello, refusals, exactly-once calls.

A server need not implement ``"resume"``: when it does not grant it, the cases are
non-strict. A connection is *dropped* here by closing the socket without ``close`` (§18.1).
The expiry case shortens the grace with the host's ``resume_grace`` control (non-strict
where the server lacks it). Few refusals are provoked: each counts against the address's
failure budget (§18.8: 10 a minute).
"""

from __future__ import annotations

import time
from typing import Any

from conformance.context import Ctx
from conformance.driver import CaseFailure, Conn, Msg, ServerViolation
from conformance.model import NonStrict, Outcome, case, non_strict

G = 16
RESUME = "resume"
SETTLE = 0.2  # s for the server to read the EOF of a dropped connection before the resume


def _join(ctx: Ctx) -> Conn:
    """A "resume" connection with its first full sync; non-strict if not granted."""
    conn = ctx.connect()
    welcome = conn.handshake(features=[RESUME])
    granted = welcome.get("features", [])
    if not isinstance(granted, list) or RESUME not in granted:
        raise NonStrict("the server does not implement resume (§18)")
    token = welcome.get("resume_token")
    if not isinstance(token, str) or not 16 <= len(token) <= 64:
        raise ServerViolation(f"welcome.resume_token is not a 16-64 char string (§18.2): {token!r}")
    conn.wait(lambda: conn.table.applied > 0, None, "the first full sync")
    return conn


def _token(conn: Conn) -> str:
    assert conn.welcome is not None
    return str(conn.welcome["resume_token"])


def _drop(conn: Conn) -> None:
    """End the TCP connection without ``close`` (§18.1: a drop), and let the server see it."""
    conn.close()
    time.sleep(SETTLE)


def _resume(ctx: Ctx, member: int, token: str, **extra: Any) -> tuple[Conn, Msg]:
    """A resume hello; the server's first answer (welcome or close)."""
    conn = ctx.connect()
    resume: dict[str, Any] = {"member": member, "token": token, "since_tick": None}
    resume.update(extra)
    return conn, conn.hello(features=[RESUME], resume=resume)


def _resumed(ctx: Ctx, member: int, token: str, **extra: Any) -> Conn:
    conn, msg = _resume(ctx, member, token, **extra)
    if msg.get("type") != "welcome":
        raise CaseFailure(f"resume within the grace refused: {msg}")
    conn.accept_welcome(msg)
    if msg.get("member") != member or msg.get("resumed") is not True:
        raise ServerViolation(f"a resume welcome needs the same member and resumed: true: {msg}")
    new = msg.get("resume_token")
    if not isinstance(new, str) or new == token:
        raise ServerViolation("a resume welcome carries a new resume_token (§18.2)")
    return conn


def _refused(ctx: Ctx, member: int, token: str, code: int) -> str:
    _, msg = _resume(ctx, member, token)
    if msg.get("type") != "close" or msg.get("code") != code:
        raise CaseFailure(f"expected close {code} (§18.4), got {msg}")
    return f"close {code} {msg.get('reason')!r}"


def _guard(run: Any) -> Outcome | str:
    try:
        return str(run())
    except NonStrict as exc:
        return non_strict(str(exc))


@case("18.2.1", G, "resume is granted with a token; tokens differ; none without asking")
def granted(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        a, b = _join(ctx), _join(ctx)
        if _token(a) == _token(b):
            raise ServerViolation("two connections got the same resume_token (§18.2)")
        plain = ctx.connect()
        welcome = plain.handshake()
        if "resume_token" in welcome or "resumed" in welcome:
            raise ServerViolation("a resume field in a welcome without the feature (§4.11)")
        for conn in (a, b, plain):
            conn.goodbye()
        return "tokens granted and distinct"

    return _guard(run)


@case("18.4.1", G, "a drop resumed within the grace keeps the membership and its ownership")
def resumed(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _join(ctx)
        member, token = conn.member, _token(conn)
        assert member is not None
        owned = conn.control("spawn", 1, True)[0]
        conn.wait(lambda: owned in conn.table.objects, None, "the owned Box")
        _drop(conn)
        again = _resumed(ctx, member, token)
        again.wait(lambda: again.table.applied > 0, None, "a full sync after the resume")
        if owned not in again.table.objects:
            raise CaseFailure(f"the owned Box {owned} is missing after the resume")
        reply = again.call(owned, "bump", [1])
        if reply["type"] != "rpc_result":
            raise CaseFailure(f"an owner-only call after the resume failed: {reply}")
        again.control("despawn", owned)
        again.goodbye()
        return f"member {member} resumed; owner-only call ran"

    return _guard(run)


@case("18.4.2", G, "a token used twice is refused (3002); the current one still resumes")
def used_twice(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _join(ctx)
        member, first = conn.member, _token(conn)
        assert member is not None
        _drop(conn)
        again = _resumed(ctx, member, first)
        current = _token(again)
        _drop(again)
        detail = _refused(ctx, member, first, 3002)
        last = _resumed(ctx, member, current)
        last.goodbye()
        return f"{detail}; the current token resumed"

    return _guard(run)


@case("18.4.3", G, "a live membership is never taken over (3003); the live one is unaffected")
def live(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _join(ctx)
        assert conn.member is not None
        detail = _refused(ctx, conn.member, _token(conn), 3003)
        conn.control("echo", "still here")
        conn.goodbye()
        return detail

    return _guard(run)


@case("18.4.4", G, "after the grace, a resume is refused (3003) and a plain hello joins afresh")
def expired(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _join(ctx)
        member, token = conn.member, _token(conn)
        assert member is not None
        reply = conn.call(conn.control_uid(), "resume_grace", [0.3])
        if reply["type"] != "rpc_result":
            raise NonStrict("the host cannot shorten its grace (resume_grace control)")
        previous = reply["value"]
        try:
            _drop(conn)
            time.sleep(1.5)  # the grace (0.3 s) and the server's expiry check (<= 1 s)
            detail = _refused(ctx, member, token, 3003)
        finally:
            restore = ctx.open()
            restore.control("resume_grace", previous)
            restore.goodbye()
        fresh = ctx.open()
        if fresh.member == member:
            raise ServerViolation("a membership id was reused (§4.3)")
        fresh.goodbye()
        return detail

    return _guard(run)


@case("18.3.1", G, "a malformed resume, or a resume without the feature, is a protocol error")
def malformed(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        _join(ctx).goodbye()
        bad: list[tuple[list[str], Any]] = [
            ([RESUME], {"member": 1, "token": 5}),
            ([RESUME], {"member": 1, "token": "x", "waiting": ["a"]}),
            ([RESUME], {"member": 1, "token": "x", "waiting": list(range(1025))}),
            ([RESUME], "token"),
            ([], {"member": 1, "token": "x"}),
        ]
        for features, resume in bad:
            conn = ctx.connect()
            msg = conn.hello(features=features, resume=resume)
            if msg.get("type") != "close" or msg.get("code") != 1002:
                raise CaseFailure(f"resume {str(resume)[:60]} with {features}: got {msg}")
        return f"{len(bad)} malformed resumes closed with 1002; {ctx.check_alive()}"

    return _guard(run)


@case(
    "18.6.1",
    G,
    "a call whose answer was lost is answered again after the resume, not re-run",
    exclusive=True,
)
def replayed(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _join(ctx)
        member, token = conn.member, _token(conn)
        assert member is not None
        control = conn.control_uid()
        before = conn.control("executions", "whoami")
        conn.auto_pong = False  # a pong would confirm the answer (§18.6) before the drop
        call_id = conn.request(control, "whoami", [])
        first = conn.answer(call_id)
        _drop(conn)  # as if that answer had not arrived
        again = _resumed(ctx, member, token, waiting=[call_id])
        again.next_id = call_id
        second = again.answer(again.request(control, "whoami", []))
        if second != first:
            raise CaseFailure(f"the replayed answer differs: {first} then {second}")
        again.next_id = call_id + 100
        ran = again.call_ok(control, "executions", ["whoami"]) - before
        again.goodbye()
        if ran != 1:
            raise CaseFailure(f"the call ran {ran} times (§18.6: at most once)")
        return "replayed, ran once"

    return _guard(run)


@case(
    "18.6.2",
    G,
    "a call cut by the drop runs once and its answer comes after the resume",
    exclusive=True,
)
def cut(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _join(ctx)
        member, token = conn.member, _token(conn)
        assert member is not None
        control = conn.control_uid()
        before = conn.control("executions", "whoami")
        call_id = conn.request(control, "whoami", [])
        _drop(conn)  # right after the rpc: its answer is written to a gone connection
        again = _resumed(ctx, member, token, waiting=[call_id])
        again.next_id = call_id
        reply = again.answer(again.request(control, "whoami", []))
        if reply.get("type") != "rpc_result" or reply.get("value") != member:
            raise CaseFailure(f"expected whoami's result {member}, got {reply}")
        never = call_id + 1  # never sent before the drop: a new call, run once
        again.next_id = never
        fresh = again.answer(again.request(control, "whoami", []))
        if fresh.get("type") != "rpc_result":
            raise CaseFailure(f"a call never received before the drop did not run: {fresh}")
        again.next_id = never + 100
        ran = again.call_ok(control, "executions", ["whoami"]) - before
        again.goodbye()
        if ran != 2:
            raise CaseFailure(f"two calls ran {ran} times in all (§18.6)")
        return "cut call answered after the resume; each call ran once"

    return _guard(run)


@case("18.5.1", G, "after a resume the first sync is a full snapshot (or a delta from since_tick)")
def first_sync(ctx: Ctx) -> Outcome | str:
    def run() -> str:
        conn = _join(ctx)
        member, token = conn.member, _token(conn)
        assert member is not None
        uids = conn.control("spawn", 2, True)
        conn.wait(lambda: all(u in conn.table.objects for u in uids), None, "the spawned Boxes")
        since = conn.table.applied  # informational; a full snapshot is always allowed
        _drop(conn)
        again, msg = _resume(ctx, member, token, since_tick=None)
        if msg.get("type") != "welcome":
            raise CaseFailure(f"resume refused: {msg}")
        again.accept_welcome(msg)
        deadline = time.monotonic() + ctx.timeout
        first: Msg | None = None
        while first is None:
            msg = again.recv_msg(deadline)
            if msg.get("type") == "sync":
                first = msg
            again.pump(msg)
        if first.get("full") is not True:
            raise ServerViolation(
                f"with since_tick null the first sync after a resume must be full (§18.5): "
                f"{str(first)[:160]}"
            )
        again.wait(lambda: again.table.applied > 0, None, "the full snapshot")
        missing = [u for u in uids if u not in again.table.objects]
        if missing:
            raise CaseFailure(f"owned Boxes {missing} missing from the snapshot after the resume")
        owners = {again.table.objects[u].owner for u in uids}
        if owners != {member}:
            raise CaseFailure(f"owned Boxes lost their owner after the resume: {owners}")
        control = again.control_uid()
        for uid in uids:
            again.call_ok(control, "despawn", [uid])
        again.goodbye()
        return f"full snapshot with the {len(uids)} owned Boxes (applied {since} syncs before)"

    return _guard(run)
