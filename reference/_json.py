"""The JSON text a store writes and reads back: orjson when it is installed, else ``json``.

Encoding: ``dumps`` is ``validation.dump_json`` at 1/10 of its cost (a 2 KB session: 2 us with
orjson, 25 us with ``json``; per top-level key the gap is wider still). Its text may differ
in spelling (orjson writes ``0.00001`` where ``json`` writes ``1e-05``) but never in value:
both write the shortest text that parses back to the same float, every int in int64 exactly,
and every string escaped as JSON requires (no raw control characters, so never a raw newline).
It is only given validated values (``validation.validate_*``: plain types, int64, finite
floats, no lone surrogates, nesting within 128 levels), which orjson encodes without error.

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

from sessionspec.conformance.contract import Delete
from sessionspec.conformance.validation import (
    MAX_DEPTH,
    dump_json,
    validate_changes,
    validate_items,
    validate_state,
)

__all__ = ["FAST", "dumps", "loads", "validated_items", "validated_sets", "validated_state"]

# digits -> "0", everything else -> " ": then a run of 19 digits is a substring search
# (3 us on a 2 KB session; a regex scan for \d{19} took 58 us)
_DIGITS: Final = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN: Final = b"0" * 19

try:
    import orjson
except ImportError:  # pragma: no cover - orjson ships with the redis and postgres extras
    orjson = None  # type: ignore[assignment]

FAST: Final = orjson is not None
"""Whether orjson is doing the parsing and encoding (reported by the benchmarks)."""


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON text of a validated value (same value as ``validation.dump_json``)."""
    if orjson is not None:
        return orjson.dumps(value)
    return dump_json(value).encode("utf-8")  # pragma: no cover - orjson ships with the extras


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


# ---------------------------------------------------------------- validating whole states fast
_PLAIN_ONLY: Final = (0 if orjson is None else
                      orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
                      | orjson.OPT_PASSTHROUGH_DATETIME)
_BRACKETS_SURELY_SHALLOW: Final = 100
"""Fewer '[' and '{' than this in the text (strings' included) cannot nest past validation.MAX_DEPTH."""


def _depth(value: Any) -> int:
    """Nesting depth of a plain JSON value (containers only are walked; a scalar is 0)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
        children = node.values() if type(node) is dict else node
        stack.extend((child, depth + 1) for child in children if type(child) is dict or type(child) is list)
    return deepest


def _cheap_copy(value: Any, depth_limit: int) -> tuple[Any, bytes] | None:
    """A plain deep copy of ``value`` and its JSON text, when orjson can vouch for both; else None.

    orjson writes the text (plain types only: subclasses, dataclasses and datetimes make it raise)
    and reads it back as the copy; the copy must equal the input, which rules out whatever orjson
    turned into JSON that the validator would refuse (NaN and infinities become null, tuples lists,
    enums and UUIDs their values). An int past 18 digits (it might leave int64), nesting that
    might reach ``depth_limit``, or any error: None, and the caller asks the validator itself.
    """
    try:
        text = orjson.dumps(value, option=_PLAIN_ONLY)
    except (TypeError, orjson.JSONEncodeError):
        return None
    if _LONG_RUN in text.translate(_DIGITS):
        return None
    copy = orjson.loads(text)
    if copy == value and (text.count(b"[") + text.count(b"{") < _BRACKETS_SURELY_SHALLOW
                          or _depth(copy) < depth_limit):
        return copy, text
    return None


def validated_state(state: object) -> tuple[dict[str, Any], bytes | None]:
    """``validation.validate_state(state)`` and, when it came cheap, the state's JSON text.

    ``validate_state`` walks every value in Python (87 us for a 2 KB session: more than a raw
    SET of it costs in all); ``_cheap_copy`` does the same in orjson. Anything it cannot vouch
    for goes to ``validate_state`` itself, which gives the same copy or the typed error.
    """
    if orjson is not None and type(state) is dict and (cheap := _cheap_copy(state, MAX_DEPTH)) is not None:
        return cheap
    return validate_state(state), None


def validated_sets(changes: object) -> tuple[dict[str, Any], bytes | None]:
    """``validation.validate_changes(changes)`` and, for changes that delete nothing and came
    cheap, their JSON text (apply's common case: set a few keys)."""
    if (orjson is not None and type(changes) is dict and not any(type(v) is Delete for v in changes.values())
            and (cheap := _cheap_copy(changes, MAX_DEPTH)) is not None):
        return cheap
    return validate_changes(changes), None


def validated_items(key: str, items: object) -> tuple[list[Any], bytes | None]:
    """``validation.validate_items(key, items)`` and, when it came cheap, the items' JSON text.

    Items nest one level below a state's values (``{key: items}``), hence the depth limit."""
    if orjson is not None and type(items) is list and (cheap := _cheap_copy(items, MAX_DEPTH - 1)) is not None:
        return cheap
    return validate_items(key, items), None
