"""``python -m harness resume``: session resume through the fault proxy (issue 13, §18).

Two figures, in real processes (the server is ``python -m harness.resume serve``):

1. **Exactly once under resets.** One ``Client(reconnect=...)`` behind ``FaultProxy`` with
   1-byte segmentation (``chop=1``) and every link reset after a uniformly random 2-12 KB
   (either direction). It makes ``--calls`` calls ``record(token)``, each with a unique token
   the server appends to a list, at most ``--inflight`` at once. At the end it compares the
   server's list with its results: executed twice, acknowledged but not run, never answered
   (targets 0), ``not_run`` refusals (reported), resets, resumes, time to resume p50/p99
   (``connection_lost`` to ``reconnected``, as the game loop sees them).
2. **A burst.** ``--burst`` ``AsyncClient``s behind one proxy, every link reset at once; the
   server's CPU time meanwhile and the time until every client resumed and applied a sync.

``--json FILE`` writes the figures. Exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from harness.proxy import FaultProxy, Toxics
from reverb import Client, ReverbContext, ReverbObject, ReverbSide, expose
from reverb.errors import ConnectionClosed, RpcError
from reverb.reconnect import ReconnectPolicy

ROOT = Path(__file__).resolve().parents[1]
POLICY = ReconnectPolicy(base_delay=0.05, max_delay=1.0, max_attempts=30)


class Ledger(ReverbObject):
    """The server's record of every token it was asked to record, in order."""

    RECORDED: ClassVar[list[str]] = []

    def __init__(
        self, uid: Any = None, add_on_init: bool = True, belonging_membership: Any = None
    ) -> None:
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose(anyone=True)
    def record(self, token: str) -> str:
        Ledger.RECORDED.append(token)
        return token

    @expose(anyone=True)
    def recorded(self) -> list[str]:
        return list(Ledger.RECORDED)

    @expose(anyone=True)
    def cpu(self) -> float:
        return time.process_time()


def contexts() -> ReverbContext:
    ctx = ReverbContext(ReverbSide.CLIENT)
    ctx.register(Ledger)
    return ctx


# -- the server process ----------------------------------------------------------------------


def serve(layer: str) -> int:
    from reverb import ReverbManager, ReverbSide, Server

    ReverbManager.REVERB_SIDE = ReverbSide.SERVER
    ReverbManager.reverb_object_attribute(Ledger)
    if layer == "aio":
        from reverb.aio import AsyncServer

        async def run() -> None:
            server = AsyncServer(port=0, max_calls_per_second=1e6, max_connections_per_ip=4096)
            ReverbManager.REVERB_CONNECTION = server
            await server.start_server()
            Ledger()
            print(f"READY {server.port}", flush=True)
            while True:
                await server.server_sync()

        asyncio.run(run())
        return 0
    server = Server(port=0, max_calls_per_second=1e6, max_connections_per_ip=4096)
    ReverbManager.REVERB_CONNECTION = server
    server.start_server()
    Ledger()
    print(f"READY {server.port}", flush=True)
    while True:
        ReverbManager.server_sync()


def start_server(layer: str) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.resume", "serve", "--layer", layer],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        proc.wait(5)
        raise RuntimeError(f"the server did not start: {line!r}")
    return proc, int(line.split()[1])


def stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


# -- figure 1: exactly once ----------------------------------------------------------------------


def exactly_once(
    port: int, calls: int, inflight: int, seed: int, deadline: float
) -> dict[str, Any]:
    toxics = Toxics(chop=1, reset_after_bytes=(2048, 12288))
    proxy = FaultProxy(port, lambda i: toxics, seed=seed)
    proxy.start()
    ctx = contexts()
    lost_at: list[float] = []
    resume_times: list[float] = []
    failures: list[str] = []
    ctx.client_events.on_event("connection_lost")(lambda *a: lost_at.append(time.monotonic()))
    ctx.client_events.on_event("reconnected")(
        lambda *a: resume_times.append(time.monotonic() - lost_at[-1])
    )
    ctx.client_events.on_event("resume_failed")(lambda reason: failures.append(reason))
    client = Client(port=proxy.port, context=ctx, reconnect=POLICY, send_contract=False)
    for _ in range(10):  # the first handshake may be cut too
        try:
            client.connect()
            break
        except ConnectionClosed:
            continue
    started = time.monotonic()
    futures: dict[str, Any] = {}
    try:
        while not ctx.replicas.objects:
            ctx.client_sync(timeout=0.01)
        ledger = next(iter(ctx.replicas.objects.values()))
        tokens = [f"t{seed}-{i}" for i in range(calls)]
        pending: list[str] = []
        for token in tokens:
            while len(pending) >= inflight and time.monotonic() < deadline:
                ctx.client_sync(timeout=0.002)
                pending = [t for t in pending if not futures[t].done()]
            futures[token] = ledger.compute_server(ledger.record, token)
            pending.append(token)
            if failures:
                break
        while any(not f.done() for f in futures.values()) and time.monotonic() < deadline:
            ctx.client_sync(timeout=0.01)
        elapsed = time.monotonic() - started
        # read the server's list over a clean connection
        reader_ctx = contexts()
        reader = Client(port=port, context=reader_ctx, send_contract=False)
        reader.connect()
        while not reader_ctx.replicas.objects:
            reader_ctx.client_sync(timeout=0.01)
        remote = next(iter(reader_ctx.replicas.objects.values()))
        fut = remote.compute_server(remote.recorded)
        while not fut.done():
            reader_ctx.client_sync(timeout=0.01)
        recorded: list[str] = fut.result()
        reader.disconnect()
    finally:
        client.disconnect()
        proxy.stop()
    counts: dict[str, int] = {}
    for token in recorded:
        counts[token] = counts.get(token, 0) + 1
    acked = [t for t, f in futures.items() if f.done() and f.exception() is None]
    not_run = [
        t
        for t, f in futures.items()
        if f.done() and isinstance(f.exception(), RpcError) and f.exception().code == "not_run"
    ]
    never = [
        t for t, f in futures.items() if not f.done() or isinstance(f.exception(), ConnectionClosed)
    ]
    return {
        "calls": calls,
        "issued": len(futures),
        "inflight": inflight,
        "executed_twice": sum(1 for c in counts.values() if c > 1),
        "acknowledged_not_run": sum(1 for t in acked if t not in counts),
        "never_answered": len(never),
        "not_run": len(not_run),
        "wrong_value": sum(1 for t in acked if futures[t].result() != t),
        "resets": sum(1 for link in proxy.links if link.reset_at is not None),
        "links": len(proxy.links),
        "resumes": len(resume_times),
        "resume_failed": failures,
        "resume_ms_p50": pct(resume_times, 0.5),
        "resume_ms_p99": pct(resume_times, 0.99),
        "seconds": round(elapsed, 2),
    }


