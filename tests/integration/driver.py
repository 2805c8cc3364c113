"""Drives ``app.py`` processes: JSON commands in, JSON events out, every wait bounded."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

APP = Path(__file__).with_name("app.py")


class Peer:
    """One app process; ``expect`` returns the next event matching a condition."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        ready = self.next_line(15.0)
        assert ready is not None and ready.startswith("READY "), (
            f"not ready: {ready!r} {self.stderr}"
        )
        self.port = int(ready.split()[1])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def next_line(self, timeout: float) -> str | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no output within {timeout} s; stderr: {''.join(self.stderr)[-2000:]}"
            ) from None

    def send(self, op: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()

    def expect(
        self,
        event: str,
        where: Callable[[dict[str, Any]], bool] = lambda e: True,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {event!r} event within {timeout} s")
            line = self.next_line(left)
            if line is None:
                raise AssertionError(
                    f"process ended before {event!r}; stderr: {''.join(self.stderr)[-2000:]}"
                )
            data = json.loads(line)
            if data.get("event") == event and where(data):
                return data

    def ask(self, op: str, event: str, **fields: Any) -> dict[str, Any]:
        self.send(op, **fields)
        return self.expect(event)

    def close(self) -> None:
        """Close stdin (the app stops by itself), then terminate or kill; always reaped."""
        try:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Game:
    """A server and its clients; everything is stopped in ``close``."""

    def __init__(self, **server_options: Any) -> None:
        self.peers: list[Peer] = []
        self.server = self._add(Peer("server", json.dumps(server_options)))

    def _add(self, peer: Peer) -> Peer:
        self.peers.append(peer)
        return peer

    def client(self) -> tuple[Peer, int]:
        peer = self._add(Peer("client", str(self.server.port)))
        member = peer.expect("connected")["member"]
        return peer, member

    def state(self) -> dict[str, Any]:
        return self.server.ask("state", "state")

    def converge(self, clients: list[Peer], timeout: float = 10.0) -> dict[str, Any]:
        """Wait until every client's table equals the server's (ownership flags aside)."""
        deadline = time.monotonic() + timeout
        while True:
            server = strip(self.state()["table"])
            tables = [strip(c.ask("table", "table")["table"]) for c in clients]
            if all(t == server for t in tables):
                return server
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no convergence within {timeout} s:\nserver {server}\nclients {tables}"
                )
            time.sleep(0.02)  # polling interval between two condition checks, not synchronisation

    def close(self) -> None:
        for peer in reversed(self.peers):
            peer.close()


def strip(table: dict[str, Any]) -> dict[str, Any]:
    return {uid: {k: v for k, v in entry.items() if k != "mine"} for uid, entry in table.items()}


def game(**options: Any) -> Iterator[Game]:
    g = Game(**options)
    try:
        yield g
    finally:
        g.close()
