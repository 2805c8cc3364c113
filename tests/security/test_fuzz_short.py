"""A short run of every fuzz target (fuzz/targets.py) in subprocesses: none may crash.

With atheris installed the targets run coverage-guided; without it (Python versions with no
atheris wheel) they run in fuzz/run.py's deterministic fallback, so every interpreter of
``make test`` exercises them. ``make fuzz`` runs them for longer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(180)

RUNNER = ROOT / "fuzz" / "run.py"


def run(mode: str, tmp_path: Any, *extra: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(RUNNER), "--mode", mode, "--jobs", "4",
         "--artifacts", str(tmp_path), *extra],
        capture_output=True, text=True, timeout=170, cwd=ROOT,
    )  # fmt: skip
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert results, proc.stdout + proc.stderr
    for result in results:
        print("FIGURES", json.dumps({"fuzz": {k: v for k, v in result.items() if k != "output"}}))
        assert not result["crashed"], result.get("output")
        assert result["executions"], result
    assert {r["target"] for r in results} == {"framing", "messages", "session", "dispatch"}
    assert proc.returncode == 0
    return results


def test_fuzz_targets_do_not_crash_in_the_fallback_mode(tmp_path: Any) -> None:
    run("fallback", tmp_path, "--seconds", "2", "--seed", "1")


def test_fuzz_targets_do_not_crash_under_atheris(tmp_path: Any) -> None:
    pytest.importorskip(
        "atheris",
        reason="atheris is not installed for this Python (no wheel for it, e.g. 3.10): "
        "the fallback-mode test above still runs every target",
    )
    run("atheris", tmp_path, "--seconds", "3")