# -- figure 2: a burst ---------------------------------------------------------------------------


async def burst(port: int, n: int, deadline: float) -> dict[str, Any]:
    from reverb.aio import AsyncClient

    proxy = FaultProxy(port, lambda i: Toxics())
    proxy.start()
    clients: list[Any] = []
    synced_after: dict[int, float] = {}
    reconnected: dict[int, float] = {}
    try:
        for i in range(n):
            ctx = contexts()
            ctx.client_events.on_event("reconnected")(
                lambda *a, i=i: reconnected.__setitem__(i, time.monotonic())
            )
            ctx.client_events.on_event("synced")(
                lambda *a, i=i: (
                    synced_after.__setitem__(i, time.monotonic())
                    if i in reconnected and i not in synced_after
                    else None
                )
            )
            client = AsyncClient(
                port=proxy.port, context=ctx, reconnect=POLICY, send_contract=False
            )
            await client.connect()
            clients.append(client)
        probe_ctx = clients[0].context
        while not probe_ctx.replicas.objects:
            await clients[0].client_sync(0.01)
        ledger = next(iter(probe_ctx.replicas.objects.values()))
        cpu_before = await ledger.compute_server(ledger.cpu)
        t0 = time.monotonic()
        resets = proxy.reset_all()
        while len(synced_after) < n and time.monotonic() < deadline:
            for client in clients:
                await client.client_sync()
            await asyncio.sleep(0.005)
        all_synced = max(synced_after.values()) - t0 if len(synced_after) == n else None
        cpu_after = await ledger.compute_server(ledger.cpu)
        return {
            "clients": n,
            "reset": resets,
            "resumed": len(reconnected),
            "synced_after_resume": len(synced_after),
            "all_synced_s": None if all_synced is None else round(all_synced, 3),
            "server_cpu_s": round(cpu_after - cpu_before, 3),
            "reconnect_s_p50": round(statistics.median(v - t0 for v in reconnected.values()), 3)
            if reconnected
            else None,
        }
    finally:
        for client in clients:
            await client.disconnect()
        proxy.stop()


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        p = argparse.ArgumentParser(prog="python -m harness.resume serve")
        p.add_argument("--layer", choices=("threaded", "aio"), default="threaded")
        return serve(p.parse_args(argv[1:]).layer)
    p = argparse.ArgumentParser(prog="python -m harness resume", description=__doc__)
    p.add_argument("--calls", type=int, default=10_000)
    p.add_argument("--inflight", type=int, default=32)
    p.add_argument("--burst", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--layer", choices=("threaded", "aio"), default="threaded")
    p.add_argument("--deadline", type=float, default=600.0, help="seconds per figure")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    out: dict[str, Any] = {"layer": args.layer, "seed": args.seed}
    proc, port = start_server(args.layer)
    try:
        if args.calls:
            out["exactly_once"] = exactly_once(
                port, args.calls, args.inflight, args.seed, time.monotonic() + args.deadline
            )
        if args.burst:
            out["burst"] = asyncio.run(burst(port, args.burst, time.monotonic() + args.deadline))
    finally:
        stop(proc)
    once = out.get("exactly_once", {})
    ok = all(
        once.get(k, 0) == 0
        for k in ("executed_twice", "acknowledged_not_run", "never_answered", "wrong_value")
    )
    burst_ok = "burst" not in out or out["burst"]["synced_after_resume"] == args.burst
    out["passed"] = ok and burst_ok and not once.get("resume_failed")
    text = json.dumps(out, indent=2, sort_keys=True)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0 if out["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
