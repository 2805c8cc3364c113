"""reverb/replication/types.py: the registry of replicated types."""

from __future__ import annotations

from typing import Any

import pytest

from reverb import ReverbObject, expose
from reverb.errors import LocalProtocolError
from reverb.replication.types import META_ATTRIBUTES, Exposure, TypeRegistry


class Player(ReverbObject):
    def __init__(
        self,
        x: int = 0,
        *,
        uid: int | None = None,
        add_on_init: bool = False,
        belonging_membership: int | None = None,
    ) -> None:
        super().__init__(
            x, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )
        self.x = x
        self.name = "p"
        self._secret = 1

    @expose
    def move(self, dx: int) -> int:
        return self.x + dx

    @expose(anyone=True)
    def wave(self) -> None:
        pass

    def internal(self) -> None:
        pass

    def _hidden(self) -> None:
        pass

    _hidden.__reverb_expose__ = Exposure(anyone=True)  # type: ignore[attr-defined]


class Hero(Player):
    @expose
    def fly(self) -> None:
        pass


def test_registered_under_the_class_name() -> None:
    types = TypeRegistry()
    info = types.register(Player)
    assert info.name == "Player" and info.cls is Player
    assert types.by_name("Player") is info
    assert types.of(Player()) is info
    assert Player in types and Hero not in types


def test_registered_under_reverb_type() -> None:
    class Renamed(ReverbObject):
        __reverb_type__ = "game.Ship"

    types = TypeRegistry()
    assert types.register(Renamed).name == "game.Ship"
    assert types.by_name("Renamed") is None
    assert types.by_name("game.Ship").cls is Renamed  # type: ignore[union-attr]


def test_explicit_name_wins() -> None:
    types = TypeRegistry()
    assert types.register(Player, "P").name == "P"


def test_name_clash_raises() -> None:
    types = TypeRegistry()
    types.register(Player)
    other = type("Player", (ReverbObject,), {})
    with pytest.raises(LocalProtocolError, match="Player"):
        types.register(other)
    assert types.by_name("Player").cls is Player  # type: ignore[union-attr]


def test_registering_the_same_class_twice_is_harmless() -> None:
    types = TypeRegistry()
    types.register(Player)
    assert types.register(Player).cls is Player


def test_unregistered_object_raises_naming_the_fix() -> None:
    with pytest.raises(LocalProtocolError, match="reverb_object_attribute"):
        TypeRegistry().of(Player())
    assert TypeRegistry().by_name("Player") is None


def test_exposed_methods_owner_only_or_anyone() -> None:
    info = TypeRegistry().register(Player)
    assert info.exposed == {"move": Exposure(anyone=False), "wave": Exposure(anyone=True)}
    assert list(info.signatures["move"].parameters) == ["self", "dx"]


def test_exposed_methods_are_inherited() -> None:
    info = TypeRegistry().register(Hero)
    assert set(info.exposed) == {"move", "wave", "fly"}


def test_private_names_are_never_exposed_even_if_marked() -> None:
    info = TypeRegistry().register(Player)
    assert "_hidden" not in info.exposed
    assert "internal" not in info.exposed
    assert not any(name.startswith("_") for name in info.exposed)


@pytest.mark.parametrize("name", ["_private", "__dunder__", "__mangled"])
def test_expose_refuses_underscore_names(name: str) -> None:
    def func() -> None:
        pass

    func.__name__ = name
    with pytest.raises(ValueError, match="_"):
        expose(func)
    with pytest.raises(ValueError):
        expose(anyone=True)(func)


def test_expose_returns_the_function_marked() -> None:
    def func() -> None:
        pass

    assert expose(func) is func
    assert func.__reverb_expose__ == Exposure(anyone=False)  # type: ignore[attr-defined]


def test_field_names_are_the_public_instance_attributes() -> None:
    info = TypeRegistry().register(Player)
    player = Player(3, uid=9, belonging_membership=2)
    assert info.field_names(player) == ["x", "name"]
    assert META_ATTRIBUTES == {"uid", "belonging_membership"}


def test_field_names_follow_the_instance() -> None:
    info = TypeRegistry().register(Player)
    player = Player()
    player.score = 5  # type: ignore[attr-defined]
    assert info.field_names(player) == ["x", "name", "score"]


def test_reverb_fields_lists_the_fields() -> None:
    class Declared(ReverbObject):
        __reverb_fields__ = ("b", "a")

        def __init__(self, **kw: Any) -> None:
            super().__init__(add_on_init=False)
            self.a, self.b, self.c = 1, 2, 3

    info = TypeRegistry().register(Declared)
    assert info.fields == ("b", "a")
    assert info.field_names(Declared()) == ["b", "a"]


def test_reverb_exclude_leaves_fields_out() -> None:
    class Excluding(ReverbObject):
        __reverb_exclude__ = ("cache",)

        def __init__(self, **kw: Any) -> None:
            super().__init__(add_on_init=False)
            self.hp = 1
            self.cache = {1, 2}

    info = TypeRegistry().register(Excluding)
    assert info.exclude == {"cache"}
    assert info.field_names(Excluding()) == ["hp"]


# -- constructors are checked at registration (issue 8) --------------------------------------


class NoKeywords(ReverbObject):
    def __init__(self, x: int = 0) -> None:
        super().__init__(x, add_on_init=False)


class OnlyUid(ReverbObject):
    def __init__(self, x: int = 0, uid: int | None = None) -> None:
        super().__init__(x, uid=uid, add_on_init=False)


class TakesKwargs(ReverbObject):
    def __init__(self, x: int = 0, **kwargs: Any) -> None:
        super().__init__(x, **{"add_on_init": False, **kwargs})


class Inherits(ReverbObject):
    pass


@pytest.mark.parametrize(
    ("cls", "missing"),
    [(NoKeywords, "uid, add_on_init, belonging_membership"), (OnlyUid, "add_on_init")],
)
def test_a_constructor_without_the_replica_keywords_is_refused(cls: type, missing: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        TypeRegistry().register(cls)
    text = str(info.value)
    assert cls.__qualname__ in text and missing in text
    assert "def __init__(self, ..., uid=None, add_on_init=True, belonging_membership=None)" in text


@pytest.mark.parametrize("cls", [TakesKwargs, Inherits, Player])
def test_constructors_that_take_the_keywords_are_accepted(cls: type) -> None:
    assert TypeRegistry().register(cls).cls is cls
