"""Which context new objects join: the active one in this thread, else the default."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reverb.context import ReverbContext

__all__ = ["current_context", "set_default"]

_active: contextvars.ContextVar[ReverbContext | None] = contextvars.ContextVar(
    "reverb_context", default=None
)
_default: list[ReverbContext] = []


def set_default(ctx: ReverbContext) -> None:
    _default[:] = [ctx]


def current_context() -> ReverbContext:
    ctx = _active.get()
    if ctx is not None:
        return ctx
    return _default[0]


def activate(ctx: ReverbContext) -> contextvars.Token[ReverbContext | None]:
    return _active.set(ctx)


def deactivate(token: contextvars.Token[ReverbContext | None]) -> None:
    _active.reset(token)
