"""The hostile suite's fixtures: a real server process (``tests/hostile/app.py``) and a
well-behaved in-process client that must keep being served through every abuse.

Every wait is bounded; processes are stopped and reaped in ``finally``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reverb import Client, ReverbContext, ReverbSide
from tests.hostile.app import TYPES
from tests.jsonproc import JsonProcess

RSS_GROWTH_LIMIT_KIB = 20 * 1024  # after an abuse ends, the server's RSS stays this close
CALL_PACING = 0.01  # s between a well-behaved client's calls


class ServerProcess(JsonProcess):
    def __init__(self, **options: Any) -> None:
        super().__init__("-m", "tests.hostile.app", json.dumps(options))

    def state(self) -> dict[str, Any]:
        return self.ask("state", "state")

    def until(self, condition: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> Any:
        """Poll ``state`` until ``condition`` holds; return that state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if condition(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s: {state['stats']}")
            time.sleep(0.02)  # polling interval between two condition checks


def client_table(ctx: ReverbContext) -> dict[str, Any]:
    return {
        str(uid): {
            "type": type(obj).__name__,
            "owner": obj.belonging_membership,
            "fields": {
                k: v
                for k, v in vars(obj).items()
                if not k.startswith("_") and k not in ("uid", "belonging_membership")
            },
        }
        for uid, obj in ctx.objects.items()
    }


class Good:
    """A well-behaved threaded client in this process, with its own context."""

    def __init__(self, port: int, **options: Any) -> None:
        self.ctx = ReverbContext(ReverbSide.CLIENT)
        for cls in TYPES:
            self.ctx.register(cls)
        self.client = Client(port=port, context=self.ctx, **options)
        self.client.connect()
        self.member = self.client.member
        self.avatar = self.wait_for(
            lambda: next(
                (o for o in self.ctx.objects.values() if o.belonging_membership == self.member),
                None,
            )
        )

    def wait_for(self, get: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while (value := get()) is None or value is False:
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            self.ctx.client_sync(timeout=0.01)
        return value

    def call(self, method: str = "move", *args: Any) -> Any:
        return self.avatar.compute_server(method, *(args or (1,))).result(timeout=10)

    def rtt(self) -> float:
        started = time.perf_counter()
        self.call()
        return time.perf_counter() - started

    def rtts(self, n: int = 0, *, seconds: float = 0.0) -> list[float]:
        """Round trips of ``move``, paced like a game client (100 calls/s, under the server's
        200/s call limit): ``n`` of them, or as many as fit in ``seconds``."""
        out: list[float] = []
        started = time.monotonic()
        while len(out) < n or time.monotonic() - started < seconds:
            out.append(self.rtt())
            time.sleep(CALL_PACING)  # the client's deliberate pacing, not synchronisation
        return out

    def converge(self, server: ServerProcess, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            wanted = server.state()["table"]
            self.ctx.client_sync(timeout=0.05)
            if client_table(self.ctx) == wanted:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no convergence in {timeout} s:\n{wanted}\n{client_table(self.ctx)}"
                )

    def close(self) -> None:
        self.client.disconnect()


class Arena:
    """One server process, its well-behaved client, and the server's RSS before the abuse."""

    def __init__(self, record: Callable[[str, object], None], **options: Any) -> None:
        self.record = record
        self.server = ServerProcess(**options)
        try:
            self.good = Good(self.server.port)
            self.good.rtts(20)  # warm up both sides before the baseline
            self.good.converge(self.server)
        except BaseException:
            self.server.close()
            raise
        self.baseline = self.server.state()
        self.rss_before = self.baseline["rss_kib"]

    @property
    def port(self) -> int:
        return self.server.port

    def still_serves(self, label: str) -> dict[str, Any]:
        """After an abuse: the good client converges and gets an answer, a new client too,
        and the server's RSS is back near its baseline. Returns the server's last state."""
        self.good.call()
        uids = self.server.ask("spawn", "spawned", n=2)["uids"]
        self.good.converge(self.server)
        newcomer = Good(self.server.port)
        try:
            newcomer.converge(self.server)
            newcomer.call()
        finally:
            newcomer.close()
        for uid in uids:
            self.server.ask("despawn", "despawned", uid=uid)
        state = self.server.state()
        rss_after = state["rss_kib"]
        figures = {
            "abuse": label,
            "rss_before_kib": self.rss_before,
            "rss_after_kib": rss_after,
            "fds_before": self.baseline["fds"],
            "fds_after": state["fds"],
        }
        self.record("memory", figures)
        print("FIGURES", json.dumps(figures))
        assert rss_after - self.rss_before < RSS_GROWTH_LIMIT_KIB, figures
        return state

    def close(self) -> None:
        try:
            self.good.close()
        finally:
            self.server.close()


@pytest.fixture
def arena(record_property: Callable[[str, object], None]) -> Iterator[Callable[..., Arena]]:
    arenas: list[Arena] = []

    def make(**options: Any) -> Arena:
        options.setdefault("tick_rate", 60)
        made = Arena(record_property, **options)
        arenas.append(made)
        return made

    try:
        yield make
    finally:
        for made in arenas:
            made.close()
