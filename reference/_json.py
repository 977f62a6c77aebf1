"""Parsing the JSON text a store reads back: orjson when it is installed, else ``json``.

Decoding the state is the largest client-side cost of ``get`` and ``apply`` (a 2 KB session:
16 us with ``json``, 7 us with orjson, measured). The two parsers agree on everything a
reference store writes, with one exception guarded here: orjson reads an integer beyond 64 bits
as a float (``18446744073709551616`` -> ``1.8446744073709552e+19``), a silent change of type.
Our stores never write one (ST-1 keeps ints in int64), but another writer could have; any text
with a run of 19 or more digits therefore goes to ``json``, which keeps every int an int. Texts
orjson refuses (lone surrogates, out-of-range floats) also go to ``json``, so the result never
depends on which parser is installed.
"""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = ["FAST", "loads"]

# digits -> "0", everything else -> " ": then a run of 19 digits is a substring search
# (3 us on a 2 KB session; a regex scan for \d{19} took 58 us)
_DIGITS: Final = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN: Final = b"0" * 19

try:
    import orjson
except ImportError:  # pragma: no cover - orjson ships with the redis and postgres extras
    orjson = None  # type: ignore[assignment]

FAST: Final = orjson is not None
"""Whether orjson is doing the parsing (reported by the benchmarks)."""


def loads(text: str | bytes) -> Any:
    """The value of a JSON text, exactly as ``json.loads`` gives it."""
    if orjson is not None:
        data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
        if _LONG_RUN not in data.translate(_DIGITS):
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                pass
    return json.loads(text)
