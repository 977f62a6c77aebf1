"""The shared validator: what it accepts, what it refuses, and that it copies."""

from __future__ import annotations

import math
from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import pytest

from sessionspec.conformance import DELETE, KEEP, InvalidSessionId, InvalidState, InvalidTtl
from sessionspec.conformance.validation import (
    INT64_MAX,
    INT64_MIN,
    MAX_DEPTH,
    MAX_TTL,
    validate_changes,
    validate_cursor,
    validate_expected_version,
    validate_id,
    validate_items,
    validate_limit,
    validate_owner,
    validate_state,
    validate_ttl,
)


@pytest.mark.parametrize("good", ["a", "*", "a:b", "{t}", "' OR '1'='1", "../x", "세션", "🙂", "x" * 256])
def test_literal_ids_are_accepted_unchanged(good: str) -> None:
    assert validate_id(good) == good
    assert validate_owner(good) == good


@pytest.mark.parametrize("bad", ["", "x" * 257, "a\x00b", "\n", "\x7f", "\x85", "\ud800", b"id", 7, None])
def test_bad_ids_raise_invalid_session_id_which_is_a_value_error(bad: Any) -> None:
    with pytest.raises(InvalidSessionId) as caught:
        validate_id(bad)
    assert isinstance(caught.value, ValueError)


def test_owner_none_means_no_owner() -> None:
    assert validate_owner(None) is None


@pytest.mark.parametrize("good, expected", [(1, 1.0), (0.25, 0.25), (None, None), (1e10, 1e10)])
def test_ttl_numbers_become_floats(good: Any, expected: float | None) -> None:
    assert validate_ttl(good) == expected


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, -math.inf, "5", True, []])
def test_bad_ttl_raises_invalid_ttl(bad: Any) -> None:
    with pytest.raises(InvalidTtl):
        validate_ttl(bad)


@pytest.mark.parametrize("huge", [1e10 + 1, 1e12, 3.4e38, 1.7976931348623157e308, 10**12])
def test_a_ttl_beyond_the_cap_is_refused_with_the_cap_named(huge: Any) -> None:
    """TTL-0: past MAX_TTL an expiry no datetime holds; refused before the store writes, never after."""
    with pytest.raises(InvalidTtl, match="1e\\+10 s"):
        validate_ttl(huge)
    assert MAX_TTL == 1e10


def test_an_int_past_a_floats_range_is_an_invalid_ttl_not_an_overflow() -> None:
    with pytest.raises(InvalidTtl):
        validate_ttl(10**400)
    with pytest.raises(InvalidTtl):
        validate_ttl(-(10**400))


def test_keep_is_refused_where_not_allowed() -> None:
    assert validate_ttl(KEEP) is KEEP
    with pytest.raises(InvalidTtl):
        validate_ttl(KEEP, allow_keep=False)


def test_state_is_deep_copied_to_plain_types() -> None:
    inner = {"b": [1, {"c": "d"}]}
    state = OrderedDict(a=inner)
    copy = validate_state(state)
    assert copy == {"a": {"b": [1, {"c": "d"}]}} and type(copy) is dict
    inner["b"].append(2)  # type: ignore[attr-defined]
    assert copy["a"]["b"] == [1, {"c": "d"}]


def test_any_mapping_is_accepted_at_the_top() -> None:
    assert validate_state(MappingProxyType({"k": 1})) == {"k": 1}


def test_types_survive_the_copy() -> None:
    copy = validate_state({"f": 1.0, "t": True, "i": 0, "n": None, "s": "\x00"})
    assert [type(copy[k]) for k in "ftins"] == [float, bool, int, type(None), str]


@pytest.mark.parametrize(
    "state, path",
    [
        ({"a": math.nan}, "$.a"),
        ({"a": [1, math.inf]}, "$.a[1]"),
        ({"a": {1: "x"}}, "$.a"),
        ({"a": (1, 2)}, "$.a"),
        ({"a": {"b c": {1, 2}}}, '$.a["b c"]'),
        ({"a": b"x"}, "$.a"),
        ({"a": object()}, "$.a"),
        ({"a": "\udc00"}, "$.a"),
        ({"\ud800": 1}, '$["\ud800"]'),
        ({"a": INT64_MAX + 1}, "$.a"),
        ({"a": INT64_MIN - 1}, "$.a"),
    ],
)
def test_non_json_state_names_the_offending_path(state: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidState) as caught:
        validate_state(state)
    assert caught.value.path == path


def test_nesting_limit_is_above_what_st1_requires() -> None:
    deep: Any = "leaf"
    for _ in range(64):
        deep = {"d": deep}
    assert validate_state(deep)
    for _ in range(MAX_DEPTH):
        deep = [deep]
    with pytest.raises(InvalidState):
        validate_state({"x": deep})


def test_changes_keep_delete_only_at_the_top() -> None:
    assert validate_changes({"a": DELETE, "b": 1}) == {"a": DELETE, "b": 1}
    with pytest.raises(InvalidState):
        validate_changes({"a": {"b": DELETE}})


def test_items_accept_sequences_but_not_strings() -> None:
    assert validate_items("k", (1, {"a": 2})) == [1, {"a": 2}]
    with pytest.raises(InvalidState):
        validate_items("k", "abc")
    with pytest.raises(InvalidState) as caught:
        validate_items("k", [1, math.nan])
    assert caught.value.path.startswith("$.k")


@pytest.mark.parametrize("bad", [True, 1.0, "3"])
def test_expected_version_must_be_an_int(bad: Any) -> None:
    with pytest.raises(TypeError):
        validate_expected_version(bad)


@pytest.mark.parametrize("bad", [0, 1001, True, "5", 2.0])
def test_limit_range(bad: Any) -> None:
    with pytest.raises(ValueError):
        validate_limit(bad)


def test_cursor_is_str_or_none() -> None:
    assert validate_cursor(None) is None and validate_cursor("abc") == "abc"
    with pytest.raises(ValueError):
        validate_cursor(5)
