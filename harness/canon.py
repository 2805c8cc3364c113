"""Canonical form of a world or replica table, identical on server and clients.

The canonical table is ``{uid: [type, owner, fields]}`` where ``fields`` are the replicated
(public, non-meta) instance attributes; its hash is the sha256 of its sorted JSON. Imported by
the child programs, so it must run on every supported interpreter (3.10+), stdlib only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["META", "canonical_table", "fields_of", "table_hash"]

META = frozenset({"uid", "belonging_membership"})


def fields_of(obj: Any) -> dict[str, Any]:
    """The attributes Reverb replicates by default: public instance attributes minus meta."""
    return {k: v for k, v in vars(obj).items() if not k.startswith("_") and k not in META}


def canonical_table(objects: Mapping[int, Any]) -> dict[str, list[Any]]:
    return {
        str(uid): [type(obj).__name__, obj.belonging_membership, fields_of(obj)]
        for uid, obj in objects.items()
    }


def table_hash(objects: Mapping[int, Any]) -> str:
    text = json.dumps(canonical_table(objects), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
