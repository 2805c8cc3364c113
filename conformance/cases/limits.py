"""Group 10: limits that need a server on a known, low limit profile (``--limits low``,
``conformance/profile.py``): heartbeats (§9.2), deadlines (§2.6, §4.6), rates, pending calls,
the byte budget and the send buffer (§11)."""

from __future__ import annotations

import time

from conformance.cases.common import despawn_all, header, spawn_boxes
from conformance.context import Ctx, check_close_frame
from conformance.driver import CaseFailure, Conn, ConnectionEnded, RecvTimeout, encode, frame
from conformance.model import Outcome, case, non_strict
from conformance.profile import Limits

G = 10
MARGIN = 0.6  # s: poll intervals and a loaded machine


def _limits(ctx: Ctx) -> Limits:
    if ctx.settings.limits is None:  # pragma: no cover - __main__ leaves these cases out
        raise CaseFailure("needs --limits")
    return ctx.settings.limits


def _churning(ctx: Ctx) -> tuple[Conn, int]:
    """A Box whose value the server changes every tick for 10 s: syncs flow to everyone."""
    actor = ctx.open()
    (uid,) = spawn_boxes(actor, 1, False)
    actor.control("churn", uid, 10.0)
    return actor, uid


def _silent_until_ping(conn: Conn, timeout: float) -> float:
    """Read (never writing) until a ping arrives; return when it came."""
    conn.auto_pong = False
    start = time.monotonic()
    deadline = start + timeout
    while not conn.pings:
        try:
            msg = conn.recv_msg(deadline)
        except RecvTimeout:
            raise CaseFailure(
                f"no ping within {timeout:.1f}s while the client sent nothing (§9.2: a server "
                "pings a peer it has received nothing from for the ping interval)"
            ) from None
        conn.pump(msg)
    return time.monotonic() - start


@case("9.2.10", G, "a silent client that receives syncs every tick is pinged", low=True)
def ping_while_syncing(ctx: Ctx) -> str:
    limits = _limits(ctx)
    actor, uid = _churning(ctx)
    silent = ctx.open()
    applied = silent.table.applied
    took = _silent_until_ping(silent, limits.ping_interval + MARGIN)
    despawn_all(actor, [uid])
    return f"pinged after {took:.2f}s (ping interval {limits.ping_interval}s) among " + (
        f"{silent.table.applied - applied} syncs"
    )


@case("9.2.11", G, "a silent client in a quiet world is pinged within the interval", low=True)
def ping_quiet(ctx: Ctx) -> str:
    limits = _limits(ctx)
    conn = ctx.open()
    took = _silent_until_ping(conn, limits.ping_interval + MARGIN)
    return f"pinged after {took:.2f}s"


@case(
    "9.2.12",
    G,
    "a client that only answers pings is never dropped (3 idle timeouts, syncs flowing)",
    low=True,
    budget=12.0,
)
def answers_pings_only(ctx: Ctx) -> str:
    limits = _limits(ctx)
    actor, uid = _churning(ctx)
    quiet = ctx.open()  # auto_pong: it answers pings and sends nothing else
    span = 3 * limits.idle_timeout
    end = time.monotonic() + span
    while time.monotonic() < end:
        try:
            quiet.drain(min(0.2, max(0.0, end - time.monotonic())))
        except ConnectionEnded:
            raise CaseFailure(f"dropped after answering {len(quiet.pings)} pings (§9.2)") from None
        except CaseFailure as exc:
            raise CaseFailure(f"dropped while answering pings (§9.2): {exc}") from None
        actor.drain(0.02)  # the actor answers its own pings too
    despawn_all(actor, [uid])
    if not quiet.pings:
        raise CaseFailure(f"no ping in {span:.1f}s (§9.2)")
    quiet.send({"type": "ping", "nonce": 3})
    quiet.wait(lambda: 3 in quiet.pongs, None, "pong 3")
    return f"open after {span:.1f}s, {len(quiet.pings)} pings answered"


