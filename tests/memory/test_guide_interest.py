"""docs/guide.md §17's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"


def test_the_guides_interest_example_passes() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## 17. Interest management", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    namespace: dict[str, Any] = {"__name__": "guide_example"}
    exec(compile(code, f"{GUIDE.name} §17", "exec"), namespace)  # our own docs, not input
    namespace["test_each_player_sees_what_is_near_its_avatar"]()
