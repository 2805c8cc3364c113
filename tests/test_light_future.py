"""``LightFuture`` (issue 9, the RPC path): a ``concurrent.futures.Future`` whose condition is
made only when a thread needs one. Same behaviour as ``Future`` for any sequence of
operations; a call resolved and awaited on the event loop never makes a condition."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reverb._future import LightFuture
from reverb.aio.client import CallFuture

OPS = [
    "set_result",
    "set_exception",
    "cancel",
    "add_done_callback",
    "done",
    "cancelled",
    "running",
    "result",
    "exception",
    "set_running_or_notify_cancel",
    "condition",
]


def apply(future: Future[Any], op: str, seen: list[Any]) -> Any:
    """One operation; what it returned or raised (by type and words)."""
    try:
        if op == "set_result":
            return future.set_result(42)
        if op == "set_exception":
            return future.set_exception(ValueError("bad"))
        if op == "add_done_callback":
            return future.add_done_callback(lambda f: seen.append((f.done(), f.cancelled())))
        if op in ("result", "exception"):
            out = getattr(future, op)(timeout=0)
            return ("exc", type(out).__name__, str(out)) if op == "exception" else out
        if op == "condition":
            with future._condition:
                return future._state
        return getattr(future, op)()
    except (
        CancelledError,
        InvalidStateError,
        concurrent.futures.TimeoutError,
        ValueError,
        RuntimeError,
    ) as exc:
        return ("raised", type(exc).__name__)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(OPS), max_size=12))
def test_any_sequence_of_operations_behaves_as_a_future(ops: list[str]) -> None:
    plain: Future[Any] = Future()
    light: LightFuture[Any] = LightFuture()
    seen_plain: list[Any] = []
    seen_light: list[Any] = []
    for op in ops:
        assert apply(light, op, seen_light) == apply(plain, op, seen_plain), op
        assert light._state == plain._state
    assert seen_light == seen_plain


def test_no_condition_is_made_on_one_thread() -> None:
    future: LightFuture[int] = LightFuture()
    calls: list[int] = []
    future.add_done_callback(lambda f: calls.append(f.result()))
    future.set_result(5)
    assert future.done() and future.result() == 5 and future.exception() is None
    future.add_done_callback(lambda f: calls.append(f.result() + 1))  # done: called at once
    assert calls == [5, 6]
    assert future._cond is None  # ``Future`` builds a threading.Condition in __init__


def test_a_thread_blocked_in_result_is_woken() -> None:
    future: LightFuture[str] = LightFuture()
    got: list[str] = []
    waiting = threading.Event()

    def block() -> None:
        waiting.set()
        got.append(future.result(timeout=30))

    thread = threading.Thread(target=block)
    thread.start()
    try:
        assert waiting.wait(10)
        # the blocked thread may or may not have made the condition yet: either way it wakes
        future.set_result("answer")
    finally:
        thread.join(30)
    assert got == ["answer"]


def test_wait_and_as_completed_see_a_light_future_resolve() -> None:
    light: LightFuture[int] = LightFuture()
    other: Future[int] = Future()
    timer = threading.Timer(0.05, light.set_result, (7,))
    timer.start()
    try:
        done, pending = concurrent.futures.wait(
            [light, other], timeout=30, return_when=concurrent.futures.FIRST_COMPLETED
        )
    finally:
        timer.join()
    assert done == {light} and pending == {other}
    assert [f.result() for f in concurrent.futures.as_completed([light], timeout=5)] == [7]


def test_a_failing_callback_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    future: LightFuture[int] = LightFuture()

    def broken(f: Future[int]) -> None:
        raise RuntimeError("callback bug")

    future.add_done_callback(broken)
    future.set_result(1)
    future.add_done_callback(broken)
    assert future.result() == 1
    logged = [r for r in caplog.records if r.name == "concurrent.futures"]
    assert len(logged) == 2 and "exception calling callback" in logged[0].getMessage()


def test_an_awaited_call_future_makes_no_condition() -> None:
    async def main() -> tuple[Any, bool]:
        loop = asyncio.get_running_loop()
        future = CallFuture(loop)
        assert isinstance(future, Future)
        loop.call_soon(future.set_result, "done")
        value = await future
        return value, future._cond is None

    assert asyncio.run(main()) == ("done", True)


def test_a_call_future_resolved_from_another_thread_wakes_its_awaiter() -> None:
    async def main() -> Any:
        future = CallFuture(asyncio.get_running_loop())
        timer = threading.Timer(0.05, future.set_result, ("late",))
        timer.start()
        try:
            return await asyncio.wait_for(future, 30)
        finally:
            timer.join()

    assert asyncio.run(main()) == "late"


def test_a_blocking_clients_calls_are_light_futures() -> None:
    from reverb.errors import ConnectionClosed
    from reverb.hub import ClientHub

    future = ClientHub().call(None, 1, "m", [], 0.0)  # not connected: failed at once
    assert isinstance(future, Future) and future._cond is None  # type: ignore[attr-defined]
    with pytest.raises(ConnectionClosed):
        future.result(timeout=0)
