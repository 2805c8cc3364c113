"""``LightFuture``: a ``concurrent.futures.Future`` that makes its condition only when a thread
needs one.

A call's future is usually created, resolved and read on one thread (an event-loop client
awaits it where it is resolved): the ``threading.Condition`` that ``Future.__init__`` builds,
and the three lock round trips through it per call, are then pure cost. Here the condition is
made the first time anything asks for ``_condition`` -- a thread blocking in ``result()`` or
``exception()``, ``concurrent.futures.wait`` / ``as_completed``, ``repr()`` -- and until then
the state changes (``set_result``, ``set_exception``, ``cancel``, ``add_done_callback``) happen
under one module-wide lock instead. Making the condition takes that lock too, so a state change
either happens before the condition exists (whoever makes it then sees the new state) or goes
through the condition exactly as ``Future`` does (its waiters are notified). Every method keeps
``Future``'s behaviour and words; only the locking differs.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import Any, TypeVar

__all__ = ["LightFuture"]

T = TypeVar("T")

# Held while a LightFuture without a condition changes state, and while one is made.
_MAKING = threading.Lock()
_DONE = frozenset({CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED})
_CANCELLED = frozenset({CANCELLED, CANCELLED_AND_NOTIFIED})
# the logger ``Future`` reports a failing done-callback to
_FUTURES_LOGGER = logging.getLogger("concurrent.futures")


class LightFuture(Future[T]):
    """A ``concurrent.futures.Future`` (same API, same behaviour) whose ``threading.Condition``
    is made only when a thread needs one (see the module's docstring)."""

    _cond: threading.Condition | None

    def __init__(self) -> None:  # ``Future.__init__`` without its condition
        self._cond = None
        self._state = PENDING
        self._result = None
        self._exception = None
        self._waiters = []
        self._done_callbacks: list[Any] = []

    @property
    def _condition(self) -> threading.Condition:
        cond = self._cond
        if cond is None:
            with _MAKING:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    @_condition.setter
    def _condition(self, cond: threading.Condition) -> None:
        self._cond = cond

    # -- reads: one attribute, no lock needed ----------------------------------------------

    def done(self) -> bool:
        return self._state in _DONE

    def cancelled(self) -> bool:
        return self._state in _CANCELLED

    def running(self) -> bool:
        return self._state == RUNNING

    def result(self, timeout: float | None = None) -> T:
        if self._state == FINISHED:  # final: nothing to wait for
            if self._exception is not None:
                raise self._exception
            return self._result  # type: ignore[return-value]
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state == FINISHED:
            return self._exception
        return super().exception(timeout)

    # -- state changes: under ``_MAKING`` while there is no condition ------------------------

    def add_done_callback(self, fn: Any) -> None:
        with _MAKING:
            light = self._cond is None
            if light and self._state not in _DONE:
                self._done_callbacks.append(fn)
                return
        if not light:
            super().add_done_callback(fn)
            return
        try:  # done already: called now, as ``Future`` does
            fn(self)
        except Exception:
            _FUTURES_LOGGER.exception("exception calling callback for %r", self)

    def set_result(self, result: T) -> None:
        with _MAKING:
            light = self._cond is None and self._state not in _DONE
            if light:
                self._result = result
                self._state = FINISHED
        if not light:  # a condition to notify, or done already (``Future`` raises)
            super().set_result(result)
            return
        self._invoke_callbacks()  # type: ignore[attr-defined]

    def set_exception(self, exception: BaseException | None) -> None:
        with _MAKING:
            light = self._cond is None and self._state not in _DONE
            if light:
                self._exception = exception
                self._state = FINISHED
        if not light:
            super().set_exception(exception)
            return
        self._invoke_callbacks()  # type: ignore[attr-defined]

    def cancel(self) -> bool:
        with _MAKING:
            light = self._cond is None
            if light:
                state = self._state
                if state == RUNNING or state == FINISHED:
                    return False
                if state in _CANCELLED:
                    return True
                self._state = CANCELLED
        if not light:
            return super().cancel()
        self._invoke_callbacks()  # type: ignore[attr-defined]
        return True
