"""``ReverbObject``, the base class of replicated objects, and the ``expose`` decorator."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from reverb import _current
from reverb.errors import LocalProtocolError
from reverb.replication.rpc import current_caller
from reverb.replication.types import Exposure

if TYPE_CHECKING:
    from reverb.context import ReverbContext

__all__ = ["ReverbObject", "expose", "rpc_caller"]

F = TypeVar("F", bound=Callable[..., Any])
_set = object.__setattr__
_del = object.__delattr__


@overload
def expose(func: F, /) -> F: ...
@overload
def expose(*, anyone: bool = False) -> Callable[[F], F]: ...
def expose(func: F | None = None, /, *, anyone: bool = False) -> F | Callable[[F], F]:
    """Allow clients to call a method with ``compute_server`` (docs/protocol.md §8).

    ``@expose`` lets the object's owner call it; ``@expose(anyone=True)`` lets any client.
    Methods that are not exposed, and names starting with ``_``, can never be called remotely.
    """

    def mark(f: F) -> F:
        if f.__name__.startswith("_"):
            raise ValueError(f"{f.__name__!r}: names starting with '_' cannot be exposed")
        f.__reverb_expose__ = Exposure(anyone=anyone)  # type: ignore[attr-defined]
        return f

    return mark(func) if func is not None else mark


class _Rendered:
    """``obj.rendered``, client side: the values the last ``ctx.interpolate()`` rendered for
    this replica (a read-only mapping, empty before the first call). A non-data descriptor, so
    that a game's own attribute of that name still works as before."""

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        ctx = obj._reverb_ctx
        return ctx.rendered(obj) if ctx is not None else _NOTHING


_NOTHING: Mapping[str, Any] = MappingProxyType({})


def rpc_caller() -> int | None:
    """Inside an exposed method run for a client: that client's membership id; else None."""
    return current_caller.get()


def _track(obj: Any, name: str) -> None:
    changed = obj._reverb_changed
    if changed is not None and not "_" <= name < "`":  # public: not starting with "_"
        if not changed:
            obj._reverb_dirty.append(obj)
        changed.add(name)


_MAX_PLAIN = 512  # public names remembered per class; past that, writes take the slow way


def _learn(cls: type, name: str) -> None:
    """Remember that ``cls`` has no data descriptor for ``name`` (none in its MRO shadows
    the instance dict), so that ``__setattr__`` may store it in ``__dict__`` directly: what
    ``object.__setattr__`` would do, in a third of the time. A property, a slot or any
    descriptor with ``__set__``/``__delete__`` keeps the name on the slow way, through it."""
    plain: set[str] = cls.__dict__.get("_reverb_plain", _NO_PLAIN)
    if plain is _NO_PLAIN or len(plain) >= _MAX_PLAIN:
        return
    for klass in cls.__mro__:
        attr = klass.__dict__.get(name, _ABSENT)
        if attr is not _ABSENT:
            kind = type(attr)
            if hasattr(kind, "__set__") or hasattr(kind, "__delete__"):
                return
            break
    plain.add(name)


_NO_PLAIN: set[str] = set()
_ABSENT = object()


def _tracking(hook: Callable[..., None]) -> Callable[..., None]:
    """``hook`` (a subclass's ``__setattr__`` or ``__delattr__``), then change tracking."""

    @functools.wraps(hook)
    def tracked(self: Any, name: str, *value: Any) -> None:
        hook(self, name, *value)
        _track(self, name)

    tracked.__reverb_tracked__ = True  # type: ignore[attr-defined]
    return tracked


