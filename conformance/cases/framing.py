"""Group 1: framing (§2)."""

from __future__ import annotations

import struct
import time

from conformance.cases.common import LIMIT, bad_payload, header, violation
from conformance.context import Ctx
from conformance.driver import CaseFailure, encode, frame
from conformance.model import Outcome, case, info, non_strict

HANDSHAKE_LIMIT = 65536  # §2.7: the largest frame a server takes before it sent welcome

G = 1


def _padded_rpc(control: int, size: int) -> bytes:
    """An echo rpc of exactly ``size`` bytes, padded with an unknown field (§3.5)."""
    base = f'{{"type":"rpc","id":0,"uid":{control},"method":"echo","args":[1],"pad":""}}'
    pad = size - len(base)
    if pad < 0:
        raise ValueError("size too small")
    return base.replace('"pad":""', '"pad":"' + "x" * pad + '"').encode()


@case("2.1.1", G, "a well-formed hello frame is answered with welcome")
def well_formed(ctx: Ctx) -> str:
    conn = ctx.connect()
    welcome = conn.handshake()
    return f"welcome member={welcome['member']} max_frame={welcome['max_frame']}"


@case("2.1.2", G, "server frames are big-endian length + one JSON object (handshake, sync, rpc)")
def server_frames(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.call_ok(conn.control_uid(), "echo", [1, "two"])
    return f"{len(conn.frame_sizes)} frames parsed strictly, sizes {conn.frame_sizes[:6]}"


@case("2.1.3", G, "a little-endian length header (hello) is refused with close 1009")
def little_endian(ctx: Ctx) -> Outcome | str:
    payload = encode({"type": "hello", "version": 1})
    data = struct.pack("<I", len(payload)) + payload
    # The big-endian reading of this header is far above 1 MiB: only send the header
    # so the server can refuse it without us writing a body it will never read.
    return violation(ctx, data[:4], 1009, section="§2.1, §2.3", state="handshake")


@case("2.1.4", G, "a frame holding two JSON objects back to back is invalid payload (1007)")
def two_objects(ctx: Ctx) -> Outcome | str:
    return bad_payload(
        ctx, '{"type":"ping","nonce":1}{"type":"ping","nonce":2}', 1007, section="§3.1"
    )


@case("2.2.1", G, "N = 0 before hello: close 1007")
def zero_handshake(ctx: Ctx) -> Outcome | str:
    return violation(ctx, header(0), 1007, section="§2.2", state="handshake")


@case("2.2.2", G, "N = 0 in an open session: close 1007")
def zero_open(ctx: Ctx) -> Outcome | str:
    return violation(ctx, header(0), 1007, section="§2.2")


@case("2.2.3", G, "N = 1 with payload '{' : close 1007")
def one_brace(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, "{", 1007, section="§2.2, §3.1")


@case("2.2.4", G, "N = 1 with payload ' ' (whitespace only): close 1007")
def one_space(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, " ", 1007, section="§3.1")


@case("2.2.5", G, "N = 1 with payload '7' (a number): close 1007")
def one_digit(ctx: Ctx) -> Outcome | str:
    return bad_payload(ctx, "7", 1007, section="§3.2")


@case("2.2.6", G, "N = 1 before hello with payload '{': close 1007")
def one_brace_handshake(ctx: Ctx) -> Outcome | str:
    return violation(ctx, header(1) + b"{", 1007, section="§3.1", state="handshake")


@case("2.3.1", G, "an rpc frame of exactly 1048576 bytes (padded unknown field) is accepted")
def at_limit_open(ctx: Ctx) -> str:
    conn = ctx.open()
    payload = _padded_rpc(conn.control_uid(), LIMIT)
    assert len(payload) == LIMIT
    conn.send_frame(payload)
    reply = conn.answer(0)
    if reply["type"] != "rpc_result" or reply["value"] != [1]:
        raise CaseFailure(f"frame at the limit not served: {reply}")
    return f"1 MiB frame answered; {ctx.check_alive()}"


@case("2.3.2", G, "a hello of exactly 65536 bytes (padded unknown field) is accepted (§2.7)")
def at_limit_hello(ctx: Ctx) -> str:
    conn = ctx.connect()
    base = '{"type":"hello","version":1,"pad":""}'
    payload = base.replace('""', '"' + "p" * (HANDSHAKE_LIMIT - len(base)) + '"').encode()
    assert len(payload) == HANDSHAKE_LIMIT
    conn.send_frame(payload)
    msg = conn.recv_msg(time.monotonic() + ctx.timeout)
    conn.accept_welcome(msg)
    return "64 KiB hello answered with welcome"


@case("2.7.1", G, "N = 65537 (header only) before welcome: close 1009 without waiting (§2.7)")
def over_handshake_cap(ctx: Ctx) -> Outcome | str:
    return _oversize(ctx, HANDSHAKE_LIMIT + 1, "handshake", section="§2.7")


@case("2.3.3", G, "an echo whose string argument fills a 1048576-byte frame round-trips")
def at_limit_string(ctx: Ctx) -> str:
    conn = ctx.open()
    control = conn.control_uid()
    base = f'{{"type":"rpc","id":0,"uid":{control},"method":"echo","args":[""]}}'
    text = "s" * (LIMIT - len(base))
    payload = base.replace('[""]', '["' + text + '"]').encode()
    assert len(payload) == LIMIT
    conn.send_frame(payload)
    reply = conn.answer(0)
    if reply["type"] != "rpc_result" or reply["value"] != [text]:
        raise CaseFailure(f"1 MiB echo not returned intact: {str(reply)[:200]}")
    return f"echo of a {len(text)}-char string returned intact"


def _oversize(ctx: Ctx, length: int, state: str, section: str = "§2.3") -> Outcome | str:
    start = time.monotonic()
    result = violation(ctx, header(length), 1009, section=section, state=state)
    return result if isinstance(result, Outcome) else f"{result} ({time.monotonic() - start:.2f}s)"


@case("2.3.4", G, "N = limit+1 (header only) in OPEN: close 1009 without waiting for the body")
def limit_plus_one_open(ctx: Ctx) -> Outcome | str:
    return _oversize(ctx, LIMIT + 1, "open")


@case("2.3.5", G, "N = limit+1 (header only) before hello: close 1009 without waiting for the body")
def limit_plus_one_handshake(ctx: Ctx) -> Outcome | str:
    return _oversize(ctx, LIMIT + 1, "handshake")


@case("2.3.6", G, "N = 2^31 in OPEN: close 1009")
def two31_open(ctx: Ctx) -> Outcome | str:
    return _oversize(ctx, 2**31, "open")


@case("2.3.7", G, "N = 2^32-1 in OPEN: close 1009")
def two32_open(ctx: Ctx) -> Outcome | str:
    return _oversize(ctx, 2**32 - 1, "open")


@case("2.3.8", G, "N = 2^32-1 before hello: close 1009")
def two32_handshake(ctx: Ctx) -> Outcome | str:
    return _oversize(ctx, 2**32 - 1, "handshake")


@case("2.3.9", G, "N = 2^31 before hello: close 1009")
def two31_handshake(ctx: Ctx) -> Outcome | str:
    return _oversize(ctx, 2**31, "handshake")


@case("2.3.10", G, "N = 16 MiB in OPEN: close 1009")
def sixteen_mib(ctx: Ctx) -> Outcome | str:
    return _oversize(ctx, 16 * LIMIT, "open")


@case("2.3.11", G, "N = limit+1 after a valid rpc in the same write: rpc answered, then close 1009")
def oversize_after_rpc(ctx: Ctx) -> Outcome | str:
    conn = ctx.open()
    control = conn.control_uid()
    rpc = encode({"type": "rpc", "id": 0, "uid": control, "method": "echo", "args": [5]})
    conn.send_raw(frame(rpc) + header(LIMIT + 1))
    obs = conn.expect_close(ctx.timeout)
    if obs.kind != "close" or obs.code != 1009:
        raise CaseFailure(f"expected close 1009 (§2.3), got {obs.describe()}")
    if "rpc_result" not in obs.seen:
        return non_strict(
            f"close 1009 arrived but the rpc received before it was never answered (§2.4, §8.1); "
            f"{ctx.check_alive()}"
        )
    return f"rpc answered, then {obs.describe()}; {ctx.check_alive()}"


@case("2.3.12", G, "with hello max_frame=65536 no server frame exceeds 65536 bytes")
def small_client_limit(ctx: Ctx) -> str:
    conn = ctx.open(max_frame=65536)
    control = conn.control_uid()
    text = "m" * 60000
    value = conn.call_ok(control, "echo", [text])
    if value != [text]:
        raise CaseFailure("60000-char echo not returned intact")
    return f"largest frame received {max(conn.frame_sizes)} bytes"


@case(
    "2.3.13", G, "an answer larger than the client's max_frame is never sent as an oversized frame"
)
def oversized_answer(ctx: Ctx) -> Outcome | str:
    conn = ctx.open(max_frame=65536)
    control = conn.control_uid()
    call_id = conn.request(control, "echo", ["o" * 70000])
    try:
        reply = conn.answer(call_id)
    except CaseFailure as exc:
        if conn.closed or conn.close_msg is not None:
            return info(
                f"server ended the session instead of answering: {exc}; {ctx.check_alive()}"
            )
        raise
    if reply["type"] == "rpc_result":
        raise CaseFailure("a result above the announced limit arrived (cannot fit in 65536 bytes)")
    return f"answered with rpc_error {reply['code']}; largest frame {max(conn.frame_sizes)}"


@case("2.3.14", G, "welcome.max_frame is an int of at least 65536")
def welcome_max_frame(ctx: Ctx) -> Outcome | str:
    conn = ctx.connect()
    welcome = conn.handshake()
    value = welcome["max_frame"]
    if value < 65536:
        return non_strict(f"welcome.max_frame = {value}, below the 65536 floor clients must accept")
    return f"welcome.max_frame = {value}"


@case("2.3.15", G, "hello.max_frame below 65536 (1024): close 1002 (§5.1, §10.2)")
def tiny_client_limit(ctx: Ctx) -> str:
    conn = ctx.connect(max_frame=1024)
    conn.send({"type": "hello", "version": 1, "max_frame": 1024})
    return ctx.expect_close(conn, 1002, section="§5.1") + "; " + ctx.check_alive()


@case("2.4.1", G, "a hello written one byte at a time is reassembled")
def hello_bytewise(ctx: Ctx) -> str:
    conn = ctx.connect()
    conn.send_slowly(frame(encode({"type": "hello", "version": 1})))
    conn.accept_welcome(conn.recv_msg(time.monotonic() + ctx.timeout))
    return "welcome after 1-byte writes"


@case("2.4.2", G, "an rpc written one byte at a time is reassembled and answered")
def rpc_bytewise(ctx: Ctx) -> str:
    conn = ctx.open()
    data = frame(
        encode({"type": "rpc", "id": 0, "uid": conn.control_uid(), "method": "echo", "args": ["b"]})
    )
    conn.send_slowly(data, 1, 0.001)
    reply = conn.answer(0)
    if reply["type"] != "rpc_result" or reply["value"] != ["b"]:
        raise CaseFailure(f"unexpected answer {reply}")
    return f"answered after {len(data)} one-byte writes"


@case("2.4.3", G, "a header split 2+2 with pauses and a body split in halves is reassembled")
def split_header(ctx: Ctx) -> str:
    conn = ctx.open()
    data = frame(encode({"type": "ping", "nonce": 42}))
    for chunk in (data[:2], data[2:4], data[4:10], data[10:]):
        conn.send_raw(chunk)
        time.sleep(0.05)
    conn.wait(lambda: 42 in conn.pongs, None, "pong 42")
    return "pong after split writes"


@case("2.4.4", G, "20 pings in one write are answered by 20 pongs in order")
def many_pings(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.send_raw(b"".join(frame(encode({"type": "ping", "nonce": n})) for n in range(20)))
    conn.wait(lambda: len(conn.pongs) >= 20, None, "20 pongs")
    if conn.pongs[:20] != list(range(20)):
        raise CaseFailure(f"pongs out of order or wrong: {conn.pongs}")
    return "20 pongs in order"


@case("2.4.5", G, "30 rpc calls in one write are all answered")
def many_rpcs(ctx: Ctx) -> str:
    conn = ctx.open()
    control = conn.control_uid()
    conn.send_raw(
        b"".join(
            frame(encode({"type": "rpc", "id": n, "uid": control, "method": "echo", "args": [n]}))
            for n in range(30)
        )
    )
    conn.wait(lambda: all(n in conn.results for n in range(30)), None, "30 answers")
    wrong = [n for n in range(30) if conn.results[n][0].get("value") != [n]]
    if wrong:
        raise CaseFailure(f"wrong answers for ids {wrong}")
    return "30 answers with matching ids"


@case("2.4.6", G, "a write ending inside the next frame's header is reassembled")
def boundary_in_header(ctx: Ctx) -> str:
    conn = ctx.open()
    data = frame(encode({"type": "ping", "nonce": 1})) + frame(encode({"type": "ping", "nonce": 2}))
    cut = len(frame(encode({"type": "ping", "nonce": 1}))) + 2
    conn.send_raw(data[:cut])
    time.sleep(0.1)
    conn.send_raw(data[cut:])
    conn.wait(lambda: len(conn.pongs) >= 2, None, "2 pongs")
    if conn.pongs[:2] != [1, 2]:
        raise CaseFailure(f"pongs {conn.pongs}")
    return "both pongs, in order"


@case("2.4.7", G, "three frames written in 7-byte chunks are reassembled in order")
def seven_byte_chunks(ctx: Ctx) -> str:
    conn = ctx.open()
    data = b"".join(frame(encode({"type": "ping", "nonce": n})) for n in (7, 8, 9))
    conn.send_slowly(data, 7, 0.002)
    conn.wait(lambda: len(conn.pongs) >= 3, None, "3 pongs")
    if conn.pongs[:3] != [7, 8, 9]:
        raise CaseFailure(f"pongs {conn.pongs}")
    return "3 pongs in order"


@case("2.4.8", G, "a 1 MiB frame written in 4 KiB pieces is reassembled")
def big_in_pieces(ctx: Ctx) -> str:
    conn = ctx.open()
    payload = _padded_rpc(conn.control_uid(), LIMIT)
    conn.send_slowly(frame(payload), 4096)
    reply = conn.answer(0)
    if reply["type"] != "rpc_result":
        raise CaseFailure(f"unexpected answer {reply}")
    return "answered"


@case("2.5.1", G, "EOF after half a header (HANDSHAKE): server keeps serving")
def eof_half_header(ctx: Ctx) -> str:
    conn = ctx.connect()
    conn.send_raw(b"\x00\x00")
    conn.close()
    return ctx.check_alive()


@case("2.5.2", G, "EOF after a header without body (OPEN): server keeps serving")
def eof_header_only(ctx: Ctx) -> str:
    conn = ctx.open()
    conn.send_raw(header(100))
    conn.close()
    return ctx.check_alive()


@case("2.5.3", G, "EOF inside a body (OPEN): partial frame discarded, server keeps serving")
def eof_in_body(ctx: Ctx) -> str:
    conn = ctx.open()
    rpc = {"type": "rpc", "id": 0, "uid": conn.control_uid(), "method": "echo", "args": ["cut"]}
    conn.send_raw(frame(encode(rpc))[:-3])
    conn.close()
    return ctx.check_alive()


@case("2.5.4", G, "EOF inside a hello body (HANDSHAKE): server keeps serving")
def eof_in_hello(ctx: Ctx) -> str:
    conn = ctx.connect()
    conn.send_raw(frame(encode({"type": "hello", "version": 1}))[:-5])
    conn.close()
    return ctx.check_alive()


@case(
    "2.5.5",
    G,
    "trailing garbage after a complete frame: the frame is processed, then EOF is survived",
)
def trailing_garbage(ctx: Ctx) -> str:
    conn = ctx.open()
    rpc = encode(
        {"type": "rpc", "id": 0, "uid": conn.control_uid(), "method": "echo", "args": ["g"]}
    )
    conn.send_raw(frame(rpc) + b"\x00\x00")
    reply = conn.answer(0)
    if reply.get("value") != ["g"]:
        raise CaseFailure(f"frame before the garbage not answered correctly: {reply}")
    conn.close()
    return f"frame answered; {ctx.check_alive()}"


@case("2.5.6", G, "abrupt EOF right after a complete hello: server keeps serving")
def eof_after_hello(ctx: Ctx) -> str:
    conn = ctx.connect()
    conn.send({"type": "hello", "version": 1})
    conn.close()
    return ctx.check_alive()


@case("2.6.1", G, "a frame completed after a 1.5 s stall is processed (or closed 1008)", budget=8.0)
def stalled_frame(ctx: Ctx) -> Outcome | str:
    conn = ctx.open()
    data = frame(encode({"type": "ping", "nonce": 99}))
    conn.send_raw(data[:6])
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            conn.drain(min(0.3, max(0.0, deadline - time.monotonic())))
        conn.send_raw(data[6:])
        conn.wait(lambda: 99 in conn.pongs, None, "pong 99")
    except CaseFailure as exc:
        if conn.close_msg is not None and conn.close_msg.get("code") == 1008:
            return info(f"server enforces a frame-completion deadline under 1.5 s (§2.6): {exc}")
        if conn.closed:
            return non_strict(f"connection dropped after a 1.5 s stall: {exc}")
        raise
    return "pong after the stalled frame completed"
