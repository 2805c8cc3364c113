"""The asyncio API: ``AsyncServer`` and ``AsyncClient`` over the same sans-I/O core as the
threaded layer. Everything runs on the event loop's thread; ``await server.server_sync()``
and ``await client.client_sync()`` replace the blocking calls."""

from reverb.aio.client import AsyncClient
from reverb.aio.server import AsyncServer

__all__ = ["AsyncClient", "AsyncServer"]
