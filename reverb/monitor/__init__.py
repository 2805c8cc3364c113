"""A live inspector and a Prometheus endpoint for a running server (docs/monitor.md).

``Monitor(server).start()`` serves, on a separate loopback port protected by a token, the
pages (overview, world, one client's view and frames, calls) and ``/metrics``. Nothing of it
runs unless it is started.
"""

from reverb.monitor._metrics import write_text
from reverb.monitor._observer import Observer
from reverb.monitor._server import Monitor

__all__ = ["Monitor", "Observer", "write_text"]
