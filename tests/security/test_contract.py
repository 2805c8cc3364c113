"""The contract check at the handshake (docs/protocol.md §4.9, ``contract``/``contract_mismatch``
in reverb/replication/types.py): a client built with different types or RPCs is refused with
close 3001 and a reason naming what differs; identical registrations connect."""

from __future__ import annotations

from typing import Any

import pytest

from reverb import HandshakeFailed, ReverbObject, ReverbSide, expose
from reverb.replication.types import contract, contract_mismatch
from tests.hostile.raw import Raw
from tests.security.conftest import Ship, contexts

pytestmark = pytest.mark.timeout(30)


class Crate(ReverbObject):
    def __init__(self, weight=1, uid=None, add_on_init=True, belonging_membership=None):
        self.weight = weight
        super().__init__(
            weight, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


# Variants of Ship, each registered under the wire name "Ship" on the client only.


class ShipTwoArgs(ReverbObject):
    wire_name = "Ship"

    def __init__(self, x=0, y=0, uid=None, add_on_init=True, belonging_membership=None):
        self.x = x
        super().__init__(
            x, y, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def thrust(self, dx):
        return dx

    @expose(anyone=True)
    def hail(self):
        return "ahoy"


class ShipThrust2D(Ship):
    wire_name = "Ship"

    @expose
    def thrust(self, dx, dy=0):  # type: ignore[override]
        return dx


class ShipExtraRpc(Ship):
    wire_name = "Ship"

    @expose
    def boost(self):
        return 1


class ShipHidesThrust(Ship):
    wire_name = "Ship"

    def thrust(self, dx):  # type: ignore[override]  # no longer exposed
        return dx


class ShipThrustForAnyone(Ship):
    wire_name = "Ship"

    @expose(anyone=True)
    def thrust(self, dx):  # type: ignore[override]
        return dx


class ShipDeclaredFields(Ship):
    wire_name = "Ship"
    __reverb_fields__ = ("x",)


class ServerShipBoost(Ship):
    wire_name = "Ship"

    @expose
    def boost(self):
        return 1


CASES: dict[str, tuple[tuple[type, ...], tuple[type, ...], list[str]]] = {
    # name: (server types, client types, words the reason must hold)
    "missing-type": ((Ship, Crate), (Ship,), ["Crate", "missing on the client"]),
    "extra-type": ((Ship,), (Ship, Crate), ["Crate", "unknown to the server"]),
    "constructor": ((Ship,), (ShipTwoArgs,), ["Ship", "constructor"]),
    "method-params": ((Ship,), (ShipThrust2D,), ["Ship.thrust"]),
    "client-only-method": ((Ship,), (ShipExtraRpc,), ["Ship.boost", "not exposed on the server"]),
    "server-only-method": (
        (ServerShipBoost,),
        (Ship,),
        ["Ship.boost", "not exposed on the client"],
    ),
    "unexposed-on-client": ((Ship,), (ShipHidesThrust,), ["Ship.thrust"]),
    "anyone-flag": ((Ship,), (ShipThrustForAnyone,), ["Ship.thrust"]),
    "fields": ((Ship,), (ShipDeclaredFields,), ["Ship", "fields"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_different_contract_is_refused_with_3001_naming_the_difference(
    make_game: Any, case: tuple[tuple[type, ...], tuple[type, ...], list[str]]
) -> None:
    server_types, client_types, words = case
    game = make_game(*server_types)
    with pytest.raises(HandshakeFailed) as refused:
        game.client(*client_types).connect()
    assert refused.value.code == 3001, refused.value
    for word in words:
        assert word in refused.value.reason, refused.value.reason
    assert game.server.stats["contract_mismatch"] == 1
    game.sctx.serve()
    assert game.connected == []
    good = game.client(*server_types)
    good.connect()
    game.serves(good)


def test_several_differences_are_all_named(make_game: Any) -> None:
    game = make_game(Ship, Crate)
    with pytest.raises(HandshakeFailed) as refused:
        game.client(ShipExtraRpc).connect()
    assert "Crate" in refused.value.reason and "Ship.boost" in refused.value.reason


def test_identical_registrations_connect(make_game: Any) -> None:
    game = make_game(Ship, Crate)
    client = game.client(Crate, Ship)  # registration order does not matter
    client.connect()
    game.serves(client)
    assert game.server.stats["contract_mismatch"] == 0


def test_send_contract_false_skips_the_check(make_game: Any) -> None:
    game = make_game(Ship, Crate)
    client = game.client(Ship, send_contract=False)
    client.connect()
    game.serves(client)


def test_a_server_with_check_contract_false_does_not_check(make_game: Any) -> None:
    game = make_game(Ship, Crate, check_contract=False)
    client = game.client(ShipExtraRpc)
    client.connect()
    assert client.member is not None


@pytest.mark.parametrize(
    ("sent", "words"),
    [
        ({}, ["types", "an object"]),
        ({"types": 5}, ["types", "an object"]),
        ({"types": {"Ship": 5}}, ["type Ship", "an object"]),
        ({"types": {"Ship": {"init": ["x"], "fields": None}}}, ["type Ship", "'methods'"]),
        ({"types": {"Ship": {"init": ["x"], "fields": None, "methods": 7}}}, ["Ship.methods"]),
        ({"types": {"Ship": {"init": [1], "fields": None, "methods": {}}}}, ["Ship.init"]),
        ({"types": {"Ship": {"init": [], "fields": "x", "methods": {}}}}, ["Ship.fields"]),
        (
            {"types": {"Ship": {"init": [], "fields": None, "methods": {"m": {"params": []}}}}},
            ["Ship.m", "anyone"],
        ),
        (
            {
                "types": {
                    "Ship": {
                        "init": [],
                        "fields": None,
                        "methods": {"m": {"params": "dx", "anyone": True}},
                    }
                }
            },
            ["Ship.m.params"],
        ),
    ],
    ids=[
        "empty",
        "types-int",
        "type-int",
        "no-methods",
        "methods-int",
        "init-ints",
        "fields-str",
        "no-anyone",
        "params-str",
    ],
)
def test_a_malformed_contract_is_a_protocol_error_not_a_crash(
    make_game: Any, sent: dict[str, Any], words: list[str]
) -> None:
    # §4.9.1: a contract not of the documented form is a protocol error (1002), not a mismatch
    game = make_game()
    raw = Raw(game.port)
    raw.send({"type": "hello", "version": 1, "contract": sent})
    code, reason = raw.closed_with()
    raw.close()
    assert code == 1002
    assert "malformed contract" in reason
    for word in words:
        assert word in reason, reason
    good = game.client()
    good.connect()
    game.serves(good)


def test_unknown_keys_in_a_contract_are_ignored() -> None:
    mine = contract(contexts(Ship, side=ReverbSide.SERVER).types)
    theirs: Any = {"types": {}, "later": 1}
    for name, desc in mine["types"].items():
        methods = {k: {**v, "doc": "x"} for k, v in desc["methods"].items()}
        theirs["types"][name] = {**desc, "methods": methods, "colour": "red"}
    assert contract_mismatch(mine, theirs) is None


def test_contract_describes_types_and_mismatch_is_symmetric_in_what_it_finds() -> None:
    mine = contract(contexts(Ship, side=ReverbSide.SERVER).types)
    assert mine == {
        "types": {
            "Ship": {
                "init": ["x"],
                "fields": None,
                "methods": {
                    "hail": {"params": [], "anyone": True},
                    "thrust": {"params": ["dx"], "anyone": False},
                },
            }
        }
    }
    assert contract_mismatch(mine, mine) is None
    theirs = contract(contexts(ShipExtraRpc, side=ReverbSide.CLIENT).types)
    assert contract_mismatch(mine, theirs) is not None
    assert contract_mismatch(theirs, mine) is not None
