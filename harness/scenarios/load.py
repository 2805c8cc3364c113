"""``load``: M clients, N objects, tick rate R, for S seconds. Reports the achieved tick rate,
server CPU per tick, bytes per client per second, freshness (server mutation -> client sees it),
RPC round trips, peak server memory, and ratios against a baseline (1 client, 1-object world)
measured first in the same invocation.

The verdict (``judge``) is a list of criteria, each with its measured value and threshold in
``figures["criteria"]``; the run passes only when every one holds:

- ``tick_rate``: achieved ticks / window >= 0.95 x R;
- ``freshness_p99``: p99 of (client applies an update - server stamped it) <= the bound:
  ``--max-freshness-p99`` ms, default max(100 ms, 3 tick periods). The mutator stamps objects
  right after a tick, so one tick period (33.3 ms at 30 Hz) is the floor; on the 2-core dev
  box the default load (32 light clients x 500 objects x 30 Hz) measured p99 47-84 ms, so
  100 ms (3 ticks) leaves room for noise while a client or server that falls a few ticks
  behind fails;
- ``updates_seen``: every update stamped in the window reached every client (counted once
  the clients have converged, so a slow client is not missed, and a lost update is);
- ``rpc_answered``: each client follows a fixed open-loop plan of ``--rpc-rate`` calls per
  second over the window (``CallPlan``); every planned call was sent and answered, with no
  error, within RPC_GRACE_S of the window's end;
- ``converged``: every client stayed connected and reached the server's hash.

Clients are light wire-level clients (``harness/light.py``, several connections per process)
unless ``--client-kind full``: full Reverb clients cost about a core at the default load and,
on a 2-core box, starve the server they measure."""

from __future__ import annotations

import itertools
import time
from typing import Any

from harness.metrics import summary
from harness.procs import Fleet
from harness.scenarios.common import Options, Result, Run, guard

__all__ = ["freshness_bound_ms", "judge", "measure", "run"]

WARMUP_S = 1.0  # full snapshots and process start-up stay out of the measurement window
MIN_RATE_RATIO = 0.95  # the achieved tick rate must be at least this share of the requested
RPC_GRACE_S = 5.0  # after the window, how long the last calls get to be answered
DEFAULT_FRESHNESS_P99_MS = 100.0  # freshness p99 bound at 30 Hz (3 ticks); see the docstring


def run(opts: Options) -> Result:
    result = Result("load")

    def body() -> None:
        rpc_rate = opts.get("rpc_rate", 2.0)
        baseline: dict[str, Any] | None = None
        if opts.baseline:
            base = Result("baseline")
            guard(
                base,
                lambda: measure(
                    base,
                    opts,
                    clients=1,
                    objects=1,
                    seconds=2.0,
                    rpc_rate=max(rpc_rate, 20.0),
                    label="baseline",
                ),
            )
            result.check(base.passed, f"baseline run failed: {base.reasons}")
            baseline = base.figures
        measure(
            result,
            opts,
            clients=opts.get("clients", 8),
            objects=opts.get("objects", 100),
            seconds=opts.get("seconds", 5.0),
            rpc_rate=rpc_rate,
            label="load",
        )
        if baseline is not None:
            result.figures["baseline"] = {
                k: baseline[k]
                for k in (
                    "clients",
                    "objects",
                    "rate_hz",
                    "freshness_ms",
                    "rpc_rtt_ms",
                    "server_cpu_s_per_tick",
                    "bytes_per_client_per_s",
                )
            }
            result.figures["vs_baseline"] = ratios(result.figures, baseline)

    return guard(result, body)


def ratios(load: dict[str, Any], base: dict[str, Any]) -> dict[str, float | None]:
    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else round(a / b, 2)

    out: dict[str, float | None] = {}
    for key in ("freshness_ms", "rpc_rtt_ms"):
        for q in ("p50", "p99"):
            out[f"{key}_{q}"] = ratio(load[key][q], base[key][q])
    out["server_cpu_s_per_tick"] = ratio(
        load["server_cpu_s_per_tick"], base["server_cpu_s_per_tick"]
    )
    return out


