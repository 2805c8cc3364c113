"""Reverb arena: a small top-down multiplayer game on Reverb and pygame-ce.

    python examples/arena                      # a window for you, plus 2 bots (needs a display)
    python examples/arena --headless --bots 3 --seconds 12 --shots out/arena
    python examples/arena server --port 0      # only the server (prints READY <port>)
    python examples/arena client PORT [--bot]  # only one client

Every part is its own process on real sockets: the server listens on 127.0.0.1 (port 0 picks a
free port, read back from its ``READY`` line) and each player connects to it. "player N" is the
client with membership id N, everywhere. Needs pygame-ce (``pip install 'reverb-net[examples]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
try:
    import reverb  # noqa: F401
except ImportError:  # run from a clone without installing: use the clone's reverb
    sys.path.insert(0, str(ROOT))


def child_env(headless: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYGAME_HIDE_SUPPORT_PROMPT"] = "1"
    if headless:
        env["SDL_VIDEODRIVER"] = "dummy"
    return env


def has_display() -> bool:
    if os.environ.get("SDL_VIDEODRIVER") == "dummy":
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def orchestrate(args: argparse.Namespace) -> int:
    headless = args.headless or not has_display()
    if headless and not args.headless:
        print("arena: no display found (DISPLAY/WAYLAND_DISPLAY unset, or SDL_VIDEODRIVER=dummy):"
              " bots only, headless")  # fmt: skip
    env = child_env(headless)
    me = [sys.executable, str(HERE)]
    shots = Path(args.shots) if args.shots else None
    procs: list[subprocess.Popen[str]] = []
    bot_out: dict[int, list[str]] = {}
    server_lines: list[str] = []
    try:
        server = subprocess.Popen(
            [*me, "server", "--port", "0", "--seconds", str(args.seconds)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        procs.append(server)
        assert server.stdout is not None
        ready = server.stdout.readline()
        if not ready.startswith("READY "):
            print("arena: the server did not start", file=sys.stderr)
            return 1
        port = ready.split()[1]
        what = f"{args.bots} bots" + ("" if headless else " and you (in the window)")
        print(
            f"arena: server listening on 127.0.0.1:{port} (30 ticks/s); "
            f"{what}, each its own process, for {args.seconds:g} s"
        )

        def relay() -> None:
            for line in server.stdout:  # type: ignore[union-attr]
                if line.startswith("RESULT "):
                    server_lines.append(line)
                else:
                    print(line, end="", flush=True)

        relay_thread = threading.Thread(target=relay, daemon=True)
        relay_thread.start()
        bots = []
        for i in range(args.bots):
            cmd = [*me, "client", port, "--bot", "--seconds", str(args.seconds), "--seed", str(i)]
            cmd += ["--fps", str(args.bot_fps)]
            if shots is not None:
                cmd += ["--shots", str(shots)]
            bot = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
            procs.append(bot)
            bots.append(bot)
            bot_out[i] = []
        human = None
        if not headless:
            human = subprocess.Popen([*me, "client", port], env=env, text=True)
            procs.append(human)
        deadline = time.monotonic() + args.seconds + 30
        readers = []
        for i, bot in enumerate(bots):
            t = threading.Thread(target=lambda b=bot, i=i: bot_out[i].extend(b.stdout), daemon=True)
            t.start()
            readers.append(t)
        codes = [wait(b, deadline) for b in bots]
        if human is not None:
            codes.append(wait(human, None))
        for t in readers:
            t.join(max(0.0, deadline - time.monotonic()))
        codes.append(wait(server, time.monotonic() + 15))
        relay_thread.join(5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    server_result = parse(server_lines)
    bot_results = [parse(bot_out[i]) for i in sorted(bot_out)]
    ok = all(c == 0 for c in codes) and server_result is not None and all(bot_results)
    print_summary(server_result, bot_results, codes)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {"server": server_result, "bots": bot_results, "exit_codes": codes}, indent=2
            )
        )
    return 0 if ok else 1


def wait(proc: subprocess.Popen[str], deadline: float | None) -> int:
    try:
        timeout = None if deadline is None else max(0.1, deadline - time.monotonic())
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"arena: process {proc.args[2:4]} did not stop in time; killing it", file=sys.stderr)
        proc.kill()
        proc.wait()
        return -9


def parse(lines: list[str]) -> dict | None:
    for line in lines:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return None


def print_summary(server: dict | None, bots: list[dict | None], codes: list[int]) -> None:
    print()
    if server is None:
        print("arena: no summary from the server", codes)
        return
    print(f"== Arena summary: {server['seconds']:g} s at {server['tick_rate']:g} ticks/s ==")
    by_member = {b["member"]: b for b in bots if b}
    print(
        f"{'':10} {'score':>5} {'pickups':>7} {'tags':>4} {'tagged':>6} "
        f"{'RPCs':>5} {'refused':>7} {'mean RTT':>9}"
    )
    for member, p in sorted(server["players"].items(), key=lambda kv: -kv[1]["score"]):
        b = by_member.get(int(member), {})
        refused = sum(b.get("rpc_refused", {}).values()) if b else 0
        rtt = f"{b['mean_rtt_ms']:.1f} ms" if b.get("mean_rtt_ms") is not None else "-"
        print(
            f"{p['name']:10} {p['score']:5} {p['pickups']:7} {p['tags']:4} {p['tagged']:6} "
            f"{b.get('rpc_made', '-'):>5} {refused:>7} {rtt:>9}"
        )
    print(
        f"pickups: {server['pickups_spawned']} spawned, {server['pickups_taken']} taken, "
        f"{server['pickups_expired']} expired; shots: {server['shots']}, hits: {server['hits']}"
    )
    missing = sum(1 for b in bots if b is None)
    if missing:
        print(f"{missing} bot process(es) gave no result; exit codes {codes}")
    for b in sorted((b for b in bots if b), key=lambda b: b["member"]):
        joined = "yes" if b["member"] in server["members"] else "NO"
        still = b["still_frames_pct"]
        print(
            f"{b['name']} (a bot; membership #{b['member']} on the server: {joined}): "
            f"{b['frames']} frames at {b['fps']:g} fps\n"
            f"  remote players drawn {b['interpolation_delay_ms']:g} ms in the past, interpolated:"
            f" standing still on {still['interpolated']:g} % of frames while moving (raw "
            f"replicas: {still['raw']:g} %)\n"
            f"  own avatar predicted: mean correction {b['prediction_error_px']:g} px"
        )
        for text in b["expected_refusals"]:
            print(f"  expected refusal (a deliberate check, not a failure): {b['name']} {text}")
        for text, n in b["rpc_refused"].items():
            print(f"  refused {n}x: {text}")
    shots = sorted(s for b in bots if b for s in b["screenshots"])
    if shots:
        print(f"screenshots ({len(shots)}): {Path(shots[0]).parent}/")
        for s in shots:
            print(f"  {s}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["server"]:
        p = argparse.ArgumentParser(prog="arena server")
        p.add_argument("--port", type=int, default=0)
        p.add_argument("--seconds", type=float, default=600.0)
        p.add_argument("--seed", type=int, default=None)
        a = p.parse_args(argv[1:])
        from server import run

        return run(a.port, a.seconds, a.seed)
    if argv[:1] == ["client"]:
        p = argparse.ArgumentParser(prog="arena client")
        p.add_argument("port", type=int)
        p.add_argument("--bot", action="store_true", help="play by itself")
        p.add_argument("--seconds", type=float, default=None, help="stop after this long")
        p.add_argument("--shots", default=None, help="save PNG screenshots to this directory")
        p.add_argument("--fps", type=int, default=None)
        p.add_argument("--seed", type=int, default=0)
        a = p.parse_args(argv[1:])
        from client import run as run_client

        fps = a.fps or (30 if a.bot else 60)
        shots = Path(a.shots) if a.shots else None
        return run_client(a.port, a.bot, a.seconds, shots, fps, a.seed)
    p = argparse.ArgumentParser(prog="arena", description=__doc__.split("\n")[0])
    p.add_argument("--bots", type=int, default=2)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--headless", action="store_true", help="no window: bots only")
    p.add_argument("--bot-fps", type=int, default=30, help="frames per second of each bot")
    p.add_argument("--shots", default="out/arena", help="screenshot directory ('' for none)")
    p.add_argument("--json", default=None, help="write the results as JSON here")
    return orchestrate(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
