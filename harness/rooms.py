"""Rooms figures (issue 12): many small rooms on one server, with light client processes.

    python -m harness rooms [--rooms 200 --clients 4 --objects 20 --rate 30 --seconds 10
                             --churn 0.1 --processes 4 --slow-ms 0 --slow-rooms 1 --json FILE]

One server process (threaded ``Server``) defines the room type ``"bench"`` (``max_clients`` =
--clients, tick rate --rate, --objects ``Dot`` objects spawned at creation, a fraction --churn
of them moved every tick). Light client processes (raw sockets, stdlib only, a few hundred
connections each) ask for the feature ``"rooms"`` and send their ``join_or_create("bench")``
all at once — the join burst, timed per connection from request to ``room_joined`` — which
fills --rooms rooms of --clients each; then they read (and count) their rooms' syncs for
--seconds while the server measures its CPU time and every room's ticks. Also measured in
this process: memory per empty room (tracemalloc, 1000 rooms hosted by a matchmaker).

Figures (JSON with --json): join latency p50/p99 (ms), server CPU (% of one core and µs per
room tick), the tick rate each room held (min / median), syncs received per client per
second, memory per empty room (KiB).

A slow room (--slow-ms N, issue 12: "a slow room does not stall others beyond its own
tick"): the first --slow-rooms rooms created burn N ms of CPU in every ``on_tick`` (a busy
loop on ``time.perf_counter``, not a sleep). The scenario then runs twice, without and with
the burn, and reports for the slow rooms and for the others apart (``ticks.slow`` /
``ticks.others`` in each run): the rate held (min / median), the interval between a room's
consecutive tick starts (p50 / p99 / max over all the group's ticks, stamped in ``on_tick``)
and the lateness of a tick's start after its due time (the scheduler's per-room p50 / p99 over
the last 256 ticks, their median across the group's rooms, and the worst ``late_max``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import time
import tracemalloc
from itertools import pairwise
from pathlib import Path
from typing import Any

HEADER = struct.Struct(">I")
ROOT = Path(__file__).resolve().parents[1]


# -- the server process ------------------------------------------------------------------------


def serve(options: dict[str, Any]) -> None:
    from reverb import ReverbContext, ReverbObject, ReverbSide, Server
    from reverb.rooms import Room

    class Dot(ReverbObject):
        def __init__(self, x=0.0, y=0.0, uid=None, add_on_init=True, belonging_membership=None):
            self.x = x
            self.y = y
            super().__init__(
                x, y, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
            )

    churn = float(options["churn"])
    rng = random.Random(1)
    slow_s = float(options.get("slow_ms", 0.0)) / 1000.0
    slow_rooms = int(options.get("slow_rooms", 0))
    slow_ids: set[str] = set()  # the first slow_rooms rooms created (burning or not)
    stamps: dict[str, list[float]] = {}  # room id -> its tick starts since "mark"
    stamping = [False]
    burnt = [0.0, 0.0]  # the slow rooms' burns since "mark": thread CPU seconds, wall seconds

    class Bench(Room):
        object_types = (Dot,)
        tick_rate = float(options["rate"])
        max_clients = int(options["clients"])

        def on_create(self, opts: dict[str, Any]) -> None:
            self.dots = [self.spawn(Dot, float(i), 0.0) for i in range(int(options["objects"]))]
            self.slow = len(slow_ids) < slow_rooms
            if self.slow:
                slow_ids.add(self.room_id)

        def on_tick(self, now: float) -> None:
            if stamping[0]:
                stamps.setdefault(self.room_id, []).append(time.monotonic())
            for dot in rng.sample(self.dots, int(len(self.dots) * churn)):
                dot.x += 1.0
            if self.slow and slow_s > 0:  # a real slow game tick: CPU, not a sleep
                cpu, start = time.thread_time(), time.perf_counter()
                while (wall := time.perf_counter() - start) < slow_s:
                    pass
                if stamping[0]:
                    burnt[0] += time.thread_time() - cpu
                    burnt[1] += wall

    ctx = ReverbContext(ReverbSide.SERVER)
    serv = Server(
        port=0, context=ctx, max_connections=8192, max_connections_per_ip=8192, tick_rate=10.0
    )
    serv.define_room("bench", Bench)
    serv.start_server()
    print(f"READY {serv.port}", flush=True)
    marks: dict[str, Any] = {}
    lines: list[str] = []
    import threading

    def read() -> None:
        for line in sys.stdin:
            lines.append(line.strip())
        lines.append("quit")

    threading.Thread(target=read, daemon=True).start()
    while True:
        ctx.server_sync()
        while lines:
            cmd = lines.pop(0)
            mm = serv.matchmaker
            if cmd == "mark":
                mm.scheduler.reset_stats()
                stamps.clear()
                stamping[0] = True
                burnt[:] = [0.0, 0.0]
                marks = {"cpu": time.process_time(), "wall": time.monotonic()}
                print(json.dumps({"event": "marked", "rooms": len(mm.rooms) - 1}), flush=True)
            elif cmd == "stats":
                cpu = time.process_time() - marks["cpu"]
                wall = time.monotonic() - marks["wall"]
                stats = mm.scheduler.stats()
                ticks = {s.key: s.ticks for s in stats}
                groups = {
                    "slow": _group([s for s in stats if s.key in slow_ids], stamps, wall),
                    "others": _group([s for s in stats if s.key not in slow_ids], stamps, wall),
                }
                print(
                    json.dumps(
                        {
                            "event": "stats",
                            "cpu": cpu,
                            "wall": wall,
                            "rooms": len(stats),
                            "clients": sum(len(r.clients) for r in mm.rooms.values()),
                            "rates": sorted(t / wall for t in ticks.values()),
                            "room_ticks": sum(ticks.values()),
                            "tick_mean": statistics.fmean(s.mean for s in stats) if stats else 0,
                            "tick_p99": max((s.p99 for s in stats), default=0.0),
                            "overruns": sum(s.overruns for s in stats),
                            "restarts": sum(s.restarts for s in stats),
                            "groups": groups,
                            "burn_on_cpu": burnt[0] / burnt[1] if burnt[1] else None,
                        }
                    ),
                    flush=True,
                )
            elif cmd == "quit":
                serv.stop_server()
                return


def _ms(seconds: float) -> float:
    return round(1000 * seconds, 2)


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _group(stats: list[Any], stamps: dict[str, list[float]], wall: float) -> dict[str, Any]:
    """One group of rooms' ticks since "mark" (``stats``: their scheduler ``TickStats``)."""
    rates = sorted(s.ticks / wall for s in stats)
    intervals = sorted(b - a for s in stats for a, b in pairwise(stamps.get(s.key, [])))
    return {
        "rooms": len(stats),
        "rate_held_hz": {
            "min": round(rates[0], 2) if rates else 0.0,
            "median": round(statistics.median(rates), 2) if rates else 0.0,
        },
        "tick_interval_ms": {
            "p50": _ms(_pct(intervals, 0.5)),
            "p99": _ms(_pct(intervals, 0.99)),
            "max": _ms(intervals[-1] if intervals else 0.0),
        },
        "tick_late_ms": {
            "p50": _ms(statistics.median(s.late_p50 for s in stats) if stats else 0.0),
            "p99": _ms(statistics.median(s.late_p99 for s in stats) if stats else 0.0),
            "max": _ms(max((s.late_max for s in stats), default=0.0)),
        },
        "tick_duration_ms": {
            "mean": _ms(statistics.fmean(s.mean for s in stats) if stats else 0.0),
            "p99": _ms(statistics.median(s.p99 for s in stats) if stats else 0.0),
            "max": _ms(max((s.max for s in stats), default=0.0)),
        },
        "overruns": sum(s.overruns for s in stats),
    }


