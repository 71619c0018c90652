"""Reading a request body as JSON the way a strict API server does, so that every malformed
body is an error *answer* (400) and never a crash of the fake (500).

The standard library is used whether or not orjson is installed, so the fake's verdict on a
body does not depend on the extras. On top of what :func:`json.loads` refuses, this refuses
what RFC 8259 leaves to the implementation and what orjson (the client's parser with the
``speedups`` extra) refuses: bytes that are not UTF-8 (a UTF-8 BOM included), ``NaN`` and
``Infinity``, numbers a 64-bit API cannot hold (``1e400``, a 20-digit integer), lone UTF-16
surrogates (``"\\ud800"``), and nesting deeper than :data:`MAX_DEPTH` (the deepest real body
is 6 levels; the stdlib parser would raise ``RecursionError`` at about 1,000).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

__all__ = (
    "MAX_DEPTH",
    "BadJSON",
    "parse",
)

MAX_DEPTH = 64
_INT64 = 2**63
_INT64_DIGITS = len(str(_INT64))
_SURROGATE = re.compile("[\ud800-\udfff]")


class BadJSON(ValueError):
    """A body that is not acceptable JSON; the message says why, for the 400's details."""


def parse(body: bytes) -> Any:
    """The JSON value of ``body``, or :class:`BadJSON`."""
    try:
        text = body.decode("utf-8")  # strict: no BOM stripping, no guessing at UTF-16
    except UnicodeDecodeError:
        raise BadJSON("The request body is not valid JSON: it is not UTF-8") from None
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant, parse_int=_int, parse_float=_float
        )
    except RecursionError:
        # The C scanner's own depth guard; anything under it is measured below.
        raise BadJSON(_too_deep()) from None
    except BadJSON:
        raise
    except ValueError:  # JSONDecodeError, and int() past its 4,300-digit limit
        raise BadJSON("The request body is not valid JSON") from None
    _check_tree(value)
    return value


def _refuse_constant(name: str) -> NoReturn:
    raise BadJSON(f"The request body is not valid JSON: {name} is not a JSON number")


def _int(text: str) -> int:
    # The length first: int() of a long literal costs time, and past 4,300 digits it raises.
    number = int(text) if len(text.lstrip("-")) <= _INT64_DIGITS else _INT64
    if not -_INT64 <= number < _INT64:
        raise BadJSON("The request body is not valid JSON: an integer out of 64-bit range")
    return number


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise BadJSON(f"The request body is not valid JSON: {text[:20]} is out of range")
    return number


def _too_deep() -> str:
    return f"The request body is not valid JSON: nested deeper than {MAX_DEPTH} levels"


def _check_tree(value: Any) -> None:
    """Depth and lone surrogates, walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise BadJSON("The request body is not valid JSON: a lone UTF-16 surrogate")
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise BadJSON(_too_deep())
        if isinstance(item, dict):
            stack.extend((key, depth) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        else:
            stack.extend((child, depth + 1) for child in item)
