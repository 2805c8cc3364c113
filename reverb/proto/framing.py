"""Length-prefixed framing (docs/protocol.md §2): a 4-byte big-endian length, then the body."""

from __future__ import annotations

import struct

from reverb.errors import CloseCode, FrameTooLarge, RemoteProtocolError

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "HEADER_SIZE", "FrameDecoder", "encode_frame"]

_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size
# 1 MiB holds a snapshot part of thousands of objects, yet caps what one hostile header can
# make us buffer; syncs larger than the peer's limit are split into parts (§7.5).
DEFAULT_MAX_FRAME_SIZE = 1 << 20


def encode_frame(body: bytes) -> bytes:
    """Return ``body`` with its length header (§2.1)."""
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Reassembles frames from any split of the byte stream (§2.4).

    The length is checked against ``max_frame_size`` as soon as the header is complete, before
    any of the body is buffered (§2.3). The limit may change between frames (a server takes
    small frames only until its handshake is done, §2.7): ``add`` the bytes, then take frames
    one by one with ``next_frame``, so each header meets the limit in force when it is reached.
    """

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._need: int | None = None  # body length of the frame in progress, once known
        self.error: RemoteProtocolError | None = None  # set once the stream is broken

    @property
    def in_frame(self) -> bool:
        """True while a started frame (header or body) is incomplete."""
        return bool(self._buffer) or self._need is not None

    def add(self, data: bytes) -> None:
        """Queue received bytes; ``next_frame`` takes the frames they complete."""
        self._buffer += data

    def whole(self, data: bytes) -> bytes | None:
        """The body when ``data`` is exactly one whole, acceptable frame and nothing is
        buffered (the usual read of a small message); else None, and nothing changed: use
        ``add`` and ``next_frame``, which also report a bad header."""
        if self._buffer or self._need is not None or self.error is not None or len(data) <= 4:
            return None
        length = int.from_bytes(data[:HEADER_SIZE], "big")
        if length + HEADER_SIZE != len(data) or length > self.max_frame_size:
            return None
        return data[HEADER_SIZE:]

    def next_frame(self) -> bytes | None:
        """The body of the next complete frame, or None until more bytes are added.

        Raises ``FrameTooLarge`` or ``RemoteProtocolError`` on a bad header; after that the
        decoder is unusable (``error`` holds the exception, raised again by every call).
        """
        if self.error is not None:
            raise self.error
        if self._need is None:
            if len(self._buffer) < HEADER_SIZE:
                return None
            (length,) = _HEADER.unpack_from(self._buffer)
            if length > self.max_frame_size:
                self.error = FrameTooLarge(
                    f"frame of {length} bytes exceeds the limit of {self.max_frame_size}",
                    CloseCode.TOO_LARGE,
                )
            elif length == 0:
                self.error = RemoteProtocolError("empty frame", CloseCode.INVALID_PAYLOAD)
            if self.error is not None:
                self._buffer.clear()
                raise self.error
            del self._buffer[:HEADER_SIZE]
            self._need = length
        if len(self._buffer) < self._need:
            return None
        body = bytes(self._buffer[: self._need])
        del self._buffer[: self._need]
        self._need = None
        return body

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the bodies of every frame they complete, in order.

        Raises ``FrameTooLarge`` or ``RemoteProtocolError``; after that the decoder is unusable.
        Frames completed before the bad header in the same call are returned first; the
        error is then in ``error`` and raised by the next call (§2.4: frames in order).
        """
        if self.error is not None:
            raise self.error
        self.add(data)
        frames: list[bytes] = []
        try:
            while (body := self.next_frame()) is not None:
                frames.append(body)
        except RemoteProtocolError:
            if not frames:
                raise
        return frames
