"""Measures the server's CPU per tick with no monitor, with the monitor and nobody watching,
and with one live watcher (not a test: a measurement, docs/monitor.md "Overhead").

``python -m tests.monitor.overhead [--objects 500] [--clients 8] [--seconds 10] [--rounds 5]``
runs a real server process per mode (every object changes every tick, 30 Hz) and real client
processes; each mode's server reports process CPU seconds and game-thread CPU seconds per
tick. Rounds interleave the modes (off, idle, watched, off, ...) so that a change of load on
the machine hits every mode alike; the last lines are each mode's median and range.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import resource
import statistics
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

from tests.conftest import ROOT
from tests.jsonproc import Lines, child_env, stop
from tests.monitor.conftest import Proc

MODES = ("off", "idle", "watched")


def run_server(mode: str, objects: int, seconds: float, warmup: float) -> None:
    from reverb import ReverbManager, ReverbSide, Server
    from reverb.monitor import Monitor
    from tests.monitor.app import Crate

    ReverbManager.REVERB_SIDE = ReverbSide.SERVER
    serv = Server(port=0, tick_rate=30)
    serv.start_server()
    monitor = Monitor(serv).start() if mode != "off" else None
    crates = [Crate(i) for i in range(objects)]
    print(f"READY {serv.port} {monitor.url if monitor else '-'}", flush=True)
    sys.stdin.readline()  # the clients are connected: measure from now
    started = time.monotonic()
    measuring = False
    ticks0 = cpu0 = game0 = 0.0
    game_cpu = 0.0
    while True:
        t = time.monotonic() - started
        for crate in crates:
            crate.x = round(math.sin(t * 3 + crate.n), 3)
        before = time.thread_time()
        ReverbManager.server_sync()
        game_cpu += time.thread_time() - before
        if not measuring and t >= warmup:
            measuring = True
            ru = resource.getrusage(resource.RUSAGE_SELF)
            cpu0, game0 = ru.ru_utime + ru.ru_stime, game_cpu
            ticks0 = ReverbManager.context.world.tick_count
            t0 = time.monotonic()
        if measuring and time.monotonic() - t0 >= seconds:
            break
    ru = resource.getrusage(resource.RUSAGE_SELF)
    ticks = ReverbManager.context.world.tick_count - ticks0
    wall = time.monotonic() - t0
    print(
        json.dumps(
            {
                "mode": mode,
                "ticks": ticks,
                "tick_rate": ticks / wall,
                "process_cpu_ms_per_tick": 1000 * (ru.ru_utime + ru.ru_stime - cpu0) / ticks,
                "game_thread_cpu_ms_per_tick": 1000 * (game_cpu - game0) / ticks,
                "watchers": monitor.observer.watchers if monitor else 0,
                "max_rss_mib": round(ru.ru_maxrss / 1024, 1),
            }
        ),
        flush=True,
    )
    if monitor:
        monitor.stop()
    serv.stop_server()


def watch(url: str, stopping: threading.Event, topic: str) -> None:
    """One SSE watcher: reads the topic's stream until told to stop."""
    parts = urlsplit(url)
    token = parts.query.split("token=", 1)[1]
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    conn.request("GET", f"/api/events?topic={topic}", headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    while not stopping.is_set():
        if not resp.fp.readline():
            break
    conn.close()


def measure(mode: str, objects: int, clients: int, seconds: float, topic: str) -> dict[str, float]:
    procs = []
    stopping = threading.Event()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.monitor.overhead",
            "--serve",
            mode,
            "--objects",
            str(objects),
            "--seconds",
            str(seconds),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=ROOT,
    )
    try:
        lines = Lines(proc)
        _, port, url = lines.next(30).split()
        for _ in range(clients):
            client = Proc("client", port)
            procs.append(client)
            client.expect("CONNECTED ")
        if mode == "watched":
            threading.Thread(target=watch, args=(url, stopping, topic), daemon=True).start()
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        result: dict[str, float] = json.loads(lines.next(seconds + 60))
        return result
    finally:
        stopping.set()
        for client in procs:
            stop(client.proc)
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=MODES)
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--topic", default="world")
    args = parser.parse_args()
    if args.serve:
        run_server(args.serve, args.objects, args.seconds, warmup=2.0)
        return
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            result = measure(mode, args.objects, args.clients, args.seconds, args.topic)
            results[mode].append(result)
            print(json.dumps(result), flush=True)
    for mode in MODES:
        summary: dict[str, object] = {"mode": mode, "rounds": len(results[mode])}
        for key in (
            "process_cpu_ms_per_tick",
            "game_thread_cpu_ms_per_tick",
            "tick_rate",
            "max_rss_mib",
        ):
            values = [r[key] for r in results[mode]]
            summary[key] = {
                "median": round(statistics.median(values), 3),
                "min": round(min(values), 3),
                "max": round(max(values), 3),
            }
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
