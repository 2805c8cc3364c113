"""``sweep`` (also ``load --sweep``): ``load`` for M in {1, 8, 32, 128} clients and N in
{10, 100, 1000} objects, short runs, one baseline first; one JSON and one report for all."""

from __future__ import annotations

from harness.scenarios.common import Options, Result, guard
from harness.scenarios.load import measure, ratios

__all__ = ["CLIENTS", "OBJECTS", "run"]

CLIENTS = (1, 8, 32, 128)
OBJECTS = (10, 100, 1000)


def run(opts: Options) -> Result:
    result = Result("sweep")
    seconds = opts.get("seconds", 3.0)
    rpc_rate = opts.get("rpc_rate", 2.0)
    grid_clients = opts.grid_clients or list(CLIENTS)
    grid_objects = opts.grid_objects or list(OBJECTS)

    def body() -> None:
        base = Result("baseline")
        if opts.baseline:
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
        rows = []
        for clients in grid_clients:
            for objects in grid_objects:
                child = Result(f"load M={clients} N={objects}")
                guard(
                    child,
                    lambda c=clients, n=objects, ch=child: measure(
                        ch,
                        opts,
                        clients=c,
                        objects=n,
                        seconds=seconds,
                        rpc_rate=rpc_rate,
                        label=f"M={c} N={n}",
                    ),
                )
                if base.figures and "freshness_ms" in child.figures:
                    child.figures["vs_baseline"] = ratios(child.figures, base.figures)
                result.children.append(child)
                failed = [c["name"] for c in child.figures.get("criteria", []) if not c["ok"]]
                rows.append(
                    {k: v for k, v in child.figures.items() if k != "bandwidth_series"}
                    | {
                        "failed": ",".join(failed) or ("-" if child.passed else "error"),
                        "verdict": "PASS" if child.passed else "FAIL",
                    }
                )
        result.figures["baseline"] = {
            k: v for k, v in base.figures.items() if k != "bandwidth_series"
        }
        result.figures["table"] = rows

    return guard(result, body)
