"""The conformance driver can fail: it catches each bug of a deliberately broken server,
exits non-zero, and passes Reverb's own reference host."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BROKEN = Path(__file__).resolve().parent / "broken_server.py"
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def broken_cmd(*bugs: str) -> str:
    flags = "".join(f" --bug {bug}" for bug in bugs)
    return f"{sys.executable} {BROKEN}{flags}"


def run_driver(args: list[str], timeout: float) -> tuple[int, str]:
    """Run ``python -m conformance ARGS``; always stop and reap it.

    SIGTERM lets the driver stop the server it started before it exits."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "conformance", *args],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def listed_ids(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines() if line[:1].isdigit() and " g" in line]


def verdicts(report_dir: Path) -> dict[str, str]:
    data = json.loads((report_dir / "report.json").read_text())
    return {case["id"]: case["verdict"] for case in data["cases"]}


def test_lists_at_least_150_cases_with_unique_ids() -> None:
    code, out = run_driver(["--list"], timeout=30)
    assert code == 0, out
    ids = listed_ids(out)
    assert len(ids) >= 150
    assert len(set(ids)) == len(ids)
    assert out.strip().endswith(f"{len(ids)} cases")


def test_case_filter_selects_by_prefix_and_group() -> None:
    code, out = run_driver(["--list", "--cases", "2.3,g3"], timeout=30)
    assert code == 0, out
    ids = listed_ids(out)
    assert "2.3.4" in ids and "4.4.2" in ids
    assert not any(i.startswith("2.4.") or i.startswith("8.") for i in ids)


BUG_CASES = [
    pytest.param("little-endian", ["2.1.1", "2.1.2", "9.1.1"], id="little-endian"),
    pytest.param("traceback", ["8.4.1", "8.4.3"], id="traceback"),
    pytest.param("run-hidden", ["8.2.1", "8.2.3"], id="run-hidden"),
    pytest.param("reuse-uids", ["7.1.5"], id="reuse-uids"),
    pytest.param(
        "no-frame-limit", ["2.3.4", "2.3.5", "2.3.6", "2.3.7", "2.3.8"], id="no-frame-limit"
    ),
    pytest.param(
        "no-contract-check", ["4.9.2", "4.9.3", "4.9.4", "4.9.5"], id="no-contract-check"
    ),
    pytest.param("loose-equality", ["7.2.10", "7.2.13"], id="loose-equality"),
]


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("bug", "cases"), BUG_CASES)
def test_each_bug_gets_fail_verdicts(bug: str, cases: list[str], tmp_path: Path) -> None:
    code, out = run_driver(
        [
            "--server-cmd",
            broken_cmd(bug),
            "--cases",
            ",".join(cases),
            "--timeout",
            "2",
            "--report",
            str(tmp_path),
        ],
        timeout=75,
    )
    assert code == 1, out
    got = verdicts(tmp_path)
    assert {case: got[case] for case in cases} == {case: "fail" for case in cases}, out


@pytest.mark.timeout(90)
def test_the_same_cases_pass_without_the_bugs(tmp_path: Path) -> None:
    cases = sorted({case for param in BUG_CASES for case in param.values[1]})  # type: ignore[attr-defined]
    code, out = run_driver(
        [
            "--server-cmd",
            broken_cmd(),
            "--cases",
            ",".join(cases),
            "--timeout",
            "3",
            "--report",
            str(tmp_path),
        ],
        timeout=75,
    )
    assert code == 0, out
    assert set(verdicts(tmp_path).values()) == {"pass"}, out


@pytest.mark.timeout(60)
def test_report_files_and_connect_mode(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, str(BROKEN), "--bug", "traceback"],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline().split()
        assert ready[0] == "READY", ready
        code, out = run_driver(
            [
                "--connect",
                f"127.0.0.1:{ready[1]}",
                "--cases",
                "8.4,9.1.1",
                "--report",
                str(tmp_path),
            ],
            timeout=45,
        )
    finally:
        server.terminate()
        try:
            server.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
    assert code == 1, out
    data: dict[str, Any] = json.loads((tmp_path / "report.json").read_text())
    assert data["totals"]["fail"] >= 1 and data["totals"]["total"] == len(data["cases"])
    case = next(c for c in data["cases"] if c["id"] == "8.4.1")
    assert case["verdict"] == "fail" and "Traceback" in case["detail"]
    assert set(case) >= {"id", "group", "description", "verdict", "duration", "detail"}
    markdown = (tmp_path / "report.md").read_text()
    assert "## 7. RPC" in markdown and "## Slowest cases" in markdown and "| 8.4.1 |" in markdown
    assert "FAIL 8.4.1" in out


@pytest.mark.timeout(60)
def test_unreachable_server_fails(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out = run_driver(["--connect", f"127.0.0.1:{port}", "--cases", "2.1.1"], timeout=45)
    assert code == 1, out


@pytest.mark.timeout(60)
def test_server_that_never_gets_ready(tmp_path: Path) -> None:
    code, out = run_driver(
        [
            "--server-cmd",
            f"{sys.executable} -c 'import time; time.sleep(30)'",
            "--ready-timeout",
            "1",
        ],
        timeout=45,
    )
    assert code == 2, out
    assert "READY" in out


@pytest.mark.timeout(300)
def test_reference_host_passes_the_whole_suite(tmp_path: Path) -> None:
    code, out = run_driver(
        ["--server-cmd", f"{sys.executable} -m conformance.host", "--report", str(tmp_path)],
        timeout=280,
    )
    fails = [line for line in out.splitlines() if line.startswith("FAIL ")]
    assert fails == [], out[-4000:]
    assert code == 0, out[-4000:]
    assert json.loads((tmp_path / "report.json").read_text())["totals"]["fail"] == 0
