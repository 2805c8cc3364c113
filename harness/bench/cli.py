"""``python -m harness bench [options]``: see ``harness/README.md`` ("bench")."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

from harness.bench.report import HELD, add_held, ratios, write_html
from harness.bench.runner import IMPLS, Cell, Plan, run_plan, summarise

__all__ = ["build_cells", "main", "parse"]


def numbers(text: str, kind: type = int) -> list[Any]:
    return [kind(x) for x in text.split(",") if x.strip()]


def churns(text: str) -> list[float]:
    """ "100,10,0" (percent) or "1,0.1,0" (fractions)."""
    values = numbers(text, float)
    return [v / 100.0 if any(x > 1 for x in values) else v for v in values]


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m harness bench",
        description="Reverb (threaded, asyncio) against a raw-JSON baseline, same workload.",
    )
    p.add_argument("--n", default="100,1000,5000", help="objects (N), comma-separated")
    p.add_argument("--m", default="8,32", help="clients (M), comma-separated")
    p.add_argument("--churn", default="100,10,0", help="percent of objects changed per tick")
    p.add_argument("--impl", default="raw,threaded,asyncio", help="raw,threaded,asyncio")
    p.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip the floor (raw writing only changes) on the 0 %% and 10 %% cells",
    )
    p.add_argument("--rpc", default="1,8", help="RPC callers per cell ('none' to skip)")
    p.add_argument(
        "--many", type=int, default=1000, help="connections of the many-clients row (0: skip)"
    )
    p.add_argument("--many-n", type=int, default=1000, help="objects of the many-clients row")
    p.add_argument(
        "--targets",
        action="store_true",
        help="run only the cells of the issue's target table (not the whole N x M x churn grid)",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="measuring window per run")
    p.add_argument("--warmup", type=float, default=1.0, help="settling time before a window")
    p.add_argument("--reps", type=int, default=3, help="repetitions (medians reported)")
    p.add_argument("--quick", action="store_true", help="1000 x 8, 100 %% and 10 %%, RPC 1; 1 rep")
    p.add_argument("--profile", action="store_true", help="also cProfile the threaded server")
    p.add_argument(
        "--profile-churn",
        type=float,
        default=100.0,
        help="the churn (percent) of the profiled 1000 x 8 run",
    )
    p.add_argument("--out", type=Path, default=Path("out/bench"), help="output folder")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p.parse_args(argv)


def build_cells(args: argparse.Namespace) -> list[Cell]:
    if args.quick:
        return [Cell("sync", 1000, 8, 1.0), Cell("sync", 1000, 8, 0.1), Cell("rpc", 100, 1, 0.1, 1)]
    rpc = [] if args.rpc.strip() in ("", "none", "0") else numbers(args.rpc)
    if args.targets:
        sync = [
            (1000, 8, 1.0),
            (1000, 8, 0.1),
            (1000, 8, 0.0),
            (1000, 32, 1.0),
            (100, 8, 0.0),
            (5000, 8, 0.0),
        ]
    else:
        sync = [
            (n, m, c) for n in numbers(args.n) for m in numbers(args.m) for c in churns(args.churn)
        ]
    cells = [Cell("sync", n, m, c) for n, m, c in sync]
    cells += [Cell("rpc", 100, c, 0.1, c) for c in rpc]
    if args.many:
        cells.append(Cell("many", args.many_n, args.many, 0.1))
    return cells


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # so that every run's ``finally`` stops and reaps its children


def main(argv: list[str]) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _terminated)
    if args.quick:
        args.reps, args.seconds = 1, min(args.seconds, 2.0)
    impls = [i for i in args.impl.split(",") if i]
    for impl in impls:
        if impl not in IMPLS:
            raise SystemExit(f"unknown --impl {impl!r} (one of {', '.join(IMPLS)})")
    if args.floor and "raw" in impls and "floor" not in impls:
        impls.append("floor")
    args.out.mkdir(parents=True, exist_ok=True)
    pct = f"{args.profile_churn:g}"
    profile = args.out / f"profile_threaded_1000x8_churn{pct}.txt" if args.profile else None
    plan = Plan(
        cells=build_cells(args),
        impls=impls,
        reps=args.reps,
        seconds=args.seconds,
        warmup=args.warmup,
        python=sys.executable,
        profile=str(profile.resolve()) if profile else "",
        profile_churn=args.profile_churn / 100.0,
        progress=args.progress,
    )
    started = time.monotonic()
    load_before = os.getloadavg()
    runs = run_plan(plan)
    summary = summarise(runs)
    add_held(summary)
    data: dict[str, Any] = {
        "meta": {
            "command": "python -m harness bench " + " ".join(argv),
            "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "reps": plan.reps,
            "seconds": plan.seconds,
            "warmup": plan.warmup,
            "duration_s": round(time.monotonic() - started, 1),
            "cpus": os.cpu_count(),
            "loadavg_before_after": [round(x, 2) for x in (*load_before, *os.getloadavg())],
            "held_hz": f"{HELD}: min(server tick rate, full clients' apply rate)",
        },
        "summary": summary,
        "ratios": ratios(summary),
        "runs": runs,
    }
    if profile is not None and profile.exists():
        data["profile_text"] = profile.read_text(encoding="utf-8")
    (args.out / "bench.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    html = write_html(data, args.out / "report.html")
    print_ratios(data["ratios"])
    print(f"json: {args.out / 'bench.json'}\nreport: {html}")
    return 0


def print_ratios(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        value = "not measured" if r["value"] is None else f"{r['value']:.3g}"
        met = "" if r["met"] is None else ("  MET" if r["met"] else "  not met")
        note = f"  ({r['note']})" if r.get("note") and r["value"] is not None else ""
        print(f"{r['row']} | {r['what']} | {r['impl']}: {value} (target {r['target']}){met}{note}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
