"""Every harness scenario, small: it passes on Reverb, and fails on a deliberately broken
server (``--break``, patched into the server child only). Each run is a real ``python -m
harness`` process starting real server and client processes on loopback."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.procs import ROOT, discover_pythons

COMMON = ["--seed", "3", "--no-progress"]
LOAD_KEYS = {
    "clients",
    "objects",
    "rate_hz",
    "achieved_rate_hz",
    "server_cpu_s_per_tick",
    "bytes_per_client_per_s",
    "freshness_ms",
    "rpc_rtt_ms",
    "server_peak_rss_mb",
    "converged",
}
VERDICT_KEYS = {"scenario", "verdict", "passed", "reasons", "duration_s", "breaks"}


def harness(tmp_path: Path, *args: str, timeout: float = 50.0) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / "out.json"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *args, *COMMON, "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    text = proc.stdout + proc.stderr
    assert out.exists(), f"no JSON written; output:\n{text[-3000:]}"
    data = json.loads(out.read_text())
    assert VERDICT_KEYS <= data.keys()
    assert data["verdict"] == ("PASS" if proc.returncode == 0 else "FAIL"), text[-3000:]
    return proc.returncode, data, text


def cross_pair() -> tuple[str, str]:
    """Two different interpreters if pyenv has them (oldest server, newest clients)."""
    found = discover_pythons()
    if len(found) < 2:
        pytest.skip(f"versions needs two interpreters of 3.10-3.13; found {sorted(found)}")
    versions = sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))
    return found[versions[-1]], found[versions[0]]


PASSING = {
    "convergence": ["--clients", "3", "--objects", "20", "--seconds", "1.5"],
    "uids": ["--clients", "3", "--objects", "12", "--seconds", "1.5"],
    "ownership": ["--clients", "3", "--objects", "6"],
    "rpc": ["--clients", "3", "--seconds", "1"],
    "churn": ["--clients", "3", "--objects", "12", "--seconds", "2"],
    "faults": ["--objects", "10", "--seconds", "1"],
}

BROKEN = {
    "convergence": ("drop-updates", "did not converge"),
    "uids": ("reuse-uids", "UIDs"),
    "ownership": ("ignore-owner", "non-owner"),
    "rpc": ("double-execute", "executed 2 times"),
    "churn": ("leak-members", "server members"),
    "faults": ("no-heartbeat", "never dropped"),
}


@pytest.mark.parametrize("scenario", sorted(PASSING))
def test_scenario_passes(tmp_path: Path, scenario: str) -> None:
    rc, data, text = harness(tmp_path, scenario, *PASSING[scenario])
    assert rc == 0, text[-3000:]
    assert data["passed"] and data["reasons"] == []
    assert data["converged"] is True
    if scenario == "faults":  # §9.2: a half-open peer is dropped within idle timeout + 1 s
        assert data["stall_detected_after_s"] <= data["idle_timeout_s"] + 1.0
        assert data["survivors"] == 4


@pytest.mark.parametrize("scenario", sorted(BROKEN))
def test_scenario_catches_breakage(tmp_path: Path, scenario: str) -> None:
    breakage, expected = BROKEN[scenario]
    rc, data, text = harness(
        tmp_path, scenario, *PASSING[scenario], "--break", breakage, "--converge-timeout", "2"
    )
    assert rc == 1, text[-3000:]
    assert data["breaks"] == [breakage]
    assert any(expected in r for r in data["reasons"]), data["reasons"]


def test_load_reports_every_figure(tmp_path: Path) -> None:
    report = tmp_path / "load.html"
    rc, data, text = harness(
        tmp_path,
        "load",
        "--clients",
        "4",
        "--objects",
        "50",
        "--seconds",
        "1.5",
        "--clients-per-process",
        "2",
        "--max-freshness-p99",  # the report's contents are under test, not this box's speed
        "200",
        "--min-rate-ratio",  # (tox runs two interpreters' suites at once on two cores)
        "0.5",
        "--report",
        str(report),
    )
    assert rc == 0, text[-3000:]
    assert LOAD_KEYS <= data.keys()
    for key in ("freshness_ms", "rpc_rtt_ms"):
        assert data[key]["p50"] is not None and data[key]["p99"] >= data[key]["p50"]
        assert data["vs_baseline"][f"{key}_p50"] is not None
    assert data["achieved_rate_hz"] > 0 and data["bytes_per_client_per_s"] > 0
    page = report.read_text()
    assert 'load: <span class="PASS">PASS' in page
    if importlib.util.find_spec("matplotlib") is not None:
        assert "data:image/png;base64" in page


def test_sweep_writes_one_table(tmp_path: Path) -> None:
    rc, data, text = harness(
        tmp_path,
        "sweep",
        "--grid-clients",
        "1,2",
        "--grid-objects",
        "5",
        "--seconds",
        "0.5",
        "--no-baseline",
        "--max-freshness-p99",  # the table's shape is under test, not this box's speed
        "200",
        "--min-rate-ratio",
        "0.5",
        "--report",
        str(tmp_path),
    )
    assert rc == 0, text[-3000:]
    assert [(row["clients"], row["objects"]) for row in data["table"]] == [(1, 5), (2, 5)]
    assert all(LOAD_KEYS <= row.keys() for row in data["table"])
    assert (tmp_path / "report.html").exists()


def test_versions_cross_interpreter(tmp_path: Path) -> None:
    server, clients = cross_pair()
    rc, data, text = harness(
        tmp_path,
        "versions",
        "--server-python",
        server,
        "--client-python",
        clients,
        "--only",
        "rpc,uids",
        "--clients",
        "2",
        "--seconds",
        "1",
    )
    assert rc == 0, text[-3000:]
    pairs = data["pairs"]
    assert len(pairs) == 2 and pairs[0]["server"] != pairs[0]["clients"]
    assert all(p["verdict"] == "PASS" for p in pairs)


def test_versions_cross_interpreter_catches_breakage(tmp_path: Path) -> None:
    server, clients = cross_pair()
    rc, data, text = harness(
        tmp_path,
        "versions",
        "--server-python",
        server,
        "--client-python",
        clients,
        "--only",
        "rpc",
        "--clients",
        "2",
        "--break",
        "double-execute",
    )
    assert rc == 1, text[-3000:]
    assert data["pairs"][0]["verdict"] == "FAIL"
