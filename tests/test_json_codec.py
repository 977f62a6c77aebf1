"""The stores' JSON parser (orjson when installed) gives exactly what ``json.loads`` gives.

A faster parser must never change a value's type: the suite's ST-1 would catch it on the
values it tries, and these tests cover the rest (any JSON a store could read back, including
texts another writer stored).
"""

from __future__ import annotations

import datetime
import enum
import json
import math
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionspec.conformance.contract import DELETE, InvalidState
from sessionspec.conformance.suite._values import ROUND_TRIPS
from sessionspec.conformance.validation import dump_json, validate_changes, validate_items, validate_state
from sessionspec.reference import _json


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1 != 1.0 here, -0.0 != 0.0, nan == nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return bool(a == b)


def _check(text: str) -> None:
    want = json.loads(text)
    assert _same(_json.loads(text), want), text
    assert _same(_json.loads(text.encode("utf-8", "surrogatepass")), want), text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_any_json_text_parses_as_json_loads_parses_it(value: Any) -> None:
    _check(json.dumps(value))
    _check(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


@pytest.mark.parametrize("case", ROUND_TRIPS, ids=lambda c: c.name)
def test_the_suites_round_trip_values_parse_unchanged(case: Any) -> None:
    _check(dump_json(case.state))


@pytest.mark.parametrize("text", [
    "18446744073709551616",  # beyond 64 bits: orjson alone would return a float
    "[9223372036854775808, -9223372036854775809]",  # beyond int64, within uint64
    "-0", "-0.0", "1e400", "[1E5]", "0.1234567890123456789",
    '"\\ud800"', '"\\u0000"', '{"a": 1, "a": 2}', '{"k": "\\ue000\\u0000"}',
])
def test_texts_orjson_reads_differently_or_refuses_go_to_json(text: str) -> None:
    _check(text)


# ---------------------------------------------------------------- the encoder
valid_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text().filter(lambda s: not _has_lone_surrogate(s)),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text().filter(lambda s: not _has_lone_surrogate(s)),
                                                                inner, max_size=5),
    max_leaves=30,
)


def _has_lone_surrogate(s: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)


def _check_dumps(value: Any) -> None:
    text = _json.dumps(value)
    assert b"\n" not in text and b"\r" not in text, text  # the Redis store separates texts with newlines
    assert _same(json.loads(text), json.loads(dump_json(value))), (text, dump_json(value))


@settings(max_examples=400, deadline=None)
@given(valid_values)
def test_dumps_writes_the_value_dump_json_writes(value: Any) -> None:
    _check_dumps(value)


@pytest.mark.parametrize("case", ROUND_TRIPS, ids=lambda c: c.name)
def test_dumps_round_trips_the_suites_values(case: Any) -> None:
    _check_dumps(case.state)


@pytest.mark.parametrize("value", [1e16, 1e-05, -0.0, 5e-324, 1.7976931348623157e308, 2**63 - 1, -(2**63),
                                   "a\x00\n\r\u2028\x7f", "é🙂", "\ue000", {"": [[]], "k": {}}])
def test_dumps_keeps_awkward_values(value: Any) -> None:
    _check_dumps(value)


# ---------------------------------------------------------------- validated_state's fast path
class _Str(str):
    pass


class _Int(int):
    pass


class _Color(enum.Enum):
    RED = 1


class _Name(enum.StrEnum):
    ADA = "ada"


awkward_leaves = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63 - 3, max_value=2**64 + 3)
    | st.floats() | st.text() | st.sampled_from([(1, 2), {1, 2}, b"x", _Str("s"), _Int(3), _Color.RED, _Name.ADA,
                                                 uuid.UUID(int=7), datetime.date(2026, 1, 1), Decimal("1.5")])
)
awkward_states = st.dictionaries(
    st.text() | st.sampled_from([1, None, _Str("k")]),
    st.recursive(awkward_leaves, lambda inner: st.lists(inner, max_size=4)
                 | st.dictionaries(st.text() | st.just(2), inner, max_size=4), max_leaves=20),
    max_size=6,
)


def _nested(depth: int) -> dict[str, Any]:
    """A state whose innermost container sits `depth` levels below the top object."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return {"a": value}


def _agree(state: Any) -> None:
    _agree_with(validate_state, _json.validated_state, state)
    # the same value as apply's changes and as append's items must be judged the same way too
    _agree_with(validate_changes, _json.validated_sets, state)
    items = list(state.values()) if isinstance(state, dict) else state
    _agree_with(lambda v: validate_items("k", v), lambda v: _json.validated_items("k", v), items)


def _agree_with(validate: Any, validated: Any, value: Any) -> None:
    try:
        want = validate(value)
    except InvalidState as exc:
        with pytest.raises(InvalidState) as got:
            validated(value)
        assert (str(got.value), got.value.path) == (str(exc), exc.path)
        return
    copy, text = validated(value)
    assert _same(copy, want), (copy, want)
    assert copy is not value
    if text is not None:
        assert _same(json.loads(text), want)


@settings(max_examples=500, deadline=None)
@given(awkward_states)
def test_validated_state_accepts_and_refuses_exactly_what_validate_state_does(state: Any) -> None:
    _agree(state)


@pytest.mark.parametrize("depth", [1, 99, 100, 127, 128, 129, 200, 300])
def test_validated_state_keeps_the_nesting_limit(depth: int) -> None:
    _agree(_nested(depth))


@pytest.mark.parametrize("state", [
    {"n": float("nan")}, {"i": float("inf")}, {"t": (1,)}, {"big": 2**63}, {"small": -(2**63) - 1},
    {"edge": [2**63 - 1, -(2**63)]}, {"s": "\ud800"}, {"\udfff": 1}, {1: 2}, {"m": {"k": {2: 3}}},
    {"e": _Color.RED}, {"e": _Name.ADA}, {"sub": _Str("x"), "i": _Int(4)}, {_Str("k"): 1}, {"z": -0.0},
    {"u": uuid.UUID(int=1)}, {"d": datetime.datetime(2026, 1, 1)}, {"ok": [1, {"a": None}], "f": 0.1},
])
def test_validated_state_on_values_orjson_would_write_anyway(state: Any) -> None:
    _agree(state)


def test_validated_sets_and_items_keep_delete_and_the_item_nesting_limit() -> None:
    assert _json.validated_sets({"a": 1, "b": DELETE}) == ({"a": 1, "b": DELETE}, None)
    for depth in (126, 127, 128):  # an item sits one level below a state's value
        _agree_with(lambda v: validate_items("k", v), lambda v: _json.validated_items("k", v), _nested(depth)["a"])
    copy, text = _json.validated_items("k", [{"role": "user", "text": "hi"}, [1, 2.5]])
    assert text == b'[{"role":"user","text":"hi"},[1,2.5]]' and copy == [{"role": "user", "text": "hi"}, [1, 2.5]]


def test_validated_state_takes_the_fast_path_on_a_plain_state() -> None:
    state = {"user": "ada", "n": 3, "f": 0.5, "flags": {"a": True}, "pages": ["/a", "/b"], "none": None}
    copy, text = _json.validated_state(state)
    assert text is not None and copy == state and copy is not state and copy["flags"] is not state["flags"]
