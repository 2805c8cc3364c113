"""Start the server under test from a shell command line and read its ``READY <port>`` line."""

from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import threading
import time
from typing import IO


class LaunchError(Exception):
    pass


class ServerProcess:
    """A server started with ``sh -c CMD`` in its own process group.

    It must print ``READY <port>`` on stdout once it listens on 127.0.0.1. Its output
    is collected (bounded) so it can be written next to the report.
    """

    def __init__(self, command: str, ready_timeout: float = 20.0) -> None:
        self.command = command
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.port: int | None = None
        self.output: collections.deque[str] = collections.deque(maxlen=2000)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._readers: list[threading.Thread] = []

    def _pump(self, stream: IO[str], tag: str, forward: bool) -> None:
        for line in stream:
            self.output.append(f"[{tag}] {line.rstrip()}")
            if forward:
                self._lines.put(line)
        if forward:
            self._lines.put(None)

    def start(self) -> int:
        self.proc = subprocess.Popen(
            self.command,
            shell=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream, tag, forward in (
            (self.proc.stdout, "out", True),
            (self.proc.stderr, "err", False),
        ):
            reader = threading.Thread(target=self._pump, args=(stream, tag, forward), daemon=True)
            reader.start()
            self._readers.append(reader)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LaunchError(f"no 'READY <port>' line within {self.ready_timeout:.0f}s")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait(timeout=5)
                raise LaunchError(f"server exited (code {code}) before printing READY")
            words = line.split()
            if len(words) == 2 and words[0] == "READY" and words[1].isdigit():
                self.port = int(words[1])
                return self.port

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def terminate(self) -> None:
        """Ask the server to stop (SIGTERM to its process group) without waiting."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGTERM)

    def stop(self, grace: float = 5.0) -> int | None:
        """Terminate (SIGTERM to the group), wait, then kill; always reaps."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=grace)
        else:
            self._signal(signal.SIGKILL)  # stray children of a dead shell
        for reader in self._readers:
            reader.join(1.0)
        return self.proc.returncode
