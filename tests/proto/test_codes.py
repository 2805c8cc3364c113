"""The protocol's codes are defined once, in ``reverb.errors``, and match docs/protocol.md."""

from __future__ import annotations

import re
from pathlib import Path

from reverb import errors
from reverb.errors import CloseCode, RpcCode, RpcError
from reverb.proto import messages as m
from reverb.proto import session

PROTOCOL = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text("utf-8")


def _section(start: str, end: str) -> str:
    return PROTOCOL[PROTOCOL.index(start) : PROTOCOL.index(end, PROTOCOL.index(start))]


def test_close_codes_are_those_of_section_10_2() -> None:
    table = _section("10.2. ", "10.3. ")
    listed = {int(code) for code in re.findall(r"^\| (\d{4}) \|", table, re.M)}
    assert listed == {int(code) for code in CloseCode}


def test_rpc_codes_are_those_of_section_8_3() -> None:
    table = _section("8.3. ", "8.4. ")
    listed = set(re.findall(r"^\| `(\w+)` +\|", table, re.M))
    assert listed == {code.value for code in RpcCode}


def test_session_still_exports_the_same_close_code() -> None:
    assert session.CloseCode is errors.CloseCode
    assert "CloseCode" in session.__all__
    assert {"CloseCode", "RpcCode"} <= set(errors.__all__)


def test_an_rpc_code_is_its_string() -> None:
    for code in RpcCode:
        assert code == code.value
        assert str(code) == f"{code}" == code.value
    error = RpcError("too fast")
    assert error.code == "rejected"
    assert str(error) == "rejected: too fast"
    enum_body = m.encode(m.RpcErrorReply(id=7, code=RpcCode.OVERLOADED, message="busy"))
    plain_body = m.encode(m.RpcErrorReply(id=7, code="overloaded", message="busy"))
    assert enum_body == plain_body
