"""Running a client's ``rpc`` on the server, sans I/O (§8): the checks of §8.2, then the call.

``current_caller`` holds the membership id of the client whose call is running, so that
``rpc_caller()`` can answer inside an exposed method.
"""

from __future__ import annotations

import contextvars
import logging
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


def dispatch(objects: dict[int, Any], types: TypeRegistry, member: int, rpc: m.Rpc) -> m.Message:
    """Run an ``rpc`` for ``member`` after the checks of §8.2; return the reply."""

    def error(code: RpcCode, message: str) -> m.RpcErrorReply:
        return m.RpcErrorReply(id=rpc.id, code=code, message=message)

    obj = objects.get(rpc.uid)
    if obj is None:
        return error(RpcCode.UNKNOWN_OBJECT, f"no object with uid {rpc.uid}")
    info = types.of(obj)
    exposure = info.exposed.get(rpc.method)
    if exposure is None:
        return error(RpcCode.NOT_EXPOSED, f"{info.name} exposes no method {rpc.method[:60]!r}")
    if not exposure.anyone and obj.belonging_membership != member:
        return error(RpcCode.NOT_OWNER, f"{info.name}.{rpc.method} may only be called by its owner")
    try:
        info.signatures[rpc.method].bind(obj, *rpc.args)
    except TypeError as exc:
        return error(RpcCode.BAD_ARGUMENTS, f"{info.name}.{rpc.method}: {exc}")
    token = current_caller.set(member)
    try:
        value = getattr(obj, rpc.method)(*rpc.args)
    except RpcError as exc:
        return error(RpcCode.REJECTED, exc.message)
    except Exception:
        logger.exception("rpc %s.%s from client #%d raised", info.name, rpc.method, member)
        return error(RpcCode.HANDLER_ERROR, f"{info.name}.{rpc.method} failed on the server")
    finally:
        current_caller.reset(token)
    try:
        return m.RpcResult(id=rpc.id, value=m.to_wire(value, "return value"))
    except EncodeError as exc:
        logger.error("rpc %s.%s: %s", info.name, rpc.method, exc)
        return error(
            RpcCode.BAD_RETURN, f"{info.name}.{rpc.method} returned a value JSON cannot hold"
        )
