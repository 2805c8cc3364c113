"""``python -m harness interest`` at a tiny size: the scenario runs end to end (server, light
clients, the verifying real client), its verifier's view is exact, the budget run stays near
its budget, and it writes its JSON. A smoke test of the tool, not a measurement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.interest import main


@pytest.mark.timeout(120)
def test_the_interest_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    code = main(
        [
            "--objects", "400", "--clients", "3", "--visible", "20", "--world", "200",
            "--seconds", "1", "--warmup", "0.5", "--budget", "4000", "--vip", "0.2",
            "--runs", "interest,budget", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    result = json.loads((tmp_path / "interest.json").read_text())
    assert code == 0
    runs = result["runs"]
    assert runs["interest"]["view_exact"] and runs["budget"]["view_exact"]
    assert 0 < runs["interest"]["view_size"] < 400  # a view, not the world
    # the bytes it received scale with what its view's changes need (issue 11: within 2x)
    assert 0.5 < runs["interest"]["verifier_bytes_over_need"] < 2.0
    assert runs["budget"]["bytes_per_client_s"] < runs["interest"]["bytes_per_client_s"]
