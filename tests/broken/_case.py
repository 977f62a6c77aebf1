"""The registry of broken stores: each one bug, and the clause(s) whose tests must catch it."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from sessionspec.conformance.clauses import get_clause
from sessionspec.conformance.targets import Target
from sessionspec.reference.memory import MemoryStore

__all__ = ["REGISTRY", "BrokenCase", "backend_marks", "broken"]

MODULE = "tests.broken"


@dataclass(frozen=True, slots=True)
class BrokenCase:
    """One deliberately broken store and the clauses that must fail on it."""

    name: str
    store: type[MemoryStore]
    clauses: tuple[str, ...]
    description: str

    @property
    def clause(self) -> str:
        """The main clause that must catch the bug (the first one listed)."""
        return self.clauses[0]

    def factory(self, namespace: str) -> MemoryStore:
        """factory(namespace) as targets expect; a MemoryStore keeps nothing across instances."""
        return self.store()

    def target(self) -> Target:
        """The store as the suite sees it; also reachable as ``tests.broken:<name>``."""
        return Target(spec=f"{MODULE}:{self.name}", description=f"broken store {self.name}: {self.description}",
                      factory=self.factory)


REGISTRY: dict[str, BrokenCase] = {}
S = TypeVar("S", bound=type[MemoryStore])


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def broken(*clauses: str) -> Callable[[S], S]:
    """Register a broken store class under its snake_case name; its docstring's first line is the bug."""
    for cid in clauses:
        get_clause(cid)  # a typo fails at import, never silently un-gates a case
    if not clauses:
        raise ValueError("a broken store must name the clause(s) that catch it")

    def register(cls: S) -> S:
        name = _snake(cls.__name__)
        if name in REGISTRY:
            raise ValueError(f"two broken stores are named {name!r}")
        doc = (inspect.getdoc(cls) or "").split("\n", 1)[0]
        if not doc:
            raise ValueError(f"{cls.__name__} needs a docstring naming its bug")
        REGISTRY[name] = BrokenCase(name, cls, tuple(clauses), doc)
        return cls

    return register


def backend_marks(kind: str) -> list[pytest.MarkDecorator]:
    """The markers tox selects a backend's tests by (tox.ini: -m redis / postgres / cluster)."""
    return {
        "redis": [pytest.mark.redis],
        "postgres": [pytest.mark.postgres],
        "redis-cluster": [pytest.mark.redis, pytest.mark.cluster],
    }.get(kind, [])
