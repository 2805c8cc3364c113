"""What every benchmark server reports, and the Reverb server (threaded or asyncio).

The Reverb server uses the library's normal API only: ``ReverbContext`` with one registered
``ReverbObject`` type, N objects built in the context, fields mutated by plain attribute
assignment in the game loop, and ``server_sync()`` (``await server.server_sync()`` for
asyncio) once per loop. The one piece of instrumentation wraps ``ReverbContext.tick`` on the
instance to time-stamp each tick (for freshness).

Commands (JSON lines on stdin; each answered by a JSON line with the same ``rid``):
``start`` opens the measuring window, ``stop`` closes it and answers the figures, ``final``
stops the mutations and answers the digest of the final state, ``quit`` ends the process.
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import queue
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from harness.bench.workload import (
    RATE,
    changed_indexes,
    digest,
    emit,
    field_values,
    initial_values,
    stdin_commands,
)

__all__ = ["Measure", "main"]

Json = dict[str, Any]


class Measure:
    """The measuring window of a server: ticks, process CPU (every thread), bytes, stamps."""

    def __init__(self, bytes_fn: Callable[[], int] | None = None, profile: str = "") -> None:
        self.bytes_sent = 0
        self._bytes_fn = bytes_fn
        self.ticks = 0
        self.recording = False
        self.stamps: dict[int, float] = {}
        self._start: tuple[float, float, int, int] = (0.0, 0.0, 0, 0)
        self._profile_path = profile
        self._profiler: cProfile.Profile | None = None

    def sent(self) -> int:
        return self._bytes_fn() if self._bytes_fn is not None else self.bytes_sent

    def tick(self, tick: int, now: float) -> None:
        self.ticks += 1
        self.stamps[tick] = now  # every tick: a client may apply a pre-window tick in-window

    def command(self, cmd: Json, clients: int) -> Json:
        op = cmd.get("op")
        if op == "start":
            self.recording = True
            self._start = (time.process_time(), time.monotonic(), self.ticks, self.sent())
            if self._profile_path:
                self._profiler = cProfile.Profile()
                self._profiler.enable()
            return {"ok": True}
        if op == "stop":
            cpu = time.process_time()
            wall = time.monotonic()
            if self._profiler is not None:
                self._profiler.disable()
                self._dump_profile(self._profiler)
                self._profiler = None
            self.recording = False
            cpu0, wall0, ticks0, bytes0 = self._start
            return {
                "cpu_s": cpu - cpu0,
                "wall_s": wall - wall0,
                "ticks": self.ticks - ticks0,
                "bytes": self.sent() - bytes0,
                "clients": clients,
                "stamps": self.stamps,
            }
        return {"ok": True, "clients": clients}

    def digest(self, rows: Iterable[tuple[Any, ...]]) -> str:
        return digest(rows)

    def _dump_profile(self, profiler: cProfile.Profile) -> None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs()
        out.write("== by cumulative time ==\n")
        stats.sort_stats("cumulative").print_stats(40)
        out.write("\n== by own time (tottime) ==\n")
        stats.sort_stats("tottime").print_stats(40)
        with open(self._profile_path, "w", encoding="utf-8") as f:
            f.write(out.getvalue())


def make_types() -> Any:
    """The replicated type, defined on import of ``reverb`` (both servers and clients)."""
    from reverb import ReverbObject, expose

    class Thing(ReverbObject):
        def __init__(
            self,
            x: float = 0.0,
            y: float = 0.0,
            hp: int = 0,
            uid: int | None = None,
            add_on_init: bool = True,
            belonging_membership: int | None = None,
        ) -> None:
            self.x = x
            self.y = y
            self.hp = hp
            super().__init__(
                uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
            )

        @expose(anyone=True)
        def echo(self, value: Any) -> Any:
            return value

    return Thing


SERVER_LIMITS: Json = {
    "max_connections": 4096,
    "max_connections_per_ip": 4096,
    "max_messages_per_second": 1e9,
    "max_calls_per_second": 1e9,
    "max_pending_calls": 4096,
}


class ReverbBench:
    """The game side of the Reverb server: the world, its mutation, its commands."""

    def __init__(self, opts: Json) -> None:
        from reverb import ReverbContext, ReverbSide

        self.n = int(opts.get("n", 1000))
        self.churn = float(opts.get("churn", 1.0))
        self.ctx = ReverbContext(ReverbSide.SERVER)
        self.thing = make_types()
        self.ctx.register(self.thing, "Thing")
        self.tick = 0
        self.mutating = True
        self.objects: list[Any] = []
        self.measure = Measure(profile=str(opts.get("profile", "")))
        self.commands: queue.Queue[Any] = queue.Queue()
        original = self.ctx.tick

        def stamped_tick(now: float) -> None:
            self.measure.tick(self.ctx.world.tick_count + 1, time.monotonic())
            original(now)

        self.ctx.tick = stamped_tick  # type: ignore[method-assign]

    def populate(self) -> None:
        with self.ctx.activate():
            self.objects = [self.thing(*initial_values(i)) for i in range(self.n)]

    def mutate(self) -> None:
        """This loop's changes, by plain attribute assignment (the library's normal API)."""
        if not self.mutating:
            return
        self.tick += 1
        objects = self.objects
        for i in changed_indexes(len(objects), self.churn, self.tick):
            x, y, hp = field_values(i, self.tick)
            obj = objects[i]
            obj.x = x
            obj.y = y
            obj.hp = hp

    def rows(self) -> list[tuple[Any, ...]]:
        return [(o.uid, o.x, o.y, o.hp) for o in self.objects]

    def handle(self, clients: int) -> bool:
        while True:
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                return True
            if cmd is None or cmd.get("op") == "quit":
                return False
            reply = self.measure.command(cmd, clients=clients)
            if cmd["op"] == "final":
                self.mutating = False
                reply["digest"] = self.measure.digest(self.rows())
                reply["tick"] = self.ctx.world.tick_count
            emit(rid=cmd.get("rid"), **reply)


def run_threaded(opts: Json) -> None:
    from reverb import Server

    bench = ReverbBench(opts)
    serv = Server(port=0, context=bench.ctx, **SERVER_LIMITS)
    bench.measure._bytes_fn = lambda: serv.traffic()[0]
    serv.start_server()
    try:
        bench.populate()
        stdin_commands(bench.commands.put)
        print(f"READY {serv.port}", flush=True)
        while bench.handle(len(serv.members)):
            bench.mutate()
            bench.ctx.server_sync()
    finally:
        serv.stop_server(timeout=1.0)


async def run_asyncio(opts: Json) -> None:

    from reverb.aio import AsyncServer

    bench = ReverbBench(opts)
    serv = AsyncServer(port=0, context=bench.ctx, **SERVER_LIMITS)
    bench.measure._bytes_fn = lambda: serv.hub.traffic()[0]
    await serv.start_server()
    try:
        bench.populate()
        stdin_commands(bench.commands.put)
        print(f"READY {serv.port}", flush=True)
        while bench.handle(len(serv.hub.members)):
            bench.mutate()
            await serv.server_sync()  # yields to the event loop at least once, even when late
    finally:
        await serv.stop_server(timeout=1.0)


def main(argv: list[str]) -> int:
    opts: Json = json.loads(argv[1]) if len(argv) > 1 else {}
    assert RATE == 30.0  # the library's default tick rate is the workload's
    if argv[0] == "threaded":
        run_threaded(opts)
    else:
        import asyncio

        asyncio.run(run_asyncio(opts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
