"""Time is the I/O layer's (issue 9, structure): the context and the endpoints take ``now``
from their connection's ``clock`` -- the real monotonic clock in the threaded and asyncio
layers, the network's stepped ``Clock`` in ``reverb.memory`` -- and never read one of their
own. So a game on the memory transport renders, interpolates and reports in stepped time."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from reverb import ReverbContext, ReverbObject, ReverbSide
from reverb.aio import AsyncClient, AsyncServer
from reverb.errors import InvalidState
from reverb.memory import MemoryNetwork
from reverb.threaded import Client, Server

TICK = 1 / 30
REVERB = Path(__file__).resolve().parents[2] / "reverb"


class Glider(ReverbObject):
    __reverb_interpolate__ = ("x",)

    def __init__(
        self,
        x: float = 0.0,
        *,
        uid: int | None = None,
        add_on_init: bool = True,
        belonging_membership: int | None = None,
    ) -> None:
        self.x = x
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )


def _world() -> tuple[MemoryNetwork, ReverbContext, ReverbContext, Glider]:
    server = ReverbContext(ReverbSide.SERVER)
    server.register(Glider)
    net = MemoryNetwork(server)
    client = ReverbContext()
    client.register(Glider)
    net.connect(client)
    with server.activate():
        glider = Glider(0.0)
    for k in range(1, 31):
        glider.x = float(k)
        net.step(TICK)
    return net, server, client, glider


def test_a_memory_clients_default_now_is_the_networks_stepped_clock() -> None:
    net, _, client, glider = _world()
    replica = client.objects[glider.uid]
    now = net.clock()
    assert now < 10.0 < time.monotonic()  # stepped time, one second in: far from the real
    assert client.render_time() == client.render_time(now)
    assert replica.interpolated("x") == replica.interpolated("x", now)
    assert client.interpolate() == client.interpolate(now)
    connection = client.connection
    assert connection is not None
    assert connection.server_time() == connection.server_time(now)


def test_a_memory_servers_rooms_and_stats_run_on_the_stepped_clock() -> None:
    net, server, _, _ = _world()
    endpoint = server.connection
    assert endpoint is not None and endpoint.clock is net.clock
    assert endpoint.rooms.clock is net.clock
    (member,) = endpoint.hub.members
    stats = endpoint.client_stats(member)
    assert stats is not None
    # connected at stepped time 0, one stepped second ago, whatever the real time is
    assert stats.connected_for == pytest.approx(net.clock(), abs=TICK)


def test_server_sync_refuses_a_stepped_connection_instead_of_spinning() -> None:
    _, server, _, _ = _world()
    with pytest.raises(InvalidState, match=r"MemoryNetwork\.step"):
        server.server_sync()


def test_the_socket_layers_keep_the_real_clock() -> None:
    for cls in (Server, Client, AsyncServer, AsyncClient):
        assert cls.clock is time.monotonic, cls


def _clock_reads(path: Path) -> list[int]:
    """Lines of ``path`` that call ``time.monotonic``/``time.time``/``perf_counter`` or pass
    one of them along."""
    tree = ast.parse(path.read_text())
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "time"
        and node.attr in ("monotonic", "time", "perf_counter")
    ]


@pytest.mark.parametrize(
    "module",
    ["endpoints.py", "hub", "options.py", "objects.py", "manager.py", "proto", "replication"],
)
def test_the_core_and_the_endpoints_read_no_clock(module: str) -> None:
    target = REVERB / module
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert files
    assert {str(f.relative_to(REVERB)): _clock_reads(f) for f in files if _clock_reads(f)} == {}


def test_the_context_reads_the_real_clock_only_without_a_connection() -> None:
    source = (REVERB / "context.py").read_text()
    lines = source.splitlines()
    reads = _clock_reads(REVERB / "context.py")
    assert len(reads) == 2, reads  # server_sync() and _now(), each when there is no connection
    for line in reads:
        window = "\n".join(lines[line - 4 : line])
        assert "conn is None" in window or "conn is not None" in lines[line - 1], line
