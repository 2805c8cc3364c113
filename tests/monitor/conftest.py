"""A real game server process with the monitor on, and real client processes."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT
from tests.jsonproc import Lines, child_env, stop

APP = Path(__file__).with_name("app.py")


class Proc:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=ROOT,
        )
        self.lines = Lines(self.proc)

    def expect(self, prefix: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.next(deadline - time.monotonic()).strip()
            if line.startswith(prefix):
                return line


class Game:
    """One server (``app.py server``) with its monitor, and its clients."""

    def __init__(self, objects: int = 20, layer: str = "threaded", rooms: bool = False) -> None:
        self.procs: list[Proc] = []
        self.layer = layer
        extra = ("aio",) if layer == "asyncio" else ()
        extra += ("rooms",) if rooms else ()
        self.server = self._add(Proc("server", str(objects), *extra))
        _, port, url = self.server.expect("READY ").split()
        self.port = int(port)
        self.url = url
        parts = urlsplit(url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.netloc = parts.netloc
        self.token = parts.query.split("token=", 1)[1]

    def _add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def client(self) -> tuple[Proc, int]:
        proc = self._add(Proc("client", str(self.port)))
        return proc, int(proc.expect("CONNECTED ").split()[1])

    def room_client(self, mode: str) -> tuple[Proc, int, str]:
        """A ``rooms=True`` client in the arena of ``mode``: (process, member, room id)."""
        proc = self._add(Proc("room-client", str(self.port), mode))
        _, member, room = proc.expect("JOINED ").split()
        return proc, int(member), room

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.netloc, timeout=10)
        try:
            hdrs = dict(headers or {})
            if auth:
                hdrs.setdefault("Authorization", f"Bearer {self.token}")
            data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> Any:
        status, _, body = self.request("GET", path)
        assert status == 200, (status, body)
        return json.loads(body)

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc.proc)


@pytest.fixture
def game() -> Iterator[Game]:
    g = Game()
    try:
        yield g
    finally:
        g.close()


@pytest.fixture(params=["threaded", "asyncio"])
def any_game(request: pytest.FixtureRequest) -> Iterator[Game]:
    """The game on each I/O layer: ``Server`` and ``AsyncServer``."""
    g = Game(layer=request.param)
    try:
        yield g
    finally:
        g.close()


@pytest.fixture(params=["threaded", "asyncio"])
def rooms_game(request: pytest.FixtureRequest) -> Iterator[Game]:
    """The game with the room type "arena" defined, on each I/O layer."""
    g = Game(layer=request.param, rooms=True)
    try:
        yield g
    finally:
        g.close()


def until(condition: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something true, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.05)  # polling interval between two checks, not synchronisation


class Local:
    """An in-process server (its own context, max_connections=1) with a monitor."""

    def __init__(self, **monitor: Any) -> None:
        from reverb import ReverbContext, ReverbSide, Server
        from reverb.monitor import Monitor

        self.context = ReverbContext(ReverbSide.SERVER)
        self.server = Server(port=0, context=self.context, max_connections=1)
        self.server.start_server()
        self.monitor = Monitor(self.server, **monitor).start()
        self.netloc = f"127.0.0.1:{self.monitor.port}"

    def get(
        self, path: str, headers: dict[str, str] | None = None, auth: bool = True
    ) -> tuple[int, dict[str, str], bytes]:
        return self.request("GET", path, headers=headers, auth=auth)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.netloc, timeout=10)
        try:
            hdrs = dict(headers or {})
            if auth:
                hdrs.setdefault("Authorization", f"Bearer {self.monitor.token}")
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def close(self) -> None:
        self.monitor.stop()
        self.server.stop_server()


@pytest.fixture
def local() -> Iterator[Local]:
    loc = Local()
    try:
        yield loc
    finally:
        loc.close()
