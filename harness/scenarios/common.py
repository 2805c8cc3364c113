"""What every scenario shares: options, results, starting the server and the client processes,
quiescing the world and waiting for the clients to converge on the server's hash."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.metrics import Progress
from harness.procs import Child, ChildError, Fleet

__all__ = [
    "Options",
    "Result",
    "Run",
    "diff_tables",
    "split",
]

logger = logging.getLogger("harness.scenarios")
Json = dict[str, Any]
MAX_REASONS = 20


@dataclass
class Options:
    """Command-line options; ``None`` means "the scenario's default"."""

    clients: int | None = None
    objects: int | None = None
    rate: float | None = None
    seconds: float | None = None
    seed: int = 1
    clients_per_process: int | None = None
    server_python: str | None = None
    client_python: str | None = None
    breaks: list[str] = field(default_factory=list)
    progress: bool = False
    rpc_rate: float | None = None
    baseline: bool = True
    all_pairs: bool = False
    only: list[str] | None = None  # versions: which scenarios to run
    grid_clients: list[int] | None = None  # sweep: M values
    grid_objects: list[int] | None = None  # sweep: N values
    converge_timeout: float | None = None
    client_kind: str | None = None  # load/sweep: "light" (default) or "full" client processes
    max_freshness_p99: float | None = None  # load/sweep: ms; default max(100, 3 tick periods)
    min_rate_ratio: float | None = None  # load/sweep: share of R to hold; default 0.95

    def get(self, name: str, default: Any) -> Any:
        value = getattr(self, name)
        return default if value is None else value


@dataclass
class Result:
    scenario: str
    reasons: list[str] = field(default_factory=list)
    figures: Json = field(default_factory=dict)
    samples: Json = field(default_factory=dict)  # raw distributions for the report only
    children: list[Result] = field(default_factory=list)
    suppressed: int = 0  # reasons beyond MAX_REASONS, counted but not kept

    def add(self, reason: str) -> None:
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(reason)
        else:
            self.suppressed += 1

    @property
    def passed(self) -> bool:
        return not self.reasons and all(c.passed for c in self.children)

    def check(self, ok: bool, reason: str) -> bool:
        if not ok:
            self.add(reason)
        return ok

    def to_json(self) -> Json:
        out: Json = {
            "scenario": self.scenario,
            "verdict": "PASS" if self.passed else "FAIL",
            "passed": self.passed,
            "reasons": self.reasons
            + ([f"... and {self.suppressed} more"] if self.suppressed else []),
        }
        out.update(self.figures)
        if self.children:
            out["runs"] = [c.to_json() for c in self.children]
        return out


def split(total: int, per: int) -> list[int]:
    """``total`` clients in processes of at most ``per``: ``split(10, 4) == [4, 4, 2]``."""
    per = max(1, per)
    return [min(per, total - i) for i in range(0, total, per)]


def diff_tables(server: Json, client: Json, limit: int = 3) -> str:
    """A short description of how a client's canonical table differs from the server's."""
    missing = sorted(set(server) - set(client), key=int)
    extra = sorted(set(client) - set(server), key=int)
    changed = sorted((u for u in set(server) & set(client) if server[u] != client[u]), key=int)
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (uids {', '.join(missing[:limit])})")
    if extra:
        parts.append(f"{len(extra)} extra (uids {', '.join(extra[:limit])})")
    if changed:
        u = changed[0]
        parts.append(f"{len(changed)} differ (uid {u}: server {server[u]} client {client[u]})")
    return "; ".join(parts) or "tables equal"


class Run:
    """One scenario run's processes: a server child and client processes, in a ``Fleet``."""

    def __init__(self, fleet: Fleet, opts: Options, result: Result) -> None:
        self.fleet = fleet
        self.opts = opts
        self.result = result
        self.server: Child | None = None
        self.port = 0
        self.procs: list[Child] = []
        self.lifetime = 120.0 + 3 * float(opts.get("seconds", 10.0))
        self.expected_dead: list[Child] = []  # children a scenario kills or lets die on purpose

    def start_server(self, **server_opts: Any) -> Child:
        opts = {
            "seed": self.opts.seed,
            "lifetime": self.lifetime,
            "break": self.opts.breaks,
            **server_opts,
        }
        self.server = self.fleet.start("server", "server", opts, python=self.opts.server_python)
        self.port = int(self.server.wait_ready(30.0))
        return self.server

    def start_clients(
        self,
        total: int,
        per_process: int,
        *,
        port: int | None = None,
        sequential: bool = False,
        role: str = "clients",
        **client_opts: Any,
    ) -> list[Child]:
        """Start processes hosting ``total`` clients; wait until every one is connected."""
        started: list[Child] = []
        for n in split(total, per_process):
            opts = {
                "port": port or self.port,
                "count": n,
                "seed": self.opts.seed + len(self.procs) + 1,
                "lifetime": self.lifetime,
                **client_opts,
            }
            name = f"clients{len(self.procs)}"
            child = self.fleet.start(name, role, opts, python=self.opts.client_python)
            self.procs.append(child)
            started.append(child)
            if sequential:
                child.wait_ready(30.0 + n)
        for child in started:
            child.wait_ready(30.0 + total * 0.5)
        return started

    @property
    def srv(self) -> Child:
        assert self.server is not None, "start_server() first"
        return self.server

    def members(self, proc: Child) -> list[int]:
        return list(proc.wait_event("connected", timeout=1.0)["members"])

    def hold(self, seconds: float, label: str, tick: Callable[[float], None] | None = None) -> None:
        """Let the world run for ``seconds`` (a measurement window, not a synchronisation),
        watching that every child stays alive; ``tick(elapsed)`` runs about every 50 ms."""
        bar = Progress(label, seconds, enabled=self.opts.progress)
        start = time.monotonic()
        try:
            while (elapsed := time.monotonic() - start) < seconds:
                self.fleet.check_alive(
                    [
                        c
                        for c in [self.server, *self.procs]
                        if c is not None and c not in self.expected_dead
                    ]
                )
                if tick is not None:
                    tick(elapsed)
                bar.update(elapsed)
                time.sleep(min(0.05, max(0.0, seconds - elapsed)))
        finally:
            bar.close()

    def converge(
        self,
        procs: list[Child] | None = None,
        *,
        timeout: float | None = None,
        allowed_closed: Callable[[int | None], bool] = lambda member: False,
    ) -> tuple[Json, list[Json]]:
        """Stop the mutator, take the server's hash after the tick carrying the last change,
        wait until every live client has it; record a reason for each that does not."""
        procs = self.procs if procs is None else procs
        timeout = self.opts.get("converge_timeout", 15.0 if timeout is None else timeout)
        state = self.srv.request("quiesce", timeout=15.0, detail=True)
        rids = [(p, p.send("converge", hash=state["hash"], timeout=timeout)) for p in procs]
        statuses: list[Json] = []
        mismatched = []
        for proc, rid in rids:
            reply = proc.reply(rid, timeout + 15.0)
            for st in reply["clients"]:
                st["proc"] = proc.name
                statuses.append(st)
                if st["closed"] is not None:
                    if not allowed_closed(st["member"]):
                        code, reason = st["closed"][:2]
                        self.result.add(
                            f"{proc.name} client {st['index']} (member {st['member']}) was "
                            f"disconnected: {code} {reason}"
                        )
                elif st["hash"] != state["hash"]:
                    mismatched.append((proc, st))
        if mismatched:
            detail = {p.name: p.request("status", detail=True)["clients"] for p, _ in mismatched}
            for proc, st in mismatched:
                table = detail[proc.name][st["index"]]["table"]
                self.result.add(
                    f"{proc.name} client {st['index']} (member {st['member']}) did not converge "
                    f"within {timeout} s: {diff_tables(state['table'], table)}"
                )
        self.result.figures["converged"] = not mismatched and all(
            st["closed"] is None or allowed_closed(st["member"]) for st in statuses
        )
        return state, statuses


def guard(result: Result, body: Callable[[], None]) -> Result:
    """Run a scenario body; a child failure or a harness error becomes a FAIL reason."""
    try:
        body()
    except ChildError as exc:
        result.add(f"child process failure: {exc}")
    except KeyboardInterrupt:
        result.add("interrupted")
        raise
    except Exception as exc:
        logger.exception("scenario %s crashed", result.scenario)
        result.add(f"harness error: {type(exc).__name__}: {exc}")
    return result
