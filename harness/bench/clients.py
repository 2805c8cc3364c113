"""A light client process: many connections on one asyncio loop.

``python -m harness.bench.clients '{"impl": "raw"|"reverb", "port": P, "full": F, "sinks": S,
"callers": C}'`` opens F full clients (decode and apply every sync, verify the final state),
S sinks (complete the handshake, then only drain bytes and answer pings: the "many clients"
row, where clients must not eat the cores the server is measured on) and C RPC callers (full
clients that also call ``echo`` back to back). Reverb clients are ``reverb.aio.AsyncClient``
connections, each with its own ``ReverbContext`` (docs/guide.md §8), all on one event loop.

Commands as in ``harness.bench.servers``: ``start`` / ``stop`` frame the measuring window
(process CPU, applied syncs, freshness samples, RPC round trips), ``verify`` waits (bounded)
until every full client's state has the server's digest, ``quit`` ends the process.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time
from typing import Any

from harness.bench.workload import digest, emit, stdin_commands

__all__ = ["main"]

HEADER = struct.Struct(">I")
SAMPLED = 8  # connections per process whose apply times are recorded (freshness)
Json = dict[str, Any]


class Window:
    """Shared by the connections of the process: whether we are in the measuring window."""

    def __init__(self) -> None:
        self.recording = False
        self.applied = 0
        self.rtts: list[float] = []
        self.calls = 0


class Framed(asyncio.Protocol):
    """4-byte big-endian length framing for the raw client and the sinks."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.closed = asyncio.get_running_loop().create_future()
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        buf = self.buf
        buf += data
        pos = 0
        while len(buf) - pos >= 4:
            (size,) = HEADER.unpack_from(buf, pos)
            if len(buf) - pos - 4 < size:
                break
            self.frame(buf, pos + 4, size)
            pos += 4 + size
        if pos:
            del buf[:pos]

    def frame(self, buf: bytearray, start: int, size: int) -> None:
        raise NotImplementedError

    def send(self, message: Json) -> None:
        body = json.dumps(message).encode()
        assert self.transport is not None
        self.transport.write(HEADER.pack(len(body)) + body)


class RawClient(Framed):
    """The raw baseline's client: ``json.loads`` of each frame, nothing else (but for the
    floor's deltas, put in place by id)."""

    def __init__(self, window: Window, sampled: bool) -> None:
        super().__init__()
        self.window = window
        self.samples: list[tuple[int, float]] | None = [] if sampled else None
        self.tick = 0
        self.objects: list[Json] = []
        self.where: dict[int, int] = {}  # object id -> its index in objects
        self.replies: dict[int, asyncio.Future[Any]] = {}
        self.next_id = 0

    def frame(self, buf: bytearray, start: int, size: int) -> None:
        msg = json.loads(buf[start : start + size])
        if "tick" in msg:
            self.tick = msg["tick"]
            if "changed" in msg:  # the floor's delta: just the objects that tick changed
                objects, where = self.objects, self.where
                for obj in msg["changed"]:
                    objects[where[obj["id"]]] = obj
            else:
                self.objects = msg["objects"]
                self.where = {obj["id"]: i for i, obj in enumerate(self.objects)}
            if self.window.recording:
                self.window.applied += 1
                if self.samples is not None:
                    self.samples.append((self.tick, time.monotonic()))
        else:
            future = self.replies.pop(msg["id"], None)
            if future is not None and not future.done():
                future.set_result(msg["result"])

    async def call(self, value: Any) -> Any:
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.replies[self.next_id] = future
        self.send({"id": self.next_id, "args": [value]})
        return await future

    def digest(self) -> str:
        return digest((o["id"], o["x"], o["y"], o["hp"]) for o in self.objects)


class Sink(Framed):
    """Holds a connection open as cheaply as possible: for Reverb, sends ``hello`` and answers
    ``ping``; frames too large to be a ping are counted, never decoded."""

    def __init__(self, reverb: bool) -> None:
        super().__init__()
        self.reverb = reverb
        self.frames = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.reverb:
            self.send({"type": "hello", "version": 1})

    def frame(self, buf: bytearray, start: int, size: int) -> None:
        self.frames += 1
        if self.reverb and size < 200:
            msg = json.loads(buf[start : start + size])
            if msg.get("type") == "ping":
                self.send({"type": "pong", "nonce": msg["nonce"]})


class ReverbConn:
    """One ``AsyncClient`` in its own ``ReverbContext``."""

    def __init__(self, thing: Any, port: int, window: Window, sampled: bool) -> None:
        from reverb import ReverbContext, ReverbSide
        from reverb.aio import AsyncClient

        self.window = window
        self.ctx = ReverbContext(ReverbSide.CLIENT)
        self.ctx.register(thing, "Thing")
        self.client = AsyncClient(port=port, context=self.ctx, connect_timeout=20.0)
        self.samples: list[tuple[int, float]] | None = [] if sampled else None
        self.tick = 0
        self.closed: list[Any] | None = None
        self.ctx.client_events.on_event("synced")(self._synced)
        self.ctx.client_events.on_event("disconnected")(self._disconnected)
        self.task: asyncio.Task[None] | None = None

    def _synced(self, tick: int) -> None:
        self.tick = tick
        if self.window.recording:
            self.window.applied += 1
            if self.samples is not None:
                self.samples.append((tick, time.monotonic()))

    def _disconnected(self, code: int, reason: str) -> None:
        self.closed = [code, reason]

    async def connect(self) -> None:
        await self.client.connect()
        self.task = asyncio.get_running_loop().create_task(self._apply())

    async def _apply(self) -> None:
        while self.closed is None:
            await self.client.client_sync(timeout=0.5)

    async def call(self, value: Any) -> Any:
        while not self.ctx.objects:
            await self.client.client_sync(timeout=0.1)
        obj = next(iter(self.ctx.objects.values()))
        return await obj.compute_server("echo", value)  # a CallFuture: the documented way

    def digest(self) -> str:
        return digest((o.uid, o.x, o.y, o.hp) for o in self.ctx.objects.values())

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.client.disconnect()


