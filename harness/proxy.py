"""A fault-injecting TCP proxy on loopback, in the spirit of toxiproxy (asyncio, one thread).

``FaultProxy(upstream_port, policy)`` listens on ``127.0.0.1:0``; each accepted connection is
connected to the upstream and gets the :class:`Toxics` that ``policy(index)`` returns (index =
0, 1, ... in accept order). Toxics apply to both directions:

- ``latency`` / ``jitter`` (s): each chunk is delivered ``latency ± jitter`` after it was read,
  never before an earlier chunk (TCP order is kept);
- ``bandwidth`` (bytes/s): delivery is paced to this rate;
- ``chop`` (bytes): chunks are written in pieces of 1..chop bytes, each flushed on its own;
- ``stall_after`` (s): from then on nothing is forwarded and nothing read, but both sockets stay
  open — a half-open peer; :attr:`Link.stalled_at` records when (``time.monotonic()``);
- ``reset_after`` (s): both sockets are closed with RST (SO_LINGER 0);
- ``reset_after_bytes`` ((lo, hi) bytes): reset once a uniformly random ``lo..hi`` bytes
  went through, both directions counted (it may cut a frame anywhere).

``reset_all()`` / ``reset(index)`` reset open links on demand, from any thread.

Every socket the proxy opens binds and connects to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FaultProxy", "Link", "Toxics"]

logger = logging.getLogger("harness.proxy")

READ_SIZE = 65536


@dataclass(frozen=True)
class Toxics:
    latency: float = 0.0
    jitter: float = 0.0
    bandwidth: float = 0.0  # bytes/s; 0 = unlimited
    chop: int = 0  # largest piece in bytes; 0 = whole chunks
    stall_after: float | None = None
    reset_after: float | None = None
    reset_after_bytes: tuple[int, int] | None = None

    def describe(self) -> str:
        parts = []
        if self.latency or self.jitter:
            parts.append(f"latency {self.latency * 1000:.0f}±{self.jitter * 1000:.0f} ms")
        if self.bandwidth:
            parts.append(f"bandwidth {self.bandwidth / 1024:.0f} KiB/s")
        if self.chop:
            parts.append(f"chopped to <= {self.chop} B writes")
        if self.stall_after is not None:
            parts.append(f"stall after {self.stall_after:.1f} s")
        if self.reset_after is not None:
            parts.append(f"reset after {self.reset_after:.1f} s")
        if self.reset_after_bytes is not None:
            lo, hi = self.reset_after_bytes
            parts.append(f"reset after {lo}-{hi} bytes")
        return ", ".join(parts) or "clean"


@dataclass
class Link:
    """One proxied connection and what happened to it."""

    index: int
    toxics: Toxics
    opened_at: float
    stalled_at: float | None = None
    reset_at: float | None = None
    closed_at: float | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    budget: int | None = None  # bytes until a reset_after_bytes reset
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    stalled: asyncio.Event = field(default_factory=asyncio.Event)


SHUTDOWN_ROUNDS = 10  # of cancelling what is left when the proxy stops


class FaultProxy:
    """Runs an asyncio loop in a daemon thread; ``start()`` returns once it listens."""

    def __init__(
        self, upstream_port: int, policy: Callable[[int], Toxics], *, seed: int = 1
    ) -> None:
        self.upstream_port = upstream_port
        self.policy = policy
        self.links: list[Link] = []
        self.port = 0
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the fault proxy did not start in time")
        if self._error is not None:
            raise RuntimeError(f"the fault proxy failed to start: {self._error}")

    def stop(self, timeout: float = 5.0) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._shutdown)
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the loop's thread -------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(), never silent
            self._error = exc
            logger.exception("fault proxy crashed")
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        self._server.close()
        for link in self.links:
            for w in link.writers:
                w.transport.abort()
        for _ in range(SHUTDOWN_ROUNDS):  # links accepted meanwhile may spawn more tasks
            if not self._tasks:
                break
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Done, whether or not their done callbacks ran yet: awaiting a gather of tasks
            # that are all done does not yield to the loop, so waiting for the callbacks to
            # empty the set could spin this thread forever.
            self._tasks.difference_update(tasks)
            await asyncio.sleep(0)

    def _shutdown(self) -> None:
        self._stopping.set()

    def reset(self, index: int) -> None:
        """Reset link ``index`` now (RST both ways); from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            link = self.links[index]
            loop.call_soon_threadsafe(self._abort, link)

    def reset_all(self) -> int:
        """Reset every open link now; returns how many; from any thread."""
        open_links = [
            link for link in self.links if link.reset_at is None and link.closed_at is None
        ]
        loop = self._loop
        if loop is not None and not loop.is_closed():
            for link in open_links:
                loop.call_soon_threadsafe(self._abort, link)
        return len(open_links)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        index = len(self.links)
        link = Link(index, self.policy(index), time.monotonic())
        self.links.append(link)
        try:
            u_reader, u_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError as exc:
            logger.warning("proxy link %d: upstream connect failed: %s", index, exc)
            c_writer.close()
            return
        for w in (c_writer, u_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link.writers = [c_writer, u_writer]
        if link.toxics.reset_after_bytes is not None:
            link.budget = self._rng.randint(*link.toxics.reset_after_bytes)
        logger.info("proxy link %d: %s", index, link.toxics.describe())
        self._spawn(self._pipe(link, c_reader, u_writer, up=True))
        self._spawn(self._pipe(link, u_reader, c_writer, up=False))
        if link.toxics.stall_after is not None:
            self._spawn(self._stall(link, link.toxics.stall_after))
        if link.toxics.reset_after is not None:
            self._spawn(self._reset(link, link.toxics.reset_after))

    async def _stall(self, link: Link, after: float) -> None:
        await asyncio.sleep(after)
        link.stalled_at = time.monotonic()
        link.stalled.set()
        logger.info("proxy link %d: stalled", link.index)

    async def _reset(self, link: Link, after: float) -> None:
        await asyncio.sleep(after)
        self._abort(link)

    def _abort(self, link: Link) -> None:
        if link.reset_at is not None:
            return
        link.reset_at = time.monotonic()
        for w in link.writers:
            sock = w.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
        logger.info("proxy link %d: reset", link.index)

    async def _pipe(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        """Read chunks, stamp each with its delivery time, and deliver them in order."""
        toxics = link.toxics
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        self._spawn(self._deliver(link, queue, writer, up=up))
        last_due = 0.0
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if link.stalled.is_set():
                    await link_forever()  # half-open: keep both sockets, forward nothing
                if not data:
                    break
                delay = toxics.latency + self._rng.uniform(-toxics.jitter, toxics.jitter)
                last_due = max(last_due, time.monotonic() + max(0.0, delay))
                queue.put_nowait((last_due, data))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait(None)

    async def _deliver(
        self,
        link: Link,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        writer: asyncio.StreamWriter,
        *,
        up: bool,
    ) -> None:
        toxics = link.toxics
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                if link.stalled.is_set():
                    await link_forever()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                pieces = [data]
                if toxics.chop:
                    pieces, i = [], 0
                    while i < len(data):
                        n = self._rng.randint(1, toxics.chop)
                        pieces.append(data[i : i + n])
                        i += n
                for piece in pieces:
                    if link.stalled.is_set():
                        await link_forever()
                    if link.reset_at is not None:
                        return
                    if link.budget is not None:
                        if link.budget <= len(piece):  # cut here: the rest never arrives
                            writer.write(piece[: link.budget])
                            link.budget = 0
                            self._abort(link)
                            return
                        link.budget -= len(piece)
                    writer.write(piece)
                    await writer.drain()
                    if up:
                        link.bytes_up += len(piece)
                    else:
                        link.bytes_down += len(piece)
                    if toxics.bandwidth:
                        await asyncio.sleep(len(piece) / toxics.bandwidth)
                    elif toxics.chop:
                        await asyncio.sleep(0)  # let each piece leave as its own segment
        except (ConnectionError, OSError):
            pass
        finally:
            if link.closed_at is None:
                link.closed_at = time.monotonic()
            if not link.stalled.is_set():
                with contextlib.suppress(OSError, RuntimeError):
                    writer.close()


async def link_forever() -> None:
    """Park a stalled direction until the proxy shuts down (its task is cancelled)."""
    await asyncio.Event().wait()
