"""reverb/proto/framing.py: length-prefixed frames (docs/protocol.md §2)."""

from __future__ import annotations

import struct

import pytest

from reverb.errors import FrameTooLarge, RemoteProtocolError
from reverb.proto.framing import DEFAULT_MAX_FRAME_SIZE, HEADER_SIZE, FrameDecoder, encode_frame

BODIES = [b"a", b"hello", b"x" * 1000, bytes(range(256))]


def header(n: int) -> bytes:
    return struct.pack(">I", n)


def assert_refused(decoder: FrameDecoder, data: bytes, code: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(data)
    assert info.value.code == code


def test_encode_frame_is_a_big_endian_length_then_the_body() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert HEADER_SIZE == 4
    assert DEFAULT_MAX_FRAME_SIZE == 1 << 20


@pytest.mark.parametrize("body", BODIES)
def test_encode_then_feed_round_trips(body: bytes) -> None:
    assert FrameDecoder().feed(encode_frame(body)) == [body]


def test_whole_frame_in_one_feed() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(b"hello")) == [b"hello"]
    assert not decoder.in_frame


def test_byte_by_byte_completes_only_on_the_last_byte() -> None:
    decoder = FrameDecoder()
    data = encode_frame(b"hello")
    for byte in data[:-1]:
        assert decoder.feed(bytes([byte])) == []
        assert decoder.in_frame
    assert decoder.feed(data[-1:]) == [b"hello"]
    assert not decoder.in_frame


def test_many_frames_in_one_feed_come_out_in_order() -> None:
    data = b"".join(encode_frame(b) for b in BODIES)
    assert FrameDecoder().feed(data) == BODIES


def test_many_frames_fed_byte_by_byte() -> None:
    data = b"".join(encode_frame(b) for b in BODIES)
    decoder = FrameDecoder()
    out: list[bytes] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    assert out == BODIES


def test_header_split_across_feeds() -> None:
    decoder = FrameDecoder()
    data = encode_frame(b"split")
    assert decoder.feed(data[:2]) == []
    assert decoder.in_frame
    assert decoder.feed(data[2:3]) == []
    assert decoder.feed(data[3:]) == [b"split"]


def test_frame_end_and_next_header_in_one_feed() -> None:
    decoder = FrameDecoder()
    data = encode_frame(b"one") + encode_frame(b"two")
    assert decoder.feed(data[:9]) == [b"one"]
    assert decoder.in_frame
    assert decoder.feed(data[9:]) == [b"two"]


def test_empty_feed_yields_nothing() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert not decoder.in_frame


def test_in_frame_is_true_mid_body() -> None:
    decoder = FrameDecoder()
    decoder.feed(header(10) + b"abc")
    assert decoder.in_frame


def test_limit_is_checked_from_the_header_alone() -> None:
    # §2.3: only the 4 header bytes have arrived; the body is never awaited.
    decoder = FrameDecoder()
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(header(2**32 - 1))
    assert info.value.code == 1009


def test_frame_exactly_at_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    assert decoder.feed(encode_frame(b"z" * 100)) == [b"z" * 100]


def test_frame_one_over_the_limit_is_refused() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(header(101))
    assert info.value.code == 1009


def test_default_limit() -> None:
    assert FrameDecoder().feed(encode_frame(b"y" * DEFAULT_MAX_FRAME_SIZE)) == [
        b"y" * DEFAULT_MAX_FRAME_SIZE
    ]
    assert_refused(FrameDecoder(), header(DEFAULT_MAX_FRAME_SIZE + 1), 1009)


def test_empty_frame_is_invalid_payload() -> None:
    assert_refused(FrameDecoder(), header(0), 1007)


def test_empty_frame_after_a_good_one_is_refused_after_the_good_one() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(b"ok") + header(0)) == [b"ok"]  # §2.4: in order
    assert decoder.error is not None and decoder.error.code == 1007
    assert_refused(decoder, b"", 1007)


def test_next_frame_takes_one_frame_at_a_time() -> None:
    decoder = FrameDecoder()
    decoder.add(encode_frame(b"one") + encode_frame(b"two") + b"\x00")
    assert decoder.next_frame() == b"one"
    assert decoder.next_frame() == b"two"
    assert decoder.next_frame() is None
    assert decoder.in_frame


def test_the_limit_may_change_between_frames() -> None:
    # §2.7: a server's limit rises once its handshake is done, for the frames after it
    decoder = FrameDecoder(max_frame_size=10)
    decoder.add(encode_frame(b"hello") + encode_frame(b"x" * 50))
    assert decoder.next_frame() == b"hello"
    decoder.max_frame_size = 100
    assert decoder.next_frame() == b"x" * 50


def test_the_limit_in_force_when_the_header_is_complete_applies() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    decoder.add(header(50))
    with pytest.raises(FrameTooLarge):
        decoder.next_frame()
    with pytest.raises(FrameTooLarge):  # the stream stays broken
        decoder.next_frame()
    assert not decoder.in_frame  # nothing of it is kept
