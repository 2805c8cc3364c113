"""``convergence``: the server mutates, spawns and despawns objects every tick; once it stops,
every client's replica table hashes the same as the server's world."""

from __future__ import annotations

from harness.procs import Fleet
from harness.scenarios.common import Options, Result, Run, guard

__all__ = ["run"]


def run(opts: Options) -> Result:
    result = Result("convergence")
    clients, objects = opts.get("clients", 4), opts.get("objects", 50)
    seconds, rate = opts.get("seconds", 3.0), opts.get("rate", 30.0)

    def body() -> None:
        with Fleet() as fleet:
            r = Run(fleet, opts, result)
            r.start_server(
                rate=rate,
                objects=objects,
                per_client=1,
                mutate={
                    "per_tick": max(1, objects // 5),
                    "spawn": 0.3,
                    "despawn": 0.3,
                    "min_objects": objects // 2,
                    "max_objects": objects * 2,
                },
            )
            r.start_clients(clients, opts.get("clients_per_process", 4))
            r.srv.request("mutate", on=True)
            r.hold(seconds, "convergence")
            state, _ = r.converge()
            result.figures.update(
                clients=clients,
                objects=objects,
                rate_hz=rate,
                seconds=seconds,
                server_objects=state["n_objects"],
                server_ticks=state["sample"]["tick"],
                spawned_total=len(state["assigned"]),
                server_hash=state["hash"],
            )

    return guard(result, body)
