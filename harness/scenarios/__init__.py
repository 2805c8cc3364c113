"""The scenarios: each ``run(Options) -> Result`` starts its own processes and stops them all."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from harness.scenarios.common import Options, Result

__all__ = ["CORRECTNESS", "SCENARIOS", "Options", "Result", "get"]

SCENARIOS = (
    "convergence",
    "uids",
    "ownership",
    "rpc",
    "churn",
    "load",
    "faults",
    "versions",
    "sweep",
)
CORRECTNESS = ("convergence", "uids", "ownership", "rpc", "churn")


def get(name: str) -> Callable[[Options], Result]:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    module = importlib.import_module(f"harness.scenarios.{name}")
    run: Callable[[Options], Result] = module.run
    return run