@case("9.2.14", G, "a client that sends every P/3 is never pinged by the server", low=True)
def no_ping_when_talking(ctx: Ctx) -> str:
    limits = _limits(ctx)
    conn = ctx.open()
    gap = limits.ping_interval / 3
    end = time.monotonic() + 4 * limits.ping_interval
    nonce = 0
    while time.monotonic() < end:
        nonce += 1
        conn.send({"type": "ping", "nonce": nonce})
        conn.drain(gap)
    if conn.pings:
        raise CaseFailure(
            f"{len(conn.pings)} pings though the client sent something every {gap:.2f}s "
            "(§9.2: a peer pings only after receiving nothing for the ping interval)"
        )
    return f"no ping in {4 * limits.ping_interval:.1f}s of traffic"


@case("9.2.13", G, "a client that sends nothing is closed 1008 'idle timeout'", low=True)
def idle_close(ctx: Ctx) -> str:
    limits = _limits(ctx)
    conn = ctx.open()
    conn.auto_pong = False
    started = time.monotonic()
    obs = conn.expect_close(limits.idle_timeout + 2 * MARGIN)
    elapsed = time.monotonic() - started
    check_close_frame(obs)
    if obs.kind != "close" or obs.code != 1008:
        raise CaseFailure(f"expected close 1008 at the idle timeout (§9.2), got {obs.describe()}")
    if "idle" not in str(obs.reason).lower():
        raise CaseFailure(f"close 1008 reason {obs.reason!r} does not say 'idle timeout' (§9.2)")
    if elapsed < limits.idle_timeout - 0.3:
        raise CaseFailure(f"closed after {elapsed:.2f}s, before the idle timeout")
    # §9.2: a ping after P of silence, then one each further P — at most one per P.
    pings = obs.seen.count("ping")
    most = int(limits.idle_timeout / limits.ping_interval) + 1
    if not 2 <= pings <= most:
        raise CaseFailure(
            f"{pings} pings in {limits.idle_timeout}s of silence, expected 2..{most} "
            f"(one each {limits.ping_interval}s, §9.2)"
        )
    return f"{obs.describe()} after {elapsed:.2f}s, {pings} pings before; {ctx.check_alive()}"


@case("4.6.10", G, "no hello: close 1008 at the (short) handshake deadline, not before", low=True)
def handshake_deadline(ctx: Ctx) -> str:
    limits = _limits(ctx)
    started = time.monotonic()
    conn = ctx.connect()
    obs = conn.expect_close(limits.handshake_timeout + 2 * MARGIN)
    elapsed = time.monotonic() - started
    check_close_frame(obs)
    if obs.kind != "close" or obs.code != 1008:
        raise CaseFailure(f"expected close 1008 (§4.6), got {obs.describe()}")
    if elapsed < limits.handshake_timeout - 0.2:
        raise CaseFailure(f"closed after {elapsed:.2f}s, before the deadline")
    return f"close 1008 after {elapsed:.2f}s; {ctx.check_alive()}"


@case("4.6.11", G, "a hello sent well inside the short deadline is welcomed", low=True)
def handshake_in_time(ctx: Ctx) -> str:
    limits = _limits(ctx)
    conn = ctx.connect()
    time.sleep(limits.handshake_timeout / 4)
    conn.handshake()
    return "welcomed"


@case("2.6.10", G, "half a frame then silence: close 1008 at the frame deadline", low=True)
def frame_deadline(ctx: Ctx) -> str:
    limits = _limits(ctx)
    conn = ctx.open()
    conn.send_raw(header(100) + b'{"type":"ping"')
    started = time.monotonic()
    obs = conn.expect_close(limits.frame_timeout + 2 * MARGIN)
    elapsed = time.monotonic() - started
    check_close_frame(obs)
    if obs.kind != "close" or obs.code != 1008:
        raise CaseFailure(f"expected close 1008 (§2.6), got {obs.describe()}")
    if elapsed < limits.frame_timeout - 0.2:
        raise CaseFailure(f"closed after {elapsed:.2f}s, before the frame deadline")
    return f"close 1008 {obs.reason!r} after {elapsed:.2f}s; {ctx.check_alive()}"


@case("2.6.11", G, "a frame completed in two halves inside the deadline is served", low=True)
def frame_in_time(ctx: Ctx) -> str:
    limits = _limits(ctx)
    conn = ctx.open()
    data = frame(encode({"type": "ping", "nonce": 61}))
    conn.send_raw(data[:7])
    time.sleep(limits.frame_timeout / 3)
    conn.send_raw(data[7:])
    conn.wait(lambda: 61 in conn.pongs, None, "pong 61")
    return "pong 61"


