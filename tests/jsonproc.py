"""Child processes driven by JSON lines: commands on stdin, events on stdout, every wait
bounded, every process reaped. Shared by the integration and hostile suites."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.conftest import ROOT


def child_env() -> dict[str, str]:
    """The environment of a child that imports ``reverb`` and ``tests`` from this checkout."""
    path = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
    return dict(os.environ, PYTHONPATH=path)


def stop(proc: subprocess.Popen[str]) -> None:
    """Close stdin (the child stops by itself), then terminate, then kill; always reaped."""
    try:
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Lines:
    """The stdout lines of a child process, read by a thread, taken with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.queue.put(line)
        self.queue.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def next(self, timeout: float) -> str:
        try:
            line = self.queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            raise AssertionError(
                f"no output within {timeout:.1f} s; stderr: {''.join(self.stderr)[-2000:]}"
            ) from None
        if line is None:
            raise AssertionError(f"the process ended; stderr: {''.join(self.stderr)[-2000:]}")
        return line


class JsonProcess:
    """``python ARGV...``: waits for its ``READY <port>`` line; ``expect`` returns the next
    event matching a condition."""

    def __init__(self, *argv: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=ROOT,
        )
        self.lines = Lines(self.proc)
        try:
            ready = self.lines.next(15.0)
            assert ready.startswith("READY "), ready
        except AssertionError:
            stop(self.proc)
            raise
        self.port = int(ready.split()[1])

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
            data = json.loads(self.lines.next(left))
            if data.get("event") == event and where(data):
                return data

    def ask(self, op: str, event: str, **fields: Any) -> dict[str, Any]:
        self.send(op, **fields)
        return self.expect(event)

    def close(self) -> None:
        stop(self.proc)