class ClientsProcess:
    def __init__(self, opts: Json) -> None:
        self.impl = str(opts["impl"])
        self.port = int(opts["port"])
        self.n_full = int(opts.get("full", 0))
        self.n_sinks = int(opts.get("sinks", 0))
        self.n_callers = int(opts.get("callers", 0))
        self.window = Window()
        self.full: list[Any] = []  # RawClient | ReverbConn
        self.sinks: list[Sink] = []
        self.callers: list[asyncio.Task[None]] = []
        self._start = (0.0, 0.0)
        self.calling = True  # callers finish their call in flight, then stop (never cancelled)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        total = self.n_full + self.n_callers
        if self.impl == "raw":
            for i in range(total):
                _, proto = await loop.create_connection(
                    lambda i=i: RawClient(self.window, i < SAMPLED), "127.0.0.1", self.port
                )
                self.full.append(proto)
        else:
            from harness.bench.servers import make_types

            thing = make_types()
            self.full = [
                ReverbConn(thing, self.port, self.window, i < SAMPLED) for i in range(total)
            ]
            for i in range(0, total, 32):  # connect in batches: the server's accept backlog
                await asyncio.gather(*(c.connect() for c in self.full[i : i + 32]))
        for _ in range(self.n_sinks):
            _, sink = await loop.create_connection(
                lambda: Sink(self.impl != "raw"), "127.0.0.1", self.port
            )
            self.sinks.append(sink)

    async def caller(self, conn: Any) -> None:
        value = 0
        while self.calling:
            value += 1
            t0 = time.monotonic()
            result = await conn.call(value)
            t1 = time.monotonic()
            if result != value:
                raise AssertionError(f"echo answered {result!r} to {value!r}")
            if self.window.recording:
                self.window.rtts.append(t1 - t0)
                self.window.calls += 1

    def command(self, cmd: Json) -> Json:
        op = cmd.get("op")
        w = self.window
        if op == "start":
            w.applied, w.rtts, w.calls = 0, [], 0
            for c in self.full:
                if c.samples is not None:
                    c.samples.clear()
            self._start = (time.process_time(), time.monotonic())
            w.recording = True
            if self.n_callers and not self.callers:
                loop = asyncio.get_running_loop()
                self.callers = [loop.create_task(self.caller(c)) for c in self.full[self.n_full :]]
            return {"ok": True}
        if op == "stop":
            w.recording = False
            cpu0, wall0 = self._start
            self.calling = False
            return {
                "cpu_s": time.process_time() - cpu0,
                "wall_s": time.monotonic() - wall0,
                "applied": w.applied,
                "connections": len(self.full) + len(self.sinks),
                "samples": [c.samples for c in self.full if c.samples is not None],
                "rtts": w.rtts,
                "calls": w.calls,
                "sink_bytes": sum(s.received for s in self.sinks),
                "closed": self.closed_count(),
            }
        return {"ok": True}

    def closed_count(self) -> int:
        n = sum(1 for s in self.sinks if s.closed.done())
        if self.impl == "raw":
            return n + sum(1 for c in self.full if c.closed.done())
        return n + sum(1 for c in self.full if c.closed is not None)

    async def verify(self, expected: str, timeout: float) -> Json:
        """Wait until every full client holds the server's final state (bounded)."""
        deadline = time.monotonic() + timeout
        last: dict[int, int] = {}
        good: set[int] = set()
        while True:
            for i, c in enumerate(self.full):
                if i not in good and last.get(i) != c.tick:
                    last[i] = c.tick
                    if c.digest() == expected:
                        good.add(i)
            if len(good) == len(self.full) or time.monotonic() > deadline:
                ticks = [c.tick for c in self.full]
                return {
                    "verified": len(good),
                    "full": len(self.full),
                    "min_tick": min(ticks, default=0),
                }
            await asyncio.sleep(0.05)  # polling the replicas' state, deadline-bounded

    async def run(self, commands: asyncio.Queue[Any]) -> None:
        await self.open()
        print(f"READY {len(self.full) + len(self.sinks)}", flush=True)
        while True:
            cmd = await commands.get()
            if cmd is None or cmd.get("op") == "quit":
                break
            if cmd.get("op") == "verify":
                if self.callers:  # bounded: each caller has at most one call in flight
                    await asyncio.wait_for(asyncio.gather(*self.callers), 30.0)
                reply = await self.verify(str(cmd["digest"]), float(cmd.get("timeout", 10.0)))
            else:
                reply = self.command(cmd)
            emit(rid=cmd.get("rid"), **reply)
        for task in self.callers:
            task.cancel()
        for sink in self.sinks:
            if sink.transport is not None:
                sink.transport.abort()
        if self.impl == "raw":
            for c in self.full:
                if c.transport is not None:
                    c.transport.abort()
        else:
            await asyncio.wait_for(
                asyncio.gather(*(c.close() for c in self.full), return_exceptions=True), 5.0
            )


async def amain(opts: Json) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[Any] = asyncio.Queue()
    stdin_commands(lambda cmd: loop.call_soon_threadsafe(commands.put_nowait, cmd))
    await ClientsProcess(opts).run(commands)


def main(argv: list[str]) -> int:
    asyncio.run(amain(json.loads(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
