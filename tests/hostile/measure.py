"""Before/after figures for issue 8's I/O findings, against a real server process.

``python -m tests.hostile.measure SCENARIO [--layer threaded|aio] [--runs N] [--reverb DIR]
[--opts JSON]``

Scenarios (each prints one JSON line per run, then the medians over the runs):

- ``memory``: 20 clients that complete the handshake and never read (4 KiB receive window)
  while the world churns ~128 KB per tick; the server's peak RSS, its RSS once they are all
  dropped, and how many close frames they received.
- ``trickle``: 250 authenticated connections each trickling an ``rpc`` frame one byte per
  100 ms with ``frame_timeout=2``; how late the server closed them (their age from the first
  trickled byte minus 2 s) and an honest client's RPC round trips meanwhile.
- ``flood``: one authenticated connection sending ~1 MB ``rpc`` frames of small integers
  back to back; an honest client's RPC round trips meanwhile, and the server's peak RSS.

``--reverb DIR`` runs the server with the ``reverb`` package found in DIR (e.g. an export of
an older commit: ``git archive OLD reverb | tar -x -C DIR``); the clients always use this
checkout's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import tests.jsonproc as jsonproc
from tests.conftest import ROOT
from tests.hostile.conftest import Good
from tests.hostile.raw import Raw
from tests.jsonproc import JsonProcess, Lines, stop


class Server(JsonProcess):
    def __init__(self, options: dict[str, Any]) -> None:
        # -P: the server imports reverb from PYTHONPATH (see --reverb), not from the cwd
        super().__init__("-P", "-m", "tests.hostile.app", json.dumps(options))

    def state(self) -> dict[str, Any]:
        return self.ask("state", "state")


EXTRA: dict[str, Any] = {}  # --opts: more server options for every scenario


def server(options: dict[str, Any]) -> Server:
    return Server({**options, **EXTRA})


def helper(*args: str) -> tuple[subprocess.Popen[str], Lines]:
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=jsonproc.child_env(),
        cwd=ROOT,
    )
    return proc, Lines(proc)


def ms(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2)


def memory(layer: str) -> dict[str, Any]:
    srv = server({"layer": layer, "tick_rate": 60})
    raws: list[Raw] = []
    try:
        base = srv.state()["rss_kib"]
        members = []
        for _ in range(20):
            raw = Raw(srv.port, rcvbuf=4096)
            members.append(raw.hello()["member"])
            raws.append(raw)
        srv.ask("spawn", "spawned", n=8)
        srv.ask("churn", "churn", on=True, size=16000)
        started = time.monotonic()
        deadline = started + 60
        while srv.state()["members"] and time.monotonic() < deadline:
            time.sleep(0.1)  # polling the server's member list
        dropped_after = time.monotonic() - started
        srv.ask("churn", "churn", on=False)
        closes = 0
        for raw in raws:  # now read what each was sent: a close frame at the end?
            try:
                got = raw.drain(timeout=3)
            except (TimeoutError, AssertionError):
                got = []
            closes += bool(got) and got[-1]["type"] == "close"
        settle = time.monotonic() + 2
        while time.monotonic() < settle:
            state = srv.state()
            time.sleep(0.1)  # let the server settle before reading its RSS
        return {
            "rss_base_mb": round(base / 1024, 1),
            "rss_peak_mb": round(state["rss_peak_kib"] / 1024, 1),
            "rss_after_mb": round(state["rss_kib"] / 1024, 1),
            "all_dropped_s": round(dropped_after, 2),
            "members_left": len(state["members"]),
            "closes_read_after_all_dropped": closes,  # late readers: most lingers expired
            "stats": {k: v for k, v in state["stats"].items() if k.startswith("limit.")},
        }
    finally:
        for raw in raws:
            raw.close()
        srv.close()


def probe(port: int, timeout: float, delay: float, out: list[float]) -> None:
    """After ``delay``, start a frame that never completes; append how late the server's
    close arrived (seconds past ``timeout``), as this idle client sees it."""
    raw = Raw(port)
    try:
        raw.hello()
        time.sleep(delay)  # staggers the probes over the attack
        started = time.monotonic()
        raw.send_raw(b"\x00\x00\x01\x00{")
        code, _ = raw.closed_with(timeout=timeout + 30)
        if code == 1008:
            out.append(time.monotonic() - started - timeout)
    finally:
        raw.close()


def trickle(layer: str) -> dict[str, Any]:
    timeout = 2.0
    srv = server(
        {"layer": layer, "tick_rate": 30, "frame_timeout": timeout, "max_connections_per_ip": 400}
    )
    good = None
    proc = None
    try:
        good = Good(srv.port)
        unloaded = good.rtts(100)
        interval = os.environ.get("TRICKLE_INTERVAL", "0.1")
        proc, lines = helper("tests.hostile.trickle", str(srv.port), "250", interval, "30", "frame")
        assert lines.next(60).startswith("OPEN"), "trickler did not open"
        probes: list[float] = []
        threads = [
            threading.Thread(target=probe, args=(srv.port, timeout, 0.5 * i, probes))
            for i in range(4)
        ]
        for thread in threads:
            thread.start()
        loaded: list[float] = []
        result = None
        deadline = time.monotonic() + 40
        while result is None and time.monotonic() < deadline:
            loaded.append(good.rtt())
            time.sleep(0.01)  # a game client's pacing
            if not lines.queue.empty():
                result = json.loads(lines.next(1))
        assert result is not None, "trickler did not finish"
        for thread in threads:
            thread.join(30)
        late = [age - timeout for age in result.pop("ages")]
        return {
            "probe_late_max_ms": ms(probes, 1.0) if probes else None,
            "probes": len(probes),
            "trickler_late_p50_ms": ms(late, 0.5),
            "trickler_late_max_ms": ms(late, 1.0),
            "codes": result["codes"],
            "still_open": result["still_open"],
            "rpc_unloaded_p50_ms": ms(unloaded, 0.5),
            "rpc_unloaded_p99_ms": ms(unloaded, 0.99),
            "rpc_loaded_p50_ms": ms(loaded, 0.5),
            "rpc_loaded_p99_ms": ms(loaded, 0.99),
            "rpc_loaded_n": len(loaded),
        }
    finally:
        if proc is not None:
            stop(proc)
        if good is not None:
            good.close()
        srv.close()


def flood(layer: str) -> dict[str, Any]:
    srv = server({"layer": layer, "tick_rate": 30})
    good = None
    proc = None
    try:
        good = Good(srv.port)
        unloaded = good.rtts(100)
        rss = srv.state()["rss_kib"]
        proc, lines = helper("tests.hostile.flood", str(srv.port), "6")
        assert lines.next(10).startswith("OPEN"), "flooder did not open"
        loaded = good.rtts(seconds=5)
        result = json.loads(lines.next(20))
        state = srv.state()
        return {
            "rpc_unloaded_p50_ms": ms(unloaded, 0.5),
            "rpc_loaded_p50_ms": ms(loaded, 0.5),
            "rpc_loaded_p99_ms": ms(loaded, 0.99),
            "rpc_loaded_n": len(loaded),
            "rss_before_mb": round(rss / 1024, 1),
            "rss_peak_mb": round(state["rss_peak_kib"] / 1024, 1),
            "flood": result,
            "stats": {k: v for k, v in state["stats"].items() if k.startswith("limit.")},
        }
    finally:
        if proc is not None:
            stop(proc)
        if good is not None:
            good.close()
        srv.close()


SCENARIOS = {"memory": memory, "trickle": trickle, "flood": flood}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--layer", choices=("threaded", "aio"), default="threaded")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reverb", help="a directory holding the reverb package to serve with")
    parser.add_argument("--opts", default="{}", help="more server options, as JSON")
    args = parser.parse_args()
    EXTRA.update(json.loads(args.opts))
    env = jsonproc.child_env()
    if args.reverb:  # the server imports reverb from there, tests from this checkout
        env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(args.reverb), str(ROOT)])
    jsonproc.child_env = lambda: env  # type: ignore[assignment]
    runs = []
    for _ in range(args.runs):
        run = SCENARIOS[args.scenario](args.layer)
        print(json.dumps(run), flush=True)
        runs.append(run)
    medians = {
        key: statistics.median(run[key] for run in runs)
        for key in runs[0]
        if all(isinstance(run[key], (int, float)) for run in runs)
    }
    print("MEDIANS", json.dumps({"scenario": args.scenario, "layer": args.layer, **medians}))


if __name__ == "__main__":
    main()
