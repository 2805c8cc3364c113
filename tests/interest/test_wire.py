"""The wire side of the feature "interest" (protocol §16.3): ``sync.left``."""

from __future__ import annotations

import json

import pytest

from reverb.errors import CloseCode, RemoteProtocolError
from reverb.proto import messages as m


def test_left_is_in_the_head_and_decodes() -> None:
    frame = m.SyncFrame(3, False, despawn=[4, 5], left=[5])
    body = frame.body()
    assert body == (
        b'{"type":"sync","tick":3,"full":false,"final":true,"left":[5],'
        b'"spawn":[],"update":[],"despawn":[4,5]}'
    )
    decoded = m.decode(body)
    assert isinstance(decoded, m.Sync) and decoded.left == (5,)


def test_no_left_no_key() -> None:
    assert b'"left"' not in m.SyncFrame(3, False, despawn=[4]).body()
    assert b'"left"' not in m.SyncFrame(3, False, despawn=[4], left=[]).body()


def test_each_part_lists_only_its_own_despawns() -> None:
    uids = list(range(1000, 1400))
    frame = m.SyncFrame(7, False, despawn=uids, left=uids[::2])
    parts = frame.parts(600)
    assert len(parts) > 2
    seen: list[int] = []
    for body in parts:
        assert len(body) <= 600
        part = json.loads(body)
        left = part.get("left", [])
        assert set(left) <= set(part["despawn"])
        seen += left
    assert seen == uids[::2]


@pytest.mark.parametrize(
    "left",
    ['"x"', "[1.5]", "[9]", '["4"]'],
)
def test_bad_left_is_a_protocol_error(left: str) -> None:
    head = '{"type":"sync","tick":3,"full":false,"final":true,"left":'
    body = (head + left + ',"spawn":[],"update":[],"despawn":[4]}').encode()
    with pytest.raises(RemoteProtocolError) as info:
        m.decode(body)
    assert info.value.code == CloseCode.PROTOCOL_ERROR
