"""Whole-frame send queues and the send budget (reverb/_sendq.py), and the threaded layer's
frame sizer: pure logic, checked against the framing of §2.1."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from reverb._sendq import FrameSizer, SendQueue, over_budget
from reverb.proto.framing import FrameDecoder, encode_frame

bodies = st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=30)


@given(bodies, st.integers(1, 5000), st.integers(1, 8))
def test_take_returns_whole_frames_in_order(parts: list[bytes], limit: int, chunks: int) -> None:
    queue = SendQueue()
    frames = [encode_frame(body) for body in parts]
    step = max(1, len(frames) // chunks)
    for i in range(0, len(frames), step):
        queue.push(b"".join(frames[i : i + step]), 0.0)
    taken = []
    while queue:
        piece = queue.take(limit)
        decoder = FrameDecoder(max_frame_size=1 << 20)
        got = decoder.feed(piece)
        assert not decoder.in_frame  # every piece ends on a frame boundary
        taken += got
    assert taken == parts and queue.size == 0


def test_discard_drops_everything_queued() -> None:
    queue = SendQueue()
    queue.push(encode_frame(b"a" * 100) * 3, 0.0)
    queue.take(1)
    assert queue.discard() == 2 * 104 and not queue and queue.take() == b""


@given(bodies, st.lists(st.integers(1, 700), min_size=1, max_size=50))
def test_frame_sizer_sees_every_frame_whatever_the_split(
    parts: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(body) for body in parts)
    sizer, seen, pos = FrameSizer(), 0, 0
    for cut in cuts * (len(stream) // max(1, sum(cuts)) + 1):
        if pos >= len(stream):
            break
        seen = max(seen, sizer.feed(stream[pos : pos + cut]))
        pos += cut
    seen = max(seen, sizer.feed(stream[pos:]))
    assert seen == max(len(body) for body in parts) and sizer.left == 0


@dataclass
class Peer:
    peer_ip: str
    unsent: int
    old: int

    def backlog(self) -> int:
        return self.unsent

    def stale(self) -> int:
        return self.old


def test_over_budget_drops_the_worst_offender_first_and_never_a_peer_that_keeps_up() -> None:
    big_sync = Peer("10.0.0.1", 9_000, 0)  # a large sync on its way to a healthy reader
    worst = Peer("10.0.0.2", 6_000, 6_000)
    second = Peer("10.0.0.3", 4_000, 4_000)
    victims = over_budget([big_sync, second, worst], 12_000, None)
    assert victims == [(worst, "total_send_buffer"), (second, "total_send_buffer")]
    assert over_budget([big_sync], 1_000, None) == []


def test_over_budget_per_address() -> None:
    a1, a2 = Peer("10.0.0.1", 5_000, 5_000), Peer("10.0.0.1", 3_000, 3_000)
    other = Peer("10.0.0.2", 7_000, 7_000)
    assert over_budget([a1, a2, other], None, 6_000) == [
        (other, "send_buffer_per_ip"),
        (a1, "send_buffer_per_ip"),
    ]
