"""``python -m harness bench`` at a tiny size: one real run of every implementation on a few
cells, and the JSON has every cell, every target row, and sane figures. No timing assertions:
the box is shared and the figures are what the benchmark is for."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.bench.report import TARGETS, ratios
from harness.procs import ROOT

IMPLS = {"raw", "threaded", "asyncio", "floor"}


def run_bench(tmp_path: Path, *args: str, timeout: float = 150.0) -> tuple[dict, str]:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    argv = [sys.executable, "-m", "harness", "bench", *args, "--out", str(tmp_path)]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:  # SIGTERM lets the bench stop its children; then SIGKILL
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=15.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate(timeout=5.0)
    assert proc.returncode == 0, out[-3000:]
    return json.loads((tmp_path / "bench.json").read_text()), out


@pytest.mark.timeout(200)
def test_bench_tiny_grid_reports_every_cell_and_row(tmp_path: Path) -> None:
    data, _ = run_bench(
        tmp_path,
        *("--n", "50", "--m", "2", "--churn", "100,10,0", "--rpc", "1"),
        *("--many", "12", "--many-n", "50", "--seconds", "1", "--warmup", "0.3", "--reps", "1"),
    )
    summary = data["summary"]
    expected = {f"n=50 m=2 churn={c}" for c in ("1", "0.1", "0")}
    expected |= {"rpc callers=1", "many n=50 m=12 churn=0.1"}
    assert set(summary) == expected
    for cell, by_impl in summary.items():
        # the floor (raw writing only changes) runs where not everything changes, on sync cells
        floored = cell.startswith("n=") and not cell.endswith("churn=1")
        assert set(by_impl) == (IMPLS if floored else IMPLS - {"floor"}), cell
    runs = data["runs"]
    assert len(runs) == len(expected) * (len(IMPLS) - 1) + 2
    for r in runs:
        where = f"{r['cell']} {r['impl']}"
        assert "error" not in r, f"{where}: {r.get('error')}"
        assert r["tick_hz"] > 0 and r["ticks"] > 0, where
        assert r["server_cpu_ms_per_tick"] > 0, where
        assert r["verified"] == r["full_clients"] > 0, where  # final state equals the server's
        assert r["closed_connections"] == 0, where
        if r["kind"] != "rpc":
            assert r["connections"] == r["m"], where
        if r["impl"] == "floor" and r["churn"] == 0:  # after the first state, nothing
            assert r["bytes_per_client_tick"] * r["ticks"] < 2 * 50 * 100, where
        if r["impl"] == "floor" and r["churn"] > 0:  # the changed objects, not the state
            raw = next(x for x in runs if x["cell"] == r["cell"] and x["impl"] == "raw")
            assert 0 < r["bytes_per_client_tick"] < 0.5 * raw["bytes_per_client_tick"], where
        if r["impl"] == "raw" or r["churn"] > 0:
            assert r["bytes_per_client_tick"] > 0, where
            assert r["freshness_samples"] > 0 and r["freshness_p50_ms"] >= 0, where
            assert r["client_cpu_ms_per_tick"] > 0, where
        if r["kind"] == "rpc":
            assert r["rpc_calls"] > 0 and 0 < r["rpc_p50_ms"] <= r["rpc_p99_ms"], where
    # every target row is reported for both Reverb layers (here: not measured at this size)
    assert len(data["ratios"]) == 2 * len(TARGETS)
    assert {r["row"] for r in data["ratios"]} == {t.row for t in TARGETS}
    rpc = [r for r in data["ratios"] if r["cell"] == "rpc callers=1"]
    assert rpc and all(r["value"] is not None and r["value"] > 0 for r in rpc)
    html = (tmp_path / "report.html").read_text()
    assert "Targets" in html
    if importlib.util.find_spec("matplotlib") is not None:
        assert "data:image/png;base64," in html
    else:  # tox's environments have no matplotlib: the report says so and keeps its tables
        assert "matplotlib is not installed: no plots" in html


def test_ratios_compare_medians_of_the_same_run_against_each_target() -> None:
    def slot(**metrics: float) -> dict:
        return {k: {"median": v, "min": v, "max": v, "n": 1} for k, v in metrics.items()}

    summary = {
        "n=1000 m=8 churn=1": {
            "raw": slot(server_cpu_ms_per_tick=2.0, bytes_per_client_tick=40000.0),
            "threaded": slot(server_cpu_ms_per_tick=3.0, bytes_per_client_tick=20000.0),
            "asyncio": slot(server_cpu_ms_per_tick=2.0, bytes_per_client_tick=50000.0),
        }
    }
    rows = {(r["what"], r["impl"]): r for r in ratios(summary) if r["cell"] == "n=1000 m=8 churn=1"}
    cpu = rows["server CPU/tick", "reverb-threaded"]
    assert cpu["value"] == pytest.approx(1.5) and cpu["met"] is True
    assert rows["bytes/client/tick", "reverb-threaded"]["met"] is True
    assert rows["bytes/client/tick", "reverb-asyncio"]["value"] == pytest.approx(1.25)
    assert rows["bytes/client/tick", "reverb-asyncio"]["met"] is False
    assert rows["30 Hz held (at least 29)", "reverb-threaded"]["value"] is None  # no tick_hz
    rpc = [r for r in ratios(summary) if r["cell"] == "rpc callers=1"]
    assert rpc and all(r["value"] is None and r["note"] for r in rpc)


def cpu_slot(cpu: float) -> dict:
    """A summary slot holding one server CPU figure (ms per tick)."""
    return {"server_cpu_ms_per_tick": {"median": cpu, "min": cpu, "max": cpu, "n": 1}}


def test_the_idle_rows_also_read_reverb_above_the_floor_against_raw() -> None:
    cell = "n=100 m=8 churn=0"
    summary = {cell: {"raw": cpu_slot(0.5), "threaded": cpu_slot(0.1), "floor": cpu_slot(0.08)}}
    rows = {(r["what"], r["impl"]): r for r in ratios(summary) if r["cell"] == cell}
    gross = rows["server CPU/tick", "reverb-threaded"]
    assert gross["value"] == pytest.approx(0.2) and gross["met"] is False
    net = rows["server CPU/tick above the floor", "reverb-threaded"]
    assert net["value"] == pytest.approx(0.04) and net["met"] is True  # (0.1 - 0.08) / 0.5
    assert net["note"] == "floor = 0.16x raw"
    del summary[cell]["floor"]
    rows = {(r["what"], r["impl"]): r for r in ratios(summary) if r["cell"] == cell}
    missing = rows["server CPU/tick above the floor", "reverb-threaded"]
    assert missing["value"] is None and missing["note"] == "the floor was not measured"


def test_the_ten_percent_row_notes_the_floor_next_to_its_target() -> None:
    cell = "n=1000 m=8 churn=0.1"
    summary = {cell: {"raw": cpu_slot(1.0), "threaded": cpu_slot(0.6), "floor": cpu_slot(0.4)}}
    rows = {(r["what"], r["impl"]): r for r in ratios(summary) if r["cell"] == cell}
    cpu = rows["server CPU/tick vs raw's full-state tick", "reverb-threaded"]
    assert cpu["value"] == pytest.approx(0.6) and cpu["met"] is False  # still against raw
    assert cpu["note"] == "floor = 0.4x raw; reverb = 1.5x floor"
    assert "note" not in rows["bytes/client/tick", "reverb-threaded"]  # CPU rows only
