"""reverb/interpolation.py: change hooks fired after a whole tick, in order, isolated."""

from __future__ import annotations

import logging

import pytest

from reverb.interpolation import Hooks, on_change


class Player:
    def __init__(self, name: str, log: list[tuple[str, ...]]) -> None:
        self.name = name
        self.log = log
        self.hp = 100
        self.x = 0.0

    @on_change("hp")
    def hurt(self, old: object, new: object) -> None:
        self.log.append(("hurt", self.name, str(old), str(new)))

    @on_change("hp", "x")
    def anything(self, old: object, new: object) -> None:
        self.log.append(("anything", self.name, str(old), str(new)))

    def on_hp_changed(self, old: object, new: object) -> None:
        # The world is whole when a hook runs: the other fields of the tick are applied.
        self.log.append(("on_hp_changed", self.name, str(old), str(new), str(self.x)))


def apply(hooks: Hooks, obj: Player, fields: dict[str, object]) -> None:
    """What the client does when applying one entry of a sync: set, record."""
    for name, value in fields.items():
        old = getattr(obj, name)
        setattr(obj, name, value)
        hooks.record(obj, name, old, value)


def test_hooks_fire_after_the_whole_tick_in_tick_order() -> None:
    log: list[tuple[str, ...]] = []
    hooks = Hooks()
    a, b = Player("a", log), Player("b", log)
    hooks.on("hp", lambda obj, old, new: log.append(("listener", obj.name, str(old), str(new))))
    # tick 1
    apply(hooks, a, {"hp": 90, "x": 5.0})
    apply(hooks, b, {"hp": 80})
    assert log == [] and hooks.pending == 3  # nothing runs while the tick is applied
    assert hooks.fire() == 9
    assert log == [
        ("hurt", "a", "100", "90"),
        ("anything", "a", "100", "90"),
        ("on_hp_changed", "a", "100", "90", "5.0"),  # x of the same tick already applied
        ("listener", "a", "100", "90"),
        ("anything", "a", "0.0", "5.0"),
        ("hurt", "b", "100", "80"),
        ("anything", "b", "100", "80"),
        ("on_hp_changed", "b", "100", "80", "0.0"),
        ("listener", "b", "100", "80"),
    ]


def test_changes_of_two_ticks_fired_together_keep_tick_order() -> None:
    log: list[tuple[str, ...]] = []
    hooks = Hooks()
    a = Player("a", log)
    apply(hooks, a, {"hp": 90})
    apply(hooks, a, {"hp": 70})
    hooks.fire()
    assert [entry[2:4] for entry in log if entry[0] == "hurt"] == [("100", "90"), ("90", "70")]


def test_an_unchanged_value_fires_nothing() -> None:
    log: list[tuple[str, ...]] = []
    hooks = Hooks()
    a = Player("a", log)
    apply(hooks, a, {"hp": 100})
    hooks.record(a, "hp", 1, 1.0)  # equal but not the same type: a change
    assert hooks.pending == 1


def test_a_raising_hook_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[tuple[str, ...]] = []
    hooks = Hooks()
    a = Player("a", log)

    def boom(obj: object, old: object, new: object) -> None:
        raise RuntimeError("hook bug")

    hooks.on("hp", boom)
    hooks.on("hp", lambda obj, old, new: log.append(("after", "", str(old), str(new))))
    apply(hooks, a, {"hp": 1})
    apply(hooks, a, {"x": 2.0})
    with caplog.at_level(logging.ERROR, logger="reverb"):
        hooks.fire()
    assert ("after", "", "100", "1") in log
    assert ("anything", "a", "0.0", "2.0") in log
    records = [r for r in caplog.records if r.name == "reverb"]
    assert len(records) == 1 and "Player.hp" in records[0].getMessage()
    assert records[0].exc_info is not None


def test_changes_recorded_by_a_hook_wait_for_the_next_fire() -> None:
    log: list[tuple[str, ...]] = []
    hooks = Hooks()
    a = Player("a", log)
    hooks.on("hp", lambda obj, old, new: hooks.record(obj, "x", 0.0, 1.0))
    apply(hooks, a, {"hp": 5})
    hooks.fire()
    assert hooks.pending == 1
    hooks.fire()
    assert log[-1] == ("anything", "a", "0.0", "1.0")


def test_on_change_needs_a_field() -> None:
    with pytest.raises(ValueError):
        on_change()


def test_a_value_whose_equality_raises_counts_as_a_change() -> None:
    class Odd:
        def __eq__(self, other: object) -> bool:
            raise TypeError("no")

        __hash__ = object.__hash__

    hooks = Hooks()
    hooks.record(object(), "v", Odd(), Odd())
    assert hooks.pending == 1
