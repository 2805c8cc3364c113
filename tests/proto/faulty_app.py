"""The hostile suite's server process (tests/hostile/app.py) with a fault injected in its codec:
``decode`` raises a plain ``Exception`` for any frame holding the marker ``POISON``, as a bug
in the codec would. ``python -m tests.proto.faulty_app '<json Server options>'``."""

from __future__ import annotations

import json
import logging
import sys

from reverb.proto import messages
from tests.hostile import app

MARKER = b"POISON"
_decode = messages.decode


def decode(body: bytes) -> messages.Message:
    if MARKER in body:
        raise Exception("injected codec fault")  # not a RemoteProtocolError: a bug
    return _decode(body)


if __name__ == "__main__":
    messages.decode = decode  # the session looks it up at each frame
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    app.main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