def _own_setattr(cls: Any, plain: set[str]) -> Callable[[Any, str, Any], None]:
    """``ReverbObject.__setattr__`` made for ``cls``: the same, with ``cls``'s plain names
    (``_learn``) held by the function instead of looked up on the instance at every write
    (the common write costs a tenth less). Another class's instance that reaches it -- a
    subclass whose own hook calls ``super().__setattr__`` -- goes the general way, through
    its own class's names."""

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if name in plain and type(self) is cls:
            # the instance dict, read once: ``_reverb_changed`` is in it from ``__new__`` on
            # (a subscript, not an attribute lookup that must look at the class first)
            d = self.__dict__
            d[name] = value
            try:
                changed = d["_reverb_changed"]
            except KeyError:  # made without ReverbObject.__new__: not in a world
                return
            if changed:  # already changed since the last tick (most writes)
                changed.add(name)
            elif changed is not None:  # its first change: onto the world's dirty list
                d["_reverb_dirty"].append(self)
                changed.add(name)
            return
        ReverbObject.__setattr__(self, name, value)

    __setattr__.__reverb_setattr__ = True  # type: ignore[attr-defined]
    __setattr__.__qualname__ = f"{cls.__qualname__}.__setattr__"
    return __setattr__


class ReverbObject:
    """An object the server replicates to its clients.

    Subclasses pass the values their constructor needs to rebuild them as positional arguments:
    ``super().__init__(x, y, uid=uid, add_on_init=add_on_init,
    belonging_membership=belonging_membership)``. A client builds each replica by calling the
    subclass with those values, then sets its replicated fields.

    Replicated fields are the public instance attributes (not starting with ``_``) other than
    ``uid`` and ``belonging_membership``. A class may instead list them in
    ``__reverb_fields__ = ("x", "y")`` or leave some out with ``__reverb_exclude__``.

    Change tracking (server side): once the object is in a world, assigning a public attribute
    marks it changed, so a tick looks only at objects that changed. A list, tuple or dict held
    by a field is also compared at every tick, so ``p.items.append(x)`` replicates; a class
    may restrict that to some fields with ``__reverb_mutable__ = ("items",)`` (or ``()``),
    and then calls ``mark_changed("items")`` after mutating other containers in place.
    """

    uid: int | None
    belonging_membership: int | None
    # Set by the server's world while the object is in it (None: not tracked): the public
    # attributes assigned since the last tick, and the world's list of changed objects.
    _reverb_changed: set[str] | None = None
    _reverb_dirty: list[Any]
    # Per class: public names that no data descriptor of the class (a property, a slot)
    # handles, so that a write may go straight to the instance's __dict__ (see _learn).
    _reverb_plain: ClassVar[set[str]] = set()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # Untracked until a server's world adds it: in the instance dict from the start, so
        # that the tracking hook reads it with a subscript (``_own_setattr``).
        obj = super().__new__(cls)
        obj.__dict__["_reverb_changed"] = None
        return obj

    def __init__(
        self,
        *args: Any,
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        self._reverb_args = args
        self._reverb_ctx: ReverbContext | None = None
        self.uid = uid
        self.belonging_membership = belonging_membership
        if add_on_init:
            _current.current_context().add(self)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._reverb_plain:  # public, and no data descriptor of the class: the dict
            self.__dict__[name] = value
            changed = self._reverb_changed
            if changed is not None:
                if not changed:
                    self._reverb_dirty.append(self)
                changed.add(name)
            return
        _set(self, name, value)
        # a public name: not "_" <= name < "`" (the names starting with "_"), without a slice
        if not "_" <= name < "`":
            _learn(type(self), name)
            changed = self._reverb_changed
            if changed is not None:
                if not changed:
                    self._reverb_dirty.append(self)
                changed.add(name)

    __setattr__.__reverb_setattr__ = True  # type: ignore[attr-defined]

    def __delattr__(self, name: str) -> None:
        _del(self, name)
        _track(self, name)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A subclass's own __setattr__ / __delattr__ may write with object.__setattr__ and
        # never reach ours: wrap it so that its writes are tracked all the same.
        super().__init_subclass__(**kwargs)
        cls._reverb_plain = set()
        for hook in ("__setattr__", "__delattr__"):
            own = cls.__dict__.get(hook)
            if own is not None and not getattr(own, "__reverb_tracked__", False):
                setattr(cls, hook, _tracking(own))
        # Ours, inherited (not a hook of a class in between): one made for this class.
        inherited = cls.__setattr__
        if "__setattr__" not in cls.__dict__ and getattr(inherited, "__reverb_setattr__", False):
            cls.__setattr__ = _own_setattr(cls, cls._reverb_plain)  # type: ignore[assignment]

    def mark_changed(self, *names: str) -> None:
        """Tell the server these fields changed in place (``p.items.append(x)``); with no
        names, every field. The next tick compares them with what clients hold and sends
        the difference. Harmless anywhere else (on a client, or before joining a world)."""
        changed = self._reverb_changed
        if changed is None:
            return
        if not changed:
            self._reverb_dirty.append(self)
        changed.update(names or ("*",))

    def is_owner(self) -> bool:
        """True on the client whose membership id is this object's ``belonging_membership``."""
        ctx = self._reverb_ctx
        return ctx is not None and ctx.owns(self)

    def teleport(self) -> None:
        """Server: mark the next update as a teleport, so interpolating clients snap to it
        instead of sliding there (protocol §13.5)."""
        ctx = self._reverb_ctx
        if ctx is None:
            raise LocalProtocolError("this object is not in a server's world")
        ctx.teleport(self)

    def show_to(self, member: int) -> None:
        """Server: client ``member`` sees this object whatever the interest policy says
        (unless hidden from it). Guide, "Who sees what"."""
        self._server_ctx().show_to(self, member)

    def hide_from(self, member: int) -> None:
        """Server: client ``member`` never sees this object (beats ``show_to`` and every
        policy); it is despawned there at the next tick if it held it."""
        self._server_ctx().hide_from(self, member)

    def _server_ctx(self) -> Any:
        ctx = self._reverb_ctx
        if ctx is None or self.uid is None:
            raise LocalProtocolError(f"{type(self).__name__} uid={self.uid} is not in a world")
        return ctx

    def interpolated(self, name: str, now: float | None = None) -> Any:
        """Client: field ``name`` (declared in ``__reverb_interpolate__``) as rendered at the
        client's render time for local ``now``; ``self.<name>`` stays the exact newest value."""
        ctx = self._reverb_ctx
        if ctx is None:
            raise LocalProtocolError("this object is not a replica of a connected client")
        return ctx.interpolated(self, name, now)

    rendered = _Rendered()

    def compute_server(self, func: Callable[..., Any] | str, *args: Any) -> Future[Any]:
        """Run ``func(*args)`` on the server's copy of this object; returns a ``Future``.

        ``func`` is one of this object's bound methods (``obj.compute_server(obj.move, 1, 0)``)
        or its name. The future holds the return value, or raises ``RpcError``. On the server
        the method simply runs now.
        """
        if isinstance(func, str):
            name = func
        elif getattr(func, "__self__", None) is self:
            name = func.__name__
        else:
            raise LocalProtocolError("compute_server takes a bound method of this object")
        ctx = self._reverb_ctx
        if ctx is None:
            raise LocalProtocolError(f"{type(self).__name__} uid={self.uid} is not in a world")
        return ctx.call(self, name, args)

    def destroy(self) -> None:
        """Despawn this object (server only); every client removes its replica."""
        ctx = self._reverb_ctx
        if ctx is None or self.uid is None:
            raise LocalProtocolError(f"{type(self).__name__} uid={self.uid} is not in a world")
        ctx.remove(self.uid)

    def on_init_from_server(self) -> None:
        """Called on the server when the object joins the world."""

    def on_init_from_client(self) -> None:
        """Called on a client when its replica has been built and filled in."""

    def on_destroy_from_server(self) -> None:
        """Called on the server when the object leaves the world."""

    def on_destroy_from_client(self) -> None:
        """Called on a client when the server despawned the object."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} uid={self.uid} owner={self.belonging_membership}>"
