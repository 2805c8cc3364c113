"""The threaded client publishes its reconnect thread only once it has started: a
``disconnect()`` on the game thread that reads it at that moment joins a started thread
(it used to find one not yet started, and ``join`` raised RuntimeError)."""

from __future__ import annotations

import threading

import pytest

from reverb import ReverbContext
from reverb.threaded import Client


def test_the_reconnect_thread_is_published_started(monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client(context=ReverbContext(), reconnect=True)
    seen: list[object] = []
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        seen.append(client._reconnect_thread)  # what a disconnect() would read meanwhile
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    client._start_reconnecting()
    thread = client._reconnect_thread
    assert thread is not None and seen == [None]  # not visible before start() returned
    thread.join(5.0)
    assert not thread.is_alive()  # nothing to reconnect: it ends at once
    client._stop_reconnecting()  # joins a started thread: no RuntimeError
    assert client._reconnect_thread is None
