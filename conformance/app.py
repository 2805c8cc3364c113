"""The conformance app as a contract (docs/protocol.md §4.9): what a client built with the
app's types sends as ``hello.contract``. Kept in step with conformance/host.py and the README."""

from __future__ import annotations

from typing import Any


def _m(*params: str, anyone: bool = True) -> dict[str, Any]:
    return {"params": list(params), "anyone": anyone}


APP_CONTRACT: dict[str, Any] = {
    "types": {
        "Box": {
            "init": ["value"],
            "fields": None,
            "methods": {
                "bump": _m("k", anyone=False),
                "touch": _m(),
            },
        },
        "Control": {
            "init": [],
            "fields": None,
            "methods": {
                "churn": _m("target", "seconds"),
                "crash": _m(),
                "despawn": _m("target"),
                "echo": _m("args"),
                "executions": _m("name"),
                "fail": _m("message"),
                "ordered": _m("target", "value"),
                "give": _m("kind"),
                "hide_from": _m("target", "member"),
                "show_to": _m("target", "member"),
                "spawn_hidden": _m("n", "member"),
                "set_field": _m("target", "name", "value"),
                "set_owner": _m("target", "member"),
                "resume_grace": _m("seconds"),
                "set_special": _m("target", "kind"),
                "set_value": _m("target", "value"),
                "sleep": _m("seconds"),
                "spawn": _m("n", "owned"),
                "spawn_rec": _m("owned"),
                "spawn_safe": _m("owned"),
                "tell": _m("name", "data"),
                "tell_all": _m("name", "data"),
                "tell_around": _m("target", "name", "data"),
                "vanish": _m("seconds"),
                "whoami": _m(),
            },
        },
        "Rec": {
            "init": [],
            "fields": None,
            "methods": {
                "mine": _m(anyone=False),
            },
        },
        "Safe": {
            "init": [],
            "fields": None,
            "methods": {},
        },
    }
}
