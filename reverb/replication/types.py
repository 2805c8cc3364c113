"""The registry of replicated types: wire names, replicated fields and exposed methods."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from reverb.errors import LocalProtocolError

__all__ = ["META_ATTRIBUTES", "Exposure", "TypeInfo", "TypeRegistry"]

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

    def field_names(self, obj: Any) -> list[str]:
        if self.fields is not None:
            return list(self.fields)
        return [
            k
            for k in vars(obj)
            if not k.startswith("_") and k not in META_ATTRIBUTES and k not in self.exclude
        ]


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
        info = TypeInfo(
            name=name,
            cls=cls,
            fields=tuple(fields) if fields is not None else None,
            exclude=frozenset(getattr(cls, "__reverb_exclude__", ())),
            exposed=exposed,
            signatures=signatures,
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
