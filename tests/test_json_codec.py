"""The stores' JSON parser (orjson when installed) gives exactly what ``json.loads`` gives.

A faster parser must never change a value's type: the suite's ST-1 would catch it on the
values it tries, and these tests cover the rest (any JSON a store could read back, including
texts another writer stored).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionspec.conformance.suite._values import ROUND_TRIPS
from sessionspec.conformance.validation import dump_json
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
