"""The public surface: ``reverb.__all__`` and every module's ``__all__``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import reverb
from reverb import Client, ReverbManager, ReverbObject, Server

MODULES = sorted(
    {"reverb"} | {info.name for info in pkgutil.walk_packages(reverb.__path__, "reverb.")}
)


def public_names(module: ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }


def test_all_matches_what_the_package_exports() -> None:
    assert set(reverb.__all__) == public_names(reverb) | {"__version__"}
    assert len(reverb.__all__) == len(set(reverb.__all__))


def test_every_name_in_all_exists() -> None:
    for name in reverb.__all__:
        assert hasattr(reverb, name), name


def test_package_names_are_the_submodules_objects() -> None:
    # The façade has no logic: each exported class or function is the submodule's own.
    exported = {}
    for name in MODULES:
        if name == "reverb":
            continue
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", ()):
            exported.setdefault(attr, getattr(module, attr))
    for name in reverb.__all__:
        if name in (
            "__version__",
            "server_event_registry",
            "client_event_registry",
            "server_messages",
            "client_messages",
        ):
            continue
        assert getattr(reverb, name) is exported[name], name


@pytest.mark.parametrize("name", MODULES)
def test_every_module_has_all(name: str) -> None:
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.__all__ lists missing {attr!r}"


def test_seed_names() -> None:
    for name in (
        "ReverbManager",
        "ReverbSide",
        "ReverbObject",
        "Server",
        "Client",
        "server_event_registry",
        "client_event_registry",
    ):
        assert name in reverb.__all__
    for attr in (
        "REVERB_SIDE",
        "REVERB_CONNECTION",
        "REVERB_OBJECTS",
        "reverb_object_attribute",
        "server_sync",
        "get_all_ro_by_type",
        "remove_reverb_object",
    ):
        assert hasattr(ReverbManager, attr), attr
    assert {side.name for side in reverb.ReverbSide} >= {"SERVER", "CLIENT"}
    obj = ReverbObject(add_on_init=False)
    for attr in (
        "uid",
        "belonging_membership",
        "is_owner",
        "compute_server",
        "on_init_from_server",
        "on_init_from_client",
        "on_destroy_from_server",
        "on_destroy_from_client",
        "destroy",
    ):
        assert hasattr(obj, attr), attr
    for attr in ("start_server", "stop_server", "port"):
        assert hasattr(Server, attr), attr
    for attr in ("connect", "disconnect"):
        assert hasattr(Client, attr), attr


def test_event_registries_are_the_managers() -> None:
    assert reverb.server_event_registry is ReverbManager.context.server_events
    assert reverb.client_event_registry is ReverbManager.context.client_events
    assert callable(reverb.server_event_registry.on_event)


def test_seed_manager_attributes_reach_the_default_context() -> None:
    side = ReverbManager.REVERB_SIDE
    try:
        ReverbManager.REVERB_SIDE = reverb.ReverbSide.SERVER
        assert ReverbManager.context.side is reverb.ReverbSide.SERVER
        assert ReverbManager.REVERB_OBJECTS is ReverbManager.context.world.objects
    finally:
        ReverbManager.REVERB_SIDE = side