def freshness_bound_ms(opts: Options, rate: float) -> float:
    """``--max-freshness-p99``, else max(100 ms, 3 tick periods) (see the module docstring)."""
    given = opts.max_freshness_p99
    return float(given) if given is not None else max(DEFAULT_FRESHNESS_P99_MS, 3000.0 / rate)


def measure(
    result: Result,
    opts: Options,
    *,
    clients: int,
    objects: int,
    seconds: float,
    rpc_rate: float,
    label: str,
) -> None:
    rate = opts.get("rate", 30.0)
    kind = opts.get("client_kind", "light")
    per_process = opts.get("clients_per_process", 16)
    result.figures.update(clients=clients, objects=objects, rate_hz=rate, client_kind=kind)
    patience = 20.0 + clients * 0.5  # an overloaded client process answers late, not never
    with Fleet() as fleet:
        r = Run(fleet, opts, result)
        r.lifetime = 180.0 + 3 * seconds + clients
        r.start_server(
            rate=rate,
            objects=objects,
            per_client=1,
            mutate={"per_tick": max(1, objects // 10)},
        )
        r.start_clients(clients, per_process, role="clients" if kind == "full" else "light")
        r.srv.request("mutate", on=True)
        r.hold(WARMUP_S, f"{label} warm")
        for p in r.procs:
            p.request("samples", reset=True, timeout=patience)
        start = r.srv.request("mark", start=True, timeout=patience)["start"]
        until = start["t"] + seconds
        # one fixed call plan per process over [start, until): a process that lags sends its
        # calls late, and a call it never sends stays planned (the verdict counts it)
        rids = [
            (p, p.send("stream", on=True, rate=rpc_rate, start=start["t"], until=until))
            for p in r.procs
        ]
        planned = sum(p.reply(rid, patience)["planned"] for p, rid in rids)
        r.hold(max(0.0, until - time.monotonic()), label)
        end = r.srv.request("mark", start=False, until=until, timeout=patience)["now"]
        series = r.srv.request("state", detail=True, timeout=patience)["series"]
        # the server's figures first: they stand even if overloaded clients never answer
        server_figures(result, start, end, series, clients, per_process, len(r.procs))
        # a call still unanswered RPC_GRACE_S after the window is counted unanswered
        rids = [(p, p.send("stream", on=False, timeout=RPC_GRACE_S)) for p in r.procs]
        for p, rid in rids:
            p.reply(rid, patience + RPC_GRACE_S)
        # every update stamped in the window has reached every client once they converge
        r.converge(timeout=patience)
        samples = [p.request("samples", timeout=patience) for p in r.procs]
    fresh = [x for s in samples for x in s["fresh_s"]]
    rtt = [x for s in samples for x in s["rtt_s"]]
    errors: dict[str, int] = {}
    for s in samples:
        for code, n in s["errors"].items():
            errors[code] = errors.get(code, 0) + n
    anomalies: dict[str, int] = {}
    for s in samples:
        for what, n in s.get("anomalies", {}).items():
            anomalies[what] = anomalies.get(what, 0) + n
    result.check(not anomalies, f"clients received syncs that make no sense: {anomalies}")
    calls = {
        key: sum(int(s[key]) for s in samples)
        for key in ("planned", "sent", "answered", "unanswered", "late")
    }
    calls["errors"] = sum(errors.values())
    calls["max_late_ms"] = max((float(s["max_late_ms"]) for s in samples), default=0.0)
    calls["nominal"] = round(clients * rpc_rate * seconds)
    if calls["planned"] != planned or abs(planned - calls["nominal"]) > clients:
        result.add(f"harness error: {planned} calls planned, about {calls['nominal']} expected")
    updates_expected = int(end.get("stamped", 0)) * clients
    updates_seen = sum(int(s["fresh_count"]) for s in samples)
    result.figures.update(
        freshness_floor_ms=round(1000.0 / rate, 2),
        freshness_ms=summary(fresh, 1000.0)
        | {"observed": updates_seen, "expected": updates_expected},
        rpc_rtt_ms=summary(rtt, 1000.0) | {"observed": sum(s["rtt_count"] for s in samples)},
        rpc_calls=calls,
        rpc_errors=errors,
    )
    result.samples.update(
        freshness_ms=[x * 1000 for x in fresh], rpc_rtt_ms=[x * 1000 for x in rtt]
    )
    judge(result, opts, rate)


def judge(result: Result, opts: Options, rate: float) -> None:
    """The load verdict: every criterion with its measured value and threshold, in
    ``figures["criteria"]``; a failed one becomes a FAIL reason that names it."""
    f = result.figures
    ratio = opts.min_rate_ratio if opts.min_rate_ratio is not None else MIN_RATE_RATIO
    min_rate = round(ratio * rate, 3)
    bound = freshness_bound_ms(opts, rate)
    fresh = f["freshness_ms"]
    calls = f["rpc_calls"]
    achieved = f.get("achieved_rate_hz")
    p99 = fresh["p99"]
    criteria = [
        {
            "name": "tick_rate",
            "value": achieved,
            "threshold": f">= {min_rate} Hz ({ratio} x {rate:g} Hz)",
            "ok": achieved is not None and achieved >= min_rate,
        },
        {
            "name": "freshness_p99",
            "value": p99,
            "threshold": f"<= {bound:g} ms",
            "ok": p99 is not None and p99 <= bound,
        },
        {
            "name": "updates_seen",
            "value": fresh["observed"],
            "threshold": f"== {fresh['expected']} (updates stamped in the window x clients)",
            "ok": fresh["expected"] > 0 and fresh["observed"] == fresh["expected"],
        },
        {
            "name": "rpc_answered",
            "value": f"{calls['answered']} of {calls['planned']} planned "
            f"({calls['sent']} sent, {calls['errors']} errors, {calls['unanswered']} unanswered)",
            "threshold": "answered == sent == planned, 0 errors",
            "ok": calls["planned"] > 0
            and calls["answered"] == calls["sent"] == calls["planned"]
            and calls["errors"] == 0,
        },
        {
            "name": "converged",
            "value": f.get("converged"),
            "threshold": "every client connected and on the server's hash",
            "ok": f.get("converged") is True,
        },
    ]
    f["criteria"] = criteria
    for c in criteria:
        if not c["ok"]:
            result.add(f"{c['name']} failed: {c['value']} (needs {c['threshold']})")


def server_figures(
    result: Result,
    start: dict[str, Any],
    end: dict[str, Any],
    series: list[list[float]],
    clients: int,
    per_process: int,
    processes: int,
) -> None:
    wall = end["t"] - start["t"]
    ticks = end["tick"] - start["tick"]
    cpu = end["cpu_s"] - start["cpu_s"]
    result.figures.update(
        seconds=round(wall, 3),
        clients_per_process=per_process,
        client_processes=processes,
        achieved_rate_hz=round(ticks / wall, 2) if wall > 0 else None,
        server_cpu_s_per_tick=round(cpu / ticks, 6) if ticks else None,
        server_cpu_util=round(cpu / wall, 3) if wall > 0 else None,
        bytes_per_client_per_s=round((end["bytes_sent"] - start["bytes_sent"]) / clients / wall)
        if wall > 0
        else None,
        bytes_received_per_s=round((end["bytes_received"] - start["bytes_received"]) / wall)
        if wall > 0
        else None,
        server_peak_rss_mb=round(end["hwm_kb"] / 1024.0, 2),
        server_rss_mb=round(end["rss_kb"] / 1024.0, 2),
        bandwidth_series=bandwidth(series, clients),
    )


def bandwidth(series: list[list[float]], clients: int) -> list[list[float]]:
    """``[[t since start (s), bytes/s per client, ticks/s], ...]`` from the server's samples."""
    out = []
    for (t0, k0, b0, _), (t1, k1, b1, _) in itertools.pairwise(series):
        if t1 > t0:
            out.append(
                [
                    round(t1 - series[0][0], 3),
                    round((b1 - b0) / (t1 - t0) / clients, 1),
                    round((k1 - k0) / (t1 - t0), 2),
                ]
            )
    return out
