"""Deliberately broken stores: each a MemoryStore subclass with ONE bug, and the clause that must catch it.

The project's own tests run the suite on every one of them and require the named
clauses to fail (and to pass on the correct MemoryStore): a suite that cannot catch
these bugs proves nothing. Each is also a target for the CLI and pytest plugin::

    sessionspec check tests.broken:upsert_on_save
    pytest --sessionspec-store tests.broken:apply_read_modify_write --sessionspec-clause CC-3
"""

from __future__ import annotations

from typing import Any

from . import concurrency, identity, lifecycle, listing, merge, races, state, ttl, versions
from ._case import REGISTRY, BrokenCase, backend_marks, broken
from ._race import Gap, Rendezvous, gap, rendezvous

__all__ = ["BROKEN", "BrokenCase", "Gap", "Rendezvous", "backend_marks", "broken", "gap", "rendezvous"]

_MODULES = (concurrency, identity, lifecycle, listing, merge, races, state, ttl, versions)

BROKEN: dict[str, BrokenCase] = dict(sorted(REGISTRY.items()))
"""Every broken store by name (snake_case of its class)."""


def __getattr__(name: str) -> Any:
    """``tests.broken:<name>`` as a target: the case's factory(namespace)."""
    case = BROKEN.get(name)
    if case is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def factory(namespace: str) -> Any:
        return case.factory(namespace)

    factory.__doc__ = f"broken store: {case.description}"  # the CLI shows the first line beside the target
    return factory
