"""Cases, verdicts and the case registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conformance.context import Ctx

PASS = "pass"
NON_STRICT = "non-strict"
FAIL = "fail"
INFO = "info"
VERDICTS = (PASS, NON_STRICT, FAIL, INFO)

GROUPS: dict[int, str] = {
    1: "Framing",
    2: "Encoding",
    3: "Handshake and versioning",
    4: "UIDs",
    5: "Ownership",
    6: "Sync convergence",
    7: "RPC",
    8: "Errors and closing",
    9: "Concurrency and limits",
    10: "Limits (low-limit profile)",
    11: "Features and the compact encoding",
    12: "The time feature",
    13: "Messages",
    14: "Interest (per-client visibility)",
    15: "Rooms",
    16: "Resume (session resume, exactly-once calls)",
    17: "Quiet idle ticks",
    18: "Column blocks (feature columns)",
}


@dataclass(frozen=True)
class Outcome:
    verdict: str
    detail: str = ""


class NonStrict(Exception):
    """Allowed but not recommended behaviour (verdict ``non-strict``)."""


def info(detail: str) -> Outcome:
    return Outcome(INFO, detail)


def non_strict(detail: str) -> Outcome:
    return Outcome(NON_STRICT, detail)


CaseFunc = Callable[["Ctx"], "Outcome | str | None"]


@dataclass(frozen=True)
class Case:
    id: str
    group: int
    description: str
    func: CaseFunc
    budget: float | None = None  # seconds; None means the run's --timeout
    exclusive: bool = False  # run alone (uses global counters or needs a quiet world)
    slow: bool = False
    final: bool = False  # runs after everything else (it may stop the server)
    risky: bool = False  # may crash a fragile server: runs alone, after the other cases
    low: bool = False  # needs a server on a known limit profile (--limits low)

    @property
    def sort_key(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.id.split("."))

    def matches(self, pattern: str) -> bool:
        """Match an id prefix (``2.3`` matches ``2.3.1`` but not ``2.31.1``) or a group."""
        pattern = pattern.strip()
        if not pattern:
            return True
        lowered = pattern.lower()
        if lowered.startswith("group") or lowered.startswith("g"):
            digits = lowered.removeprefix("group").removeprefix("g").strip(":= ")
            if digits.isdigit():
                return self.group == int(digits)
        if lowered == GROUPS[self.group].lower():
            return True
        if self.id == pattern or self.id.startswith(pattern.rstrip(".") + "."):
            return True
        return False


REGISTRY: dict[str, Case] = {}


def case(
    case_id: str,
    group: int,
    description: str,
    *,
    budget: float | None = None,
    exclusive: bool = False,
    slow: bool = False,
    final: bool = False,
    risky: bool = False,
    low: bool = False,
) -> Callable[[CaseFunc], CaseFunc]:
    """Register a conformance case under a stable id (section number + running number)."""

    def register(func: CaseFunc) -> CaseFunc:
        if case_id in REGISTRY:
            raise ValueError(f"duplicate case id {case_id}")
        if group not in GROUPS:
            raise ValueError(f"unknown group {group}")
        REGISTRY[case_id] = Case(
            case_id,
            group,
            description,
            func,
            budget,
            exclusive or risky,
            slow,
            final,
            risky,
            low,
        )
        return func

    return register


def all_cases() -> list[Case]:
    import conformance.cases  # noqa: F401  (registers every case module)

    return sorted(REGISTRY.values(), key=lambda c: c.sort_key)
