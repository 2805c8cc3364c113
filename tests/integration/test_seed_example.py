"""The seed README's example, run as written in two real processes over 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, spawn_ready, stop


@pytest.mark.timeout(60)
def test_seed_client_prints_the_servers_values() -> None:
    server, port = spawn_ready([str(ROOT / "examples" / "seed_server.py"), "0", "30"])
    try:
        client = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "seed_client.py"), str(port), "1.5"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT / "examples",
            env={"PYTHONPATH": str(ROOT)},
        )
    finally:
        _out, err = stop(server)
    assert client.returncode == 0, client.stderr
    lines = client.stdout.splitlines()
    assert lines, "the client printed nothing"
    assert set(lines) == {"10 20"}
    assert "Traceback" not in err
