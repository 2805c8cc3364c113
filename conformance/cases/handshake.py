"""Group 3: handshake and versioning (§4)."""

from __future__ import annotations

import time
from typing import Any

from conformance.cases.common import header, violation
from conformance.context import Ctx, check_close_frame
from conformance.driver import CaseFailure, Conn, RecvTimeout, encode, frame
from conformance.model import Outcome, case

G = 3


def _deadline_budget(ctx: Ctx) -> float:
    return ctx.settings.handshake_deadline + 2.0


def _refused_version(ctx: Ctx, version: Any) -> str:
    conn = ctx.connect()
    conn.send({"type": "hello", "version": version})
    obs = conn.expect_close(ctx.timeout)
    check_close_frame(obs)
    if obs.kind != "close" or obs.code != 1003:
        raise CaseFailure(f"expected close 1003 (§4.4), got {obs.describe()}")
    if "1" not in str(obs.reason):
        raise CaseFailure(
            f"close 1003 reason does not name the supported version 1: {obs.reason!r}"
        )
    if not obs.eof_after:
        raise CaseFailure("close 1003 sent but the TCP connection stayed open (§4.4)")
    return f"{obs.describe()}; {ctx.check_alive()}"


def _expect_deadline_close(ctx: Ctx, conn: Conn, started: float) -> str:
    limit = ctx.settings.handshake_deadline
    obs = conn.expect_close(limit + 1.5 - (time.monotonic() - started))
    elapsed = time.monotonic() - started
    check_close_frame(obs)
    if obs.kind != "close" or obs.code != 1008:
        raise CaseFailure(
            f"expected close 1008 at the handshake deadline (§4.6), got {obs.describe()}"
        )
    if obs.seen:
        raise CaseFailure(f"server sent {obs.seen} before hello (§4.2)")
    return f"close 1008 {obs.reason!r} {elapsed:.2f}s after connect"


@case("4.1.1", G, "welcome.version is 1")
def welcome_version(ctx: Ctx) -> str:
    welcome = ctx.connect().handshake()
    return f"welcome.version = {welcome['version']}"


@case("4.2.1", G, "the server sends nothing before hello")
def silent_before_hello(ctx: Ctx) -> str:
    conn = ctx.connect()
    try:
        msg = conn.recv_msg(time.monotonic() + 0.4)
    except RecvTimeout:
        return "nothing received in 0.4 s"
    raise CaseFailure(f"server sent {msg['type']} before hello (§4.2)")


@case("4.2.2", G, "a hello sent 0.3 s after connect is still welcomed")
def late_hello(ctx: Ctx) -> str:
    conn = ctx.connect()
    time.sleep(0.3)
    conn.handshake()
    return "welcomed"


@case("4.3.1", G, "welcome carries member (positive int), tick_rate (number), max_frame (int)")
def welcome_shape(ctx: Ctx) -> str:
    welcome = ctx.connect().handshake()
    fields = ("member", "tick_rate", "max_frame")
    return " ".join(f"{name}={welcome[name]}" for name in fields)


@case("4.3.2", G, "hello with max_frame 65536 is welcomed")
def hello_min_frame(ctx: Ctx) -> str:
    ctx.open(max_frame=65536)
    return "welcomed and synced"


@case("4.3.3", G, "hello with a large max_frame (2^40) is welcomed")
def hello_big_frame(ctx: Ctx) -> str:
    conn = ctx.connect()
    conn.handshake(max_frame=2**40)
    conn.wait(lambda: conn.table.applied > 0, None, "full sync")
    return "welcomed and synced"


@case("4.3.4", G, "hello with unknown extra fields is welcomed")
def hello_extra(ctx: Ctx) -> str:
    conn = ctx.connect()
    conn.handshake(client="conformance", features=["x", "y"], nested={"a": {"b": None}})
    conn.wait(lambda: conn.table.applied > 0, None, "full sync")
    return "welcomed and synced"


@case("4.3.5", G, "the first sync follows welcome promptly (within the timeout)")
def first_sync_prompt(ctx: Ctx) -> str:
    conn = ctx.connect()
    start = time.monotonic()
    conn.handshake()
    conn.wait(lambda: conn.table.applied > 0, None, "full sync")
    return f"full sync {time.monotonic() - start:.3f}s after hello"


@case("4.4.1", G, "hello version 0: close 1003 naming version 1")
def version_0(ctx: Ctx) -> str:
    return _refused_version(ctx, 0)


