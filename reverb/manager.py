"""``ReverbManager``: the seed's class-level API, delegating to a default ``ReverbContext``.

This is the only class-level state in the library, and it holds no logic: every attribute and
method forwards to ``ReverbManager.context``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from reverb import _current
from reverb.context import ReverbContext, ReverbSide
from reverb.stats import ConnectionStats

__all__ = ["ReverbManager"]

T = TypeVar("T")

_default = ReverbContext()
_current.set_default(_default)


class _ManagerMeta(type):
    """Makes ``ReverbManager.REVERB_SIDE = ...`` (class attribute assignment) reach the context."""

    @property
    def REVERB_SIDE(cls) -> ReverbSide | None:
        return _default.side

    @REVERB_SIDE.setter
    def REVERB_SIDE(cls, side: ReverbSide | None) -> None:
        _default.side = side

    @property
    def REVERB_CONNECTION(cls) -> Any:
        return _default.connection

    @REVERB_CONNECTION.setter
    def REVERB_CONNECTION(cls, connection: Any) -> None:
        _default.connection = connection

    @property
    def REVERB_OBJECTS(cls) -> dict[int, Any]:
        return _default.objects

    @property
    def STRICT_SYNC(cls) -> bool:
        """``ReverbContext.strict_sync`` of the default context (development aid)."""
        return _default.strict_sync

    @STRICT_SYNC.setter
    def STRICT_SYNC(cls, strict: bool) -> None:
        _default.strict_sync = strict


class ReverbManager(metaclass=_ManagerMeta):
    """The seed's API. ``ReverbManager.context`` is the ``ReverbContext`` behind it."""

    context = _default

    @staticmethod
    def reverb_object_attribute(cls: type[T]) -> type[T]:
        """Class decorator: register a ``ReverbObject`` subclass for replication."""
        return _default.register(cls)

    @staticmethod
    def server_sync() -> None:
        _default.server_sync()

    @staticmethod
    def client_sync(timeout: float = 0.0) -> int:
        return _default.client_sync(timeout)

    @staticmethod
    def get_all_ro_by_type(cls: type[T]) -> list[T]:
        return _default.get_all_ro_by_type(cls)

    @staticmethod
    def interpolate(now: float | None = None) -> dict[Any, dict[str, object]]:
        """Client: sample every interpolated replica for this frame (guide, "Smooth
        movement"); see ``ReverbContext.interpolate``."""
        return _default.interpolate(now)

    @staticmethod
    def set_interest(policy: Any) -> None:
        """Server: which objects each client sees (guide, "Who sees what")."""
        _default.set_interest(policy)

    @staticmethod
    def set_focus(member: int, obj: Any, radius: float | None = None) -> None:
        _default.set_focus(member, obj, radius)

    @staticmethod
    def set_groups(member: int, groups: Any) -> None:
        _default.set_groups(member, groups)

    @staticmethod
    def set_budget(member: int | None, bytes_per_second: float | None, burst: Any = None) -> None:
        _default.set_budget(member, bytes_per_second, burst)

    @staticmethod
    def remove_reverb_object(uid: int) -> None:
        _default.remove(uid)

    @staticmethod
    def send_message(*args: Any, **kwargs: Any) -> bool:
        """``ReverbContext.send_message``: ``(member, name, data=None)`` on a server,
        ``(name, data=None)`` on a client (docs/protocol.md §14)."""
        return _default.send_message(*args, **kwargs)

    @staticmethod
    def client_stats(member: int) -> ConnectionStats | None:
        """``ReverbContext.client_stats``: a ``ConnectionStats``, or None when not connected."""
        return _default.client_stats(member)

    @staticmethod
    def broadcast(name: str, data: Any = None, exclude: Any = ()) -> int:
        return _default.broadcast(name, data, exclude)

    @staticmethod
    def send_to_observers(obj: Any, name: str, data: Any = None) -> int:
        return _default.send_to_observers(obj, name, data)

    @staticmethod
    def define_room(name: str, room_cls: type[T]) -> type[T]:
        """``ReverbContext.define_room``: a room type clients join by ``name`` (§17)."""
        return _default.define_room(name, room_cls)

    @staticmethod
    def compute_server(obj: Any, func: Callable[..., Any] | str, *args: Any) -> Future[Any]:
        return obj.compute_server(func, *args)  # type: ignore[no-any-return]
