"""Run Reverb's fuzz targets (fuzz/targets.py), each in its own process.

    python fuzz/run.py --seconds 60                 # every target, 60 s each
    python fuzz/run.py --target session --runs 5000 # one target, a number of executions
    python fuzz/run.py --mode fallback --seconds 5  # without atheris

``--mode auto`` (the default) uses atheris (coverage-guided, libFuzzer) when it can be
imported, else a deterministic fallback: seeded random mutation of the seed corpus (bit flips,
byte insertions and deletions, splices, random bytes), bounded by ``--seconds``/``--runs``.
Prints one JSON line per target with its executions; exits 1 if any target crashed, leaving
the crashing input in ``--artifacts`` (default: a temporary directory).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NAMES = ["framing", "messages", "session", "dispatch"]


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


# -- in the child process ---------------------------------------------------------------------


def child_atheris(name: str, seconds: float, runs: int, artifacts: Path) -> None:
    import atheris

    with atheris.instrument_imports(include=["reverb"]):
        import targets
    target = targets.TARGETS[name]
    corpus = Path(tempfile.mkdtemp(prefix=f"reverb-fuzz-{name}-"))
    for i, seed in enumerate(targets.SEEDS[name]):
        (corpus / f"seed{i}").write_bytes(seed)
    argv = [
        sys.argv[0],
        str(corpus),
        f"-artifact_prefix={artifacts}{os.sep}{name}-",
        "-max_len=4096",
        "-print_final_stats=1",
    ]
    if seconds:
        argv.append(f"-max_total_time={max(1, int(seconds))}")
    if runs:
        argv.append(f"-runs={runs}")
    atheris.Setup(argv, target)
    atheris.Fuzz()


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if op == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert bytes
            i = rng.randint(0, len(buf))
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2 and buf:  # delete a run
            i = rng.randrange(len(buf))
            del buf[i : i + rng.randint(1, 16)]
        elif op == 3 and buf:  # set a byte to an interesting value
            buf[rng.randrange(len(buf))] = rng.choice(b'\x00\x01\x7f\x80\xff"{}[],:.-0123456789')
        elif op == 4:  # splice with another input
            other = rng.choice(pool)
            i, j = rng.randint(0, len(buf)), rng.randint(0, len(other))
            buf = buf[:i] + other[j:]
        elif op == 5 and buf:  # duplicate a run
            i = rng.randrange(len(buf))
            buf[i:i] = buf[i : i + rng.randint(1, 32)]
        else:  # random bytes
            buf = bytearray(rng.randbytes(rng.randint(0, 64)))
    return bytes(buf[:4096])


def child_fallback(name: str, seconds: float, runs: int, artifacts: Path, seed: int) -> None:
    import targets

    target = targets.TARGETS[name]
    pool = list(targets.SEEDS[name])
    rng = random.Random(f"{seed}:{name}")
    started = time.monotonic()
    executions = 0
    while True:
        if runs and executions >= runs:
            break
        if (seconds or not runs) and time.monotonic() - started >= (seconds or 10.0):
            break
        data = pool[executions] if executions < len(pool) else mutate(rng, rng.choice(pool), pool)
        try:
            target(data)
        except Exception:
            artifacts.mkdir(parents=True, exist_ok=True)
            path = artifacts / f"{name}-crash-{executions}"
            path.write_bytes(data)
            traceback.print_exc()
            print(f"CRASH {name} input={data!r} saved={path}", file=sys.stderr, flush=True)
            sys.exit(1)
        executions += 1
        if executions % 64 == 0 and len(pool) < 2000:
            pool.append(data)  # keep some mutants: a cheap stand-in for a growing corpus
    elapsed = time.monotonic() - started
    print(f"Done {executions} runs in {elapsed:.1f} second(s)", file=sys.stderr, flush=True)


# -- the parent --------------------------------------------------------------------------------


def run_target(
    args: argparse.Namespace, name: str, mode: str, artifacts: Path
) -> dict[str, object]:
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--child", name, "--mode", mode,
        "--seconds", str(args.seconds), "--runs", str(args.runs), "--seed", str(args.seed),
        "--artifacts", str(artifacts),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT)]))
    limit = (args.seconds or 60) * 3 + 60
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=limit)
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output, code = f"timed out after {limit} s: {exc}", -1
    done = re.findall(r"Done (\d+) runs in", output)
    result = {
        "target": name,
        "mode": mode,
        "executions": int(done[-1]) if done else None,
        "seconds": round(time.monotonic() - started, 1),
        "crashed": code != 0,
    }
    if code != 0:
        result["output"] = output[-4000:]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 10)))
    parser.add_argument("--runs", type=int, default=0, help="executions per target (0: no cap)")
    parser.add_argument("--target", choices=NAMES, action="append")
    parser.add_argument("--mode", choices=["auto", "atheris", "fallback"], default="auto")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fallback's mutations")
    parser.add_argument("--artifacts", type=Path, default=None)
    parser.add_argument("--jobs", type=int, default=1, help="targets run at the same time")
    parser.add_argument("--child", choices=NAMES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path[:0] = [str(HERE), str(ROOT)]
        if args.mode == "atheris":
            child_atheris(args.child, args.seconds, args.runs, args.artifacts)
        else:
            child_fallback(args.child, args.seconds, args.runs, args.artifacts, args.seed)
        return 0
    mode = args.mode
    if mode == "auto":
        mode = "atheris" if have_atheris() else "fallback"
    if mode == "atheris" and not have_atheris():
        print("atheris is not installed: pip install atheris (or use --mode fallback)")
        return 2
    artifacts = args.artifacts or Path(tempfile.mkdtemp(prefix="reverb-fuzz-artifacts-"))
    artifacts.mkdir(parents=True, exist_ok=True)  # libFuzzer requires it to exist
    failed = False
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        names = args.target or NAMES
        runs = [pool.submit(run_target, args, name, mode, artifacts) for name in names]
        for run in runs:
            result = run.result()
            print(json.dumps(result), flush=True)
            failed |= bool(result["crashed"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
