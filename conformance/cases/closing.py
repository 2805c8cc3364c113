"""Group 8: errors, heartbeat and closing (§6, §9.1, §10)."""

from __future__ import annotations

import socket
import struct
import time

from conformance.cases.common import bad_message
from conformance.context import Ctx, check_close_frame
from conformance.driver import CaseFailure, encode, frame
from conformance.model import Outcome, case, non_strict

G = 8


def _clean_close(ctx: Ctx, code: int, reason: str) -> str:
    conn = ctx.open()
    conn.send({"type": "close", "code": code, "reason": reason})
    seen = conn.wait_eof(ctx.timeout)
    return f"TCP closed after our close {code} (server sent: {seen}); {ctx.check_alive()}"


@case("10.1.1", G, "client close 1000: the server closes the TCP connection")
def close_1000(ctx: Ctx) -> str:
    return _clean_close(ctx, 1000, "bye")


@case("10.1.2", G, "client close with an application code (4000): the server closes TCP")
def close_4000(ctx: Ctx) -> str:
    return _clean_close(ctx, 4000, "game over")


@case("10.1.3", G, "client close with a 10000-character reason: the server closes TCP")
def close_long_reason(ctx: Ctx) -> str:
    return _clean_close(ctx, 1000, "r" * 10000)


@case("10.1.4", G, "client close right after 20 pipelined calls: the server closes TCP")
def close_after_calls(ctx: Ctx) -> str:
    conn = ctx.open()
    control = conn.control_uid()
    data = b"".join(
        frame(encode({"type": "rpc", "id": n, "uid": control, "method": "echo", "args": [n]}))
        for n in range(20)
    )
    conn.send_raw(data + frame(encode({"type": "close", "code": 1000, "reason": ""})))
    seen = conn.wait_eof(ctx.timeout)
    return f"TCP closed; before it: {seen[:80]}"


