"""The harness's small pure helpers."""

from __future__ import annotations

from harness.canon import table_hash
from harness.metrics import Reservoir, StampWindow, percentile, summary
from harness.scenarios.common import Result, diff_tables, split


class Obj:
    def __init__(self, owner: int | None, **fields: object) -> None:
        self.uid = 1
        self.belonging_membership = owner
        self._private = "ignored"
        self.__dict__.update(fields)


def test_table_hash_ignores_order_and_private_attributes() -> None:
    a = {1: Obj(None, x=1, y=2), 2: Obj(3, x=5)}
    b = {2: Obj(3, x=5), 1: Obj(None, y=2, x=1)}
    assert table_hash(a) == table_hash(b)
    assert table_hash(a) != table_hash({1: Obj(None, x=1, y=2), 2: Obj(4, x=5)})


def test_percentiles_and_summary() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([0.0, 10.0], 90) == 9.0
    assert summary([0.001, 0.002], 1000.0)["max"] == 2.0


def test_reservoir_is_bounded() -> None:
    r = Reservoir(cap=10)
    for i in range(1000):
        r.add(float(i))
    assert r.count == 1000 and len(r.values) == 10


def test_split_and_diff() -> None:
    assert split(10, 4) == [4, 4, 2]
    assert split(3, 16) == [3]
    server = {"1": ["Box", None, {"v": 1}], "2": ["Box", None, {"v": 2}]}
    client = {"1": ["Box", None, {"v": 9}], "3": ["Box", None, {}]}
    text = diff_tables(server, client)
    assert "1 missing (uids 2)" in text and "1 extra (uids 3)" in text and "1 differ" in text


def test_result_caps_reasons() -> None:
    r = Result("x")
    for i in range(30):
        r.check(False, f"r{i}")
    data = r.to_json()
    assert data["verdict"] == "FAIL" and data["reasons"][-1] == "... and 10 more"


def test_a_stamp_window_counts_what_arrived_before_the_window_was_known() -> None:
    """A client process slow to read the ``stream`` command has already received updates
    stamped inside the window (the load scenario's ``updates_seen`` lost them under load)."""
    w = StampWindow()
    w.see(5.0, 5.1)  # before any reset: warm-up, never counted
    w.reset()
    w.see(9.0, 9.5)  # before the window: held, then dropped
    w.see(10.0, 10.25)  # inside it, but arrived before the window was known
    w.open(10.0, 12.0)
    w.see(11.0, 11.5)
    w.see(12.0, 12.1)  # at the end: outside ([start, until))
    assert w.count == 2
    assert sorted(w.ages.values) == [0.25, 0.5]
    w.reset()
    assert w.count == 0 and w.ages.values == [] and w.window is None
