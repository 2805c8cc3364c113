"""``faults``: the clients reach the server through the fault proxy, one toxic per connection
(latency with jitter, a bandwidth cap, tiny chopped writes, a stall — half-open — and a reset),
while the world changes and calls flow. Every surviving client converges, no call runs twice,
and the server's ``client_disconnected`` for the stalled peer fires within idle_timeout + 1 s
of the stall starting (§9.2, run with a short ping interval and idle timeout)."""

from __future__ import annotations

from harness.procs import Fleet
from harness.proxy import FaultProxy, Toxics
from harness.scenarios.common import Options, Result, Run, guard

__all__ = ["TOXICS", "run"]

PING_INTERVAL = 0.5
IDLE_TIMEOUT = 1.5
DETECTION_SLACK = 1.0  # §9.2: idle timeout plus one poll interval; a second is generous
STALL_AFTER = 1.0

TOXICS = [
    Toxics(latency=0.05, jitter=0.03),
    Toxics(bandwidth=48 * 1024),
    Toxics(chop=7),
    Toxics(stall_after=STALL_AFTER),
    Toxics(reset_after=STALL_AFTER),
    Toxics(latency=0.02, jitter=0.02, chop=64),
]


def run(opts: Options) -> Result:
    result = Result("faults")
    clients, objects = opts.get("clients", len(TOXICS)), opts.get("objects", 20)
    seconds, rate = (
        max(opts.get("seconds", 3.0), STALL_AFTER + IDLE_TIMEOUT + 1.5),
        opts.get("rate", 30.0),
    )

    def body() -> None:
        with Fleet() as fleet:
            r = Run(fleet, opts, result)
            r.start_server(
                rate=rate,
                objects=objects,
                per_client=1,
                ping_interval=PING_INTERVAL,
                idle_timeout=IDLE_TIMEOUT,
                mutate={
                    "per_tick": max(1, objects // 5),
                    "spawn": 0.2,
                    "despawn": 0.2,
                    "min_objects": objects // 2,
                    "max_objects": objects * 2,
                },
            )
            with FaultProxy(r.port, lambda i: TOXICS[i % len(TOXICS)], seed=opts.seed) as proxy:
                # one client per process, started in turn: link i of the proxy is client i
                procs = [
                    r.start_clients(
                        1,
                        1,
                        port=proxy.port,
                        sequential=True,
                        ping_interval=PING_INTERVAL,
                        idle_timeout=IDLE_TIMEOUT,
                    )[0]
                    for _ in range(clients)
                ]
                members = [r.members(p)[0] for p in procs]
                doomed = {
                    m
                    for m, link in zip(members, proxy.links, strict=True)
                    if link.toxics.stall_after is not None or link.toxics.reset_after is not None
                }
                survivors = [p for p, m in zip(procs, members, strict=True) if m not in doomed]
                for p in procs:
                    p.request("stream", on=True, rate=10.0)
                r.srv.request("mutate", on=True)
                r.hold(seconds, "faults")
                for p in survivors:
                    p.request("stream", on=False, timeout=20.0)
                state, _ = r.converge(survivors, timeout=20.0)
                check_links(result, r, proxy, members)
            twice = {t: e for t, e in state["executions"].items() if e[4] != 1}
            result.check(not twice, f"calls executed more than once: {list(twice)[:5]}")
            result.figures.update(
                clients=clients,
                objects=objects,
                rate_hz=rate,
                seconds=seconds,
                survivors=len(survivors),
                calls_executed=len(state["executions"]),
                ping_interval_s=PING_INTERVAL,
                idle_timeout_s=IDLE_TIMEOUT,
            )

    return guard(result, body)


def check_links(result: Result, r: Run, proxy: FaultProxy, members: list[int]) -> None:
    gone = {e["member"]: e for e in r.srv.events("client_disconnected")}
    links = []
    for link, member in zip(proxy.links, members, strict=True):
        info = {
            "member": member,
            "toxics": link.toxics.describe(),
            "bytes_down": link.bytes_down,
            "bytes_up": link.bytes_up,
        }
        event = gone.get(member)
        if link.stalled_at is not None:
            bound = IDLE_TIMEOUT + DETECTION_SLACK
            if result.check(
                event is not None, f"stalled member {member}: the server never dropped it"
            ):
                assert event is not None
                delay = event["t"] - link.stalled_at
                info["detected_after_s"] = round(delay, 3)
                result.check(
                    delay <= bound,
                    f"stalled member {member} dropped {delay:.2f} s after the stall (bound "
                    f"{bound:.1f} s = idle timeout + {DETECTION_SLACK} s)",
                )
                result.figures["stall_detected_after_s"] = round(delay, 3)
        elif link.reset_at is not None:
            result.check(event is not None, f"reset member {member}: the server never dropped it")
        else:
            result.check(event is None, f"member {member} ({info['toxics']}) was dropped: {event}")
        links.append(info)
    result.figures["links"] = links