@case("4.4.2", G, "hello version 2 (future): close 1003 naming version 1")
def version_2(ctx: Ctx) -> str:
    return _refused_version(ctx, 2)


@case("4.4.3", G, "hello version -1: close 1003 naming version 1")
def version_negative(ctx: Ctx) -> str:
    return _refused_version(ctx, -1)


@case("4.4.4", G, "hello version 999999: close 1003 naming version 1")
def version_huge(ctx: Ctx) -> str:
    return _refused_version(ctx, 999999)


@case("4.4.5", G, "hello version 2^53-1: close 1003 naming version 1")
def version_max(ctx: Ctx) -> str:
    return _refused_version(ctx, 2**53 - 1)


@case("4.4.6", G, "hello version 2 with extra fields: close 1003")
def version_2_extra(ctx: Ctx) -> str:
    conn = ctx.connect()
    conn.send({"type": "hello", "version": 2, "max_frame": 65536, "caps": ["delta2"]})
    obs = conn.expect_close(ctx.timeout)
    if obs.kind != "close" or obs.code != 1003:
        raise CaseFailure(f"expected close 1003, got {obs.describe()}")
    return obs.describe()


def _first_frame(ctx: Ctx, msg: Any, code: int = 1002) -> Outcome | str:
    payload = encode(msg)
    return violation(ctx, header(len(payload)) + payload, code, section="§4.5", state="handshake")


@case("4.5.1", G, "rpc before hello: close 1002")
def rpc_first(ctx: Ctx) -> Outcome | str:
    return _first_frame(ctx, {"type": "rpc", "id": 0, "uid": 1, "method": "echo", "args": []})


@case("4.5.2", G, "ping before hello: close 1002")
def ping_first(ctx: Ctx) -> Outcome | str:
    return _first_frame(ctx, {"type": "ping", "nonce": 1})


@case("4.5.3", G, "pong before hello: close 1002")
def pong_first(ctx: Ctx) -> Outcome | str:
    return _first_frame(ctx, {"type": "pong", "nonce": 1})


@case("4.5.4", G, "a server-only message (welcome) before hello: close 1002")
def welcome_first(ctx: Ctx) -> Outcome | str:
    return _first_frame(
        ctx, {"type": "welcome", "version": 1, "member": 1, "tick_rate": 1, "max_frame": 65536}
    )


@case("4.5.5", G, "a sync sent by the client before hello: close 1002")
def sync_first(ctx: Ctx) -> Outcome | str:
    return _first_frame(
        ctx,
        {
            "type": "sync",
            "tick": 1,
            "full": True,
            "final": True,
            "spawn": [],
            "update": [],
            "despawn": [],
        },
    )


@case("4.5.6", G, "a second hello right after the first: close 1002")
def double_hello(ctx: Ctx) -> Outcome | str:
    return violation(ctx, frame(encode({"type": "hello", "version": 1})), 1002, section="§4.5")


@case("4.5.7", G, "two hellos in one write: welcome, then close 1002")
def double_hello_one_write(ctx: Ctx) -> str:
    conn = ctx.connect()
    hello = frame(encode({"type": "hello", "version": 1}))
    conn.send_raw(hello + hello)
    obs = conn.expect_close(ctx.timeout)
    check_close_frame(obs)
    if obs.kind != "close" or obs.code != 1002:
        raise CaseFailure(f"expected close 1002 (§4.5), got {obs.describe()}")
    if not obs.seen or obs.seen[0] != "welcome":
        raise CaseFailure(f"expected welcome first, saw {obs.seen}")
    return f"{obs.seen[0]} then {obs.describe()}; {ctx.check_alive()}"


