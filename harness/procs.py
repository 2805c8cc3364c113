"""Child processes: start them, talk JSON lines to them, and always kill and reap them.

Every wait takes a deadline. A :class:`Fleet` is a context manager; leaving it (normally, on an
exception or on ``KeyboardInterrupt``) asks each child to quit, then SIGKILLs and reaps whatever
is still running, so no scenario leaves a process behind even when a child hangs.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "ROOT",
    "Child",
    "ChildError",
    "Fleet",
    "discover_pythons",
    "python_version",
]

logger = logging.getLogger("harness.procs")

ROOT = Path(__file__).resolve().parent.parent  # the directory holding reverb/ and harness/
Json = dict[str, Any]


class ChildError(RuntimeError):
    """A child died, answered nonsense, or did not answer in time."""


class Child:
    """One child process speaking the ``harness.app`` JSON-lines protocol."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=full_env,
            cwd=str(ROOT),
            start_new_session=True,  # Ctrl-C reaches the harness only; it stops the children
        )
        self.pid = self.proc.pid
        self.messages: list[Json] = []
        self.ready: str | None = None
        self.stderr_tail: list[str] = []
        self.eof = False
        self._cond = threading.Condition()
        self._rid = 0
        threading.Thread(target=self._read_out, name=f"{name}-out", daemon=True).start()
        threading.Thread(target=self._read_err, name=f"{name}-err", daemon=True).start()

    # -- readers -----------------------------------------------------------------------------

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            with self._cond:
                if line.startswith("READY "):
                    self.ready = line[6:]
                else:
                    try:
                        self.messages.append(json.loads(line))
                    except ValueError:
                        self.stderr_tail.append(f"(stdout) {line}")
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.stderr_tail.append(line.rstrip())
                del self.stderr_tail[:-40]

    def tail(self) -> str:
        with self._cond:
            return "\n".join(self.stderr_tail[-15:])

    # -- waiting -----------------------------------------------------------------------------

    def _wait(self, test: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = test()
                if found is not None:
                    return found
                if self.eof:
                    raise ChildError(
                        f"{self.name} (pid {self.pid}) exited (rc={self.proc.poll()}) "
                        f"while waiting for {what}; stderr:\n{self.tail_locked()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChildError(f"{self.name}: no {what} within {timeout:.1f} s")
                self._cond.wait(left)

    def tail_locked(self) -> str:
        return "\n".join(self.stderr_tail[-15:])

    def wait_ready(self, timeout: float = 20.0) -> str:
        """Wait for the ``READY <x>`` line; return ``<x>``."""
        return str(self._wait(lambda: self.ready, timeout, "READY line"))

    def wait_event(
        self, event: str, where: Callable[[Json], bool] = lambda e: True, timeout: float = 10.0
    ) -> Json:
        def test() -> Json | None:
            for msg in self.messages:
                if msg.get("event") == event and where(msg):
                    return msg
            return None

        return dict(self._wait(test, timeout, f"{event!r} event"))

    def events(self, event: str) -> list[Json]:
        with self._cond:
            return [m for m in self.messages if m.get("event") == event]

    # -- commands ----------------------------------------------------------------------------

    def send(self, op: str, **fields: Any) -> int:
        with self._cond:
            self._rid += 1
            rid = self._rid
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, "rid": rid, **fields}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise ChildError(f"{self.name}: cannot send {op!r}: {exc}; {self.tail()}") from exc
        return rid

    def reply(self, rid: int, timeout: float) -> Json:
        def test() -> Json | None:
            for i, msg in enumerate(self.messages):
                if msg.get("rid") == rid:
                    return self.messages.pop(i)
            return None

        out = dict(self._wait(test, timeout, f"reply to request {rid}"))
        if "error" in out:
            raise ChildError(f"{self.name}: {out['error']}")
        return out

    def request(self, op: str, timeout: float = 10.0, **fields: Any) -> Json:
        return self.reply(self.send(op, **fields), timeout)

    # -- ending ------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (the whole session the child leads) and reap."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        try:
            self.proc.wait(5.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            logger.error("%s (pid %d) survived SIGKILL", self.name, self.pid)

    def close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass


class Fleet:
    """The children of one scenario run; leaving the ``with`` block ends every one of them."""

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable
        self.children: list[Child] = []

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def __iter__(self) -> Iterator[Child]:
        return iter(self.children)

    def start(self, name: str, role: str, opts: Json, python: str | None = None) -> Child:
        argv = [python or self.python, "-m", "harness.app", role, json.dumps(opts)]
        child = Child(name, argv)
        self.children.append(child)
        logger.debug("started %s (pid %d): %s", name, child.pid, " ".join(argv[:4]))
        return child

    def stop(self, child: Child, timeout: float = 3.0) -> None:
        """Ask one child to quit (clients disconnect cleanly); SIGKILL it after ``timeout``."""
        if child.alive:
            try:
                child.send("quit")
            except ChildError:
                pass
            try:
                child.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not quit within %.1f s: killing it", child.name, timeout)
        child.kill()

    def stop_all(self, timeout: float = 3.0) -> None:
        """Quit, then kill, then reap every child; never raises for a child's sake."""
        try:
            for child in self.children:
                if child.alive:
                    try:
                        child.send("quit")
                    except ChildError:
                        pass
            deadline = time.monotonic() + timeout
            for child in self.children:
                try:
                    child.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        finally:
            for child in self.children:
                child.kill()
                child.close_pipes()

    def check_alive(self, children: list[Child] | None = None) -> None:
        for child in children if children is not None else self.children:
            if not child.alive:
                raise ChildError(
                    f"{child.name} (pid {child.pid}) died (rc={child.proc.poll()}); "
                    f"stderr:\n{child.tail()}"
                )


def python_version(python: str) -> str:
    """``3.x.y`` of an interpreter, by running it."""
    out = subprocess.run(
        [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return out.stdout.strip()


def discover_pythons() -> dict[str, str]:
    """``{"3.10": path, ...}`` for CPython 3.10-3.13 found under pyenv (``$PYENV_ROOT`` or
    ``~/.pyenv``, or ``pyenv root``), the newest patch release of each; plus this interpreter.
    ``HARNESS_PYTHONS`` (paths separated by ``os.pathsep``) overrides the search."""
    found: dict[str, str] = {}
    override = os.environ.get("HARNESS_PYTHONS")
    candidates: list[str] = []
    if override:
        candidates = [p for p in override.split(os.pathsep) if p]
    else:
        roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
        try:
            roots.append(
                subprocess.run(
                    ["pyenv", "root"], capture_output=True, text=True, timeout=10, check=True
                ).stdout.strip()
            )
        except (OSError, subprocess.SubprocessError):
            pass
        for root in filter(None, roots):
            candidates += sorted(
                glob.glob(os.path.join(root, "versions", "3.1[0-3].*", "bin", "python3"))
            )
        candidates.append(sys.executable)
    best: dict[str, tuple[tuple[int, ...], str]] = {}
    for path in candidates:
        if not os.access(path, os.X_OK):
            continue
        try:
            version = python_version(path)
        except (OSError, subprocess.SubprocessError):
            continue
        parts = tuple(int(x) for x in version.split("."))
        minor = f"{parts[0]}.{parts[1]}"
        if not (3, 10) <= parts[:2] <= (3, 13):
            continue
        if minor not in best or parts > best[minor][0]:
            best[minor] = (parts, path)
    for minor, (_, path) in sorted(best.items()):
        found[minor] = path
    return found
