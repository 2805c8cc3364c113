"""Runs cases: a small thread pool for independent cases, then exclusive ones alone."""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from conformance.context import Ctx, Settings
from conformance.driver import CaseFailure
from conformance.model import FAIL, NON_STRICT, PASS, Case, NonStrict, Outcome

GRACE = 2.0


@dataclass
class CaseResult:
    id: str
    group: int
    description: str
    verdict: str
    duration: float
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "group": self.group,
            "description": self.description,
            "verdict": self.verdict,
            "duration": round(self.duration, 3),
            "detail": self.detail,
        }


def budget_of(case: Case, settings: Settings) -> float:
    return max(case.budget or 0.0, settings.timeout)


def run_case(case: Case, settings: Settings) -> CaseResult:
    """Run one case in its own thread, bounded by its budget; never raises."""
    ctx = Ctx(settings)
    outcome: list[Outcome] = []

    def body() -> None:
        try:
            returned = case.func(ctx)
            if isinstance(returned, Outcome):
                outcome.append(returned)
            else:
                outcome.append(Outcome(PASS, returned or ""))
        except NonStrict as exc:
            outcome.append(Outcome(NON_STRICT, str(exc)))
        except CaseFailure as exc:
            outcome.append(Outcome(FAIL, str(exc)))
        except OSError as exc:
            outcome.append(Outcome(FAIL, f"socket error: {exc.__class__.__name__}: {exc}"))
        except Exception as exc:  # a driver bug must not stop the run
            where = traceback.extract_tb(exc.__traceback__)[-1]
            outcome.append(
                Outcome(
                    FAIL,
                    f"driver error {exc.__class__.__name__}: {exc} "
                    f"(at {where.name}:{where.lineno})",
                )
            )

    budget = budget_of(case, settings)
    start = time.monotonic()
    worker = threading.Thread(target=body, name=f"case-{case.id}", daemon=True)
    worker.start()
    worker.join(budget + GRACE)
    if worker.is_alive():
        ctx.close_all()  # unblocks any socket call of the case
        worker.join(GRACE)
        result = Outcome(FAIL, f"exceeded its time budget of {budget:.1f}s")
    else:
        ctx.close_all()
        result = outcome[0] if outcome else Outcome(FAIL, "case produced no verdict")
    duration = time.monotonic() - start
    return CaseResult(
        case.id, case.group, case.description, result.verdict, duration, result.detail
    )


def run_all(
    cases: list[Case],
    settings: Settings,
    *,
    workers: int = 4,
    on_result: Callable[[CaseResult], None] | None = None,
    fail_fast: bool = False,
) -> list[CaseResult]:
    """Run independent cases on ``workers`` threads (longest budgets first), then exclusive
    cases one at a time. Results come back sorted by case id. With ``fail_fast`` no new case
    starts after the first ``fail`` (the mutation tool only needs one)."""
    # Longest budgets first keep the pool busy; with fail_fast the short cases go first, so
    # that a failure is found early and the cases still running then end soon.
    shared = sorted(
        (c for c in cases if not c.exclusive and not c.final),
        key=lambda c: (
            (c.slow, budget_of(c, settings))
            if fail_fast
            else (-budget_of(c, settings) if c.slow or c.budget else 0.0,),
            c.sort_key,
        ),
    )
    alone = sorted(
        (c for c in cases if c.exclusive or c.final),
        key=lambda c: (c.final, c.risky, c.sort_key),
    )
    results: dict[str, CaseResult] = {}
    lock = threading.Lock()
    todo: queue.Queue[Case] = queue.Queue()
    for item in shared:
        todo.put(item)

    failed = threading.Event()

    def record(result: CaseResult) -> None:
        with lock:
            results[result.id] = result
            if result.verdict == FAIL and fail_fast:
                failed.set()
            if on_result is not None:
                on_result(result)

    def pool_worker() -> None:
        while not failed.is_set():
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            record(run_case(item, settings))

    threads = [threading.Thread(target=pool_worker, daemon=True) for _ in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for item in alone:
        if failed.is_set():
            break
        record(run_case(item, settings))
    by_id = {c.id: c for c in cases}
    return sorted(results.values(), key=lambda r: by_id[r.id].sort_key)
