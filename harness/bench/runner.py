"""Run the benchmark grid: each cell is a fresh server process and fresh client processes.

One *run* = one implementation on one cell, one repetition. Runs are interleaved (every
implementation of a cell, then the next cell; then the next repetition) so that the box's
noise falls on all of them alike. Every child is killed and reaped when its run ends.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from harness.metrics import percentile
from harness.procs import Child, ChildError, Fleet

__all__ = ["IMPLS", "Cell", "Plan", "run_cell", "run_plan", "summarise"]

Json = dict[str, Any]
IMPLS = ("raw", "threaded", "asyncio", "floor")
IMPL_LABEL = {
    "raw": "raw",
    "threaded": "reverb-threaded",
    "asyncio": "reverb-asyncio",
    "floor": "floor",
}
SAMPLE_FULL = 8  # full (decoding, verifying) clients in the "many clients" row


@dataclass(frozen=True)
class Cell:
    """What one run measures. ``kind``: "sync" (N x M x churn), "rpc" (callers round-trip
    ``echo`` back to back; the server also ticks N objects), "many" (M connections, of which
    ``SAMPLE_FULL`` full clients and the rest sinks)."""

    kind: str
    n: int
    m: int
    churn: float
    callers: int = 0

    @property
    def key(self) -> str:
        if self.kind == "rpc":
            return f"rpc callers={self.callers}"
        prefix = "many " if self.kind == "many" else ""
        return f"{prefix}n={self.n} m={self.m} churn={self.churn:g}"

    def layout(self) -> list[Json]:
        """The client processes: ``{"full", "sinks", "callers"}`` each."""
        if self.kind == "rpc":
            procs = 1 if self.callers == 1 else 2
            return [{"full": 0, "sinks": 0, "callers": c} for c in split(self.callers, procs)]
        if self.kind == "many":
            full = min(SAMPLE_FULL, self.m)
            sinks = split(self.m - full, 3)
            return [{"full": full, "sinks": 0, "callers": 0}] + [
                {"full": 0, "sinks": s, "callers": 0} for s in sinks if s
            ]
        procs = 1 if self.m <= 2 else 2 if self.m <= 16 else 4
        return [{"full": f, "sinks": 0, "callers": 0} for f in split(self.m, procs)]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# "floor": raw's loop writing only what changed (harness.bench.raw_server): measured on the
# 0 % and 10 % cells, as the least a server sending only changes pays on this machine


def measures(cell: Cell, impl: str) -> bool:
    """Whether ``impl`` runs on ``cell``: the floor only where not everything changes."""
    return impl != "floor" or (cell.kind == "sync" and cell.churn < 1)


@dataclass
class Plan:
    cells: list[Cell]
    impls: list[str]
    reps: int = 3
    seconds: float = 5.0
    warmup: float = 1.0
    python: str = sys.executable
    profile: str = ""  # a path: one extra profiled run of reverb-threaded 1000 x 8
    profile_churn: float = 1.0  # ... at this churn
    progress: bool = True
    runs: list[Json] = field(default_factory=list)


def server_argv(python: str, impl: str, opts: Json) -> list[str]:
    import json

    if impl == "raw":
        return [python, "-m", "harness.bench.raw_server", json.dumps(opts)]
    if impl == "floor":
        return [python, "-m", "harness.bench.raw_server", json.dumps({**opts, "floor": True})]
    return [python, "-m", "harness.bench.servers", impl, json.dumps(opts)]


def run_cell(cell: Cell, impl: str, plan: Plan, profile: str = "") -> Json:
    """One run; the figures as a dict (``error`` set if it could not finish)."""
    import json

    out: Json = {"cell": cell.key, "kind": cell.kind, "impl": impl, "n": cell.n, "m": cell.m}
    out.update(churn=cell.churn, callers=cell.callers)
    fleet = Fleet(plan.python)
    phases: Json = {}
    out["phase_s"] = phases
    t0 = time.monotonic()
    try:
        opts: Json = {"n": cell.n, "churn": cell.churn}
        if profile:
            opts["profile"] = profile
        server = Child(f"{impl}-server", server_argv(plan.python, impl, opts))
        fleet.children.append(server)
        port = int(server.wait_ready(60.0))
        clients: list[Child] = []
        for i, spec in enumerate(cell.layout()):
            client = "raw" if impl in ("raw", "floor") else "reverb"
            copts = {"impl": client, "port": port, **spec}
            argv = [plan.python, "-m", "harness.bench.clients", json.dumps(copts)]
            child = Child(f"{impl}-clients{i}", argv)
            fleet.children.append(child)
            clients.append(child)
        for child in clients:
            child.wait_ready(120.0)
        expected = sum(s["full"] + s["sinks"] + s["callers"] for s in cell.layout())
        deadline = time.monotonic() + 120.0
        while (seen := int(server.request("count", timeout=30.0)["clients"])) < expected:
            if time.monotonic() > deadline:
                raise ChildError(f"the server holds {seen} of {expected} connections after 120 s")
            time.sleep(0.1)  # polling the server's count, deadline-bounded
        phases["start"] = round(time.monotonic() - t0, 2)
        time.sleep(plan.warmup)  # a settling period (full snapshots), not a synchronisation
        fleet.check_alive()
        rids = [(c, c.send("start")) for c in [server, *clients]]
        for c, rid in rids:
            c.reply(rid, 60.0)
        time.sleep(plan.seconds)  # the measuring window itself
        rids = [(c, c.send("stop")) for c in [server, *clients]]
        srv, *cli = [c.reply(rid, 60.0) for c, rid in rids]
        phases["window"] = round(time.monotonic() - t0, 2)
        final = server.request("final", timeout=60.0)
        verify_timeout = 20.0
        rids = [
            (c, c.send("verify", digest=final["digest"], timeout=verify_timeout)) for c in clients
        ]
        checks = [c.reply(rid, verify_timeout + 30.0) for c, rid in rids]
        phases["verify"] = round(time.monotonic() - t0, 2)
        out.update(figures(cell, srv, cli, checks, clients=cell.layout()))
        # how far the slowest full client was from the final tick when verify gave up
        out["final_tick"] = final.get("tick")
        out["slowest_client_tick"] = min((c.get("min_tick", 0) for c in checks), default=None)
    except ChildError as exc:
        out["error"] = str(exc)[-3000:]
    finally:
        fleet.stop_all(timeout=5.0)
        phases["stopped"] = round(time.monotonic() - t0, 2)
    return out


def figures(
    cell: Cell, srv: Json, cli: list[Json], checks: list[Json], clients: list[Json]
) -> Json:
    ticks = max(int(srv["ticks"]), 1)
    conns = max(int(srv["clients"]), 1)
    stamps = {int(k): float(v) for k, v in srv["stamps"].items()}
    fresh = [
        (t - stamps[tick]) * 1000.0
        for c in cli
        for samples in c["samples"]
        for tick, t in samples
        if tick in stamps
    ]
    # client CPU per applied sync: processes that hold only full clients
    pure = [
        c for c, spec in zip(cli, clients, strict=True) if spec["sinks"] == 0 and c["applied"] > 0
    ]
    applied = sum(c["applied"] for c in pure)
    full = sum(spec["full"] + spec["callers"] for spec in clients)
    wall = float(srv["wall_s"])
    rtts = [r * 1000.0 for c in cli for r in c["rtts"]]
    out: Json = {
        "ticks": ticks,
        "wall_s": round(wall, 3),
        "tick_hz": ticks / wall if wall > 0 else 0.0,
        "server_cpu_ms_per_tick": float(srv["cpu_s"]) * 1000.0 / ticks,
        "server_cpu_share": float(srv["cpu_s"]) / wall if wall > 0 else 0.0,
        "connections": conns,
        "bytes_per_client_tick": float(srv["bytes"]) / (ticks * conns),
        "freshness_p50_ms": percentile(fresh, 50),
        "freshness_p99_ms": percentile(fresh, 99),
        "freshness_samples": len(fresh),
        "client_cpu_ms_per_tick": (
            sum(c["cpu_s"] for c in pure) * 1000.0 / applied if applied else None
        ),
        "client_apply_hz": (
            sum(c["applied"] for c in cli) / (full * wall) if full and wall > 0 else None
        ),
        "closed_connections": sum(c["closed"] for c in cli),
        "skipped_sends": srv.get("skipped", 0),
        "verified": sum(c["verified"] for c in checks),
        "full_clients": sum(c["full"] for c in checks),
    }
    if cell.kind == "rpc":
        calls = sum(c["calls"] for c in cli)
        out.update(
            rpc_calls=calls,
            rpc_calls_per_s=calls / wall if wall > 0 else 0.0,
            rpc_p50_ms=percentile(rtts, 50),
            rpc_p99_ms=percentile(rtts, 99),
        )
    return out


def run_plan(plan: Plan, log: Any = None) -> list[Json]:
    log = log or sys.stderr
    total = plan.reps * sum(measures(c, i) for c in plan.cells for i in plan.impls)
    per_run = plan.seconds + plan.warmup + 3.0
    log.write(
        f"bench: {total} runs ({len(plan.cells)} cells x {len(plan.impls)} impls x "
        f"{plan.reps} reps; the floor only at 0 and 10 %), about {total * per_run / 60:.0f} min\n"
    )
    started = time.monotonic()
    done = 0
    for rep in range(plan.reps):
        for cell in plan.cells:
            for impl in plan.impls:
                if not measures(cell, impl):
                    continue
                result = run_cell(cell, impl, plan)
                result["rep"] = rep
                plan.runs.append(result)
                done += 1
                if plan.progress:
                    elapsed = time.monotonic() - started
                    eta = elapsed / done * (total - done)
                    log.write(
                        f"[{done}/{total} {elapsed:5.0f}s, ~{eta:4.0f}s left] rep {rep + 1} "
                        f"{cell.key} {IMPL_LABEL[impl]}: {brief(result)}\n"
                    )
                    log.flush()
    if plan.profile:
        cell = Cell("sync", 1000, 8, plan.profile_churn)
        log.write(f"bench: profiling reverb-threaded {cell.key} -> {plan.profile}\n")
        result = run_cell(cell, "threaded", plan, profile=plan.profile)
        result["profiled"] = True
        plan.runs.append(result)
    return plan.runs


def brief(r: Json) -> str:
    if "error" in r:
        return "ERROR " + r["error"].splitlines()[0][:150]
    parts = [
        f"{r['tick_hz']:.1f} Hz",
        f"cpu {r['server_cpu_ms_per_tick']:.2f} ms/tick",
        f"{r['bytes_per_client_tick'] / 1000:.1f} KB/client/tick",
    ]
    if r.get("freshness_p50_ms") is not None:
        parts.append(f"fresh p50 {r['freshness_p50_ms']:.1f} ms")
    if r.get("client_cpu_ms_per_tick") is not None:
        parts.append(f"client {r['client_cpu_ms_per_tick']:.2f} ms/tick")
    if r.get("rpc_p50_ms") is not None:
        parts.append(f"rpc p50 {r['rpc_p50_ms']:.3f} ms, {r['rpc_calls_per_s']:.0f}/s")
    parts.append(f"verified {r['verified']}/{r['full_clients']}")
    return ", ".join(parts)


METRICS = (
    "tick_hz",
    "server_cpu_ms_per_tick",
    "bytes_per_client_tick",
    "freshness_p50_ms",
    "freshness_p99_ms",
    "client_cpu_ms_per_tick",
    "client_apply_hz",
    "rpc_p50_ms",
    "rpc_p99_ms",
    "rpc_calls_per_s",
    "closed_connections",
    "verified",
    "full_clients",
)


def summarise(runs: list[Json]) -> dict[str, dict[str, Json]]:
    """``{cell: {impl: {metric: {"median", "min", "max", "n"}}}}`` over the repetitions."""
    out: dict[str, dict[str, Json]] = {}
    for r in runs:
        if r.get("profiled"):
            continue
        slot = out.setdefault(r["cell"], {}).setdefault(
            r["impl"],
            {
                "kind": r["kind"],
                "n": r["n"],
                "m": r["m"],
                "churn": r["churn"],
                "callers": r["callers"],
                "runs": 0,
                "errors": 0,
                "values": {},
            },
        )
        slot["runs"] += 1
        if "error" in r:
            slot["errors"] += 1
            continue
        for metric in METRICS:
            v = r.get(metric)
            if v is not None:
                slot["values"].setdefault(metric, []).append(float(v))
    for cells in out.values():
        for slot in cells.values():
            values = slot.pop("values")
            for metric, vs in values.items():
                slot[metric] = {
                    "median": statistics.median(vs),
                    "min": min(vs),
                    "max": max(vs),
                    "n": len(vs),
                }
    return out
