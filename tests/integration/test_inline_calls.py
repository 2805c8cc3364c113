"""Calls answered without a hand-off (issue 9, "a shorter RPC path"): a call that arrives while
the game thread waits inside ``server_sync()`` runs at once in the I/O layer, yet never while
game code runs, never ahead of what was queued before it, and never at the cost of ticks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from reverb import Client, ReverbContext, ReverbObject, ReverbSide, Server, expose
from reverb.aio import AsyncServer

pytestmark = pytest.mark.timeout(60)

STATE: dict[str, Any] = {}


class Probe(ReverbObject):
    def __init__(self, uid=None, add_on_init=True, belonging_membership=None):
        self.n = 0
        super().__init__(
            uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose(anyone=True)
    def hit(self) -> int:
        STATE["threads"].add(threading.current_thread().name)
        if STATE["in_game_code"]:
            STATE["overlaps"] += 1  # a call ran while game code was running
        self.n += 1
        return self.n


def reset() -> None:
    STATE.update(threads=set(), in_game_code=False, overlaps=0, ticks=0)


class Game:
    """A server whose game loop runs on its own thread ("game"), with game code between
    syncs that marks itself running, and a client in this thread."""

    def __init__(self, layer: str, inline: bool = True, **options: Any) -> None:
        reset()
        self.sctx, self.cctx = ReverbContext(ReverbSide.SERVER), ReverbContext(ReverbSide.CLIENT)
        for ctx in (self.sctx, self.cctx):
            ctx.register(Probe)
        self.layer = layer
        self.running = True
        self.port: Future[int] = Future()
        self.thread = threading.Thread(
            target=self._run, args=(inline, options), name="game", daemon=True
        )
        self.thread.start()
        self.client = Client(port=self.port.result(timeout=10), context=self.cctx)
        self.client.connect()
        deadline = time.monotonic() + 10
        while not self.cctx.objects:
            assert time.monotonic() < deadline, "the probe never replicated"
            self.cctx.client_sync(timeout=0.01)
        self.probe = next(iter(self.cctx.objects.values()))

    def game_code(self) -> None:
        STATE["in_game_code"] = True
        STATE["ticks"] += 1
        sum(range(2000))  # a little game work, during which no call may run
        STATE["in_game_code"] = False

    def _run(self, inline: bool, options: dict[str, Any]) -> None:
        with self.sctx.activate():
            Probe()
        if self.layer == "aio":
            asyncio.run(self._arun(inline, options))
            return
        server = Server(port=0, context=self.sctx, **options)
        server.inline_calls = inline
        server.start_server()
        self.port.set_result(server.port)
        try:
            while self.running:
                self.sctx.server_sync()
                self.game_code()
        finally:
            server.stop_server()

    async def _arun(self, inline: bool, options: dict[str, Any]) -> None:
        server = AsyncServer(port=0, context=self.sctx, **options)
        server.inline_calls = inline
        await server.start_server()
        self.port.set_result(server.port)
        try:
            while self.running:
                await server.server_sync()
                self.game_code()
        finally:
            await server.stop_server()

    def calls(self, n: int) -> list[int]:
        return [self.probe.compute_server("hit").result(timeout=10) for _ in range(n)]

    def close(self) -> None:
        self.running = False
        self.client.disconnect()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture
def games() -> Iterator[list[Game]]:
    made: list[Game] = []
    try:
        yield made
    finally:
        for game in made:
            game.close()


def test_a_call_to_a_parked_threaded_server_runs_on_the_io_thread_never_with_game_code(
    games: list[Game],
) -> None:
    game = Game("threaded")
    games.append(game)
    assert game.calls(300) == list(range(1, 301))  # each exactly once, in order
    assert STATE["overlaps"] == 0
    assert "game" not in STATE["threads"] or len(STATE["threads"]) > 1
    assert any(name != "game" for name in STATE["threads"]), STATE["threads"]


def test_with_inline_calls_off_every_call_runs_on_the_game_thread(games: list[Game]) -> None:
    game = Game("threaded", inline=False)
    games.append(game)
    assert game.calls(50) == list(range(1, 51))
    assert STATE["threads"] == {"game"} and STATE["overlaps"] == 0


def test_an_asyncio_server_answers_calls_in_order_never_inside_game_code(
    games: list[Game],
) -> None:
    game = Game("aio")
    games.append(game)
    assert game.calls(300) == list(range(1, 301))
    assert STATE["overlaps"] == 0 and STATE["threads"] == {"game"}


@pytest.mark.parametrize("layer", ["threaded", "aio"])
def test_a_flood_of_calls_does_not_starve_the_ticks(games: list[Game], layer: str) -> None:
    unlimited = 1e6  # the flood is the point here, not the per-connection limits (§11)
    game = Game(
        layer, tick_rate=30.0, max_calls_per_second=unlimited, max_messages_per_second=unlimited
    )
    games.append(game)
    stop = time.monotonic() + 2.0
    futures: list[Future[Any]] = []
    started = STATE["ticks"]
    while time.monotonic() < stop:  # keep 32 calls in flight for 2 s
        futures = [f for f in futures if not f.done()]
        while len(futures) < 32:
            futures.append(game.probe.compute_server("hit"))
        time.sleep(0.001)  # pacing of this test's caller loop, not synchronisation
    ticks = STATE["ticks"] - started
    for future in futures:
        future.result(timeout=10)
    assert ticks >= 0.8 * 30 * 2.0, f"{ticks} ticks in 2 s at 30 Hz"
    assert STATE["overlaps"] == 0
