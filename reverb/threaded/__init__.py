"""The blocking API: a background I/O thread per ``Server`` or ``Client``, one selector for
all of its connections."""

from reverb.threaded.client import Client
from reverb.threaded.server import Server

__all__ = ["Client", "Server"]
