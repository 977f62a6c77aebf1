"""The one validator for ids, owners, ttl and state (clauses ID-*, ST-*, TTL-0).

Every reference store calls these before touching its backend, so validation is
identical everywhere and a bad argument never reaches Redis or Postgres. Each check
returns a normalised copy (plain ``dict``/``list``/``str``/``int``/``float``), which is
also how stores honour ST-3: what they keep is never the caller's object.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .contract import (
    DELETE,
    KEEP,
    Delete,
    InvalidSessionId,
    InvalidState,
    InvalidTtl,
    Keep,
)

__all__ = [
    "GENERATED_ID_PATTERN",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_DEPTH",
    "MAX_ID_LENGTH",
    "MAX_LIST_LIMIT",
    "MAX_TTL",
    "dump_json",
    "json_path",
    "validate_changes",
    "validate_cursor",
    "validate_expected_version",
    "validate_id",
    "validate_items",
    "validate_key",
    "validate_limit",
    "validate_owner",
    "validate_state",
    "validate_ttl",
]

MAX_ID_LENGTH: Final = 256
MAX_LIST_LIMIT: Final = 1000
MAX_DEPTH: Final = 128
"""Nesting deeper than this is refused (InvalidState): 64 levels must round-trip (ST-1)."""
MAX_TTL: Final = 1e10
"""The longest period the reference stores take (~317 years): far beyond any session, and an
``expires_at`` that every backend and ``datetime`` can hold (TTL-0 lets a store refuse longer ones)."""
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
GENERATED_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Control characters (C0, DEL, C1) and surrogates are what ID-2 forbids.
_BAD_ID_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_identifier(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidSessionId(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidSessionId(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidSessionId(f"{what} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}")
    bad = _BAD_ID_CHAR.search(value)
    if bad:
        raise InvalidSessionId(
            f"{what} contains {bad.group()!r} at index {bad.start()}: "
            "control characters and surrogates are not allowed"
        )
    return str.__str__(value)


def validate_id(id: object) -> str:
    """ID-2/ID-3: a client-supplied session id, returned as a plain str."""
    return _check_identifier(id, "session id")


def validate_owner(owner: object) -> str | None:
    """Owners follow the id rules (ID-2); None means no owner."""
    return None if owner is None else _check_identifier(owner, "owner")


def validate_ttl(ttl: object, *, allow_keep: bool = True) -> float | Keep | None:
    """TTL-0: None, KEEP (where allowed), or a finite number of seconds > 0, as a float."""
    if ttl is None:
        return None
    if isinstance(ttl, Keep):
        if allow_keep:
            return KEEP
        raise InvalidTtl("KEEP is not allowed here")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise InvalidTtl(f"ttl must be a number of seconds, None or KEEP, not {type(ttl).__name__}")
    try:
        seconds = float(ttl)
    except OverflowError:  # an int past a float's range: as good as infinite
        seconds = math.inf if ttl > 0 else -math.inf
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidTtl(f"ttl must be finite and > 0, got {ttl!r}")
    if seconds > MAX_TTL:
        raise InvalidTtl(f"ttl {ttl!r} s is longer than the {MAX_TTL:g} s (~317 years) an expiry can hold here; "
                         "use ttl=None for a session that never expires")
    return seconds


def json_path(parent: str, key: str | int) -> str:
    """A JSONPath-like pointer to where a bad value sits: ``$.a["b c"][3]``."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if _IDENTIFIER.fullmatch(key):
        return f"{parent}.{key}"
    return f"{parent}[{json.dumps(key, ensure_ascii=False)}]"


def _check_str(value: str, path: str, what: str) -> str:
    if _SURROGATE.search(value):
        raise InvalidState(f"{what} contains a lone surrogate, which JSON text cannot carry", path)
    return str.__str__(value)


