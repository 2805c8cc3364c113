"""docs/guide.md §17's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"


def test_the_guides_interest_example_passes() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## 17. Interest management", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    namespace: dict[str, Any] = {"__name__": "guide_example"}
    ran = []
    for code in blocks:  # the runnable ones (a test in each), in order, one namespace
        if "def test_" in code:
            exec(compile(code, f"{GUIDE.name} §17", "exec"), namespace)  # our own docs
    for name, func in list(namespace.items()):
        if name.startswith("test_"):
            func()
            ran.append(name)
    assert ran == [
        "test_each_player_sees_what_is_near_its_avatar",
        "test_a_rated_object_updates_every_third_tick",
    ]