@case("10.1.5", G, "no message follows the server's close frame (checked on a 1002 close)")
def nothing_after_close(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.send({"type": "frobnicate"})
    obs = conn.expect_close(ctx.timeout)
    check_close_frame(obs)
    if obs.kind != "close":
        raise CaseFailure(f"expected a close frame, got {obs.describe()}")
    if obs.after_close:
        raise CaseFailure(f"server sent {obs.after_close} after close (§6.4)")
    return obs.describe()


@case("10.1.6", G, "abrupt TCP close without a close message: the server keeps serving")
def abrupt(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.call_ok(conn.control_uid(), "echo", [1])
    conn.close()
    return ctx.check_alive()


@case("10.1.7", G, "TCP reset (SO_LINGER 0) mid-session: the server keeps serving")
def reset(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    return ctx.check_alive()


@case("10.1.8", G, "TCP reset with calls in flight: the server keeps serving")
def reset_in_flight(ctx: Ctx) -> str:
    conn = ctx.open()
    control = conn.control_uid()
    for n in range(20):
        conn.request(control, "echo", ["x" * 1000, n])
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    return ctx.check_alive()


@case("10.1.9", G, "half-close (shutdown write) after welcome: the server ends the session")
def half_close(ctx: Ctx) -> Outcome | str:
    conn = ctx.open()
    conn.sock.shutdown(socket.SHUT_WR)
    try:
        seen = conn.wait_eof(ctx.timeout)
    except CaseFailure:
        return non_strict(
            f"server kept a half-closed connection open for {ctx.timeout:.0f}s; {ctx.check_alive()}"
        )
    return f"server closed (saw {seen}); {ctx.check_alive()}"


@case("10.1.10", G, "abrupt close of 10 connections at once: the server keeps serving")
def abrupt_many(ctx: Ctx) -> str:
    conns = [ctx.open() for _ in range(10)]
    for conn in conns:
        conn.close()
    return ctx.check_alive()


@case("10.2.1", G, "close frames carry an int code and a string reason without internals (1002)")
def close_shape(ctx: Ctx) -> Outcome | str:
    return bad_message(ctx, {"type": "rpc", "id": "x"}, 1002, section="§10.2")


@case("10.2.2", G, "a client-sent sync in OPEN: close 1002")
def client_sync(ctx: Ctx) -> Outcome | str:
    msg = {
        "type": "sync",
        "tick": 1,
        "full": True,
        "final": True,
        "spawn": [],
        "update": [],
        "despawn": [],
    }
    return bad_message(ctx, msg, 1002, section="§6.2")


@case("10.2.3", G, "a client-sent welcome in OPEN: close 1002")
def client_welcome(ctx: Ctx) -> Outcome | str:
    msg = {"type": "welcome", "version": 1, "member": 1, "tick_rate": 30, "max_frame": 65536}
    return bad_message(ctx, msg, 1002, section="§6.2")


@case("10.2.4", G, "a client-sent rpc_error in OPEN: close 1002")
def client_rpc_error(ctx: Ctx) -> Outcome | str:
    return bad_message(
        ctx, {"type": "rpc_error", "id": 0, "code": "rejected", "message": ""}, 1002, section="§6.2"
    )


@case("10.2.5", G, "abuse on one connection does not disturb another open session")
def neighbour_unaffected(ctx: Ctx) -> str:
    bystander = ctx.open()
    abuser = ctx.open()
    abuser.send_raw(struct.pack(">I", 2**32 - 1))
    obs = abuser.expect_close(ctx.timeout)
    if obs.kind != "close" or obs.code != 1009:
        raise CaseFailure(f"expected close 1009, got {obs.describe()}")
    reply = bystander.call(bystander.control_uid(), "echo", ["still here"])
    if reply.get("value") != ["still here"]:
        raise CaseFailure(f"bystander got {reply}")
    return "bystander unaffected"


@case("10.2.6", G, "after 30 consecutive abusive connections the server still serves")
def abuse_series(ctx: Ctx) -> str:
    payloads = [
        b"\x00\x00\x00\x00",
        b"\xff\xff\xff\xff",
        frame(b"[]"),
        frame(b"\xff"),
        frame(b'{"type":1}'),
    ]
    for n in range(30):
        conn = ctx.connect()
        conn.send_raw(payloads[n % len(payloads)])
        obs = conn.expect_close(ctx.timeout)
        check_close_frame(obs)
        if obs.kind != "close":
            raise CaseFailure(f"abusive connection {n} ended with {obs.describe()}")
        conn.close()
    return ctx.check_alive()


@case("9.1.1", G, "ping -> pong with the same nonce")
def ping(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.send({"type": "ping", "nonce": 123456})
    conn.wait(lambda: 123456 in conn.pongs, None, "pong")
    return "pong 123456"


@case("9.1.2", G, "ping with nonce 0, negative and 2^53-1 are echoed exactly")
def ping_edges(ctx: Ctx) -> str:
    conn = ctx.open()
    nonces = [0, -17, 2**53 - 1]
    for nonce in nonces:
        conn.send({"type": "ping", "nonce": nonce})
    conn.wait(lambda: all(n in conn.pongs for n in nonces), None, "3 pongs")
    return f"pongs {conn.pongs}"


@case("9.1.3", G, "an unsolicited pong is ignored: the session stays open")
def unsolicited_pong(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.send({"type": "pong", "nonce": 31337})
    conn.send({"type": "ping", "nonce": 1})
    conn.wait(lambda: 1 in conn.pongs, None, "pong 1")
    return "still open"


@case("9.1.4", G, "a ping is answered promptly (round trip under 1 s, 10 samples)")
def ping_latency(ctx: Ctx) -> str:
    conn = ctx.open()
    worst = 0.0
    for n in range(10):
        start = time.monotonic()
        conn.send({"type": "ping", "nonce": 1000 + n})
        conn.wait(lambda n=n: 1000 + n in conn.pongs, None, "pong")  # type: ignore[misc]
        worst = max(worst, time.monotonic() - start)
    if worst > 1.0:
        raise CaseFailure(f"slowest pong took {worst:.2f}s")
    return f"slowest pong {worst * 1000:.1f} ms"


@case("9.1.5", G, "pings interleaved with calls are all answered")
def ping_with_calls(ctx: Ctx) -> str:
    conn = ctx.open()
    control = conn.control_uid()
    ids = []
    for n in range(20):
        ids.append(conn.request(control, "echo", [n]))
        conn.send({"type": "ping", "nonce": 500 + n})
    conn.wait(
        lambda: all(i in conn.results for i in ids) and len(conn.pongs) >= 20,
        None,
        "answers and pongs",
    )
    return "20 answers and 20 pongs"


@case(
    "10.2.7",
    G,
    "server shutdown (SIGTERM) sends close 1001 to open sessions",
    final=True,
    budget=10.0,
)
def going_away(ctx: Ctx) -> Outcome | str:
    from conformance.model import info

    if ctx.settings.shutdown is None:
        return info("not run: needs a server started by the driver (--server-cmd)")
    conns = [ctx.open() for _ in range(2)]
    ctx.settings.shutdown()
    observed = [conn.expect_close(ctx.timeout) for conn in conns]
    for obs in observed:
        check_close_frame(obs)
    if all(obs.kind == "close" and obs.code == 1001 for obs in observed):
        return f"both sessions got {observed[0].describe()}"
    raise CaseFailure(f"unexpected shutdown behaviour: {[o.describe() for o in observed]}")
