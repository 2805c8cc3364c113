"""Running a client's ``rpc`` on the server, sans I/O (§8): the checks of §8.2, then the call.

``current_caller`` holds the membership id of the client whose call is running, so that
``rpc_caller()`` can answer inside an exposed method.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import math
from typing import Any

from reverb.errors import EncodeError, RpcCode, RpcError
from reverb.proto import messages as m
from reverb.replication.types import TypeRegistry

__all__ = ["current_caller", "dispatch"]

logger = logging.getLogger("reverb")

# The membership id of the client whose call is running (None outside a remote call).
current_caller: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "reverb_caller", default=None
)


# (id of a TypeInfo, method) -> (that TypeInfo, the arity): hashing a Signature costs more
# than binding it, so the cache is keyed by what is cheap to hash and checked by identity.
_ARITY: dict[tuple[int, str], tuple[Any, tuple[int, float] | None]] = {}
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _arity(info: Any, method: str, signature: inspect.Signature) -> tuple[int, float] | None:
    """How many positional arguments (self included) bind to ``signature``: (fewest, most),
    or None when binding needs the general check (a required keyword-only parameter)."""
    key = (id(info), method)
    cached = _ARITY.get(key)
    if cached is not None and cached[0] is info:
        return cached[1]
    low, high = 0, 0.0
    result: tuple[int, float] | None = None
    for param in signature.parameters.values():
        if param.kind in _POSITIONAL:
            high += 1
            low += param.default is inspect.Parameter.empty
        elif param.kind is inspect.Parameter.VAR_POSITIONAL:
            high = math.inf
        elif param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is param.empty:
            break  # no positional call binds: the general check refuses it, with its words
    else:
        result = (low, high)
    if len(_ARITY) < 4096:  # one per exposed method: bounded by the program, not by peers
        _ARITY[key] = (info, result)
    return result


def _error(call_id: int, code: RpcCode, message: str) -> m.RpcErrorReply:
    return m.RpcErrorReply(id=call_id, code=code, message=message)


def dispatch(objects: dict[int, Any], types: TypeRegistry, member: int, rpc: m.Rpc) -> m.Message:
    """Run an ``rpc`` for ``member`` after the checks of §8.2; return the reply."""

    obj = objects.get(rpc.uid)
    if obj is None:
        return _error(rpc.id, RpcCode.UNKNOWN_OBJECT, f"no object with uid {rpc.uid}")
    info = types.of(obj)
    exposure = info.exposed.get(rpc.method)
    if exposure is None:
        return _error(
            rpc.id, RpcCode.NOT_EXPOSED, f"{info.name} exposes no method {rpc.method[:60]!r}"
        )
    if not exposure.anyone and obj.belonging_membership != member:
        return _error(
            rpc.id, RpcCode.NOT_OWNER, f"{info.name}.{rpc.method} may only be called by its owner"
        )
    signature = info.signatures[rpc.method]
    arity = _arity(info, rpc.method, signature)
    if arity is None or not arity[0] <= len(rpc.args) + 1 <= arity[1]:
        try:  # the general check, and the words of its refusal
            signature.bind(obj, *rpc.args)
        except TypeError as exc:
            return _error(rpc.id, RpcCode.BAD_ARGUMENTS, f"{info.name}.{rpc.method}: {exc}")
    token = current_caller.set(member)
    try:
        value = getattr(obj, rpc.method)(*rpc.args)
    except RpcError as exc:
        return _error(rpc.id, RpcCode.REJECTED, exc.message)
    except Exception:
        logger.exception("rpc %s.%s from client #%d raised", info.name, rpc.method, member)
        return _error(
            rpc.id, RpcCode.HANDLER_ERROR, f"{info.name}.{rpc.method} failed on the server"
        )
    finally:
        current_caller.reset(token)
    try:
        return m.make_rpc_result(rpc.id, m.to_wire(value, "return value"))
    except EncodeError as exc:
        logger.error("rpc %s.%s: %s", info.name, rpc.method, exc)
        return _error(
            rpc.id,
            RpcCode.BAD_RETURN,
            f"{info.name}.{rpc.method} returned a value JSON cannot hold",
        )
