"""``python -m harness SCENARIO [options]``: run one scenario, print its verdict, exit 0 on
PASS and 1 on FAIL. See ``harness/README.md`` for every scenario, option and JSON key."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from harness.breakage import BREAKAGES
from harness.scenarios import SCENARIOS, Options, Result, get

__all__ = ["main"]


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m harness",
        description="Check Reverb's promises between real processes.",
    )
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument("--clients", type=int, help="client connections (M)")
    p.add_argument("--objects", type=int, help="world objects (N)")
    p.add_argument("--rate", type=float, help="server tick rate in Hz (R)")
    p.add_argument("--seconds", type=float, help="how long the world runs (S)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--clients-per-process",
        type=int,
        help="clients hosted by one client process (each in its own ReverbContext)",
    )
    p.add_argument("--rpc-rate", type=float, help="load: calls per client per second")
    p.add_argument("--no-baseline", action="store_true", help="load: skip the baseline run")
    p.add_argument(
        "--client-kind",
        choices=("light", "full"),
        help="load/sweep: light wire-level clients (default) or full Reverb clients",
    )
    p.add_argument(
        "--max-freshness-p99",
        type=float,
        metavar="MS",
        help="load/sweep: freshness p99 bound in ms (default max(100, 3 tick periods))",
    )
    p.add_argument(
        "--min-rate-ratio",
        type=float,
        metavar="X",
        help="load/sweep: the share of the tick rate that must be held (default 0.95)",
    )
    p.add_argument("--sweep", action="store_true", help="load: run the sweep instead")
    p.add_argument("--server-python", help="interpreter for the server process")
    p.add_argument("--client-python", help="interpreter for the client processes")
    p.add_argument(
        "--all-pairs",
        action="store_true",
        help="versions: every (server, client) pairing of 3.10-3.13 found",
    )
    p.add_argument("--only", help="versions: comma-separated scenarios to run per pairing")
    p.add_argument("--grid-clients", help="sweep: comma-separated M values (1,8,32,128)")
    p.add_argument("--grid-objects", help="sweep: comma-separated N values (10,100,1000)")
    p.add_argument(
        "--converge-timeout",
        type=float,
        help="seconds the clients get to converge once mutations stop (15)",
    )
    p.add_argument(
        "--break",
        dest="breaks",
        action="append",
        default=[],
        choices=sorted(BREAKAGES),
        help="deliberately break the server (repeatable)",
    )
    p.add_argument("--json", type=Path, help="write the figures and the verdict as JSON")
    p.add_argument("--report", type=Path, help="write an HTML report (FILE.html or a folder)")
    p.add_argument(
        "--progress",
        action="store_true",
        default=None,
        help="draw progress bars (default: when stderr is a terminal)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the benchmark has its own options: harness/bench/cli.py
        from harness.bench.cli import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["resume"]:  # session resume through the fault proxy: harness/resume.py
        from harness.resume import main as resume_main

        return resume_main(argv[1:])
    if argv[:1] == ["interest"]:  # interest management, rates, budgets: harness/interest.py
        from harness.interest import main as interest_main

        return interest_main(argv[1:])
    if argv[:1] == ["rooms"]:  # many rooms, light clients, join burst: harness/rooms.py
        from harness.rooms import main as rooms_main

        return rooms_main(argv[1:])
    if argv[:1] == ["smooth"]:  # interpolation through the fault proxy: harness/smooth.py
        from harness.smooth import main as smooth_main

        return smooth_main(argv[1:])
    args = parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    opts = Options(
        clients=args.clients,
        objects=args.objects,
        rate=args.rate,
        seconds=args.seconds,
        seed=args.seed,
        clients_per_process=args.clients_per_process,
        server_python=args.server_python,
        client_python=args.client_python,
        breaks=args.breaks,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        rpc_rate=args.rpc_rate,
        baseline=not args.no_baseline,
        all_pairs=args.all_pairs,
        only=args.only.split(",") if args.only else None,
        grid_clients=[int(x) for x in args.grid_clients.split(",")] if args.grid_clients else None,
        grid_objects=[int(x) for x in args.grid_objects.split(",")] if args.grid_objects else None,
        converge_timeout=args.converge_timeout,
        client_kind=args.client_kind,
        max_freshness_p99=args.max_freshness_p99,
        min_rate_ratio=args.min_rate_ratio,
    )
    scenario = "sweep" if args.scenario == "load" and args.sweep else args.scenario
    started = time.monotonic()
    result = get(scenario)(opts)
    elapsed = time.monotonic() - started
    print_verdict(result, elapsed)
    data = result.to_json()
    data["duration_s"] = round(elapsed, 2)
    data["breaks"] = args.breaks
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    if args.report:
        from harness.report import write_report

        path = write_report(result, data, args.report)
        print(f"report: {path}")
    return 0 if result.passed else 1


def print_verdict(result: Result, elapsed: float) -> None:
    verdict = "PASS" if result.passed else "FAIL"
    print(f"{result.scenario}: {verdict} ({elapsed:.1f} s)")
    for child in result.children:
        print(f"  {child.scenario}: {'PASS' if child.passed else 'FAIL'}")
        for reason in child.to_json()["reasons"]:
            print(f"    - {reason}")
    for reason in result.to_json()["reasons"]:
        print(f"  - {reason}")
    for key, value in result.figures.items():
        if not isinstance(value, (list, dict)) or key in (
            "freshness_ms",
            "rpc_rtt_ms",
            "rpc_calls",
        ):
            print(f"  {key}: {value}")
    for c in result.figures.get("criteria", []):
        mark = "ok  " if c["ok"] else "FAIL"
        print(f"  [{mark}] {c['name']}: {c['value']} (needs {c['threshold']})")


if __name__ == "__main__":
    sys.exit(main())
