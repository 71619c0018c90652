"""JSON: orjson when it is installed (the ``speedups`` extra), else the standard library."""

from __future__ import annotations

import json
from typing import Any

__all__ = ("JSONDecodeError", "dumps", "loads")

try:
    import orjson
except ImportError:  # pragma: no cover - exercised on installs without the extra
    JSONDecodeError: tuple[type[Exception], ...] = (ValueError,)

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()

    def loads(data: bytes | str) -> Any:
        return json.loads(data)

else:
    # orjson raises its own JSONDecodeError (a ValueError); non-UTF-8 input is a ValueError too.
    JSONDecodeError = (ValueError,)

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)
