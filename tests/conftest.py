"""Shared fixtures: fresh contexts, real server processes on 127.0.0.1 port 0."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def spawn_ready(args: list[str], timeout: float = 15.0) -> tuple[subprocess.Popen[str], int]:
    """Start ``python args...``; wait for its ``READY <port>`` line; return (process, port)."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = proc.stdout.readline()  # the child prints READY first or exits (EOF)
    if not line.startswith("READY ") or time.monotonic() > deadline:
        stop(proc)
        raise RuntimeError(
            f"child did not get ready: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        )
    return proc, int(line.split()[1])


def stop(proc: subprocess.Popen[str], timeout: float = 5.0) -> tuple[str, str]:
    """Terminate, wait, kill if needed, and reap; return the remaining (stdout, stderr)."""
    if proc.poll() is None:
        proc.terminate()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out or "", err or ""


def wait_for(
    condition: Callable[[], object], timeout: float = 5.0, step: Callable[[], object] | None = None
) -> None:
    """Poll ``condition`` (calling ``step`` between polls) until true, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        if step is not None:
            step()
        else:
            time.sleep(0.005)


@pytest.fixture
def process() -> Iterator[Callable[[list[str]], tuple[subprocess.Popen[str], int]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(args: list[str]) -> tuple[subprocess.Popen[str], int]:
        proc, port = spawn_ready(args)
        procs.append(proc)
        return proc, port

    try:
        yield start
    finally:
        for proc in procs:
            stop(proc)
