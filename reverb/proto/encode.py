"""A message encoded as a frame body (UTF-8 JSON, docs/protocol.md §3, §5): ``encode`` (the RPC
path's messages built directly, a sync through ``frames.py``, any other from its dataclass),
``encode_rpc`` (the client's call path) and ``encode_sync`` (one tick's sync in parts of at
most a frame limit, §7.5). Values must already be wire-safe (``wirejson.to_wire``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from reverb.errors import EncodeError
from reverb.proto.frames import _frame_of
from reverb.proto.messages import ABSENT, Message, Rpc, RpcErrorReply, RpcResult, Sync
from reverb.proto.wirejson import _encoder, dumps

__all__ = ["as_dict", "encode", "encode_rpc", "encode_sync"]


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {
            f.name: _plain(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if getattr(obj, f.name) is not ABSENT
        }
    if type(obj) is tuple:
        return [_plain(v) for v in obj]
    return obj


def as_dict(message: Message) -> dict[str, Any]:
    """The message as the JSON object that goes on the wire."""
    data: dict[str, Any] = {"type": message.TYPE}
    data.update(_plain(message))
    return data


_RPC_SHAPES: dict[type, Callable[[Any], dict[str, Any]]] = {
    Rpc: lambda msg: {
        "type": "rpc",
        "id": msg.id,
        "uid": msg.uid,
        "method": msg.method,
        "args": msg.args,
    },
    RpcResult: lambda msg: {"type": "rpc_result", "id": msg.id, "value": msg.value},
    RpcErrorReply: lambda msg: {
        "type": "rpc_error",
        "id": msg.id,
        "code": msg.code,
        "message": msg.message,
    },
}


def encode(message: Message) -> bytes:
    """Encode a message as a frame body (UTF-8 JSON, §3). Values must already be wire-safe."""
    kind = type(message)
    if (kind is RpcResult or kind is RpcErrorReply or kind is Rpc) and message.room is ABSENT:  # type: ignore[attr-defined]
        # the RPC path's messages, built directly (the same object ``as_dict`` builds, in
        # the same order; their values were checked by ``to_wire``)
        try:
            return dumps(_RPC_SHAPES[kind](message)).encode("utf-8")
        except ValueError as exc:  # pragma: no cover - to_wire refuses what would get here
            raise EncodeError(f"{message.TYPE}: {exc}") from None
    if isinstance(message, Sync):
        return _frame_of(message).body()
    try:
        return _encoder.encode(as_dict(message)).encode("utf-8")
    except ValueError as exc:  # NaN slipped past to_wire: a local bug, reported as such
        raise EncodeError(f"{message.TYPE}: {exc}") from None


def encode_rpc(call_id: int, uid: int, method: str, args: list[Any]) -> bytes:
    """``encode(Rpc(id=call_id, uid=uid, method=method, args=args))`` without building the
    message (the client's call path); ``args`` already checked by ``to_wire``."""
    body = {"type": "rpc", "id": call_id, "uid": uid, "method": method, "args": args}
    try:
        return dumps(body).encode("utf-8")
    except ValueError as exc:  # pragma: no cover - to_wire refuses what would get here
        raise EncodeError(f"rpc: {exc}") from None


def encode_sync(sync: Sync, limit: int) -> list[bytes]:
    """Encode one tick's sync as parts of at most ``limit`` bytes each (§7.5).

    Raises ``FrameTooLarge`` (naming the entry's uid) when one entry cannot fit any part."""
    return _frame_of(sync).parts(limit)
