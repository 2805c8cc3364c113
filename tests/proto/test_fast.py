"""The optional orjson path (extra ``reverb-net[fast]``): the wire bytes never change."""

from __future__ import annotations

import json
import random
import struct
from typing import Any

import pytest

from reverb.errors import RemoteProtocolError
from reverb.proto import messages as m
from reverb.proto import wirejson

orjson = pytest.importorskip("orjson")


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.randint(-m.MAX_SAFE_INT, m.MAX_SAFE_INT)
    if kind == 1:
        value = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        return value if value - value == 0.0 else 0.5
    if kind == 2:
        return rng.random() * 10.0 ** rng.randint(-12, 20) * rng.choice((1, -1))
    if kind == 3:
        return "".join(
            chr(rng.choice((rng.randrange(0, 0x80), rng.randrange(0x80, 0xD800))))
            for _ in range(rng.randrange(8))
        )
    if kind == 4:
        return rng.choice((None, True, False, -0.0, 0.0, 1e16, 1e-5, 1e-7, 123.0))
    if kind == 5:
        return rng.randint(-1000, 1000)
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {f"k{i}\u00e9": random_value(rng, depth + 1) for i in range(rng.randrange(5))}


def test_orjson_is_the_encoder_in_use() -> None:
    assert m.FAST and m.dumpb is wirejson._fast_dumpb


def test_both_encoders_write_the_same_bytes_on_random_values() -> None:
    rng = random.Random(9)
    for _ in range(20000):
        value = random_value(rng)
        assert wirejson._fast_dumpb(value) == wirejson._stdlib_dumpb(value), value


def test_both_encoders_write_the_same_sync_frames() -> None:
    rng = random.Random(3)
    for tick in range(1, 200):
        update = tuple(
            m.UpdateEntry(uid, {f"f{j}": random_value(rng) for j in range(3)})
            for uid in range(1, rng.randrange(2, 30))
        )
        sync = m.Sync(tick, False, True, update=update)
        fast = m.encode(sync)
        values = [m.update_entry(e.uid, e.fields) for e in update]
        assert fast[fast.index(b'"update":[') + 10 : -len(b'],"despawn":[]}')] == b",".join(
            wirejson._stdlib_dumpb(v) for v in values
        )
        assert json.loads(fast) == json.loads(
            json.dumps(m.as_dict(sync), separators=(",", ":"), ensure_ascii=False)
        )


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"ping","nonce":NaN}',
        '{"type":"ping","nonce":Infinity}',
        '{"type":"ping","nonce":1e400}',
        '{"type":"ping","nonce":123456789012345678901234567890}',
        '{"type":"ping","nonce":9007199254740992}',
        '{"type":"close","code":1000,"reason":"\\ud800"}',
        '{"type":"ping","nonce":1,"nonce":2}',
        "[" * 40 + "]" * 40,
        '{"type":"ping","nonce":1',
    ],
)
def test_the_fast_parser_refuses_what_section_3_4_refuses(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        m.decode(text.encode())
    assert info.value.code == 1007
