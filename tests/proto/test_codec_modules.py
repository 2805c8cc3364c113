"""messages.py and its codec modules: each can be imported first, in a fresh interpreter, and
``messages`` re-exports the codec's names as the very same objects."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reverb.proto import messages as m

ROOT = Path(__file__).resolve().parents[2]
CODEC = ("wirejson", "decode", "frames", "encode")


@pytest.mark.parametrize("name", ("messages", *CODEC))
def test_each_module_imports_first_in_a_fresh_interpreter(name: str) -> None:
    code = (
        f"import reverb.proto.{name} as mod\n"
        "from reverb.proto import messages as m\n"
        "assert m.decode(m.encode(m.Ping(nonce=3))) == m.Ping(nonce=3)\n"
        "print(mod.__name__)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"reverb.proto.{name}"


@pytest.mark.parametrize("name", CODEC)
def test_messages_re_exports_the_codec_names_unchanged(name: str) -> None:
    module = importlib.import_module(f"reverb.proto.{name}")
    for attr in module.__all__:
        assert attr in m.__all__, attr
        assert getattr(m, attr) is getattr(module, attr), attr
