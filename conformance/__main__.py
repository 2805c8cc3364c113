"""``python -m conformance``: run the wire-protocol conformance suite against a server."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from conformance.context import Ctx, Settings
from conformance.driver import CaseFailure
from conformance.launcher import LaunchError, ServerProcess
from conformance.model import FAIL, GROUPS, Case, all_cases
from conformance.profile import PROFILES
from conformance.report import summary_line, write_reports
from conformance.runner import CaseResult, run_all


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="Black-box conformance suite for the Reverb wire protocol (docs/protocol.md).",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--server-cmd",
        metavar="CMD",
        help="shell command starting the server under test; it must print 'READY <port>'",
    )
    target.add_argument("--connect", metavar="HOST:PORT", help="test an already running server")
    parser.add_argument("--report", metavar="DIR", help="write DIR/report.json and DIR/report.md")
    parser.add_argument(
        "--cases",
        metavar="PATTERN",
        default="",
        help="comma-separated id prefixes (2.3, 4.4.1) or groups (g3, 'Framing')",
    )
    parser.add_argument(
        "--exclude", metavar="PATTERN", default="", help="comma-separated patterns to leave out"
    )
    parser.add_argument("--list", action="store_true", help="list the selected cases and exit")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-case time budget (s)")
    parser.add_argument(
        "--handshake-deadline",
        type=float,
        default=5.0,
        help="the server's handshake deadline (s); no-hello cases wait up to this + margin",
    )
    parser.add_argument(
        "--ping-wait", type=float, default=7.0, help="how long the idle-ping case waits (s)"
    )
    parser.add_argument(
        "--limits",
        choices=sorted(PROFILES),
        help="the server runs with this limit profile (conformance/profile.py): enables the "
        "cases of group 10; without it they are left out",
    )
    parser.add_argument(
        "--fail-fast", action="store_true", help="start no new case after the first failure"
    )
    parser.add_argument("--workers", type=int, default=4, help="cases run concurrently")
    parser.add_argument("--ready-timeout", type=float, default=20.0, help="wait for READY (s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case's detail")
    args = parser.parse_args(argv)
    if not args.list and not args.server_cmd and not args.connect:
        parser.error("one of --server-cmd or --connect is required")
    return args


def select(cases: list[Case], pattern: str, exclude: str = "") -> list[Case]:
    patterns = [p.strip() for p in pattern.split(",") if p.strip()]
    excluded = [p.strip() for p in exclude.split(",") if p.strip()]
    return [
        c
        for c in cases
        if (not patterns or any(c.matches(p) for p in patterns))
        and not any(c.matches(p) for p in excluded)
    ]


def preflight(settings: Settings) -> str:
    """One well-behaved session must work before any case is worth running."""
    ctx = Ctx(settings)
    try:
        conn = ctx.open()
        control = conn.control_uid()
        conn.goodbye()
        return f"Control uid {control}, member {conn.member}"
    finally:
        ctx.close_all()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cases = select(all_cases(), args.cases, args.exclude)
    if args.limits is None:
        cases = [c for c in cases if not c.low]
    if args.list:
        for c in cases:
            flags = "".join(
                f" [{name}]" for name, on in (("slow", c.slow), ("exclusive", c.exclusive)) if on
            )
            print(f"{c.id:10} g{c.group} {GROUPS[c.group]:24} {c.description}{flags}")
        print(f"{len(cases)} cases")
        return 0
    if not cases:
        print("no case matches", args.cases, file=sys.stderr)
        return 2

    server: ServerProcess | None = None
    started = time.monotonic()
    # SIGTERM unwinds like an exception, so the finally below still stops the server.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        if args.server_cmd:
            server = ServerProcess(args.server_cmd, ready_timeout=args.ready_timeout)
            try:
                port = server.start()
            except LaunchError as exc:
                print(f"cannot start the server: {exc}", file=sys.stderr)
                for line in server.output:
                    print("  " + line, file=sys.stderr)
                return 2
            host, target = "127.0.0.1", args.server_cmd
        else:
            host, _, port_text = args.connect.rpartition(":")
            host, port, target = host or "127.0.0.1", int(port_text), args.connect

        def shutdown() -> None:
            if server is not None:
                server.terminate()

        settings = Settings(
            host=host,
            port=port,
            timeout=args.timeout,
            handshake_deadline=args.handshake_deadline,
            ping_wait=args.ping_wait,
            verbose=args.verbose,
            shutdown=shutdown if server is not None else None,
            limits=PROFILES[args.limits] if args.limits else None,
        )
        try:
            print(f"target {host}:{port} ({target}); preflight: {preflight(settings)}")
        except CaseFailure as exc:
            print(f"warning: preflight failed, the server does not serve a basic session: {exc}")

        done = [0]

        def progress(result: CaseResult) -> None:
            done[0] += 1
            line = (
                f"[{done[0]:3}/{len(cases)}] {result.verdict:10} {result.id:9} "
                f"{result.duration:6.2f}s  {result.description}"
            )
            if args.verbose or result.verdict == FAIL:
                line += f"\n{'':24}-> {result.detail}"
            print(line, flush=True)

        results = run_all(
            cases, settings, workers=args.workers, on_result=progress, fail_fast=args.fail_fast
        )
        wall = time.monotonic() - started
        print(summary_line(results) + f" in {wall:.1f}s")
        failed = [r for r in results if r.verdict == FAIL]
        for r in failed:
            print(f"FAIL {r.id} {r.description}: {r.detail}")
        if server is not None and not server.running() and not any(c.final for c in cases):
            print("the server process exited during the run", file=sys.stderr)
            failed.append(results[0])
        if args.report:
            directory = Path(args.report)
            meta = {"target": target, "host": host, "port": port, "wall_time": round(wall, 2)}
            write_reports(directory, results, meta)
            if server is not None:
                (directory / "server.log").write_text(
                    "\n".join(server.output) + "\n", encoding="utf-8"
                )
            print(f"report written to {directory / 'report.md'} and {directory / 'report.json'}")
        return 1 if failed else 0
    finally:
        if server is not None:
            server.stop()
            if args.report:
                Path(args.report).mkdir(parents=True, exist_ok=True)
                (Path(args.report) / "server.log").write_text(
                    "\n".join(server.output) + "\n", encoding="utf-8"
                )


if __name__ == "__main__":
    sys.exit(main())
