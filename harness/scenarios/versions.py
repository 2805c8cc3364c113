"""``versions``: the correctness scenarios with the server and the clients on different
interpreters: ``--server-python`` / ``--client-python``, or ``--all-pairs`` for every
(server, client) pairing of the CPython 3.10-3.13 interpreters found (pyenv)."""

from __future__ import annotations

import dataclasses
import sys

from harness.procs import discover_pythons, python_version
from harness.scenarios.common import Options, Result, guard

__all__ = ["DEFAULT_SCENARIOS", "run"]

DEFAULT_SCENARIOS = ("convergence", "uids", "ownership", "rpc")


def run(opts: Options) -> Result:
    from harness.scenarios import get

    result = Result("versions")

    def body() -> None:
        if opts.all_pairs:
            found = discover_pythons()
            result.check(len(found) >= 2, f"--all-pairs found fewer than 2 interpreters: {found}")
            pairs = [(s, c) for s in found.values() for c in found.values()]
        else:
            pairs = [(opts.server_python or sys.executable, opts.client_python or sys.executable)]
        names = opts.only or list(DEFAULT_SCENARIOS)
        table = []
        for server_py, client_py in pairs:
            sv, cv = python_version(server_py), python_version(client_py)
            for name in names:
                sub = dataclasses.replace(opts, server_python=server_py, client_python=client_py)
                child = get(name)(sub)
                child.scenario = f"{name} server={sv} clients={cv}"
                result.children.append(child)
                table.append(
                    {
                        "scenario": name,
                        "server": sv,
                        "clients": cv,
                        "verdict": "PASS" if child.passed else "FAIL",
                    }
                )
        result.figures["pairs"] = table

    return guard(result, body)
