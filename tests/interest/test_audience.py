"""reverb/replication/audience.py: owner-only and server-only field lists."""

from __future__ import annotations

import pytest

from reverb.replication.audience import Audience, audience_of, field_split, split_fields


class Player:
    __reverb_owner_fields__ = ("inventory", "gold")
    __reverb_server_fields__ = ("ai_state", "gold")  # server-only wins over owner-only

    def __init__(self, owner: int | None) -> None:
        self.belonging_membership = owner


class Rock:
    pass


def test_owner_gets_owner_fields_others_do_not_server_fields_reach_nobody() -> None:
    split = field_split(Player, ["x", "inventory", "ai_state", "gold", "hp"])
    assert split.owner == ("x", "inventory", "hp")
    assert split.others == ("x", "hp")
    assert split.server_only == {"ai_state", "gold"}
    assert split.owner_only == {"inventory"}
    assert not split.uniform
    assert split.names(Audience.OWNER) == split.owner
    assert split.names(Audience.OTHERS) == split.others
    assert split.allows("inventory", Audience.OWNER)
    assert not split.allows("inventory", Audience.OTHERS)
    assert not split.allows("gold", Audience.OWNER)
    assert split.allows("hp", Audience.OTHERS)


def test_a_type_without_declarations_is_uniform_and_encodes_once() -> None:
    split = field_split(Rock, ["x", "y"])
    assert split.uniform and split.owner is split.others
    owner, others = split_fields(split, {"x": 1, "y": 2})
    assert owner is others


def test_split_fields_per_audience() -> None:
    split = field_split(Player, ["x", "inventory", "ai_state"])
    owner, others = split_fields(split, {"x": 1, "inventory": ["sword"], "ai_state": "idle"})
    assert owner == {"x": 1, "inventory": ["sword"]}
    assert others == {"x": 1}


def test_audience_of_follows_belonging_membership() -> None:
    assert audience_of(Player(7), 7) is Audience.OWNER
    assert audience_of(Player(7), 8) is Audience.OTHERS
    assert audience_of(Player(None), 8) is Audience.OTHERS


def test_malformed_declarations_are_refused() -> None:
    class Bad:
        __reverb_owner_fields__ = "inventory"  # a string, not a tuple of names

    class Worse:
        __reverb_server_fields__ = ("ok", 3)

    with pytest.raises(TypeError):
        field_split(Bad, ["inventory"])
    with pytest.raises(TypeError):
        field_split(Worse, ["ok"])
