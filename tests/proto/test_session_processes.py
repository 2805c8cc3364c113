"""The session's decisions of issue 8 over real sockets, against a real server process
(tests/hostile/app.py): an internal error closes one connection with 1011 and the server keeps
serving the others (§10.2); a client that only answers pings is never dropped (§9.2, §9.3)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.hostile.conftest import Good, ServerProcess
from tests.hostile.raw import Raw
from tests.jsonproc import JsonProcess

pytestmark = pytest.mark.timeout(60)


class FaultyServer(ServerProcess):
    """The hostile suite's server whose codec raises a plain Exception on ``POISON``."""

    def __init__(self, **options: Any) -> None:
        JsonProcess.__init__(self, "-m", "tests.proto.faulty_app", json.dumps(options))


@pytest.fixture
def faulty() -> Iterator[FaultyServer]:
    server = FaultyServer(tick_rate=60)
    try:
        yield server
    finally:
        server.close()


def test_an_internal_error_closes_that_connection_1011_and_the_server_serves_on(
    faulty: FaultyServer,
) -> None:
    good = Good(faulty.port)
    try:
        good.call()
        good.converge(faulty)
        for round_ in range(3):
            raw = Raw(faulty.port)
            try:
                raw.hello()
                raw.send({"type": "rpc", "id": 1, "uid": 1, "method": "POISON", "args": []})
                assert raw.closed_with() == (1011, "internal error")
            finally:
                raw.close()
            # the other client keeps syncing and getting answers; the process is alive
            assert good.call() == round_ + 2  # move(1) on its avatar, once more each round
            uids = faulty.ask("spawn", "spawned", n=2)["uids"]
            good.converge(faulty)
            assert set(uids) <= set(good.ctx.objects)
        state = faulty.state()
        assert state["stats"]["internal_error"] == 3
        assert state["members"] == [good.member]
        assert faulty.proc.poll() is None
        assert "injected codec fault" in "".join(faulty.lines.stderr)  # logged with traceback
    finally:
        good.close()


def pong_only(raw: Raw, seconds: float) -> tuple[int, list[dict[str, Any]]]:
    """Answer every ping for ``seconds`` and send nothing else; return (pings, closes)."""
    pings = 0
    closes: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = raw.recv(min(left, 0.5))
        except TimeoutError:
            continue
        if message is None:
            break
        if message["type"] == "ping":
            pings += 1
            raw.send({"type": "pong", "nonce": message["nonce"]})
        elif message["type"] == "close":
            closes.append(message)
    return pings, closes


@pytest.mark.parametrize("churn", [True, False], ids=["syncing-every-tick", "quiet-world"])
def test_a_raw_client_that_only_answers_pings_stays_past_many_idle_timeouts(churn: bool) -> None:
    # Issue 8: a server syncing every tick never pinged, so it dropped such a client.
    server = ServerProcess(tick_rate=60, ping_interval=0.2, idle_timeout=0.6)
    raw = Raw(server.port)
    try:
        member = raw.hello()["member"]
        if churn:
            server.ask("spawn", "spawned", n=1)
            server.ask("churn", "churn", on=True, size=10)
        pings, closes = pong_only(raw, 3.0)  # five idle timeouts
        assert closes == []
        assert pings >= 5
        state = server.state()
        assert member in state["members"]
        assert state["stats"].get("limit.idle_timeout", 0) == 0
    finally:
        raw.close()
        server.close()


def test_a_raw_client_that_answers_nothing_is_closed_idle_timeout_on_the_wire() -> None:
    server = ServerProcess(tick_rate=60, ping_interval=0.2, idle_timeout=0.6)
    raw = Raw(server.port)
    try:
        raw.hello()
        started = time.monotonic()
        messages = raw.drain(timeout=10)
        elapsed = time.monotonic() - started
        assert sum(m["type"] == "ping" for m in messages) >= 2
        assert messages[-1] == {"type": "close", "code": 1008, "reason": "idle timeout"}
        assert 0.55 <= elapsed < 3.0
    finally:
        raw.close()
        server.close()