@case("4.5.8", G, "a hello after some rpc traffic: close 1002")
def late_second_hello(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.call_ok(conn.control_uid(), "echo", [1])
    conn.send({"type": "hello", "version": 1})
    return ctx.expect_close(conn, 1002, section="§4.5") + "; " + ctx.check_alive()


@case("4.5.9", G, "a hello with version 2 after the session opened: close 1002")
def late_hello_v2(ctx: Ctx) -> Outcome | str:
    return violation(ctx, frame(encode({"type": "hello", "version": 2})), 1002, section="§4.5")


@case("4.5.10", G, "rpc_result sent by a client in OPEN: close 1002")
def client_rpc_result(ctx: Ctx) -> Outcome | str:
    return violation(
        ctx, frame(encode({"type": "rpc_result", "id": 0, "value": None})), 1002, section="§6.2"
    )


@case("4.7.1", G, "close before hello: the server closes the TCP connection and sends nothing else")
def close_first(ctx: Ctx) -> str:
    conn = ctx.connect()
    conn.send({"type": "close", "code": 1000, "reason": "never mind"})
    seen = conn.wait_eof(ctx.timeout)
    if seen not in ("nothing", "close"):
        raise CaseFailure(f"server sent {seen} after a close in HANDSHAKE (§6.4)")
    return f"TCP closed (saw {seen}); {ctx.check_alive()}"


@case("4.6.1", G, "no hello at all: close 1008 at the handshake deadline", slow=True, budget=12.0)
def no_hello(ctx: Ctx) -> str:
    started = time.monotonic()
    conn = ctx.connect()
    return _expect_deadline_close(ctx, conn, started) + "; " + ctx.check_alive()


@case(
    "4.6.2",
    G,
    "a hello trickled 1 byte per 0.25 s: closed 1008, the deadline is absolute",
    slow=True,
    budget=12.0,
)
def trickle(ctx: Ctx) -> str:
    started = time.monotonic()
    conn = ctx.connect()
    data = frame(encode({"type": "hello", "version": 1, "pad": "x" * 200}))
    limit = ctx.settings.handshake_deadline
    sent = 0
    while time.monotonic() - started < limit + 1.0 and sent < len(data):
        if not conn.send_raw(data[sent : sent + 1]):
            break
        sent += 1
        try:
            msg = conn.recv_msg(time.monotonic() + 0.25)
        except RecvTimeout:
            continue
        except CaseFailure:
            break
        if msg["type"] == "close":
            conn.close_msg = msg
            break
        raise CaseFailure(f"server sent {msg['type']} before hello completed (§4.2)")
    elapsed = time.monotonic() - started
    if conn.close_msg is None:
        obs = conn.expect_close(max(0.1, limit + 1.5 - elapsed))
        check_close_frame(obs)
        if obs.kind != "close" or obs.code != 1008:
            raise CaseFailure(
                f"expected close 1008 (§4.6), got {obs.describe()} after {sent} bytes"
            )
        elapsed = time.monotonic() - started
    elif conn.close_msg.get("code") != 1008:
        raise CaseFailure(f"expected close 1008 (§4.6), got {conn.close_msg}")
    if elapsed > limit + 1.0:
        raise CaseFailure(
            f"closed after {elapsed:.2f}s, the deadline was extended by trickling bytes"
        )
    return f"close 1008 after {elapsed:.2f}s and {sent} trickled bytes; {ctx.check_alive()}"


@case(
    "4.6.3",
    G,
    "a hello header with no body: close 1008 at the handshake deadline",
    slow=True,
    budget=12.0,
)
def header_then_silence(ctx: Ctx) -> str:
    started = time.monotonic()
    conn = ctx.connect()
    conn.send_raw(header(40))
    return _expect_deadline_close(ctx, conn, started) + "; " + ctx.check_alive()


@case(
    "4.6.4",
    G,
    "20 silent connections are all closed 1008 while others are served",
    slow=True,
    budget=14.0,
)
def many_silent(ctx: Ctx) -> str:
    started = time.monotonic()
    silent = [ctx.connect() for _ in range(20)]
    ctx.check_alive()
    codes = []
    for conn in silent:
        obs = conn.expect_close(
            max(0.2, ctx.settings.handshake_deadline + 2.0 - (time.monotonic() - started))
        )
        codes.append(obs.code if obs.kind == "close" else obs.kind)
    bad = [c for c in codes if c != 1008]
    if bad:
        raise CaseFailure(f"expected 20 close 1008, got {codes}")
    return f"20 x close 1008 within {time.monotonic() - started:.2f}s; {ctx.check_alive()}"


@case("4.6.5", G, "an open session is not closed by the handshake deadline", slow=True, budget=12.0)
def open_survives_deadline(ctx: Ctx) -> str:
    conn = ctx.open()
    wait = min(ctx.settings.handshake_deadline + 0.5, 6.0)
    conn.drain(wait)
    conn.send({"type": "ping", "nonce": 5})
    conn.wait(lambda: 5 in conn.pongs, None, "pong 5")
    return f"still open after {wait:.1f}s"
