"""The registry of replicated types: wire names, replicated fields and exposed methods."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, NoReturn

from reverb.errors import CloseCode, LocalProtocolError, RemoteProtocolError
from reverb.replication.audience import field_split

__all__ = [
    "META_ATTRIBUTES",
    "Exposure",
    "TypeInfo",
    "TypeRegistry",
    "check_contract_form",
    "contract",
    "contract_mismatch",
]

# Attributes every ReverbObject has that travel in the entry itself, never as fields (§7.2).
META_ATTRIBUTES = frozenset({"uid", "belonging_membership"})


@dataclass(frozen=True)
class Exposure:
    """How a method is exposed to remote calls: owner-only unless ``anyone``."""

    anyone: bool = False


@dataclass(frozen=True)
class TypeInfo:
    name: str
    cls: type
    fields: tuple[str, ...] | None  # declared fields, or None for "public instance attributes"
    exclude: frozenset[str]
    exposed: dict[str, Exposure]
    signatures: dict[str, inspect.Signature]
    # Fields compared by value at every tick when they hold a list, tuple or dict, so that
    # in-place mutation replicates; None (the default) means every field of the type.
    mutable: frozenset[str] | None = None
    # Fields a client interpolates (``__reverb_interpolate__``: names or ``Field``s); empty
    # when the type declares none. The server ignores it.
    interpolate: tuple[Any, ...] = ()
    # Fields only the owning client receives (``__reverb_owner_fields__``, issue 11); the
    # server-only ones (``__reverb_server_fields__``) are folded into ``exclude``.
    owner_only: frozenset[str] = frozenset()

    def field_names(self, obj: Any) -> list[str]:
        if self.fields is not None:
            return list(self.fields)
        return [
            k
            for k in vars(obj)
            if not k.startswith("_") and k not in META_ATTRIBUTES and k not in self.exclude
        ]

    def is_field(self, name: str, obj: Any) -> bool:
        """Whether attribute ``name`` of ``obj`` replicates now (a cheap ``field_names`` test)."""
        if self.fields is not None:
            return name in self.fields
        return (
            not name.startswith("_")
            and name not in META_ATTRIBUTES
            and name not in self.exclude
            and name in vars(obj)
        )

    def watches(self, name: str) -> bool:
        """Whether a container held by field ``name`` is compared at every tick."""
        return self.mutable is None or name in self.mutable


class TypeRegistry:
    """Maps wire type names to classes and back; one per context."""

    def __init__(self) -> None:
        self._by_name: dict[str, TypeInfo] = {}
        self._by_cls: dict[type, TypeInfo] = {}

    def register(self, cls: type, name: str | None = None) -> TypeInfo:
        name = name or getattr(cls, "__reverb_type__", None) or cls.__name__
        existing = self._by_name.get(name)
        if existing is not None and existing.cls is not cls:
            raise LocalProtocolError(
                f"type name {name!r} is already registered for {existing.cls.__qualname__}"
            )
        _check_constructor(cls)
        exposed: dict[str, Exposure] = {}
        signatures: dict[str, inspect.Signature] = {}
        for attr in dir(cls):
            if attr.startswith("_"):
                continue  # §8.2: never exposed, whatever a decorator says
            exposure = getattr(getattr(cls, attr, None), "__reverb_expose__", None)
            if isinstance(exposure, Exposure):
                exposed[attr] = exposure
                signatures[attr] = inspect.signature(getattr(cls, attr))
        fields = getattr(cls, "__reverb_fields__", None)
        mutable = getattr(cls, "__reverb_mutable__", None)
        split = field_split(cls, ())
        exclude = frozenset(getattr(cls, "__reverb_exclude__", ())) | split.server_only
        if fields is not None:
            fields = [f for f in fields if f not in split.server_only]
        interpolate = _check_interpolate(cls, fields, exclude)
        info = TypeInfo(
            name=name,
            cls=cls,
            fields=tuple(fields) if fields is not None else None,
            exclude=exclude,
            exposed=exposed,
            signatures=signatures,
            mutable=frozenset(mutable) if mutable is not None else None,
            interpolate=interpolate,
            owner_only=split.owner_only - exclude,
        )
        self._by_name[name] = info
        self._by_cls[cls] = info
        return info

    def by_name(self, name: str) -> TypeInfo | None:
        return self._by_name.get(name)

    def of(self, obj: Any) -> TypeInfo:
        info = self._by_cls.get(type(obj))
        if info is None:
            raise LocalProtocolError(
                f"{type(obj).__qualname__} is not registered: decorate it with "
                "@ReverbManager.reverb_object_attribute"
            )
        return info

    def __contains__(self, cls: object) -> bool:
        return cls in self._by_cls

    def info(self, cls: type) -> TypeInfo | None:
        """The registration of ``cls``, or None."""
        return self._by_cls.get(cls)

    def classes(self) -> list[type]:
        return list(self._by_cls)


def _check_interpolate(cls: type, fields: Any, exclude: frozenset[str]) -> tuple[Any, ...]:
    """``__reverb_interpolate__``: replicated field names or ``Field``s (guide, "Smooth
    movement"); a name that is not a replicated attribute is a ``TypeError`` naming it."""
    declared = getattr(cls, "__reverb_interpolate__", ())
    if isinstance(declared, str) or not isinstance(declared, (tuple, list)):
        raise TypeError(f"{cls.__qualname__}.__reverb_interpolate__ must be a tuple of fields")
    out = []
    for item in declared:
        name = item if isinstance(item, str) else getattr(item, "name", None)
        if not isinstance(name, str):
            raise TypeError(
                f"{cls.__qualname__}.__reverb_interpolate__: {item!r} is not a field name "
                "or a reverb.Field"
            )
        replicated = (
            name in fields
            if fields is not None
            else name.isidentifier()
            and not name.startswith("_")
            and name not in META_ATTRIBUTES
            and name not in exclude
            and not callable(getattr(cls, name, None))
        )
        if not replicated:
            raise TypeError(
                f"{cls.__qualname__}.__reverb_interpolate__ names {name!r}, "
                "which is not a replicated attribute"
            )
        out.append(item)
    return tuple(out)


REQUIRED_SIGNATURE = (
    "def __init__(self, ..., uid=None, add_on_init=True, belonging_membership=None)"
)


def _check_constructor(cls: type) -> None:
    """Clients build replicas with ``cls(*args, uid=..., add_on_init=False,
    belonging_membership=...)``: refuse a type whose constructor cannot take those keywords
    now, rather than have every client close with 1002 at the first sync."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - C types have no signature
        return
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    keywords = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = [k for k in ("uid", "add_on_init", "belonging_membership") if k not in keywords]
    if missing:
        raise LocalProtocolError(
            f"{cls.__qualname__}'s constructor does not take {', '.join(missing)}: clients build "
            f"replicas with those keywords. Write it as {REQUIRED_SIGNATURE} and pass them on: "
            "super().__init__(..., uid=uid, add_on_init=add_on_init, "
            "belonging_membership=belonging_membership)"
        )


# -- the contract checked at connect (docs/protocol.md §4.9) --------------------------------

_CONSTRUCTOR_KEYWORDS = frozenset({"self", "uid", "add_on_init", "belonging_membership"})


def _params(func: Any) -> list[str]:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - C callables
        return ["..."]
    return [p.name for p in parameters if p.name not in _CONSTRUCTOR_KEYWORDS]


def contract(registry: TypeRegistry) -> dict[str, Any]:
    """Describe every registered type: constructor parameters, declared fields, exposed
    methods with their parameters and who may call them. Equal descriptions mean two
    programs agree on the wire's objects and calls."""
    types: dict[str, Any] = {}
    for name, info in sorted(registry._by_name.items()):
        types[name] = {
            "init": _params(info.cls),
            "fields": list(info.fields) if info.fields is not None else None,
            "methods": {
                method: {"params": _params(getattr(info.cls, method)), "anyone": exp.anyone}
                for method, exp in sorted(info.exposed.items())
            },
        }
    return {"types": types}


def check_contract_form(theirs: Any) -> None:
    """Raise ``RemoteProtocolError`` (1002) unless ``theirs`` has the form of §4.9.1: an object
    with ``types``, each type an object with ``init`` (array of strings), ``fields`` (array of
    strings, or null) and ``methods`` (object of ``{"params": array of strings, "anyone":
    bool}``). Other keys are ignored (§3.5)."""

    def malformed(where: str, expected: str) -> NoReturn:
        raise RemoteProtocolError(
            f"malformed contract: {where[:80]} must be {expected}", CloseCode.PROTOCOL_ERROR
        )

    def names(value: Any, where: str, *, nullable: bool = False) -> None:
        if value is None and nullable:
            return
        if type(value) is not list or any(type(item) is not str for item in value):
            malformed(where, "an array of strings" + (" or null" if nullable else ""))

    if type(theirs) is not dict:
        malformed("the contract", "an object")
    types = theirs.get("types")
    if type(types) is not dict:
        malformed("types", "an object")
    for name, desc in types.items():
        if type(desc) is not dict:
            malformed(f"type {name}", "an object")
        for key in ("init", "fields", "methods"):
            if key not in desc:
                malformed(f"type {name}", f"an object with {key!r}")
        names(desc["init"], f"{name}.init")
        names(desc["fields"], f"{name}.fields", nullable=True)
        methods = desc["methods"]
        if type(methods) is not dict:
            malformed(f"{name}.methods", "an object")
        for method, sig in methods.items():
            if type(sig) is not dict or "params" not in sig or type(sig.get("anyone")) is not bool:
                malformed(f"method {name}.{method}", 'an object with "params" and "anyone"')
            names(sig["params"], f"{name}.{method}.params")


def contract_mismatch(mine: dict[str, Any], theirs: Any) -> str | None:
    """None if the contracts agree, else what differs, named (type, field, method).

    A malformed ``theirs`` raises ``RemoteProtocolError`` 1002 (§4.9.1); a well-formed one
    that differs is a mismatch (3001, §4.9.2)."""
    check_contract_form(theirs)
    ours, other = mine["types"], theirs["types"]
    differences = []
    for name in sorted(set(ours) | set(other)):
        if name not in other:
            differences.append(f"type {name} is missing on the client")
        elif name not in ours:
            differences.append(f"type {name} is unknown to the server")
        else:
            differences.extend(_type_mismatch(name, ours[name], other[name]))
    return "; ".join(differences) if differences else None


def _type_mismatch(name: str, ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    out = []
    if ours["init"] != theirs["init"]:
        out.append(f"type {name}: constructor ({', '.join(ours['init'])}) on the server")
    if ours["fields"] != theirs["fields"]:
        out.append(f"type {name}: fields {ours['fields']} on the server, {theirs['fields']}")
    methods, other = ours["methods"], theirs["methods"]
    for method in sorted(set(methods) | set(other)):
        if method not in other:
            out.append(f"method {name}.{method} is not exposed on the client")
        elif method not in methods:
            out.append(f"method {name}.{method} is not exposed on the server")
        elif (methods[method]["params"], methods[method]["anyone"]) != (
            other[method]["params"],
            other[method]["anyone"],
        ):
            here = methods[method]
            out.append(
                f"method {name}.{method}({', '.join(here['params'])})"
                f"{' anyone' if here['anyone'] else ''} differs on the client"
            )
    return out
