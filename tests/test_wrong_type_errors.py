"""Wrong-type arguments may raise TypeError or ValueError: both are clear (issue 12, item 12)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from sessionspec.conformance.contract import KEEP
from sessionspec.conformance.runner import run_suite
from sessionspec.conformance.targets import Target
from sessionspec.reference.memory import MemoryStore


def _typed(name: str) -> Callable[..., Any]:
    method = getattr(MemoryStore, name)

    @functools.wraps(method)
    async def wrapper(self: MemoryStore, *args: Any, **kwargs: Any) -> Any:
        ids = [kwargs.get("id"), kwargs.get("owner")] + ([] if name == "create" or not args else [args[0]])
        if any(v is not None and not isinstance(v, str) for v in ids):
            raise TypeError(f"{name}(): ids and owners are str")
        ttl = kwargs.get("ttl", KEEP)
        if ttl is not KEEP and ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)):
            raise TypeError(f"{name}(): ttl must be a number, None or KEEP")
        return await method(self, *args, **kwargs)

    return wrapper


class TypeErrorForWrongTypes(MemoryStore):
    """A conforming store that says TypeError (not InvalidSessionId/InvalidTtl) for arguments of the wrong type."""


for _name in ("create", "get", "save", "apply", "append", "touch", "delete", "list", "count"):
    setattr(TypeErrorForWrongTypes, _name, _typed(_name))


def test_type_errors_for_wrong_types_pass_id_3_and_ttl_0() -> None:
    target = Target(spec="typed", description="MemoryStore raising TypeError for wrong types",
                    factory=lambda namespace: TypeErrorForWrongTypes())
    result = run_suite(target, clauses=["ID-3", "TTL-0"], keyword="not agree_with_the_model")
    verdicts = {c.clause.id: (c.verdict, c.reason) for c in result.clauses if c.clause.id in ("ID-3", "TTL-0")}
    assert verdicts["ID-3"][0] == verdicts["TTL-0"][0] == "pass", verdicts


class NoApply(MemoryStore):
    """apply() is not there (a store that thought it optional)."""

    async def apply(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("apply")


def test_a_missing_operation_is_one_verdict_naming_it_not_a_cascade() -> None:
    """apply/append are core (spec §5): a store without apply gets one run error naming it, no clause failures."""
    target = Target(spec="no-apply", description="MemoryStore without apply", factory=lambda namespace: NoApply())
    result = run_suite(target, clauses=["ID-3", "LC-3", "TTL-2", "LC-1", "VER-1"])
    assert [e for e in result.errors if "apply()" in e] == result.errors and len(result.errors) == 1, result.errors
    assert result.failures == [], [(c.clause.id, c.reason) for c in result.failures]
    assert result.exit_code == 1
