"""Resume through real processes and the fault proxy (issue 13, protocol §18).

The server is the conformance host (``python -m conformance.host``, threaded or asyncio
layer) in its own process; the client is a ``Client(reconnect=True)`` (or an
``AsyncClient``) in this process, connected through ``harness.proxy.FaultProxy``, which
resets links on demand or after a random number of bytes (cutting frames anywhere, with
1-byte segmentation). Every wait has a deadline; the host is killed and reaped in ``finally``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.proxy import FaultProxy, Toxics
from reverb import Client, ReverbContext, ReverbObject, ReverbSide, expose
from reverb.aio import AsyncClient
from reverb.reconnect import ReconnectPolicy

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]
FAST = ReconnectPolicy(base_delay=0.05, max_delay=0.5, max_attempts=20)


class Box(ReverbObject):
    def __init__(
        self,
        value: Any = 0,
        uid: Any = None,
        add_on_init: bool = True,
        belonging_membership: Any = None,
    ) -> None:
        self.value = value
        super().__init__(
            value, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def bump(self, k: int) -> Any:  # runs on the host
        raise NotImplementedError


class Control(ReverbObject):
    def __init__(
        self, uid: Any = None, add_on_init: bool = True, belonging_membership: Any = None
    ) -> None:
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose(anyone=True)
    def spawn(self, n: int, owned: bool) -> Any:
        raise NotImplementedError

    @expose(anyone=True)
    def echo(self, *args: Any) -> Any:
        raise NotImplementedError

    @expose(anyone=True)
    def executions(self, name: str) -> Any:
        raise NotImplementedError

    @expose(anyone=True)
    def resume_grace(self, seconds: float) -> Any:
        raise NotImplementedError

    @expose(anyone=True)
    def churn(self, target: int, seconds: float) -> Any:
        raise NotImplementedError


def start_host(layer: str, port: int = 0) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "conformance.host", "--layer", layer, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the host prints READY <port> once it listens
    if not line.startswith("READY"):
        proc.kill()
        proc.wait(5)
        raise RuntimeError(f"host did not start: {line!r}")
    return proc, int(line.split()[1])


def stop_host(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


class Rig:
    """A host process, a proxy in front of it, a reconnecting threaded client."""

    def __init__(self, layer: str, toxics: Callable[[int], Toxics] = lambda i: Toxics()) -> None:
        self.layer = layer
        self.proc, self.port = start_host(layer)
        self.blocked = False
        self.proxy = FaultProxy(
            self.port, lambda i: Toxics(reset_after=0.0) if self.blocked else toxics(i)
        )
        self.proxy.start()
        self.ctx = ReverbContext(ReverbSide.CLIENT)
        self.ctx.register(Box)
        self.ctx.register(Control)
        self.log: list[tuple[Any, ...]] = []
        for name in (
            "connected",
            "disconnected",
            "connection_lost",
            "reconnecting",
            "reconnected",
            "resume_failed",
        ):
            self.ctx.client_events.on_event(name)(lambda *a, name=name: self.log.append((name, *a)))
        self.client = Client(
            port=self.proxy.port, context=self.ctx, reconnect=FAST, send_contract=False
        )

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.proxy.stop()
            stop_host(self.proc)

    def until(self, cond: Callable[[], object], what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; events {self.log}")
            self.ctx.client_sync(timeout=0.02)

    def control(self) -> Any:
        self.until(
            lambda: any(isinstance(o, Control) for o in self.ctx.replicas.objects.values()),
            "the Control replica",
        )
        return next(o for o in self.ctx.replicas.objects.values() if isinstance(o, Control))

    def call(self, obj: Any, method: str, *args: Any) -> Any:
        future = obj.compute_server(getattr(obj, method), *args)
        self.until(future.done, f"{method}{args}")
        return future.result()

    def names(self) -> list[str]:
        return [e[0] for e in self.log]


@pytest.fixture(params=["threaded", "aio"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    made = Rig(request.param)
    try:
        made.client.connect()
        yield made
    finally:
        made.close()


def test_a_drop_inside_the_grace_keeps_member_ownership_and_the_same_replicas(rig: Rig) -> None:
    member = rig.client.member
    control = rig.control()
    (uid,) = rig.call(control, "spawn", 1, True)
    rig.until(lambda: uid in rig.ctx.replicas.objects, "the owned Box")
    box = rig.ctx.replicas.objects[uid]
    assert box.is_owner()
    assert rig.proxy.reset_all() == 1
    rig.until(lambda: "reconnected" in rig.names(), "reconnected")
    assert rig.names()[-3:] == ["connection_lost", "reconnecting", "reconnected"]
    assert rig.client.member == member
    assert rig.call(box, "bump", 2) is not None  # owner-only: still ours
    rig.until(lambda: box.value == 2, "the bumped value on the same replica")
    assert rig.ctx.replicas.objects[uid] is box and rig.ctx.replicas.objects[control.uid] is control
    assert "disconnected" not in rig.names()


def test_calls_cut_mid_call_are_answered_once_after_the_resume(rig: Rig) -> None:
    control = rig.control()
    before = rig.call(control, "executions", "echo")
    futures = [control.compute_server(control.echo, i) for i in range(50)]
    rig.proxy.reset_all()  # while calls and their answers are on the wire
    futures += [control.compute_server(control.echo, i) for i in range(50, 80)]  # queued
    rig.until(lambda: all(f.done() for f in futures), "every answer")
    assert [f.result() for f in futures] == [[i] for i in range(80)]
    assert rig.call(control, "executions", "echo") - before == 80  # none ran twice


def test_after_the_grace_the_resume_fails_cleanly_then_a_fresh_join(rig: Rig) -> None:
    member = rig.client.member
    control = rig.control()
    rig.call(control, "resume_grace", 0.3)
    rig.blocked = True  # every attempt is cut at once until the grace is over
    rig.proxy.reset_all()
    rig.until(lambda: rig.names().count("reconnecting") >= 2, "failed attempts")
    time.sleep(1.5)  # the host's grace (0.3 s) and its expiry check (<= 1 s) run out
    rig.blocked = False
    rig.until(lambda: "resume_failed" in rig.names(), "resume_failed")
    failed = next(e for e in rig.log if e[0] == "resume_failed")
    assert failed[1] in ("expired", "attempts exhausted")
    rig.until(lambda: "disconnected" in rig.names(), "disconnected")
    assert not rig.ctx.replicas.objects  # despawned (keep_replicas=False)
    rig.client.connect()
    assert rig.client.member not in (None, member)
    rig.call(rig.control(), "resume_grace", 20.0)


def test_a_server_restart_gives_resume_failed_then_a_fresh_join(rig: Rig) -> None:
    member = rig.client.member
    rig.control()
    old_port = rig.port
    stop_host(rig.proc)  # the membership is gone with the process
    rig.proc, rig.port = start_host(rig.layer)
    rig.proxy.upstream_port = rig.port
    assert rig.port != old_port or True
    rig.until(lambda: "resume_failed" in rig.names(), "resume_failed")
    assert ("resume_failed", "expired") in rig.log
    rig.until(lambda: "disconnected" in rig.names(), "disconnected")
    rig.client.connect()
    assert rig.client.member is not None
    rig.control()
    del member


@pytest.mark.parametrize("layer", ["threaded", "aio"])
def test_drops_mid_frame_and_mid_tick_lose_no_call_and_run_none_twice(layer: str) -> None:
    """Every link is reset after 2-12 KB (frames cut anywhere, writes of 1-64 bytes) while a
    Box changes every tick: every call is answered with its own value and ran once."""
    rig = Rig(layer, lambda i: Toxics(chop=64, reset_after_bytes=(2000, 12000)))
    try:
        rig.client.connect()
        control = rig.control()
        (uid,) = rig.call(control, "spawn", 1, False)
        rig.call(control, "churn", uid, 10.0)  # a sync every tick, mid-tick cuts
        before = rig.call(control, "executions", "echo")
        futures = []
        for i in range(200):
            futures.append(control.compute_server(control.echo, i))
            if len(futures) % 16 == 0:
                rig.until(lambda: all(f.done() for f in futures[-16:]), "a batch", 30)
        rig.until(lambda: all(f.done() for f in futures), "every answer", 30)
        assert [f.result() for f in futures] == [[i] for i in range(200)]
        assert rig.call(control, "executions", "echo") - before == 200
        assert rig.names().count("reconnected") >= 1
        assert "resume_failed" not in rig.names()
    finally:
        rig.close()


def test_an_async_client_resumes_with_the_same_member_and_replicas() -> None:
    proc, port = start_host("aio")
    proxy = FaultProxy(port, lambda i: Toxics())
    proxy.start()

    async def run() -> None:
        ctx = ReverbContext(ReverbSide.CLIENT)
        ctx.register(Box)
        ctx.register(Control)
        seen: list[str] = []
        for name in ("connection_lost", "reconnecting", "reconnected"):
            ctx.client_events.on_event(name)(lambda *a, name=name: seen.append(name))
        client = AsyncClient(port=proxy.port, context=ctx, reconnect=FAST, send_contract=False)
        await client.connect()
        member = client.member
        deadline = time.monotonic() + 20

        async def until(cond: Callable[[], object]) -> None:
            while not cond():
                assert time.monotonic() < deadline, seen
                await client.client_sync(0.02)

        await until(lambda: ctx.replicas.objects)
        control = next(o for o in ctx.replicas.objects.values() if isinstance(o, Control))
        proxy.reset_all()
        value = await control.compute_server(control.echo, "across")
        await until(lambda: "reconnected" in seen)
        assert value == ["across"] and client.member == member
        assert ctx.replicas.objects[control.uid] is control
        await client.disconnect()

    try:
        asyncio.run(asyncio.wait_for(run(), 40))
    finally:
        proxy.stop()
        stop_host(proc)


def test_the_resume_scenario_reports_its_figures(tmp_path: Path) -> None:
    """``python -m harness resume`` at a small size: every target met, JSON written."""
    out = tmp_path / "resume.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "resume",
            "--calls",
            "300",
            "--burst",
            "5",
            "--deadline",
            "40",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=55,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    data = __import__("json").loads(out.read_text())
    once = data["exactly_once"]
    assert once["executed_twice"] == once["acknowledged_not_run"] == once["never_answered"] == 0
    assert data["burst"]["synced_after_resume"] == 5
