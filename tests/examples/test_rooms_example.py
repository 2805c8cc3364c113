"""The rooms example (examples/rooms, guide "Rooms and a lobby") in real processes: a server and
two menu clients quick-play one battle, fire until the room disposes itself, and exit 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "rooms"


def env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path)


def test_two_players_quick_play_one_battle_to_its_end() -> None:
    server = subprocess.Popen(
        [sys.executable, "server.py", "0"],
        cwd=EXAMPLE,
        env=env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    players: list[subprocess.Popen[str]] = []
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()
        assert ready.startswith("READY "), ready
        port = ready.split()[1]
        players = [
            subprocess.Popen(
                [sys.executable, "menu.py", port, who],
                cwd=EXAMPLE,
                env=env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for who in ("ann", "bob")
        ]
        reports = []
        for player in players:
            out, err = player.communicate(timeout=40)
            assert player.returncode == 0, err
            lines = [json.loads(line) for line in out.splitlines()]
            assert lines[1] == {"refused": "rejected", "reason": "pick a name first"}
            reports.append(lines[-1])
        assert reports[0]["room"] == reports[1]["room"]  # quick play matched them
        for report in reports:
            assert report["ships"] == 2
            assert report["ended"] == ["room disposed"]
            assert report["left_with"] == 0  # the room's replicas went with it
            assert "added" in report["lobby_events"] or "changed" in report["lobby_events"]
    finally:
        for proc in [*players, server]:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        if server.stdin is not None:
            server.stdin.close()
