"""JSON: orjson when it is installed (the ``speedups`` extra), else the standard library.

Both back ends read the same documents the same way, and refuse the same ones with
:class:`JSONDecodeError` (and nothing else, whatever the input):

* input that is not strict UTF-8 (no UTF-16/32 guessing, no byte order mark, no surrogates),
  or is not ``bytes``/``bytearray``/``memoryview``/``str``;
* a lone surrogate escape (``"\\ud800"``), which no UTF-8 text can hold;
* ``NaN``, ``Infinity``, ``-Infinity``, and numbers that overflow a double (``1e400``);
* nesting deeper than :data:`MAX_DEPTH` arrays/objects (the stdlib would raise
  ``RecursionError``; orjson stops at 1,024, deeper than anything downstream should walk).

Integers outside the 64-bit range are read as floats by both, as orjson does.
``stdlib_loads``/``orjson_loads`` are both importable so tests hold them to one behaviour.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from itertools import accumulate
from typing import Any

__all__ = (
    "HAVE_ORJSON",
    "MAX_DEPTH",
    "JSONDecodeError",
    "dumps",
    "loads",
    "orjson_dumps",
    "orjson_loads",
    "stdlib_dumps",
    "stdlib_loads",
)

# The API's and the webhooks' documents nest about ten levels; this leaves room and stays far
# from any recursion limit of code that walks what was parsed (repr, logging, cattrs).
MAX_DEPTH = 128


class JSONDecodeError(ValueError):
    """The input is not a JSON document both back ends accept."""


# -- the shared rules -------------------------------------------------------------------------

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_PARENS = bytes.maketrans(b"[{]}", b"(())")
_STEPS = bytes.maketrans(b"()", b"\x01\xff")  # +1 and -1 as signed bytes
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1
# Beyond 20 digits an integer cannot fit in 64 bits; int() of longer text is what is costly.
_INT64_DIGITS = 20


def _as_bytes(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError:
            raise JSONDecodeError("str is not valid UTF-8: surrogates not allowed") from None
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise JSONDecodeError(
        f"JSON input must be bytes, bytearray, memoryview or str, not {type(data).__name__}"
    )


def _check_depth(data: bytes) -> None:
    # Fewer brackets than the limit cannot nest past it: the common case costs two C scans.
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return
    # Outside strings only the brackets matter. Each pass removes the innermost pairs, one
    # level at a time, in C: wide, shallow documents (the big legitimate ones) take a few.
    if b"\\" in data:  # without escaped backslashes and quotes, quotes delimit strings
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(data.split(b'"')[::2])
    brackets = outside.translate(_PARENS, _NOT_BRACKETS)
    passes = 0
    while brackets:
        reduced = brackets.replace(b"()", b"")
        removed = len(brackets) - len(reduced)
        if not removed:
            return  # no pair left: nested exactly `passes` deep
        passes += 1
        if passes > MAX_DEPTH:
            break
        if removed * 8 < len(brackets) and reduced:
            # Little left to gain per pass (many deep chains): one linear count instead.
            deepest = max(accumulate(array("b", reduced.translate(_STEPS))))
            if passes + deepest <= MAX_DEPTH:
                return
            break
        brackets = reduced
    else:
        return
    raise JSONDecodeError(f"JSON nested deeper than {MAX_DEPTH} levels")


# -- the standard library ---------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise JSONDecodeError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONDecodeError("number is infinity when parsed as double")
    return value


def _int64_or_float(text: str) -> int | float:
    # orjson's rule: what fits in 64 bits stays an int, the rest is read as a double.
    if len(text.lstrip("-")) <= _INT64_DIGITS:
        value = int(text)
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value
    return _finite_float(text)


_DECODER = json.JSONDecoder(
    parse_float=_finite_float, parse_int=_int64_or_float, parse_constant=_refuse_constant
)


def stdlib_loads(data: bytes | bytearray | memoryview | str) -> Any:
    raw = _as_bytes(data)
    _check_depth(raw)
    try:
        text = raw.decode("utf-8")  # strict: json.loads(bytes) would guess UTF-16/32
        value = _DECODER.decode(text)
        if _SURROGATE_ESCAPE.search(raw):
            # A pair of escapes combines into one character; a lone one cannot be encoded.
            json.dumps(value, ensure_ascii=False, check_circular=False).encode("utf-8")
    except JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:  # json's, UTF-8's, int()'s digit limit
        raise JSONDecodeError(str(exc)) from None
    return value


def stdlib_dumps(obj: Any) -> bytes:
    # allow_nan=False: never send NaN/Infinity, which are not JSON (a ValueError instead).
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


# -- orjson -----------------------------------------------------------------------------------

try:
    import orjson
except ImportError:  # pragma: no cover - exercised on installs without the extra
    HAVE_ORJSON = False
    loads = stdlib_loads
    dumps = stdlib_dumps

    def orjson_loads(data: bytes | bytearray | memoryview | str) -> Any:
        raise ImportError("orjson is not installed")

    def orjson_dumps(obj: Any) -> bytes:
        raise ImportError("orjson is not installed")

else:
    HAVE_ORJSON = True

    def orjson_loads(data: bytes | bytearray | memoryview | str) -> Any:
        if isinstance(data, str):
            if data.count("[") + data.count("{") > MAX_DEPTH:
                _check_depth(_as_bytes(data))
        else:
            _check_depth(_as_bytes(data))
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise JSONDecodeError(str(exc)) from None

    def orjson_dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    loads = orjson_loads
    dumps = orjson_dumps