def _copy_value(value: Any, path: str, depth: int) -> Any:
    """Validate one JSON value and return a plain copy (the heart of ST-1/ST-2)."""
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return _check_str(value, path, "string")
    if isinstance(value, bool):  # a bool subclass that is not True/False itself
        return bool(value)
    if isinstance(value, int):
        number = int(value)
        if not INT64_MIN <= number <= INT64_MAX:
            raise InvalidState(f"integer {number} is outside the signed 64-bit range", path)
        return number
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidState(f"{value!r} is not a JSON number", path)
        return float(value)
    if depth >= MAX_DEPTH:
        raise InvalidState(f"nesting deeper than {MAX_DEPTH} levels", path)
    if isinstance(value, dict):
        return _copy_object(value, path, depth + 1)
    if isinstance(value, list):
        return [_copy_value(item, json_path(path, i), depth + 1) for i, item in enumerate(value)]
    raise InvalidState(
        f"{type(value).__name__} is not a JSON value (use dict, list, str, int, float, bool or None)", path
    )


def _copy_object(mapping: Mapping[Any, Any], path: str, depth: int) -> dict[str, Any]:
    copy: dict[str, Any] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise InvalidState(f"key {key!r} is a {type(key).__name__}; JSON object keys are str", path)
        where = json_path(path, key)
        copy[_check_str(key, where, "key")] = _copy_value(value, where, depth)
    return copy


def validate_state(state: object) -> dict[str, Any]:
    """ST-1/ST-1a/ST-2: a JSON object (any Mapping at the top), returned as a deep plain copy."""
    if not isinstance(state, Mapping):
        raise InvalidState(f"state must be a mapping (a JSON object), not {type(state).__name__}")
    return _copy_object(state, "$", 1)


def validate_changes(changes: object) -> dict[str, Any]:
    """MG-1 input: like state, but a top-level value may be DELETE (kept as the sentinel)."""
    if not isinstance(changes, Mapping):
        raise InvalidState(f"changes must be a mapping, not {type(changes).__name__}")
    copy: dict[str, Any] = {}
    for key, value in changes.items():
        if not isinstance(key, str):
            raise InvalidState(f"key {key!r} is a {type(key).__name__}; JSON object keys are str", "$")
        where = json_path("$", key)
        key = _check_str(key, where, "key")
        copy[key] = DELETE if isinstance(value, Delete) else _copy_value(value, where, 1)
    return copy


def validate_key(key: object) -> str:
    """The top-level state key ``append`` extends (MG-5)."""
    if not isinstance(key, str):
        raise InvalidState(f"append key must be a str, not {type(key).__name__}")
    return _check_str(key, json_path("$", key), "key")


def validate_items(key: str, items: object) -> list[Any]:
    """MG-5 input: a list or tuple of JSON values to append (a str is not a sequence of items)."""
    if isinstance(items, str | bytes | bytearray | Mapping) or not isinstance(items, Sequence):
        raise InvalidState(f"items must be a list of JSON values, not {type(items).__name__}")
    base = json_path("$", key)
    return [_copy_value(item, f"{base}[+{i}]", 2) for i, item in enumerate(items)]


def validate_expected_version(expected_version: object) -> int | None:
    """None (no check) or an int; a bool or anything else is a caller bug, not a conflict."""
    if expected_version is None:
        return None
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise TypeError(f"expected_version must be an int or None, not {type(expected_version).__name__}")
    return int(expected_version)


def validate_limit(limit: object) -> int:
    """list(limit=...): an int in 1..MAX_LIST_LIMIT."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be an int from 1 to {MAX_LIST_LIMIT}, got {limit!r}")
    return int(limit)


def validate_cursor(cursor: object) -> str | None:
    """list(cursor=...): None or the opaque str a previous page returned."""
    if cursor is None or isinstance(cursor, str):
        return cursor
    raise ValueError(f"cursor must be a str from a previous page or None, not {type(cursor).__name__}")


def dump_json(value: Any) -> str:
    """Compact JSON text for an already validated value (stores that keep JSON text use this)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
