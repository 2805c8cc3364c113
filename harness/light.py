"""Light client processes for load runs: many connections per process, little CPU per update.

    python -m harness.app light '{"port": 1234, "count": 16, ...}'

A full Reverb client builds a replica object per entry and runs events and hooks for every
field it applies; 32 of them following a 500-object world at 30 Hz take about a core on their
own, and on a 2-core box they then starve the server they are meant to measure (the issue's
"23.8 Hz of 30, freshness p99 7.1 s"). A light client speaks the wire protocol itself
(docs/protocol.md §2 framing, §4 handshake, §7 sync, §8 rpc, §9 ping) with the stdlib JSON
decoder, keeps its replica table as plain data (``{uid: [type, owner, fields]}``, the form
``harness.canon`` hashes) and records freshness from the ``stamp`` field of each update. One
thread and one selector serve every connection of the process.

It answers the same JSON-lines commands as the full clients process (``status``, ``converge``,
``stream``, ``samples``, ``quit``), so the load scenario drives either kind. What it does not
check is Reverb's own client library: the correctness scenarios do that with full clients.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import selectors
import socket
import struct
import time
from typing import Any

from harness.app import drain, emit, start_reader
from harness.metrics import CallPlan, Reservoir, StampWindow

__all__ = ["LightApp", "LightConn"]

Json = dict[str, Any]
HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 20
RECV_SIZE = 1 << 18


def frame(message: Json) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


class LightConn:
    """One connection: handshake (blocking), then non-blocking reads and writes."""

    def __init__(self, index: int, port: int, connect_timeout: float) -> None:
        self.index = index
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=connect_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.out = bytearray()
        self.member: int | None = None
        self.closed: list[Any] | None = None
        self.tick = 0
        self.table: dict[int, list[Any]] = {}  # uid -> [type, owner, fields]
        self.full_tick = -1
        self.calls: dict[int, float] = {}  # call id -> time sent
        self.next_id = 1
        self.own_uid: int | None = None
        self.last_sent = time.monotonic()
        self.nonce = 0
        self.pending: list[Json] = []  # frames that came with the welcome (the snapshot, ...)
        self.sock.sendall(frame({"type": "hello", "version": 1, "max_frame": MAX_FRAME}))
        deadline = time.monotonic() + connect_timeout
        while self.member is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"light client {index}: no welcome within {connect_timeout} s")
            data = self.sock.recv(RECV_SIZE)
            if not data:
                raise ConnectionError(f"light client {index}: closed during the handshake")
            self.buf += data
            for msg in self.frames():
                if self.member is not None:
                    self.pending.append(msg)  # read with the welcome: handled by the app
                elif msg.get("type") == "welcome":
                    self.member = int(msg["member"])
                elif msg.get("type") == "close":
                    raise ConnectionError(f"light client {index}: refused: {msg}")
        self.sock.setblocking(False)

    def frames(self) -> list[Json]:
        out = []
        buf = self.buf
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = HEADER.unpack_from(buf, pos)
            if n > MAX_FRAME:
                raise ConnectionError(f"frame of {n} bytes")
            if len(buf) - pos - 4 < n:
                break
            out.append(json.loads(bytes(buf[pos + 4 : pos + 4 + n])))
            pos += 4 + n
        del buf[:pos]
        return out

    def send(self, message: Json) -> None:
        if self.closed is None:
            self.out += frame(message)
            self.last_sent = time.monotonic()
            self.flush()

    def keepalive(self, now: float, interval: float) -> None:
        """Send a ping after ``interval`` s without sending anything (§9.2): a server that
        times out peers it has not heard from keeps this one while it only listens."""
        if self.closed is None and now - self.last_sent >= interval:
            self.nonce += 1
            self.send({"type": "ping", "nonce": self.nonce})

    def flush(self) -> None:
        while self.out and self.closed is None:
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                return
            except OSError as exc:
                self.lost(f"send failed: {exc}")
                return
            del self.out[:n]

    def lost(self, reason: str) -> None:
        if self.closed is None:
            self.closed = [1006, reason, time.monotonic()]

    def call(self, uid: int, method: str, args: list[Any]) -> int:
        call_id = self.next_id
        self.next_id += 1
        self.calls[call_id] = time.monotonic()
        self.send({"type": "rpc", "id": call_id, "uid": uid, "method": method, "args": args})
        return call_id

    def canonical(self) -> Json:
        return {str(uid): entry for uid, entry in self.table.items()}

    def hash(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


class LightApp:
    """``count`` light clients in one process, one selector loop."""

    def __init__(self, opts: Json) -> None:
        self.opts = opts
        self.rng = random.Random(opts.get("seed", 1))
        timeout = float(opts.get("connect_timeout", 10.0))
        self.conns = [
            LightConn(i, int(opts["port"]), timeout) for i in range(int(opts.get("count", 1)))
        ]
        self.sel = selectors.DefaultSelector()
        for c in self.conns:
            self.sel.register(c.sock, selectors.EVENT_READ, c)
        self.anomalies: dict[str, int] = {}  # sync entries that make no sense (lost frames)
        self.fresh = StampWindow(seed=os.getpid())  # freshness: stamps in [start, until)
        self.rtt = Reservoir(20000, seed=os.getpid() + 1)
        self.errors: dict[str, int] = {}
        self.answered = 0
        self.plan: CallPlan | None = None
        self.stream_stop: Json | None = None
        self.converge: Json | None = None
        self.seq = 0
        self.ping_interval = float(opts.get("ping_interval", 2.0))

    # -- input -------------------------------------------------------------------------------

    def read(self, c: LightConn) -> None:
        while c.closed is None:
            try:
                data = c.sock.recv(RECV_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                c.lost(f"recv failed: {exc}")
                break
            if not data:
                c.lost("connection closed by the server without a close frame")
                break
            c.buf += data
        now = time.monotonic()
        for msg in c.frames():
            self.handle(c, msg, now)
        if c.closed is not None:
            self.sel.unregister(c.sock)
            c.sock.close()

    def handle(self, c: LightConn, msg: Json, now: float) -> None:
        kind = msg.get("type")
        if kind == "sync":
            self.apply(c, msg, now)
        elif kind == "rpc_result" or kind == "rpc_error":
            t0 = c.calls.pop(int(msg["id"]), None)
            if t0 is None:
                self.errors["unknown_id"] = self.errors.get("unknown_id", 0) + 1
            elif kind == "rpc_result":
                self.answered += 1
                self.rtt.add(now - t0)
            else:
                code = str(msg.get("code"))
                self.errors[code] = self.errors.get(code, 0) + 1
        elif kind == "ping":
            c.send({"type": "pong", "nonce": msg["nonce"]})
        elif kind == "close":
            c.closed = [msg.get("code"), msg.get("reason"), now]

    def apply(self, c: LightConn, msg: Json, now: float) -> None:
        c.tick = int(msg["tick"])
        table = c.table
        if msg.get("full") and msg["tick"] != c.full_tick:
            table.clear()  # the first part of a snapshot replaces the table (§7.4)
            c.full_tick = msg["tick"]
        for e in msg.get("spawn", ()):
            table[e["uid"]] = [e["type"], e["owner"], e["fields"]]
            if e["owner"] == c.member and c.own_uid is None:
                c.own_uid = e["uid"]
        for u in msg.get("update", ()):
            entry = table.get(u["uid"])
            if entry is None:
                key = "update_of_unknown_uid"
                self.anomalies[key] = self.anomalies.get(key, 0) + 1
                continue
            fields = u["fields"]
            entry[2].update(fields)
            if "owner" in u:
                entry[1] = u["owner"]
            stamp = fields.get("stamp")
            if stamp is not None:
                self.fresh.see(stamp, now)
        for uid in msg.get("despawn", ()):
            table.pop(uid, None)
            if uid == c.own_uid:
                c.own_uid = None

    # -- commands ----------------------------------------------------------------------------

    def status(self, c: LightConn, detail: bool) -> Json:
        out: Json = {
            "index": c.index,
            "member": c.member,
            "closed": c.closed,
            "tick": c.tick,
            "n_objects": len(c.table),
            "hash": c.hash(),
        }
        if detail:
            out["table"] = c.canonical()
        return out

    def command(self, cmd: Json) -> bool:
        op, rid = cmd.get("op"), cmd.get("rid")
        if op == "quit":
            return False
        if op == "status":
            emit(rid=rid, clients=[self.status(c, bool(cmd.get("detail"))) for c in self.conns])
        elif op == "converge":
            cmd["deadline"] = time.monotonic() + float(cmd.get("timeout", 10.0))
            self.converge = cmd
        elif op == "stream":
            if cmd.get("on", True):
                # load: a fixed window; churn, faults: from now until "stream off"
                start = float(cmd.get("start", time.monotonic()))
                until = float(cmd.get("until", math.inf))
                self.fresh.open(start, until)
                self.plan = CallPlan(len(self.conns), float(cmd["rate"]), start, until, self.rng)
                emit(rid=rid, ok=True, planned=self.plan.planned)
            else:
                if self.plan is not None:
                    self.plan.stop(time.monotonic())
                cmd["deadline"] = time.monotonic() + float(cmd.get("timeout", 10.0))
                self.stream_stop = cmd
        elif op == "samples":
            plan = self.plan
            emit(
                rid=rid,
                kind="light",
                fresh_s=self.fresh.ages.values,
                fresh_count=self.fresh.count,
                rtt_s=self.rtt.values,
                rtt_count=self.rtt.count,
                errors=self.errors,
                anomalies=self.anomalies,
                planned=plan.planned if plan else 0,
                sent=plan.sent if plan else 0,
                answered=self.answered,
                unanswered=sum(len(c.calls) for c in self.conns),
                late=plan.late if plan else 0,
                max_late_ms=round(plan.max_late_s * 1000.0, 3) if plan else 0.0,
            )
            if cmd.get("reset", False):
                self.fresh.reset()
                self.rtt.clear()
                self.errors = {}
                self.answered = 0
                self.plan = None
        else:
            emit(rid=rid, error=f"unknown op {op!r}")
        return True

    def stream(self, now: float) -> None:
        plan = self.plan
        if plan is None:
            return
        for i, c in enumerate(self.conns):
            if c.closed is not None:
                plan.drop(i)
                continue
            for _ in range(plan.due(i, now)):
                if c.own_uid is None:
                    continue  # planned, never sent: the verdict counts it
                self.seq += 1
                c.call(c.own_uid, "bump", [f"{os.getpid()}.{i}.{self.seq}"])
                plan.sent += 1

    def check_waiters(self, now: float) -> None:
        conv = self.converge
        if conv is not None:
            live = [c for c in self.conns if c.closed is None]
            ok = all(c.hash() == conv["hash"] for c in live)
            if ok or now >= conv["deadline"]:
                emit(
                    rid=conv.get("rid"),
                    converged=ok,
                    clients=[self.status(c, bool(conv.get("detail"))) for c in self.conns],
                )
                self.converge = None
        stop = self.stream_stop
        if stop is not None:
            plan = self.plan
            done = plan is None or now >= plan.until
            outstanding = sum(len(c.calls) for c in self.conns if c.closed is None)
            if (done and not outstanding) or now >= stop["deadline"]:
                emit(rid=stop.get("rid"), outstanding=outstanding)
                self.stream_stop = None

    def take_pending(self) -> None:
        """Handle what arrived with each welcome (often the snapshot, in the same read)."""
        now = time.monotonic()
        for c in self.conns:
            for msg in c.pending:
                self.handle(c, msg, now)
            c.pending = []

    def run(self) -> None:
        self.take_pending()
        emit(event="connected", members=[c.member for c in self.conns])
        commands = start_reader()
        print("READY 0", flush=True)
        try:
            while True:
                for key, _ in self.sel.select(timeout=0.002):
                    self.read(key.data)
                for cmd in drain(commands):
                    if cmd is None or not self.command(cmd):
                        return
                now = time.monotonic()
                self.stream(now)
                for c in self.conns:
                    c.keepalive(now, self.ping_interval)
                    if c.out:
                        c.flush()
                self.check_waiters(now)
        finally:
            for c in self.conns:
                if c.closed is None:
                    try:
                        c.sock.setblocking(True)
                        c.sock.settimeout(1.0)
                        c.sock.sendall(frame({"type": "close", "code": 1000, "reason": "bye"}))
                    except OSError:
                        pass
                c.sock.close()
