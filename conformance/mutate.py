"""``python -m conformance.mutate``: how many realistic one-line server bugs the conformance
suite catches on its own.

Each mutant replaces one exact snippet of ``reverb/`` in a temporary copy of the repository
(``reverb/`` and ``conformance/``), then runs the suite against the reference host of that copy
(``PYTHONPATH`` = the copy): the low-limit run first (fast), then the normal run, and the asyncio
run for mutants of ``reverb/aio``. A mutant is *killed* when a run exits non-zero (a case
failed, or the host did not start); it *survives* when every run passes. A snippet that is not
found (the code moved on) is reported as ``stale``, not counted. Runs use ``--fail-fast``.

    python -m conformance.mutate [--jobs 2] [--limit N] [--only ID,...] [--report DIR]

writes ``DIR/mutants.json`` and ``DIR/mutants.md`` (default ``out/mutate``). The mutation tool
reads and copies files only; it never imports ``reverb``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 180.0
# Heavy cases that test no line a mutant touches (20 MB to a stalled reader) and only add
# load, which makes other cases flaky when two mutants run at once.
ALWAYS_EXCLUDED = ["11.2.1"]


@dataclass(frozen=True)
class Mutant:
    id: str
    path: str  # relative to the repository root
    old: str  # exact text, replaced once (its first occurrence)
    new: str
    what: str
    equivalent: str = ""  # why no client can tell it from the real server: not run, not counted


S, F, MSG = "reverb/proto/session.py", "reverb/proto/framing.py", "reverb/proto/messages.py"
OPT = "reverb/proto/options.py"
H, W = "reverb/hub/server.py", "reverb/replication/world.py"
RPC = "reverb/replication/rpc.py"  # the checks and the call of §8.2 (moved out of world.py)
V = "reverb/replication/views.py"  # what each view is sent at a tick (moved out of world.py)
TL, TS = "reverb/threaded/_loop.py", "reverb/threaded/server.py"
AB, AS = "reverb/aio/_base.py", "reverb/aio/server.py"

MUTANTS: list[Mutant] = [
    # -- session: deadlines, heartbeats, limits, handshake (§4, §9, §11)
    Mutant(
        "s-handshake-late",
        S,
        "now >= self._handshake_deadline",
        "now >= self._handshake_deadline + 5",
        "handshake deadline 5 s late",
    ),
    Mutant(
        "s-handshake-code",
        S,
        '"handshake_timeout", CloseCode.POLICY',
        '"handshake_timeout", CloseCode.PROTOCOL_ERROR',
        "handshake deadline closes 1002",
    ),
    Mutant(
        "s-frame-timeout",
        S,
        "now - self._frame_started >= self._frame_timeout",
        "now - self._frame_started >= self._frame_timeout * 10",
        "frame deadline 10x",
    ),
    Mutant(
        "s-idle-timeout",
        S,
        "now - self._last_received >= self._idle_timeout",
        "now - self._last_received >= self._idle_timeout * 10",
        "idle timeout 10x",
    ),
    Mutant(
        "s-idle-reason",
        S,
        'CloseCode.POLICY, "idle timeout"',
        'CloseCode.POLICY, "policy"',
        "idle close reason not 'idle timeout'",
    ),
    Mutant(
        "s-no-ping", S, "self._send(m.Ping(nonce=self._nonce), now)", "None", "server never pings"
    ),
    Mutant(
        "s-no-pong",
        S,
        "self._send(m.Pong(nonce=message.nonce, time=stamp), now)",
        "None",
        "ping not answered",
    ),
    Mutant(
        "s-pong-nonce",
        S,
        "m.Pong(nonce=message.nonce, time=stamp)",
        "m.Pong(nonce=message.nonce + 1, time=stamp)",
        "pong echoes the wrong nonce",
    ),
    Mutant(
        "s-no-msg-rate",
        S,
        "if self.role is Role.SERVER and not self._messages.take(now):",
        "if False:",
        "message rate not enforced",
    ),
    Mutant(
        "s-msg-rate-code",
        S,
        '"message_rate", CloseCode.POLICY',
        '"message_rate", CloseCode.PROTOCOL_ERROR',
        "message rate closes 1002",
    ),
    Mutant(
        "s-no-call-rate",
        S,
        # a server's rpc in OPEN (_receive_rpc); the general path's take is app messages'
        "\n        if not self._calls.take(now):",
        "\n        if False:",
        "call rate not enforced",
    ),
    Mutant(
        "s-call-rate-code",
        S,
        'm.RpcErrorReply(id=message.id, code=RpcCode.RATE_LIMITED, message="too many calls"),',
        'm.RpcErrorReply(id=message.id, code=RpcCode.OVERLOADED, message="too many calls"),',
        "call rate answered overloaded",
    ),
    Mutant(
        "s-burst",
        OPT,
        "BURST_SECONDS = 2.0",
        "BURST_SECONDS = 20.0",
        "rate buckets hold 20 s, not 2 s",
    ),
    Mutant(
        "s-bucket-off-by-one",
        S,
        "if self._tokens < amount:",
        "if self._tokens < amount - 1:",
        "token bucket lets one extra through",
    ),
    Mutant(
        "s-version-gt",
        S,
        "if hello.version != m.PROTOCOL_VERSION:",
        "if hello.version > m.PROTOCOL_VERSION:",
        "old versions accepted",
    ),
    Mutant(
        "s-version-code",
        S,
        "CloseCode.UNSUPPORTED_VERSION,",
        "CloseCode.PROTOCOL_ERROR,",
        "unsupported version closes 1002",
    ),
    Mutant(
        "s-max-frame-floor",
        S,
        "if hello.max_frame < MIN_MAX_FRAME:",
        "if hello.max_frame < 1024:",
        "max_frame floor 1024",
    ),
    Mutant(
        "s-no-contract",
        S,
        "if self._check_contract is not None and not isinstance(hello.contract, m.Absent):",
        "if False:",
        "contract never checked",
    ),
    Mutant(
        "s-contract-code",
        S,
        "self.close(CloseCode.CONTRACT_MISMATCH",
        "self.close(CloseCode.PROTOCOL_ERROR",
        "contract mismatch closes 1002",
    ),
    Mutant(
        "s-peer-max-frame",
        S,
        "self.peer_max_frame = hello.max_frame",
        "pass",
        "hello.max_frame ignored",
    ),
    Mutant(
        "s-legality",
        S,
        "if m.MESSAGE_TYPES[message.TYPE] not in self._legal:",
        "if m.MESSAGE_TYPES[message.TYPE] is m.Welcome:",
        "messages illegal in the state accepted",
    ),
    Mutant(
        "s-fail-silent",
        S,
        "self.close(code, reason[:200], now)",
        "self.abort(code, reason)",
        "violations end TCP without close",
    ),
    Mutant(
        "s-welcome-member",
        S,
        "member=self.member,\n                tick_rate=self.tick_rate,",
        "member=self.member + 1,\n                tick_rate=self.tick_rate,",
        "welcome names the wrong member",
    ),
    # -- issue 8 decisions: byte budget, handshake frame cap, heartbeats, call ids in flight
    Mutant(
        "p-no-byte-rate",
        S,
        "if self.role is Role.SERVER and not self._bytes.take(now, len(data)):",
        "if False:",
        "byte rate not enforced",
    ),
    Mutant(
        "p-byte-capacity",
        S,
        "capacity=max(max_frame_size + 4.0, rate * BURST_SECONDS))",
        "capacity=rate)",
        "byte bucket smaller than one maximum frame",
    ),
    Mutant(
        "p-byte-code",
        S,
        '"byte_rate", CloseCode.POLICY',
        '"byte_rate", CloseCode.TOO_LARGE',
        "byte rate closes 1009",
    ),
    Mutant(
        "p-handshake-cap",
        S,
        "max_frame_size=min(max_frame_size, options.max_handshake_frame)",
        "max_frame_size=max_frame_size",
        "no frame cap before welcome",
    ),
    Mutant(
        "p-dup-id",
        S,
        "\n        if message.id in self._in_flight:",  # _receive_rpc, not the general path
        "\n        if False:",
        "duplicate in-flight rpc id accepted",
    ),
    Mutant(
        "p-ids-never-freed",
        S,
        # send_framed, which answers carry (hub.reply, hub.send); send_encoded only replays
        "self._in_flight.discard(answers)\n        if code is not None:\n"
        "            self.rpc_errors[code] += 1\n        self.sent_by_kind[kind] += 1\n"
        "        self.frames_sent += 1",
        "pass\n        if code is not None:\n"
        "            self.rpc_errors[code] += 1\n        self.sent_by_kind[kind] += 1\n"
        "        self.frames_sent += 1",
        "answered ids stay in flight",
    ),
    Mutant(
        "p-ping-on-schedule",
        S,
        "silent = max(self._last_received, self._last_ping)",
        "silent = self._last_ping",
        "pings every interval even while the peer talks",
    ),
    Mutant(
        "p-ping-flood",
        S,
        "            self._last_ping = now\n",
        "            pass\n",
        "a ping every check once the interval passed",
    ),
    Mutant(
        "p-ping-on-sent",
        S,
        "        self._last_received = now\n        if self.role is Role.SERVER",
        "        if self.role is Role.SERVER",
        "received bytes do not count as traffic",
    ),
    # -- framing and codec (§2, §3)
    Mutant(
        "f-limit-off-by-one",
        F,
        "if length > self.max_frame_size:",
        "if length > self.max_frame_size + 1:",
        "frame limit off by one",
    ),
    Mutant(
        "f-limit-code",
        F,
        "CloseCode.TOO_LARGE,",
        "CloseCode.PROTOCOL_ERROR,",
        "oversized frame closes 1002",
    ),
    Mutant(
        "f-empty-ok",
        F,
        "if length == 0:",
        "if length < 0:",
        "empty frame accepted",
        "an empty body is then invalid JSON: close 1007 all the same",
    ),
    Mutant(
        "f-empty-code",
        F,
        'self.error = RemoteProtocolError("empty frame", CloseCode.INVALID_PAYLOAD)',
        'self.error = RemoteProtocolError("empty frame", CloseCode.PROTOCOL_ERROR)',
        "empty frame closes 1002",
    ),
    Mutant("c-depth", MSG, "MAX_DEPTH = 32", "MAX_DEPTH = 33", "nesting limit 33"),
    Mutant(
        "c-surrogate",
        "reverb/proto/wirejson.py",
        "    if any(map(_SURROGATE.search, strings)):",
        "    if False:",
        "lone surrogates accepted",
    ),
    Mutant(
        "c-dup-keys",
        "reverb/proto/wirejson.py",
        '    if _STRING.sub("", text).count(":") != members:',
        "    if False:",
        "duplicate keys accepted",
    ),
    Mutant(
        "c-bom",
        "reverb/proto/decode.py",
        'if text.startswith("\\ufeff"):',
        "if False:",
        "BOM accepted",
        "the JSON decoder refuses a BOM too: close 1007 all the same",
    ),
    Mutant(
        "c-not-object-code",
        "reverb/proto/decode.py",
        'not an object", CloseCode.INVALID_PAYLOAD',
        'not an object", CloseCode.PROTOCOL_ERROR',
        "non-object payload closes 1002",
    ),
    Mutant(
        "c-unknown-type",
        "reverb/proto/decode.py",
        '    if check is None:\n        raise RemoteProtocolError(f"unknown message type',
        "    if check is None and kind == '':\n        raise RemoteProtocolError(f\"unknown message type",  # noqa: E501
        "unknown message type not rejected",
    ),
    Mutant(
        "c-unknown-type-code",
        "reverb/proto/decode.py",
        'unknown message type {kind[:40]!r}", CloseCode.PROTOCOL_ERROR)',
        'unknown message type {kind[:40]!r}", CloseCode.INVALID_PAYLOAD)',
        "unknown type closes 1007",
    ),
    Mutant(
        "c-negative-id",
        "reverb/proto/decode.py",
        "if isinstance(message, Rpc) and message.id < 0:",
        "if isinstance(message, Rpc) and message.id < -1:",
        "rpc id -1 accepted",
    ),
    Mutant(
        "c-field-type-code",
        "reverb/proto/decode.py",
        'got {type(value).__name__}", CloseCode.PROTOCOL_ERROR',
        'got {type(value).__name__}", CloseCode.INVALID_PAYLOAD',
        "mistyped field closes 1007",
    ),
    # -- hub: members, pending calls, per-client frame limits (§4.3, §7.5, §11)
    Mutant(
        "h-pending",
        H,
        "if pending >= self.options.max_pending_calls:",
        "if pending >= self.options.max_pending_calls * 100:",
        "pending-call cap 100x",
    ),
    Mutant(
        "h-pending-off-by-one",
        H,
        "if pending >= self.options.max_pending_calls:",
        "if pending > self.options.max_pending_calls:",
        "pending-call cap off by one",
    ),
    Mutant(
        "h-overloaded-code",
        H,
        "code=RpcCode.OVERLOADED",
        "code=RpcCode.RATE_LIMITED",
        "overloaded answered rate_limited",
    ),
    Mutant(
        "h-member-reuse",
        H,
        "self._next_member += 1",
        "self._next_member += 0",
        "membership ids reused",
    ),
    Mutant(
        "h-too-large-code",
        H,
        "session.close(CloseCode.TOO_LARGE, reason, now)",
        "session.close(CloseCode.PROTOCOL_ERROR, reason, now)",
        "entry too large closes 1002",
    ),
    Mutant(
        "h-no-split",
        H,
        "return m.encode_sync(message, limit)",
        "return [m.encode(message)]",
        "syncs never split into parts",
    ),
    Mutant(
        "h-bad-return-code",
        H,
        "id=message.id, code=RpcCode.BAD_RETURN",
        "id=message.id, code=RpcCode.HANDLER_ERROR",
        "oversized result answered handler_error",
    ),
    # -- world: uids, deltas, owners, rpc checks (§7, §8)
    Mutant("w-uid-reuse", W, "self._next_uid += 1", "self._next_uid += 0", "UIDs reused"),
    Mutant(
        "w-no-despawn",
        W,
        "            self._removed.append(uid)",
        "            pass",
        "despawn not sent",
    ),
    Mutant(
        "w-all-fields",
        W,
        # the fast path (assigned attributes, §7.2): the update entry carries the whole baseline
        'append((uid, {"uid": uid, "fields": changed}))',
        'append((uid, {"uid": uid, "fields": dict(base)}))',
        "updates carry every field",
    ),
    Mutant(
        "w-loose-equality",
        W,
        # scalars are compared inline on the fast path (same type, then ==)
        "elif kind is type(old) and old == value:",
        "elif old == value:",
        "change detection with == (1 == 1.0 == True)",
    ),
    Mutant(
        "w-bool-is-int",
        W,
        "    if type(a) is not type(b):",
        "    if not isinstance(a, type(b)) and not isinstance(b, type(a)):",
        "true == 1 in change detection",
    ),
    Mutant(
        "w-no-owner-change",
        W,
        "if changed or owner is not MISSING:",
        "if changed:",
        "owner-only changes not sent",
    ),
    Mutant(
        "w-owner-field",
        W,
        "append((uid, m.update_entry(uid, changed, owner)))",
        "append((uid, m.update_entry(uid, changed, m.ABSENT)))",
        "update omits the new owner",
    ),
    Mutant(
        "w-empty-world",
        W,
        "        if self._joining:",
        "        if self._joining and self._records:",
        "no full sync for an empty world",
    ),
    Mutant("w-tick", W, "self.tick_count += 1", "self.tick_count += 0", "tick does not increase"),
    Mutant(
        "w-despawn-unsent",
        V,
        "despawn = [uid for uid in removed if uid in held]",
        "despawn = [uid for uid in removed if uid not in held]",
        "despawn sent for the wrong objects",
    ),
    Mutant(
        "w-spawn-args",
        W,
        "record.uid, record.info.name, record.owner, record.args, record.fields",
        'record.uid, record.info.name, record.owner, b"[]", record.fields',
        "spawn entries lose constructor args",
    ),
    Mutant(
        "w-withheld-full",
        W,
        "if r.fields is not None and r.error is None]",
        "if r.fields is not None]",
        "withheld objects spawned to joiners",
    ),
    Mutant(
        "w-unknown-code",
        RPC,
        "return _error(rpc.id, RpcCode.UNKNOWN_OBJECT,",
        "return _error(rpc.id, RpcCode.NOT_EXPOSED,",
        "unknown object answered not_exposed",
    ),
    Mutant(
        "w-not-exposed-code",
        RPC,
        "rpc.id, RpcCode.NOT_EXPOSED,",
        "rpc.id, RpcCode.UNKNOWN_OBJECT,",
        "unexposed method answered unknown_object",
    ),
    Mutant(
        "w-owner-check",
        RPC,
        "if not exposure.anyone and obj.belonging_membership != member:",
        "if not exposure.anyone and obj.belonging_membership is None:",
        "owner check skipped for owned objects",
    ),
    Mutant(
        "w-anyone-inverted",
        RPC,
        "if not exposure.anyone and obj.belonging_membership != member:",
        "if exposure.anyone and obj.belonging_membership != member:",
        "anyone/owner-only inverted",
    ),
    Mutant(
        "w-no-arg-check",
        RPC,
        # the cached arity decides; a call outside it goes to signature.bind, which refuses
        "if arity is None or not arity[0] <= len(rpc.args) + 1 <= arity[1]:",
        "if False:",
        "arguments not checked",
    ),
    Mutant(
        "w-rejected-code",
        RPC,
        "return _error(rpc.id, RpcCode.REJECTED, exc.message)",
        "return _error(rpc.id, RpcCode.HANDLER_ERROR, exc.message)",
        "RpcError answered handler_error",
    ),
    Mutant(
        "w-leak",
        RPC,
        'rpc.id, RpcCode.HANDLER_ERROR, f"{info.name}.{rpc.method} failed on the server"',
        "rpc.id, RpcCode.HANDLER_ERROR, f\"{info.name}.{rpc.method}: {__import__('sys').exc_info()[1]}\"",  # noqa: E501
        "handler exception text sent",
    ),
    Mutant(
        "w-bad-return",
        RPC,
        "            RpcCode.BAD_RETURN,\n",
        "            RpcCode.HANDLER_ERROR,\n",
        "unencodable result answered handler_error",
    ),
    Mutant(
        "w-result-id",
        RPC,
        "m.make_rpc_result(rpc.id,",
        "m.make_rpc_result(rpc.id + 1,",
        "wrong rpc id echoed",
    ),
    Mutant(
        "w-error-id",
        RPC,
        "return m.RpcErrorReply(id=call_id, code=code, message=message)",
        "return m.RpcErrorReply(id=0, code=code, message=message)",
        "rpc_error echoes id 0",
    ),
    Mutant(
        "w-caller",
        RPC,
        "token = current_caller.set(member)",
        "token = current_caller.set(None)",
        "rpc caller unknown to handlers",
    ),
    # -- I/O layers (§10, §11)
    Mutant(
        "t-going-away",
        TS,
        'CloseCode.GOING_AWAY, "server shutting down", time.monotonic()',
        'CloseCode.NORMAL, "server shutting down", time.monotonic()',
        "threaded shutdown sends 1000",
    ),
    Mutant(
        "t-no-timeouts",
        TL,
        "            conn.session.check_timeouts(now)",
        "            pass",
        "threaded layer never applies deadlines",
    ),
    Mutant(
        "t-send-buffer",
        TL,
        "if sent and sheds(backlog, self.max_send_buffer, session):",
        "if False:",
        "threaded: never-reading clients kept",
    ),
    Mutant(
        "a-going-away",
        AS,
        'proto.session.close(CloseCode.GOING_AWAY, "server shutting down", now)',
        'proto.session.abort(CloseCode.GOING_AWAY, "server shutting down")',
        "asyncio shutdown without close 1001",
    ),
    Mutant(
        "a-no-timeouts",
        AB,
        "        proto.session.check_timeouts(now)\n        self.pump(proto)",
        "        pass\n        self.pump(proto)",
        "asyncio layer never applies deadlines",
    ),
    Mutant(
        "a-no-close",
        AB,
        "                transport.close()  # flushes what the transport holds, then closes",
        "                pass",
        "asyncio keeps TCP open after close",
    ),
    Mutant(
        "a-send-buffer",
        AB,
        "if (data or late) and sheds(backlog, self.max_send_buffer, session):",
        "if False:",
        "asyncio: never-reading clients kept",
    ),
]


def runs_for(mutant: Mutant) -> list[tuple[str, list[str], list[str]]]:
    """(name, host options, driver options) of each run, cheapest first."""
    low = ("low", ["--low-limits"], ["--limits", "low", "--cases", "g10"])
    normal = ("normal", [], [])
    aio_low = ("aio-low", ["--layer", "aio", "--low-limits"], ["--limits", "low", "--cases", "g10"])
    aio = ("aio", ["--layer", "aio"], [])
    if mutant.path.startswith("reverb/aio/"):
        return [aio_low, aio]
    return [low, normal]


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("reverb", "conformance"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)


def apply(mutant: Mutant, dest: Path) -> bool:
    target = dest / mutant.path
    text = target.read_text(encoding="utf-8")
    if mutant.old not in text:
        return False
    target.write_text(text.replace(mutant.old, mutant.new, 1), encoding="utf-8")
    return True


def baseline(python: str, workers: int) -> dict[str, list[str]]:
    """Run each configuration on the unmutated code; the cases that fail there are excluded
    from the mutant runs (a mutant is only killed by a case the real server passes)."""
    configs = {name: (h, d) for m in MUTANTS for name, h, d in runs_for(m)}
    failing: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="mutant-baseline-") as tmp:
        dest = Path(tmp)
        _copy_tree(dest)
        env = dict(os.environ, PYTHONPATH=str(dest), PYTHONDONTWRITEBYTECODE="1")
        for name, (host_opts, driver_opts) in configs.items():
            host = " ".join([python, "-m", "conformance.host", *host_opts])
            cmd = [
                python, "-m", "conformance", "--server-cmd", host, "--workers", str(workers),
                "--timeout", "4", "--exclude", ",".join(ALWAYS_EXCLUDED), *driver_opts,
            ]  # fmt: skip
            proc = subprocess.run(
                cmd, cwd=dest, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
            )
            failing[name] = [
                line[5:].split()[0] for line in proc.stdout.splitlines() if line.startswith("FAIL ")
            ]
            print(f"baseline {name}: exit {proc.returncode}, failing {failing[name]}", flush=True)
    return failing


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[list[str], int | None, bool]:
    """Run the suite; return the FAIL lines, the exit code (None: timed out) and whether the
    server process died during the run."""
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return [], None, False
    fails = [line[5:] for line in proc.stdout.splitlines() if line.startswith("FAIL ")]
    return fails, proc.returncode, "server process exited during the run" in proc.stderr


def run_mutant(
    mutant: Mutant, python: str, workers: int, excluded: dict[str, list[str]]
) -> dict[str, object]:
    started = time.monotonic()
    result: dict[str, object] = {"id": mutant.id, "file": mutant.path, "what": mutant.what}
    if mutant.equivalent:
        result.update(status="equivalent", detail=mutant.equivalent)
        return result
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.id}-") as tmp:
        dest = Path(tmp)
        _copy_tree(dest)
        if not apply(mutant, dest):
            result.update(status="stale", detail="snippet not found")
            return result
        env = dict(os.environ, PYTHONPATH=str(dest), PYTHONDONTWRITEBYTECODE="1")
        status, detail = "survived", ""
        flaky: list[str] = []
        for name, host_opts, driver_opts in runs_for(mutant):
            host = " ".join([python, "-m", "conformance.host", *host_opts])
            base = [python, "-m", "conformance", "--server-cmd", host, "--timeout", "4"]
            skip = ALWAYS_EXCLUDED + excluded.get(name, [])
            cmd = [
                *base, "--fail-fast", "--workers", str(workers), "--exclude", ",".join(skip),
                *driver_opts,
            ]  # fmt: skip
            fails, code, died = _run(cmd, dest, env)
            if code is None:
                status, detail = "killed", f"{name} run timed out"
                break
            if code == 0:
                continue
            if died or not fails:
                why = "the server died during the run" if died else f"exit {code}, no case ran"
                status, detail = "killed", f"{name}: {why}; {' / '.join(fails)[:160]}"
                break
            # Confirm a failure alone, so that a case flaking under load does not kill.
            for line in fails[:3]:
                case_id = line.split()[0]
                _, again, _ = _run([*base, *driver_opts[:2], "--cases", case_id], dest, env)
                if again != 0:
                    status, detail = "killed", f"{name}: {line[:200]}"
                    break
                flaky.append(case_id)
            if status == "killed":
                break
        if flaky:
            result["flaky"] = flaky
        result.update(status=status, detail=detail)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def write_reports(
    directory: Path,
    results: list[dict[str, object]],
    wall: float,
    excluded: dict[str, list[str]],
) -> dict[str, object]:
    directory.mkdir(parents=True, exist_ok=True)
    killed = [r for r in results if r["status"] == "killed"]
    survived = [r for r in results if r["status"] == "survived"]
    stale = [r for r in results if r["status"] == "stale"]
    equivalent = [r for r in results if r["status"] == "equivalent"]
    counted = len(killed) + len(survived)
    summary: dict[str, object] = {
        "mutants": len(results),
        "killed": len(killed),
        "survived": len(survived),
        "stale": len(stale),
        "equivalent": len(equivalent),
        "kill_rate": round(len(killed) / counted, 4) if counted else None,
        "wall_time": round(wall, 1),
        "baseline_failures": excluded,
    }
    (directory / "mutants.json").write_text(
        json.dumps({"summary": summary, "mutants": results}, indent=2) + "\n", encoding="utf-8"
    )
    rate = f"{100 * len(killed) / counted:.1f} %" if counted else "n/a"
    lines = [
        "# Mutation testing of the server against the conformance suite",
        "",
        f"{len(killed)} of {counted} mutants killed ({rate}); {len(stale)} stale; "
        f"{len(equivalent)} equivalent, not run; {wall:.0f} s.",
        "",
        "Cases failing on the unmutated code (left out of the mutant runs): "
        + ("; ".join(f"{run}: {', '.join(ids)}" for run, ids in excluded.items() if ids) or "none"),
        "",
        "## Equivalent mutants (not run)",
        "",
        *[f"- {r['id']} ({r['file']}): {r['what']}: {r['detail']}" for r in equivalent],
        "",
        "## Survivors",
        "",
        "| id | file | mutation |",
        "|----|------|----------|",
        *[f"| {r['id']} | {r['file']} | {r['what']} |" for r in survived],
        "",
        "## All mutants",
        "",
        "| id | status | s | mutation | detail |",
        "|----|--------|---|----------|--------|",
        *[
            f"| {r['id']} | {r['status']} | {r.get('seconds', '')} | {r['what']} | "
            f"{str(r.get('detail', '')).replace('|', '/')[:160]} |"
            for r in results
        ],
        "",
    ]
    (directory / "mutants.md").write_text("\n".join(lines), encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.mutate", description=__doc__)
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once")
    parser.add_argument("--limit", type=int, default=0, help="only the first N mutants")
    parser.add_argument("--only", default="", help="comma-separated mutant ids")
    parser.add_argument("--workers", type=int, default=4, help="the suite's --workers")
    parser.add_argument("--report", default="out/mutate", help="directory for the reports")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    mutants = MUTANTS
    if args.only:
        wanted = {m.strip() for m in args.only.split(",")}
        mutants = [m for m in mutants if m.id in wanted]
    if args.limit:
        mutants = mutants[: args.limit]
    if args.list:
        for m in mutants:
            print(f"{m.id:22} {m.path:30} {m.what}")
        print(f"{len(mutants)} mutants")
        return 0
    started = time.monotonic()
    excluded = baseline(sys.executable, args.workers)
    results: list[dict[str, object]] = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [
            pool.submit(run_mutant, m, sys.executable, args.workers, excluded) for m in mutants
        ]
        for n, future in enumerate(futures, 1):
            result = future.result()
            results.append(result)
            print(
                f"[{n:3}/{len(mutants)}] {result['status']:8} {result['id']:22} "
                f"{result.get('seconds', 0):>5}s  {result.get('detail', '')}"[:220],
                flush=True,
            )
    summary = write_reports(Path(args.report), results, time.monotonic() - started, excluded)
    print(
        f"kill rate {summary['kill_rate']}: {summary['killed']} killed, {summary['survived']} "
        f"survived, {summary['stale']} stale, {summary['equivalent']} equivalent; "
        f"report in {args.report}/mutants.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
