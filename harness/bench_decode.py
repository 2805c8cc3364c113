"""How long ``reverb.proto.messages.decode`` takes on the frames of issue 8's parse floods.

``python -m harness.bench_decode`` prints, for each frame, its size and the median and best
decode time over several runs (CPU time of this process; run it on a quiet machine). It is a
measurement, not a test: compare its output before and after a change to the codec.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

from reverb.proto import messages as m

MIB = 1 << 20


def _fill(prefix: str, item: str, suffix: str, size: int) -> bytes:
    """``prefix item,item,...,item suffix`` of at most ``size`` bytes."""
    room = size - len(prefix) - len(suffix)
    count = (room + 1) // (len(item) + 1)
    return (prefix + ",".join([item] * count) + suffix).encode()


def frames() -> dict[str, bytes]:
    """The frames measured: floods of small values, and ordinary game traffic."""
    rpc_ints = _fill('{"type":"rpc","id":1,"uid":1,"method":"move","args":[', "7", "]}", MIB)
    hello = _fill('{"type":"hello","version":1,"auth":[', "12345", "]}", 500_000)
    # The same flood made "suspicious" to a text-level pre-check: one long digit run in a string.
    rpc_mixed = _fill(
        '{"type":"rpc","id":1,"uid":1,"method":"move","args":["12345678901234567890",',
        "7",
        "]}",
        MIB,
    )
    rpc_objects = _fill(
        '{"type":"rpc","id":1,"uid":1,"method":"move","args":[', '{"a":1,"b":2}', "]}", MIB
    )
    spawn = [
        m.SpawnEntry(
            uid=i,
            type="Player",
            owner=i % 7 or None,
            args=[f"player-{i}", i * 1.5, -i * 0.25],
            fields={"name": f"player-{i}", "x": i * 1.5, "y": -i * 0.25, "hp": 100, "alive": True},
        )
        for i in range(1, 2000)
    ]
    sync = b""
    for n in range(1, len(spawn)):
        body = m.encode(m.Sync(tick=12, full=True, final=True, spawn=tuple(spawn[:n])))
        if len(body) > 50_000:
            break
        sync = body
    return {
        "rpc, 1 MiB of small ints": rpc_ints,
        "hello, 500 KB auth of ints": hello,
        "rpc, 1 MiB of ints + one 20-digit string": rpc_mixed,
        "rpc, 1 MiB of small objects": rpc_objects,
        "sync, 50 KB full snapshot": sync,
    }


def measure(func: Callable[[], object], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.process_time()
        func()
        times.append(time.process_time() - started)
    return statistics.median(times), min(times)


def main() -> None:
    for name, body in frames().items():
        json.loads(body)  # the frame is valid JSON
        runs = 20 if len(body) < 100_000 else 7
        median, best = measure(lambda body=body: m.decode(body), runs)  # type: ignore[misc]
        figures = f"median {median * 1000:8.2f} ms  best {best * 1000:8.2f} ms"
        print(f"{name:42} {len(body):>9} B  {figures}")


if __name__ == "__main__":
    main()
