"""docs/guide.md §14's example runs as written (the game author's pytest kit)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"


def test_the_guides_memory_example_passes() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## 14. Testing your game without sockets", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    namespace: dict[str, Any] = {"__name__": "guide_example"}
    exec(compile(code, f"{GUIDE.name} §14", "exec"), namespace)  # our own docs, not input
    namespace["test_a_player_moves_and_everyone_sees_it"]()