@case("11.4.1", G, "a burst of 4x the message rate: close 1008", low=True)
def message_flood(ctx: Ctx) -> str:
    limits = _limits(ctx)
    conn = ctx.open()
    count = int(limits.max_messages_per_second * 4)
    conn.send_raw(b"".join(frame(encode({"type": "ping", "nonce": n})) for n in range(count)))
    obs = conn.expect_close(ctx.timeout)
    check_close_frame(obs)
    if obs.kind != "close" or obs.code != 1008 or "rate" not in str(obs.reason):
        raise CaseFailure(f"expected close 1008 for the message rate (§11), got {obs.describe()}")
    return f"{obs.describe()} after {obs.seen.count('pong')} pongs; {ctx.check_alive()}"


@case("11.4.2", G, "messages at half the message rate for 1.5 s are all served", low=True)
def message_rate_ok(ctx: Ctx) -> str:
    limits = _limits(ctx)
    conn = ctx.open()
    gap = 2.0 / limits.max_messages_per_second
    count = int(1.5 / gap)
    for n in range(count):
        conn.send({"type": "ping", "nonce": n})
        conn.drain(gap)
    conn.wait(lambda: len(conn.pongs) >= count, None, f"{count} pongs")
    return f"{count} pongs"


@case("11.4.3", G, "a burst of 4x the call rate: rate_limited answers, none lost", low=True)
def call_flood(ctx: Ctx) -> str:
    limits = _limits(ctx)
    conn = ctx.open()
    control = conn.control_uid()
    count = int(limits.max_calls_per_second * 4)
    conn.send_raw(
        b"".join(
            frame(encode({"type": "rpc", "id": n, "uid": control, "method": "echo", "args": [n]}))
            for n in range(count)
        )
    )
    conn.wait(lambda: all(n in conn.results for n in range(count)), None, f"{count} answers")
    codes = [conn.results[n][0].get("code") for n in range(count)]
    limited = codes.count("rate_limited")
    wrong = [
        n
        for n in range(count)
        if conn.results[n][0]["type"] == "rpc_result" and conn.results[n][0]["value"] != [n]
    ]
    if wrong:
        raise CaseFailure(f"wrong answers for {wrong[:5]}")
    # One write, one read: the bucket (2 s' worth, §11) has no time to refill, so exactly its
    # capacity is served.
    capacity = int(2 * limits.max_calls_per_second)
    if count - limited != capacity:
        raise CaseFailure(
            f"{count - limited} of {count} calls sent at once were served, expected "
            f"{capacity} (rate {limits.max_calls_per_second}/s, bursts of 2 s' worth, §11)"
        )
    time.sleep(1.0)
    conn.next_id = count
    reply = conn.call(control, "echo", ["later"])
    if reply.get("value") != ["later"]:
        raise CaseFailure(f"after 1 s a call is still refused: {reply}")
    return f"{limited} of {count} rate_limited, the rest answered; later calls served"


@case("11.4.4", G, "calls piling up behind a busy game loop get 'overloaded', none lost", low=True)
def overloaded(ctx: Ctx) -> str:
    limits = _limits(ctx)
    conn = ctx.open()
    control = conn.control_uid()
    [box] = spawn_boxes(conn, 1, False)
    # ``sleep`` holds the game loop right after its next sync; ``set_value`` in the same write
    # is handled before that same sync, which therefore carries the marker: once the marker is
    # seen, the loop is holding (a condition, not a guess at how soon the hold begins)
    busy, mark = conn.next_id, conn.next_id + 1
    conn.next_id += 2
    marker = f"held-{busy}"
    conn.send_raw(
        frame(encode({"type": "rpc", "id": busy, "uid": control, "method": "sleep", "args": [0.5]}))
        + frame(
            encode(
                {
                    "type": "rpc",
                    "id": mark,
                    "uid": control,
                    "method": "set_value",
                    "args": [box, marker],
                }
            )
        )
    )
    conn.wait(
        lambda: box in conn.table.objects and conn.table.objects[box].fields.get("value") == marker,
        None,
        "the sync before the hold",
    )
    count = limits.max_pending_calls * 3
    conn.send_raw(
        b"".join(
            frame(
                encode(
                    {"type": "rpc", "id": 100 + n, "uid": control, "method": "echo", "args": [n]}
                )
            )
            for n in range(count)
        )
    )
    ids = [busy, mark] + [100 + n for n in range(count)]
    conn.wait(lambda: all(i in conn.results for i in ids), None, "every answer")
    despawn_all(conn, [box])
    codes = [conn.results[100 + n][0].get("code") for n in range(count)]
    refused = codes.count("overloaded")
    if refused == 0:
        raise CaseFailure(
            f"{count} calls behind a busy loop, pending cap {limits.max_pending_calls}: "
            "none answered overloaded (§11)"
        )
    if refused != count - limits.max_pending_calls:
        raise CaseFailure(
            f"{refused} of {count} refused behind a busy loop, expected "
            f"{count - limits.max_pending_calls} (pending cap {limits.max_pending_calls}, §11)"
        )
    return f"{refused} of {count} overloaded, the rest answered"


