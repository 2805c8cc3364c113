"""Strict JSON (docs/protocol.md §3), both ways: the text a peer sent parsed and held to §3.4
(depth, number ranges, lone surrogates, duplicate keys), and values checked (``to_wire``) and
written (``dumps``, ``dumpb``, ``dumpb_each``) the one way the wire knows. orjson does both
when installed (extra ``reverb-net[fast]``) with the same results; ``FAST`` says whether it is.

Nothing here knows a message: ``decode.py`` and ``encode.py`` build on it.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import sys
import typing
from collections.abc import Callable
from itertools import chain, compress
from typing import Any

from reverb.errors import CloseCode, EncodeError, RemoteProtocolError
from reverb.proto.messages import MAX_DEPTH, MAX_SAFE_INT

__all__ = ["FAST", "dumpb", "dumpb_each", "dumps", "to_wire"]


# -- JSON layer: §3.1-§3.4 -------------------------------------------------------------------
#
# Decoding runs for every byte a peer sends, so it must stay cheap even on a hostile megabyte
# (issue 8: Python hooks per number and per object cost ~0.35 s per MiB of small ints). The C
# scanner builds the value with no per-value hook; §3.4 is then checked on the result by a
# walk whose per-item work is done by C builtins, after text-level searches have ruled out
# what cannot occur (``_check_tree``). Only NaN/Infinity keep a hook: it runs when they appear.


class _Refused(ValueError):
    """Raised by our own hooks, with our own words (never Python's text)."""


def _no_constants(name: str) -> Any:
    raise _Refused(f"{name} is not allowed")


def _parse_int(text: str) -> int:
    # Only used when the interpreter's cap on int digits is off: int() of a megabyte of digits
    # is quadratic, so the length is checked before converting.
    if len(text.lstrip("-")) > 16 or abs(int(text)) > MAX_SAFE_INT:
        raise _Refused("integer out of the safe range ±(2**53-1)")
    return int(text)


_decoder = json.JSONDecoder(parse_constant=_no_constants)
_guarded_decoder = json.JSONDecoder(parse_constant=_no_constants, parse_int=_parse_int)
# Python ≥ 3.10.7 refuses int() of more than 4300 digits by default (cheap: ~0.1 ms at the cap).
_INT_DIGITS_CAP = 4300


_get_int_max_str_digits = getattr(sys, "get_int_max_str_digits", None)


def _int_digits_capped() -> bool:
    get = _get_int_max_str_digits
    return get is not None and 0 < get() <= _INT_DIGITS_CAP


_SURROGATE = re.compile("[\ud800-\udfff]")
# Strict UTF-8 decoding refuses encoded surrogates, so a lone one can only come from a
# \\uD800-\\uDFFF escape: without such an escape in the text, no string needs looking at.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# An int beyond ±(2**53-1) has at least 16 digits; a float literal overflows only with at
# least 16 digits before its point or an exponent of at least 3 digits. Without either in the
# text, no number needs looking at. (Found by substring search once digits are all made "0":
# a regular expression trying every position costs ~50 ms per MiB.) A run of 16 to 31 digits
# right after a point is a float's fraction (17 digits are common: ``repr(random())``), which
# is harmless: the text needs a look only when it has more runs of 16 than such fractions.
# The exponent is found by a pattern that starts with a literal, which the regular expression
# engine scans for in C (a substring search for "e000" crawls over text made mostly of "0").
_FOLD_NUMBERS = bytes.maketrans(b"123456789E", b"000000000e")
_RUN = b"0" * 16
_FRACTION = b"." + _RUN
_BIG_EXPONENT = re.compile(rb"e[-+]?000")


def _has_big_number(body: bytes) -> bool:
    folded = body.translate(_FOLD_NUMBERS)
    if _RUN in folded and folded.count(_RUN) != folded.count(_FRACTION):
        return True
    return _BIG_EXPONENT.search(folded) is not None


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NUMBERS = frozenset({int, float, bool}).__contains__
_STRINGS = frozenset({str}).__contains__
_CONTAINERS = frozenset({dict, list}).__contains__
_DICTS = frozenset({dict}).__contains__
_ARRAYS = frozenset({list}).__contains__


def _values_of(dicts: list[dict[str, Any]]) -> Any:
    return chain.from_iterable(map(dict.values, dicts))


def _only(values: list[Any], kind: Callable[[type], bool]) -> list[Any]:
    """The items of ``values`` whose type ``kind`` accepts, filtered in C."""
    return list(compress(values, map(kind, map(type, values))))


def _check_numbers(numbers: list[Any]) -> None:
    """Every int within ±(2**53-1), every float finite (§3.4); ``numbers`` holds no other type
    but bool. ``min``/``max`` clear almost every list in C; the loop is for the rest."""
    if max(numbers) <= MAX_SAFE_INT and min(numbers) >= -MAX_SAFE_INT:
        return
    for value in numbers:
        if type(value) is int:
            if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                raise RemoteProtocolError(
                    "payload is not valid JSON: integer out of the safe range ±(2**53-1)",
                    CloseCode.INVALID_PAYLOAD,
                )
        elif type(value) is float and not math.isfinite(value):
            raise RemoteProtocolError(
                "payload is not valid JSON: number out of range", CloseCode.INVALID_PAYLOAD
            )


def _check_strings(strings: list[str]) -> None:
    if any(map(_SURROGATE.search, strings)):
        raise RemoteProtocolError(
            "string holds a lone surrogate (no UTF-8 form)", CloseCode.INVALID_PAYLOAD
        )


_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _depth_within(text: str, limit: int) -> bool:
    """True when ``text`` (valid JSON, strings without escapes) nests at most ``limit`` levels:
    the brackets outside strings, with each innermost pair removed per round (C work; a sync
    of a thousand compact rows takes 3 rounds). False means "look closer", not "too deep"."""
    if "\\" in text:
        return False  # an escaped quote would shift the strings; the walk decides
    outside = "".join(text.split('"')[::2])  # JSON text outside strings: every even piece
    shape = outside.encode("utf-8").translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not shape:
            return True
        # one level per round: a pair emptied by this round's removals waits for the next
        shape = shape.replace(b"[]", b"-").replace(b"{}", b"-").replace(b"-", b"")
    return not shape


def _check_tree(body: bytes, text: str, root: dict[str, Any]) -> int:
    """§3.4 on the decoded message: nesting depth, number ranges, lone surrogates. Returns how
    many members all its objects have, for the duplicate-key check.

    The walk goes level by level, each level's values in one list, so that the work per value
    is done by C builtins (``map``, ``compress``, ``min``, ``max``); what the text shows cannot
    occur (no big number, no surrogate escape, no further array or object) is skipped.
    """
    numbers = _has_big_number(body)
    strings = _SURROGATE_ESCAPE.search(text) is not None
    braces = text.count("{")
    containers = text.count("[") + braces  # at least as many as the value holds
    if braces == 1 and not numbers and not strings:
        if containers <= MAX_DEPTH or _depth_within(text, MAX_DEPTH):
            return len(root)  # the root is the only object; nothing is deep, big or a surrogate
    level: list[Any] = [root]
    depth = 1
    seen = members = 0
    while level:
        if depth > MAX_DEPTH:
            raise RemoteProtocolError(
                f"payload nests deeper than {MAX_DEPTH} levels", CloseCode.INVALID_PAYLOAD
            )
        seen += len(level)
        dicts = _only(level, _DICTS)
        members += sum(map(len, dicts))
        if strings:
            _check_strings(list(chain.from_iterable(dicts)))
        elif not numbers and seen >= containers:
            break  # nothing deeper exists, nothing here needs checking
        lists = _only(level, _ARRAYS) if len(dicts) < len(level) else []
        values = list(chain(_values_of(dicts), chain.from_iterable(lists)))
        if numbers:
            found = _only(values, _NUMBERS)
            if found:
                _check_numbers(found)
        if strings:
            _check_strings(_only(values, _STRINGS))
        level = _only(values, _CONTAINERS) if seen < containers else []
        depth += 1
    return members


def _check_unique_keys(text: str, members: int) -> None:
    """§3.4: no object repeats a key. The decoder keeps only the last of repeated keys, so the
    text then has more ``:`` separators (one per member, outside strings) than the value has
    members; counting them is C work."""
    if text.count(":") == members:
        return
    if _STRING.sub("", text).count(":") != members:
        raise RemoteProtocolError(
            "payload is not valid JSON: duplicate key in object", CloseCode.INVALID_PAYLOAD
        )


def _parse(text: str, body: bytes = b"") -> Any:
    # orjson reads an integer beyond 64 bits as a float: where such a number may be, the
    # standard library parses, so that it is refused as §3.4 says
    if _orjson is not None and not _has_big_number(body or text.encode("utf-8")):
        return _parse_fast(text)
    return _parse_stdlib(text)


def _parse_stdlib(text: str) -> Any:
    decoder = _decoder if _int_digits_capped() else _guarded_decoder
    try:  # the scanner itself, for a text that is one value and nothing else (the usual)
        value, end = decoder.scan_once(text, 0)  # type: ignore[attr-defined]
        if end == len(text):
            return value
    except Exception:  # refused, or whitespace around it: decoded again below, with its words
        pass
    try:
        return decoder.decode(text)
    except RecursionError:
        raise RemoteProtocolError("payload nests too deeply", CloseCode.INVALID_PAYLOAD) from None
    except json.JSONDecodeError as exc:
        raise RemoteProtocolError(
            f"payload is not valid JSON (at character {exc.pos})", CloseCode.INVALID_PAYLOAD
        ) from None
    except _Refused as exc:
        raise RemoteProtocolError(
            f"payload is not valid JSON: {exc}", CloseCode.INVALID_PAYLOAD
        ) from None
    except ValueError:  # int() over the interpreter's digit cap: its text is not for the peer
        raise RemoteProtocolError(
            "payload is not valid JSON: integer out of the safe range ±(2**53-1)",
            CloseCode.INVALID_PAYLOAD,
        ) from None


def _parse_fast(text: str) -> Any:
    """orjson's parser. What it refuses (rare: the peer is then closed) is parsed again by
    the standard library's, so that the refusal and its words are the same as without orjson
    (a lone surrogate escape, which orjson refuses, is then found by §3.4's checks)."""
    try:
        return _orjson.loads(text)
    except _orjson.JSONDecodeError:
        return _parse_stdlib(text)


# -- encoding ---------------------------------------------------------------------------------


def to_wire(value: Any, where: str = "value", depth: int = 2) -> Any:
    """Return ``value`` as plain JSON data (tuples become lists), or raise ``EncodeError``.

    ``where`` names the value in the error, e.g. ``"Player uid=3 attribute 'pos'"``;
    ``depth`` is the nesting level the value will have in its message (§3.4): 2 for a
    message's own field, 5 for an object's field inside a ``sync``.
    """
    kind = type(value)
    if kind is str:
        if _SURROGATE.search(value):
            raise EncodeError(f"{where}: string holds a lone surrogate, which has no UTF-8 form")
        return value
    if value is None or kind is bool:
        return value
    if kind is int:
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return value
        raise EncodeError(f"{where}: integer {value} is outside ±(2**53-1) (docs/protocol.md §3.4)")
    if kind is float:
        if math.isfinite(value):
            return value
        raise EncodeError(f"{where}: {value} is not a finite number (docs/protocol.md §3.4)")
    if depth > MAX_DEPTH:
        raise EncodeError(f"{where}: nests deeper than {MAX_DEPTH} levels (docs/protocol.md §3.4)")
    if kind is list or kind is tuple:
        out_list = []
        for i, v in enumerate(value):
            vk = type(v)
            # the common items checked here, without naming them (the name is only needed
            # in an error, which the recursive call below raises with its words)
            if (
                v is None
                or vk is bool
                or (vk is int and -MAX_SAFE_INT <= v <= MAX_SAFE_INT)
                or (vk is float and math.isfinite(v))
                or (vk is str and not _SURROGATE.search(v))
            ):
                out_list.append(v)
            else:
                out_list.append(to_wire(v, f"{where}[{i}]", depth + 1))
        return out_list
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str or _SURROGATE.search(k):
                raise EncodeError(f"{where}: dict key {k!r} is not a UTF-8 string")
            out[k] = to_wire(v, f"{where}[{k!r}]", depth + 1)
        return out
    raise EncodeError(
        f"{where}: a {kind.__name__} cannot be sent; use None, bool, int, float, str, "
        "list, tuple or dict with str keys"
    )


_encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def _no_default(value: Any) -> Any:
    raise TypeError(f"a {type(value).__name__} is not JSON")


def _make_dumps() -> typing.Callable[[Any], str]:
    """``_encoder.encode`` without its per-call set-up: the C encoder built once. Only for
    values already checked by ``to_wire`` (no cycles: the marker check is off). Falls back to
    ``_encoder.encode`` where the C encoder is missing or takes other arguments."""
    make = getattr(json.encoder, "c_make_encoder", None)
    try:
        c_encode = make(  # type: ignore[misc]
            None, _no_default, json.encoder.encode_basestring, None, ":", ",", False, False, False
        )
        if "".join(c_encode({"a": [1, 0.5, "é", None, True]}, 0)) != '{"a":[1,0.5,"é",null,true]}':
            raise ValueError("unexpected output")  # pragma: no cover
    except Exception:  # pragma: no cover - another interpreter
        return _encoder.encode
    join = "".join

    def dumps(value: Any) -> str:
        return join(c_encode(value, 0))

    return dumps


dumps = _make_dumps()


def _stdlib_dumpb(value: Any) -> bytes:
    """``dumps`` as UTF-8 bytes, with the standard library's encoder."""
    return dumps(value).encode("utf-8")


def _load_orjson() -> Any:
    """orjson when installed (extra ``reverb-net[fast]``), else None."""
    try:
        return importlib.import_module("orjson")
    except ImportError:
        return None


_orjson = _load_orjson()


def _fast_dumpb(value: Any) -> bytes:
    """orjson's encoding where it is byte for byte the standard library's; else the latter's.

    orjson writes floats below 1e-4 differently (``0.00001``, ``1e-7`` against ``1e-05``,
    ``1e-07``): an output holding ``e-`` or ``0.0000`` (in a number or, harmlessly, in a
    string) is encoded again by the standard library. Everything else -- separators,
    non-ASCII kept as UTF-8, control characters as ``\\u00XX``, ``-0.0``, ``1e+16`` -- is
    the same (tests/proto/test_fast.py compares both on random messages)."""
    try:
        out: bytes = _orjson.dumps(value)
    except TypeError:  # a value orjson refuses: the standard library's error, as before
        return _stdlib_dumpb(value)
    if b"e-" in out or b"0.0000" in out:
        return _stdlib_dumpb(value)
    return out


dumpb = _fast_dumpb if _orjson is not None else _stdlib_dumpb
FAST = _orjson is not None  # whether orjson is in use (encoding and parsing)

# dumpb_each: the values of a list, encoded in one call with this string between them. The
# separator below (its encoding between the list's commas) has a comma only at both ends:
# two occurrences overlap by that comma at most, and only where a value's encoding ends or
# starts with the string's, which an object or an array cannot.
_SPLIT = "\x00reverb:each"
_SPLIT_BYTES = b',"\\u0000reverb:each",'


def dumpb_each(values: list[Any]) -> list[bytes]:
    """``[dumpb(v) for v in values]``, for values that are JSON objects or arrays (dicts,
    lists), wire-safe: the bytes are the same, in about half the time for many small values
    (one encoder call instead of one per value; §7.2 update entries of a busy tick).

    The values are encoded as one list with a separator string between them, split on the
    separator. A value holding the separator string itself makes the count of pieces wrong
    (occurrences never overlap, and a separator outside a value sits between two values):
    then each value is encoded on its own."""
    n = len(values)
    if n < 2 or FAST:
        return [dumpb(v) for v in values]
    seq: list[Any] = [_SPLIT] * (2 * n - 1)
    seq[::2] = values
    parts = _stdlib_dumpb(seq)[1:-1].split(_SPLIT_BYTES)
    if len(parts) != n:
        return [dumpb(v) for v in values]
    return parts
