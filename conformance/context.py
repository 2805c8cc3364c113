"""The per-case context: settings, connection registry and shared checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conformance.driver import (
    CLOSE_CODES,
    CaseFailure,
    CloseObservation,
    Conn,
    ConnectionEnded,
    leaks_internals,
)
from conformance.model import NonStrict
from conformance.profile import Limits


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    timeout: float = 5.0
    handshake_deadline: float = 5.0
    ping_wait: float = 7.0
    verbose: bool = False
    shutdown: Callable[[], None] | None = None  # asks a launched server to stop (SIGTERM)
    limits: Limits | None = None  # the server's limit profile (--limits), if known


class Ctx:
    """What a case gets: ways to open connections, all of them closed after the case."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conns: list[Conn] = []
        self.lock = threading.Lock()
        self.notes: list[str] = []
        self.cancelled = False

    @property
    def timeout(self) -> float:
        return self.settings.timeout

    def connect(self, **kwargs: Any) -> Conn:
        if self.cancelled:
            raise CaseFailure("case cancelled (time budget exceeded)")
        kwargs.setdefault("timeout", self.settings.timeout)
        conn = Conn(self.settings.host, self.settings.port, **kwargs)
        with self.lock:
            self.conns.append(conn)
        return conn

    def open(self, **kwargs: Any) -> Conn:
        """A fresh connection with a completed handshake and its first full sync."""
        hello_extra = kwargs.pop("hello_extra", {})
        return self.connect(**kwargs).open(**hello_extra)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def close_all(self) -> None:
        self.cancelled = True
        with self.lock:
            conns, self.conns = self.conns, []
        for conn in conns:
            conn.close()

    # ----------------------------------------------------------------- checks

    def check_alive(self) -> str:
        """A well-behaved client still completes the handshake and gets its full sync."""
        try:
            conn = self.open()
            control = conn.control_uid()
            value = conn.call_ok(control, "echo", ["alive"])
            if value != ["alive"]:
                raise CaseFailure(f"echo('alive') returned {value!r}")
            conn.goodbye()
        except CaseFailure as exc:
            raise CaseFailure(
                f"server no longer serves a well-behaved client afterwards: {exc}"
            ) from None
        return "server still serves"

    def expect_close(
        self,
        conn: Conn,
        code: int,
        *,
        timeout: float | None = None,
        section: str = "",
        alternatives: tuple[int, ...] = (),
    ) -> str:
        """Require a ``close`` with ``code`` followed by the end of the TCP connection.

        A close with one of ``alternatives`` is non-strict; anything else is a failure.
        """
        obs = conn.expect_close(self.settings.timeout if timeout is None else timeout)
        where = f" ({section})" if section else ""
        check_close_frame(obs)
        if obs.kind != "close":
            raise CaseFailure(f"expected close {code}{where}, got {obs.describe()}")
        if obs.after_close:
            raise CaseFailure(f"server sent {obs.after_close} after its close frame (§6.4, §10.1)")
        if not obs.eof_after:
            raise CaseFailure(
                f"close {obs.code} sent but the TCP connection was not closed (§10.1)"
            )
        if obs.code != code:
            if obs.code in alternatives:
                raise NonStrict(f"expected close {code}{where}, got {obs.describe()}")
            raise CaseFailure(f"expected close {code}{where}, got {obs.describe()}")
        return obs.describe()


def check_close_frame(obs: CloseObservation) -> None:
    """Shape of a close frame (§5.1, §10.2): int code from the table, string reason, no leak."""
    if obs.kind != "close":
        return
    if not isinstance(obs.code, int) or isinstance(obs.code, bool):
        raise CaseFailure(f"close frame code is not an int (§5.1): {obs.code!r}")
    if not isinstance(obs.reason, str):
        raise CaseFailure(f"close frame reason is not a string (§5.1): {obs.reason!r}")
    if obs.code not in CLOSE_CODES and not 4000 <= obs.code <= 4999:
        raise CaseFailure(f"close code {obs.code} is not a documented code (§10.2)")
    if obs.code == 1006:
        raise CaseFailure("close code 1006 must never be sent (§10.2)")
    marker = leaks_internals(obs.reason)
    if marker is not None:
        raise CaseFailure(f"close reason leaks internals ({marker!r}, §10.2): {obs.reason[:200]!r}")


def wait_closed(conn: Conn, timeout: float) -> bool:
    """True once the server ended the connection (EOF/reset) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.recv_msg(deadline)
        except ConnectionEnded:
            return True
        except CaseFailure:
            return False