# -- the light client process ------------------------------------------------------------------


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


def clients(options: dict[str, Any]) -> None:
    """``count`` connections: handshake each, then every join at once, then read syncs."""
    port, count = int(options["port"]), int(options["count"])
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(frame({"type": "hello", "version": 1, "features": ["rooms"]}))
        socks.append(sock)
    bufs = {s: bytearray() for s in socks}
    for sock in socks:  # the welcomes
        _read_frames(sock, bufs[sock], 1)
    print("READY 0", flush=True)
    sys.stdin.readline()  # "go": every process sends its burst together
    sel = selectors.DefaultSelector()
    sent: dict[socket.socket, float] = {}
    joined: dict[socket.socket, float] = {}
    syncs = 0
    for sock in socks:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    for sock in socks:
        sent[sock] = time.perf_counter()
        sock.sendall(
            frame({"type": "room_join", "req": 1, "mode": "join_or_create", "name": "bench"})
        )
    end = None
    measuring = False
    while True:
        if end is None and len(joined) == count:
            print(
                json.dumps({"event": "joined", "latencies": [joined[s] - sent[s] for s in socks]}),
                flush=True,
            )
            cmd = sys.stdin.readline().strip()  # "measure SECONDS"
            end = time.monotonic() + float(cmd.split()[1])
            measuring = True
            syncs = 0
        if end is not None and time.monotonic() >= end:
            break
        for key, _ in sel.select(0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(1 << 18)
            except BlockingIOError:
                continue
            if not data:
                raise SystemExit("the server closed a connection")
            buf = bufs[sock]
            buf += data
            while len(buf) >= 4:
                (n,) = HEADER.unpack_from(buf)
                if len(buf) < 4 + n:
                    break
                body = bytes(buf[4 : 4 + n])
                del buf[: 4 + n]
                if body.startswith(b'{"type":"sync"'):
                    if measuring and b'"final":true' in body[:120]:
                        syncs += 1
                elif body.startswith(b'{"type":"room_joined"'):
                    joined[sock] = time.perf_counter()
                elif body.startswith(b'{"type":"ping"'):
                    nonce = json.loads(body)["nonce"]
                    sock.setblocking(True)
                    sock.sendall(frame({"type": "pong", "nonce": nonce}))
                    sock.setblocking(False)
                elif body.startswith(b'{"type":"room_refused"') or body.startswith(
                    b'{"type":"close"'
                ):
                    raise SystemExit(f"refused: {body[:200]!r}")
    print(json.dumps({"event": "synced", "syncs": syncs}), flush=True)
    sys.stdin.readline()
    for sock in socks:
        sock.close()


def _read_frames(sock: socket.socket, buf: bytearray, n: int) -> None:
    got = 0
    while got < n:
        while len(buf) < 4 or len(buf) < 4 + HEADER.unpack_from(buf)[0]:
            data = sock.recv(65536)
            if not data:
                raise SystemExit("closed during the handshake")
            buf += data
        (size,) = HEADER.unpack_from(buf)
        del buf[: 4 + size]
        got += 1


# -- memory per empty room (in this process) ----------------------------------------------------


def empty_room_memory(n: int = 1000) -> float:
    from reverb import ReverbContext, ReverbSide
    from reverb.rooms import Matchmaker, Room

    class Empty(Room):
        auto_dispose = False

    mm = Matchmaker(time.monotonic)
    ReverbContext(ReverbSide.SERVER)  # warm the imports and caches
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        mm.host(Empty(f"room{i}", "empty", created=i), now=time.monotonic())
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / n / 1024


# -- the slow room on the scheduler alone (in this process) ------------------------------------


def scheduler_only(
    rooms: int, rate: float, slow_rooms: int, slow_ms: float, cost_us: float, seconds: float
) -> dict[str, Any]:
    """``rooms`` rooms on a bare ``TickScheduler`` (no sockets, no I/O thread, no syncs), each
    tick burning ``cost_us`` (the scenario's measured mean), the first ``slow_rooms`` burning
    ``slow_ms`` more; phases spread over one period. What the scheduling alone does."""
    from reverb.rooms import TickScheduler

    sched = TickScheduler(time.monotonic)
    stamps: dict[str, list[float]] = {}

    def ticker(key: str, burn: float) -> Any:
        def tick(now: float) -> None:
            stamps.setdefault(key, []).append(now)
            start = time.perf_counter()
            while time.perf_counter() - start < burn:
                pass

        return tick

    start = time.monotonic()
    slow_ids = {f"r{i}" for i in range(min(slow_rooms, rooms))}
    for i in range(rooms):
        key = f"r{i}"
        burn = cost_us / 1e6 + (slow_ms / 1000.0 if key in slow_ids else 0.0)
        sched.add(key, rate, ticker(key, burn), start + i / rate / rooms)
    mark = start + 1.0  # a second to settle, then the window
    end = mark + seconds
    marked = False
    while (now := time.monotonic()) < end:
        if not marked and now >= mark:
            sched.reset_stats()
            stamps.clear()
            marked = True
        wait = sched.run_due(now)
        if wait > 0:
            time.sleep(min(wait, end - now, 0.05))
    wall = time.monotonic() - mark
    stats = sched.stats()
    return {
        "slow": _group([x for x in stats if x.key in slow_ids], stamps, wall),
        "others": _group([x for x in stats if x.key not in slow_ids], stamps, wall),
    }


# -- the driver --------------------------------------------------------------------------------


def _proc(*args: str) -> subprocess.Popen[str]:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "harness.rooms", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _line(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    import select

    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"process {proc.args} ended")
            return line
    raise RuntimeError(f"no output from {proc.args} within {timeout} s")


def _tell(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(text + "\n")
    proc.stdin.flush()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The scenario once; with --slow-ms, twice (without, then with the slow rooms)."""
    result = run_once(args, 0.0)
    if args.slow_ms > 0:
        slowed = run_once(args, args.slow_ms)
        result["slow_room"] = {
            "slow_ms": args.slow_ms,
            "slow_rooms": min(args.slow_rooms, result["rooms"]),
            "without": result["ticks"],
            "with": slowed["ticks"],
            "with_server_cpu_percent_of_core": slowed["server_cpu_percent_of_core"],
            "with_load_average_1min": slowed["load_average_1min"],
            # the share of the burns' wall time the server's game thread was on a CPU: below
            # 1, the slow tick was stretched by the OS (a busy box) or the I/O thread (GIL)
            "burn_on_cpu": slowed["burn_on_cpu"],
        }
        # the same rooms on the scheduler alone: what the scheduling does, without the I/O
        # thread, the GIL hand-offs, the syncs and the client processes
        cost, window = result["room_tick_mean_us"], min(args.seconds, 5.0)
        result["slow_room"]["scheduler_only"] = {
            "tick_cost_us": cost,
            "without": scheduler_only(args.rooms, args.rate, args.slow_rooms, 0, cost, window),
            "with": scheduler_only(
                args.rooms, args.rate, args.slow_rooms, args.slow_ms, cost, window
            ),
        }
    result["empty_room_kib"] = round(empty_room_memory(), 2)
    return result


def run_once(args: argparse.Namespace, slow_ms: float) -> dict[str, Any]:
    total = args.rooms * args.clients
    options = {
        "rate": args.rate,
        "clients": args.clients,
        "objects": args.objects,
        "churn": args.churn,
        "slow_ms": slow_ms,
        "slow_rooms": args.slow_rooms if args.slow_ms > 0 else 0,
    }
    server = _proc("serve", json.dumps(options))
    procs: list[subprocess.Popen[str]] = []
    try:
        port = int(_line(server).split()[1])
        per = -(-total // args.processes)
        counts = [min(per, total - i * per) for i in range(args.processes) if total - i * per > 0]
        procs = [_proc("clients", json.dumps({"port": port, "count": c})) for c in counts]
        for proc in procs:
            assert _line(proc).startswith("READY")
        for proc in procs:
            _tell(proc, "go")
        latencies = []
        for proc in procs:
            latencies += json.loads(_line(proc, 120))["latencies"]
        _tell(server, "mark")
        marked = json.loads(_line(server))
        for proc in procs:
            _tell(proc, f"measure {args.seconds}")
        syncs = sum(json.loads(_line(proc, args.seconds + 60))["syncs"] for proc in procs)
        _tell(server, "stats")
        stats = json.loads(_line(server))
        latencies.sort()
        rates = stats["rates"]
        return {
            "scenario": "rooms",
            "note": "2-core VM shared with other jobs: reduced sizes, figures are indicative",
            "rooms": marked["rooms"],
            "clients_per_room": args.clients,
            "objects_per_room": args.objects,
            "rate_hz": args.rate,
            "churn": args.churn,
            "seconds": round(stats["wall"], 2),
            "join_burst": total,
            "join_latency_ms": {
                "p50": round(1000 * latencies[len(latencies) // 2], 2),
                "p99": round(
                    1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2
                ),
                "max": round(1000 * latencies[-1], 2),
            },
            "server_cpu_percent_of_core": round(100 * stats["cpu"] / stats["wall"], 1),
            "server_cpu_us_per_room_tick": round(
                1e6 * stats["cpu"] / max(1, stats["room_ticks"]), 1
            ),
            "room_tick_mean_us": round(1e6 * stats["tick_mean"], 1),
            "room_tick_p99_us": round(1e6 * stats["tick_p99"], 1),
            "rate_held_hz": {
                "min": round(rates[0], 2) if rates else 0.0,
                "median": round(statistics.median(rates), 2) if rates else 0.0,
            },
            "overruns": stats["overruns"],
            "schedule_restarts": stats["restarts"],
            "load_average_1min": round(os.getloadavg()[0], 2),
            "syncs_per_client_per_s": round(syncs / total / stats["wall"], 2),
            "ticks": stats["groups"],
            "burn_on_cpu": stats["burn_on_cpu"],
        }
    finally:
        for proc in [*procs, server]:
            try:
                _tell(proc, "quit")
            except (BrokenPipeError, OSError):
                pass
        for proc in [*procs, server]:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def summary(result: dict[str, Any]) -> str:
    """The slow-room comparison as a few lines of text."""
    sr = result["slow_room"]
    lines = [
        f"{result['rooms']} rooms at {result['rate_hz']:g} Hz, {sr['slow_rooms']} of them "
        f"burning {sr['slow_ms']:g} ms per tick (load average {sr['with_load_average_1min']}, "
        f"game thread on a CPU {100 * (sr['burn_on_cpu'] or 0):.0f} % of the burns):",
        f"{'':26} {'rate min/med Hz':>16} {'interval p50/p99/max ms':>24} "
        f"{'late p50/p99/max ms':>22}",
    ]
    for where, figures in (("server", sr), ("sched only", sr["scheduler_only"])):
        for run_name in ("without", "with"):
            for group in ("slow", "others"):
                g = figures[run_name][group]
                r, i, late = g["rate_held_hz"], g["tick_interval_ms"], g["tick_late_ms"]
                label = f"{where}, {run_name}, {'slow' if group == 'slow' else 'other'}"
                lines.append(
                    f"{label:26} {r['min']:>7.1f}/{r['median']:<8.1f} "
                    f"{i['p50']:>8.1f}/{i['p99']:.1f}/{i['max']:<8.1f} "
                    f"{late['p50']:>8.1f}/{late['p99']:.1f}/{late['max']:.1f}"
                )
    for where, figures in (("server", sr), ("scheduler only", sr["scheduler_only"])):
        d = figures["with"]["slow"]["tick_duration_ms"]
        lines.append(
            f"the slow rooms' own tick ({where}): mean {d['mean']:.1f}, p99 {d['p99']:.1f}, "
            f"max {d['max']:.1f} ms"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m harness rooms", description=__doc__)
    p.add_argument("--rooms", type=int, default=200)
    p.add_argument("--clients", type=int, default=4, help="clients per room")
    p.add_argument("--objects", type=int, default=20, help="objects per room")
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--churn", type=float, default=0.1, help="fraction of objects moved per tick")
    p.add_argument("--processes", type=int, default=4, help="light client processes")
    p.add_argument(
        "--slow-ms", type=float, default=0.0, help="CPU burnt per tick by the slow rooms"
    )
    p.add_argument("--slow-rooms", type=int, default=1, help="rooms that burn --slow-ms")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    if "slow_room" in result:
        print(summary(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(json.loads(sys.argv[2]))
    elif sys.argv[1] == "clients":
        clients(json.loads(sys.argv[2]))
    else:
        sys.exit(main(sys.argv[1:]))
