"""The harness's child programs: one Reverb server, or a process hosting several clients.

    python -m harness.app server '{"rate": 30, ...}'
    python -m harness.app clients '{"port": 1234, "count": 4, ...}'

Each reads JSON commands on stdin (one per line, ``{"op": ..., "rid": n, ...}``) and writes
JSON lines on stdout: replies carry the command's ``rid``, unsolicited events an ``event`` key.
The server prints ``READY <port>`` once it listens; a clients process prints ``READY 0`` once
all its clients completed the handshake. Both exit when stdin closes (the harness is gone) or
their ``lifetime`` (s) passes, so a crashed harness never leaves them behind.

Runs on every supported interpreter (3.10+) with only ``reverb`` and the stdlib.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import random
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from harness import breakage
from harness.canon import canonical_table, table_hash
from harness.metrics import CallPlan, Reservoir, StampWindow, cpu_seconds, proc_status_kb
from reverb import (
    Client,
    ReverbContext,
    ReverbManager,
    ReverbObject,
    ReverbSide,
    RpcError,
    Server,
    expose,
    rpc_caller,
    server_event_registry,
)

logger = logging.getLogger("harness.app")

Json = dict[str, Any]

# -- the replicated types ------------------------------------------------------------------

# token -> [method, caller, uid, owner when run, times run]; filled by exposed methods.
EXECUTIONS: dict[str, list[Any]] = {}
# Set in client processes: called as (obj, stamp) whenever a bound replica's stamp changes.
STAMP_HOOK: list[Callable[[Any, float], None]] = []


def _record(method: str, token: str, obj: Any) -> None:
    entry = EXECUTIONS.get(token)
    if entry is None:
        EXECUTIONS[token] = [method, rpc_caller(), obj.uid, obj.belonging_membership, 1]
    else:
        entry[4] += 1


class Box(ReverbObject):
    """A replicated object: ``value`` changes, ``stamp`` is the server's monotonic time of the
    last change (all processes share CLOCK_MONOTONIC), ``kind`` is "world" or "client"."""

    def __init__(
        self,
        value: int = 0,
        kind: str = "world",
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        self.value = value
        self.kind = kind
        self.stamp = 0.0
        super().__init__(
            value,
            kind,
            uid=uid,
            add_on_init=add_on_init,
            belonging_membership=belonging_membership,
        )

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "stamp" and STAMP_HOOK and self.__dict__.get("_reverb_ctx") is not None:
            STAMP_HOOK[0](self, value)

    @expose
    def bump(self, token: str) -> Json:
        _record("bump", token, self)
        self.value += 1
        return {"token": token, "caller": rpc_caller(), "uid": self.uid}

    @expose
    def refuse(self, token: str) -> None:
        _record("refuse", token, self)
        raise RpcError(f"refused {token}")

    @expose(anyone=True)
    def wave(self, token: str) -> Json:
        _record("wave", token, self)
        return {"token": token, "caller": rpc_caller(), "owner": self.belonging_membership}


class Tag(Box):
    """A second type, so that UID/type agreement is checked across types."""

    def __init__(
        self,
        value: int = 0,
        kind: str = "world",
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        self.label = f"t{value}"
        super().__init__(
            value, kind, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


TYPES: list[type[Box]] = [Box, Tag]

# -- plumbing ------------------------------------------------------------------------------

_out_lock = threading.Lock()


def emit(**fields: Any) -> None:
    line = json.dumps(fields, separators=(",", ":"))
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def start_reader() -> queue.Queue[Json | None]:
    commands: queue.Queue[Json | None] = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            if line.strip():
                commands.put(json.loads(line))
        commands.put(None)  # stdin closed: the harness is gone

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return commands


def start_watchdog(lifetime: float) -> None:
    def expire() -> None:
        time.sleep(lifetime)  # a bound on the child's life, not synchronisation
        sys.stderr.write(f"harness.app: lifetime of {lifetime} s over, exiting\n")
        sys.stderr.flush()
        os._exit(3)

    threading.Thread(target=expire, name="watchdog", daemon=True).start()


def drain(commands: queue.Queue[Json | None]) -> list[Json | None]:
    out: list[Json | None] = []
    while True:
        try:
            out.append(commands.get_nowait())
        except queue.Empty:
            return out


# -- the server ----------------------------------------------------------------------------


class ServerApp:
    """A Reverb server whose world the harness drives: random mutations, per-client objects."""

    def __init__(self, opts: Json) -> None:
        self.opts = opts
        self.rng = random.Random(opts.get("seed", 1))
        ReverbManager.REVERB_SIDE = ReverbSide.SERVER
        for cls in TYPES:
            ReverbManager.reverb_object_attribute(cls)
        self.ctx = ReverbManager.context
        self.serv = Server(
            host="127.0.0.1",
            port=0,
            tick_rate=float(opts.get("rate", 30.0)),
            ping_interval=float(opts.get("ping_interval", 5.0)),
            idle_timeout=float(opts.get("idle_timeout", 15.0)),
            max_send_buffer=int(opts.get("max_send_buffer", 8 << 20)),
        )
        self.pool: list[Box] = []  # the world objects the mutator may touch
        self.per_client: dict[int, list[int]] = {}
        self.assigned: list[list[Any]] = []  # [uid, type] of every spawn, in order
        self.mutating = False
        self.after_tick: list[Json] = []
        self.series: list[list[float]] = []
        self.mark: Json | None = None
        self.stamps: list[tuple[float, int]] = []  # (stamp, objects stamped) since the mark
        self.closed_bytes = [0, 0]

    # world changes
    def spawn(self, kind: str = "world", owner: int | None = None) -> Box:
        cls = self.rng.choice(TYPES) if kind == "world" else Box
        obj = cls(self.rng.randrange(1000), kind, belonging_membership=owner)
        obj.stamp = time.monotonic()
        self.assigned.append([obj.uid, type(obj).__name__])
        if kind == "world":
            self.pool.append(obj)
        return obj

    def despawn_random(self) -> None:
        i = self.rng.randrange(len(self.pool))
        self.pool[i], self.pool[-1] = self.pool[-1], self.pool[i]
        self.pool.pop().destroy()

    def mutate(self) -> None:
        mut = self.opts.get("mutate", {})
        k = min(int(mut.get("per_tick", 1)), len(self.pool))
        now = time.monotonic()
        for obj in self.rng.sample(self.pool, k) if k else ():
            obj.value = self.rng.randrange(1_000_000)
            obj.stamp = now
        if k and self.mark is not None:
            self.stamps.append((now, k))
        for key, action in (("spawn", self.spawn), ("despawn", self.despawn_random)):
            expected = float(mut.get(key, 0.0))
            times = int(expected) + (self.rng.random() < expected - int(expected))
            for _ in range(times):
                if key == "spawn" and len(self.pool) < int(mut.get("max_objects", 10**6)):
                    action()
                elif key == "despawn" and len(self.pool) > int(mut.get("min_objects", 0)):
                    action()

    # figures
    def bytes_total(self) -> tuple[int, int]:
        return self.serv.traffic()

    def sample(self) -> Json:
        sent, recv = self.bytes_total()
        return {
            "t": time.monotonic(),
            "tick": self.ctx.world.tick_count,
            "cpu_s": cpu_seconds(),
            "bytes_sent": sent,
            "bytes_received": recv,
            "rss_kb": proc_status_kb("VmRSS"),
            "hwm_kb": proc_status_kb("VmHWM"),
            "members": len(self.serv.members),
        }

    def state(self, detail: bool) -> Json:
        objects = self.ctx.world.objects
        out: Json = {
            "hash": table_hash(objects),
            "n_objects": len(objects),
            "members": self.serv.members,
            "stats": dict(self.serv.stats),
            "sample": self.sample(),
            "per_client": {str(k): v for k, v in self.per_client.items()},
            "owners": {str(uid): obj.belonging_membership for uid, obj in objects.items()},
        }
        if detail:
            out["table"] = canonical_table(objects)
            out["assigned"] = self.assigned
            out["executions"] = EXECUTIONS
            out["series"] = self.series
        return out

    def command(self, cmd: Json) -> bool:
        """Handle one command; False to stop."""
        op, rid = cmd.get("op"), cmd.get("rid")
        if op == "quit":
            return False
        if op == "mutate":
            self.mutating = bool(cmd.get("on", True))
            emit(rid=rid, ok=True)
        elif op == "spawn":
            uids = [self.spawn().uid for _ in range(int(cmd.get("n", 1)))]
            emit(rid=rid, uids=uids)
        elif op == "quiesce":  # stop mutating; answer once a tick has carried the last change
            self.mutating = False
            self.after_tick.append(cmd)
        elif op == "state":
            emit(rid=rid, **self.state(bool(cmd.get("detail", False))))
        elif op == "mark":  # start (or read) a measurement window
            now = self.sample()
            if cmd.get("start", True):
                self.mark = now
                self.stamps = []
                self.series = [[now["t"], now["tick"], now["bytes_sent"], now["cpu_s"]]]
            elif "until" in cmd and self.mark is not None:
                # objects stamped in [mark, until): each is one update every client must see
                until = float(cmd["until"])
                now["stamped"] = sum(k for t, k in self.stamps if t < until)
            emit(rid=rid, start=self.mark, now=now)
        else:
            emit(rid=rid, error=f"unknown op {op!r}")
        return True

    def run(self) -> None:
        per_client = int(self.opts.get("per_client", 0))

        @server_event_registry.on_event("client_connected")
        def joined(member: int) -> None:
            self.per_client[member] = [
                self.spawn("client", owner=member).uid for _ in range(per_client)
            ]
            emit(event="client_connected", member=member, t=time.monotonic())

        @server_event_registry.on_event("client_disconnected")
        def left(member: int, code: int, reason: str) -> None:
            for uid in self.per_client.pop(member, []):
                if uid in self.ctx.world.objects:
                    self.ctx.world.objects[uid].destroy()
            emit(
                event="client_disconnected",
                member=member,
                code=code,
                reason=reason,
                t=time.monotonic(),
            )

        for _ in range(int(self.opts.get("objects", 0))):
            self.spawn()
        commands = start_reader()
        self.serv.start_server()
        print(f"READY {self.serv.port}", flush=True)
        next_sample = 0.0
        try:
            while True:
                ReverbManager.server_sync()
                for cmd in self.after_tick:
                    emit(rid=cmd.get("rid"), **self.state(bool(cmd.get("detail", False))))
                self.after_tick = []
                for cmd in drain(commands):
                    if cmd is None or not self.command(cmd):
                        return
                if self.mutating:
                    self.mutate()
                now = time.monotonic()
                if self.mark is not None and now >= next_sample:
                    next_sample = now + 0.25
                    sent, _ = self.bytes_total()
                    self.series.append([now, self.ctx.world.tick_count, sent, cpu_seconds()])
        finally:
            self.serv.stop_server()


# -- the clients ---------------------------------------------------------------------------


class Call:
    __slots__ = ("client", "future", "method", "mine", "t0", "t1", "token", "uid")

    def __init__(self, client: int, token: str, method: str, uid: int, mine: bool) -> None:
        self.client = client
        self.token = token
        self.method = method
        self.uid = uid
        self.mine = mine
        self.t0 = time.monotonic()
        self.t1 = 0.0
        self.future: Future[Any] | None = None

    def done(self, _: Future[Any]) -> None:
        self.t1 = time.monotonic()  # runs on the I/O thread as the reply arrives

    def record(self) -> Json:
        out: Json = {
            "token": self.token,
            "method": self.method,
            "uid": self.uid,
            "mine": self.mine,
            "rtt_ms": (self.t1 - self.t0) * 1000.0,
        }
        fut = self.future
        if fut is None or not fut.done():
            out["pending"] = True
            return out
        exc = fut.exception()
        if exc is None:
            out["ok"] = True
            out["value"] = fut.result()
        else:
            out["ok"] = False
            out["code"] = getattr(exc, "code", type(exc).__name__)
            out["message"] = getattr(exc, "message", str(exc))
        return out


class OneClient:
    """One ``Client`` in its own ``ReverbContext``, with what the scenarios ask of it."""

    def __init__(self, index: int, opts: Json) -> None:
        self.index = index
        self.ctx = ReverbContext(ReverbSide.CLIENT)
        for cls in TYPES:
            self.ctx.register(cls)
        self.clt = Client(
            ip="127.0.0.1",
            port=int(opts["port"]),
            ping_interval=float(opts.get("ping_interval", 5.0)),
            idle_timeout=float(opts.get("idle_timeout", 15.0)),
            connect_timeout=float(opts.get("connect_timeout", 10.0)),
            context=self.ctx,
        )
        self.member: int | None = None
        self.closed: list[Any] | None = None
        self.spawned: list[list[Any]] = []  # [uid, type] of every replica ever built
        self.tick = 0
        self.dirty = True
        self._hash = ""
        ev = self.ctx.client_events
        ev.on_event("synced")(self._synced)
        ev.on_event("object_spawned")(self._spawned)
        ev.on_event("disconnected")(self._disconnected)

    def _synced(self, tick: int) -> None:
        self.tick = tick
        self.dirty = True

    def _spawned(self, obj: Any) -> None:
        self.spawned.append([obj.uid, type(obj).__name__])

    def _disconnected(self, code: int, reason: str) -> None:
        self.closed = [code, reason, time.monotonic()]

    def connect(self) -> None:
        self.clt.connect()
        self.member = self.clt.member

    @property
    def hash(self) -> str:
        if self.dirty:
            self._hash = table_hash(self.ctx.objects)
            self.dirty = False
        return self._hash

    @property
    def alive(self) -> bool:
        return self.closed is None

    def own_objects(self) -> list[Any]:
        return [o for o in self.ctx.objects.values() if o.is_owner()]

    def status(self, detail: bool) -> Json:
        objects = self.ctx.objects
        out: Json = {
            "index": self.index,
            "member": self.member,
            "closed": self.closed,
            "tick": self.tick,
            "n_objects": len(objects),
            "hash": self.hash,
            "owners": {
                str(uid): [o.belonging_membership, o.is_owner()] for uid, o in objects.items()
            },
        }
        if detail:
            out["table"] = canonical_table(objects)
            out["spawned"] = self.spawned
        return out


class ClientsApp:
    """Several clients in one process, driven by one loop (``client_sync`` on each)."""

    def __init__(self, opts: Json) -> None:
        self.opts = opts
        self.rng = random.Random(opts.get("seed", 1))
        self.clients = [OneClient(i, opts) for i in range(int(opts.get("count", 1)))]
        self.calls: list[Call] = []
        self.batch: Json | None = None  # a "calls" command waiting for its calls to finish
        self.converge: Json | None = None
        self.call_plan: CallPlan | None = None  # the load scenario's call stream
        self.stream_stop: Json | None = None
        self.fresh = StampWindow(seed=os.getpid())  # freshness: stamps in [start, until)
        self.rtt = Reservoir(20000, seed=os.getpid() + 1)
        self.errors: dict[str, int] = {}
        self.answered = 0
        self.seq = 0
        STAMP_HOOK[:] = [self._stamp]

    def _stamp(self, obj: Any, stamp: float) -> None:
        self.fresh.see(stamp, time.monotonic())

    def token(self, c: OneClient) -> str:
        self.seq += 1
        return f"{os.getpid()}.{c.index}.{self.seq}"

    def fire(self, c: OneClient, obj: Any, method: str) -> Call:
        call = Call(c.index, self.token(c), method, obj.uid, obj.is_owner())
        fut = obj.compute_server(getattr(obj, method), call.token)
        call.future = fut
        fut.add_done_callback(call.done)
        self.calls.append(call)
        return call

    def plan(self, cmd: Json) -> None:
        """Fire a batch of calls from every live client (see the rpc and ownership scenarios)."""
        k = int(cmd.get("k", 10))
        for c in self.clients:
            if not c.alive:
                continue
            objs = list(c.ctx.objects.values())
            own = c.own_objects()
            foreign = [o for o in objs if not o.is_owner()]
            for i in range(k):
                if cmd["plan"] == "rpc":
                    method = ("bump", "refuse", "wave")[i % 3]
                    pool = own if method != "wave" else objs
                else:  # ownership: owner-only calls on anything, waves on foreign objects
                    method = "bump" if i % 4 else "wave"
                    pool = objs if method == "bump" else foreign
                if pool:
                    self.fire(c, self.rng.choice(pool), method)
        self.batch = cmd

    def stream(self, now: float) -> None:
        """Send every call of the plan that is due; a late process sends them late, never
        fewer (the old stream skipped whatever was over 1 s overdue, uncounted)."""
        plan = self.call_plan
        if plan is None:
            return
        for i, c in enumerate(self.clients):
            if not c.alive:
                plan.drop(i)
                continue
            due = plan.due(i, now)
            if not due:
                continue
            own = c.own_objects()
            for _ in range(due):
                if own:  # else planned and never sent: the verdict counts it
                    self.fire(c, own[0], "bump")
                    plan.sent += 1

    def harvest(self) -> None:
        """Move finished stream calls into the RTT sample."""
        keep = []
        for call in self.calls:
            fut = call.future
            if fut is not None and fut.done() and call.t1:
                exc = fut.exception()
                if exc is None:
                    self.answered += 1
                    self.rtt.add(call.t1 - call.t0)
                else:
                    code = str(getattr(exc, "code", type(exc).__name__))
                    self.errors[code] = self.errors.get(code, 0) + 1
            else:
                keep.append(call)
        self.calls = keep

    def command(self, cmd: Json) -> bool:
        op, rid = cmd.get("op"), cmd.get("rid")
        if op == "quit":
            return False
        if op == "status":
            emit(rid=rid, clients=[c.status(bool(cmd.get("detail"))) for c in self.clients])
        elif op == "converge":
            cmd["deadline"] = time.monotonic() + float(cmd.get("timeout", 10.0))
            self.converge = cmd
        elif op == "calls":
            cmd["deadline"] = time.monotonic() + float(cmd.get("timeout", 10.0))
            self.calls = []
            self.plan(cmd)
        elif op == "stream":  # the load scenario's calls: a fixed plan over [start, until)
            if cmd.get("on", True):
                # load: a fixed window; churn, faults: from now until "stream off"
                start = float(cmd.get("start", time.monotonic()))
                until = float(cmd.get("until", math.inf))
                self.fresh.open(start, until)
                self.call_plan = CallPlan(
                    len(self.clients), float(cmd["rate"]), start, until, self.rng
                )
                emit(rid=rid, ok=True, planned=self.call_plan.planned)
            else:
                if self.call_plan is not None:
                    self.call_plan.stop(time.monotonic())
                cmd["deadline"] = time.monotonic() + float(cmd.get("timeout", 10.0))
                self.stream_stop = cmd
        elif op == "samples":
            plan = self.call_plan
            emit(
                rid=rid,
                kind="full",
                fresh_s=self.fresh.ages.values,
                fresh_count=self.fresh.count,
                rtt_s=self.rtt.values,
                rtt_count=self.rtt.count,
                errors=self.errors,
                planned=plan.planned if plan else 0,
                sent=plan.sent if plan else 0,
                answered=self.answered,
                unanswered=len(self.calls),
                late=plan.late if plan else 0,
                max_late_ms=round(plan.max_late_s * 1000.0, 3) if plan else 0.0,
            )
            if cmd.get("reset", False):
                self.fresh.reset()
                self.rtt.clear()
                self.errors = {}
                self.answered = 0
                self.call_plan = None
        else:
            emit(rid=rid, error=f"unknown op {op!r}")
        return True

    def check_waiters(self, now: float) -> None:
        conv = self.converge
        if conv is not None:
            live = [c for c in self.clients if c.alive]
            ok = all(c.hash == conv["hash"] for c in live)
            if ok or now >= conv["deadline"]:
                emit(
                    rid=conv.get("rid"),
                    converged=ok,
                    clients=[c.status(bool(conv.get("detail"))) for c in self.clients],
                )
                self.converge = None
        batch = self.batch
        if batch is not None:
            done = all(
                call.future is not None and call.future.done() and call.t1 for call in self.calls
            )
            if done or now >= batch["deadline"]:
                emit(
                    rid=batch.get("rid"),
                    complete=done,
                    members=[c.member for c in self.clients],
                    calls=[call.record() for call in self.calls],
                )
                self.batch = None
                self.calls = []
        stop = self.stream_stop
        if stop is not None:
            self.harvest()
            done = self.call_plan is None or now >= self.call_plan.until
            if (done and not self.calls) or now >= stop["deadline"]:
                emit(rid=stop.get("rid"), outstanding=len(self.calls))
                self.stream_stop = None

    def run(self) -> None:
        for c in self.clients:
            c.connect()
        emit(event="connected", members=[c.member for c in self.clients])
        commands = start_reader()
        print("READY 0", flush=True)
        try:
            while True:
                for i, c in enumerate(self.clients):
                    c.ctx.client_sync(timeout=0.002 if i == 0 else 0.0)
                    # commands between clients: an overloaded process still answers promptly
                    for cmd in drain(commands):
                        if cmd is None or not self.command(cmd):
                            return
                now = time.monotonic()
                if self.call_plan is not None:
                    self.stream(now)
                    self.harvest()
                self.check_waiters(now)
        finally:
            for c in self.clients:
                try:
                    c.clt.disconnect()
                except Exception:  # one failed disconnect must not keep the others open
                    logger.exception("client %d: disconnect failed", c.index)


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    role, opts = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    start_watchdog(float(opts.get("lifetime", 300.0)))
    if role == "server":
        breakage.apply(list(opts.get("break", [])))
        ServerApp(opts).run()
    elif role == "clients":
        ClientsApp(opts).run()
    elif role == "light":
        from harness.light import LightApp

        LightApp(opts).run()
    else:
        sys.stderr.write(f"unknown role {role!r}: expected server, clients or light\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