@case("11.4.5", G, "bytes beyond the byte budget in one burst: close 1008", low=True)
def byte_flood(ctx: Ctx) -> str:
    limits = _limits(ctx)
    conn = ctx.open()
    control = conn.control_uid()
    size = limits.max_frame - 200
    count = int(limits.byte_burst / size) + 3
    data = b"".join(
        frame(
            encode({"type": "rpc", "id": n, "uid": control, "method": "echo", "args": ["b" * size]})
        )
        for n in range(count)
    )
    conn.send_raw(data)
    obs = conn.expect_close(1.0)
    check_close_frame(obs)
    if obs.kind != "close" or obs.code != 1008 or "byte" not in str(obs.reason):
        raise CaseFailure(
            f"expected close 1008 'byte rate limit exceeded' (§11), got {obs.describe()}"
        )
    return f"{len(data)} bytes at once: {obs.describe()}; {ctx.check_alive()}"


@case("11.4.6", G, "one frame of the server's max_frame size fits the byte budget", low=True)
def byte_burst_ok(ctx: Ctx) -> str:
    limits = _limits(ctx)
    conn = ctx.open()
    text = "c" * (limits.max_frame - 200)
    reply = conn.call(conn.control_uid(), "echo", [text])
    if reply.get("value") != [text]:
        raise CaseFailure(f"a {limits.max_frame - 200}-byte call was not answered: {reply}")
    return "answered"


@case(
    "11.4.7",
    G,
    "a client that never reads is dropped with close 1013 once its send buffer is full",
    low=True,
    exclusive=True,
    budget=16.0,
)
def slow_consumer(ctx: Ctx) -> Outcome | str:
    stalled = ctx.connect(rcvbuf=4096)
    stalled.handshake()
    actor = ctx.open()
    (uid,) = spawn_boxes(actor, 1, False)
    actor.control("set_value", uid, "".join(chr(97 + n % 26) for n in range(60000)))
    actor.control("churn", uid, 10.0)  # ~60 KB per tick to every client
    actor.goodbye()  # only the stalled client is left to receive them
    dropped = False
    started = time.monotonic()
    nonce = 0
    # The stalled client writes pings (so it is not idle) but never reads.
    while time.monotonic() - started < 9.0:
        nonce += 1
        try:
            if not stalled.send_raw(frame(encode({"type": "ping", "nonce": nonce}))):
                dropped = True
                break
        except (RecvTimeout, OSError):
            dropped = True
            break
        time.sleep(0.2)
    took = time.monotonic() - started
    cleaner = ctx.open()
    cleaner.control("despawn", uid)
    cleaner.goodbye()
    if not dropped:  # it kept writing pings, so only the send buffer may end it
        raise CaseFailure(f"a client that never read is still connected after {took:.1f}s")
    stalled.sock.settimeout(1.0)
    tail = b""
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        try:
            chunk = stalled.sock.recv(1 << 20)
        except TimeoutError:
            continue
        except OSError:
            dropped = True
            break
        if not chunk:
            dropped = True
            break
        tail = (tail + chunk)[-400:]
    if b'"close"' in tail and b"1013" in tail:
        return f"dropped with close 1013 within {took:.1f}s; {ctx.check_alive()}"
    return non_strict(
        f"dropped within {took:.1f}s but no close 1013 frame was readable (§11, best effort)"
    )
