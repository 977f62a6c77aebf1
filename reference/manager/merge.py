"""Merging parallel branches by their changes relative to the fork point (spec MG-3), usable on its own.

>>> fork = {"plan": "A", "notes": []}
>>> merge(fork, [fork | {"plan": "B"}, fork | {"notes": ["n1"]}]).state
{'plan': 'B', 'notes': ['n1']}

A branch that did not touch a key never overwrites another branch's change to it (the
classic overlay ``{**fork, **b1, **b2}`` would put ``plan`` back to "A"). Branches are taken
in the order given, never completion order; top-level keys are the unit of change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from sessionspec.conformance.contract import DELETE, Delete
from sessionspec.reference.memory import clone_json

from .errors import MergeConflict

__all__ = ["STRATEGIES", "MergeResult", "Strategy", "apply_changes", "changes", "merge"]

Strategy = Literal["last_writer_wins", "first_writer_wins", "raise"]
STRATEGIES: Final = ("last_writer_wins", "first_writer_wins", "raise")
_ABSENT: Final = object()


def changes(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level keys ``new`` sets differently from ``base``, and removed keys mapped to ``DELETE``."""
    delta: dict[str, Any] = {k: v for k, v in new.items() if base.get(k, _ABSENT) != v or k not in base}
    delta.update({k: DELETE for k in base if k not in new})
    return delta


def apply_changes(state: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """A new state: ``state`` with ``delta`` applied (DELETE removes), values deep-copied."""
    out: dict[str, Any] = clone_json(dict(state))
    for key, value in delta.items():
        if isinstance(value, Delete):
            out.pop(key, None)
        else:
            out[key] = clone_json(value)
    return out


@dataclass(frozen=True, slots=True)
class MergeResult:
    """The merged state, the combined changes relative to the fork, and the contested keys."""

    state: dict[str, Any]
    changes: dict[str, Any]
    conflicts: dict[str, list[int]] = field(default_factory=dict)
    """Key -> indexes of the branches that changed it to different values, in branch order."""


def merge(base: Mapping[str, Any], branches: Sequence[Mapping[str, Any]],
          strategy: Strategy = "last_writer_wins", *, onto: Mapping[str, Any] | None = None) -> MergeResult:
    """Merge each branch's changes relative to ``base``, in branch order, onto ``onto`` (default ``base``).

    ``last_writer_wins`` takes the last branch's value for a contested key, ``first_writer_wins``
    the first; ``raise`` raises MergeConflict naming the keys. Branches that made the same change
    do not conflict.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown merge strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    writers: dict[str, list[tuple[int, Any]]] = {}
    for index, branch in enumerate(branches):
        for key, value in changes(base, branch).items():
            writers.setdefault(key, []).append((index, value))
    combined: dict[str, Any] = {}
    conflicts: dict[str, list[int]] = {}
    for key, writes in writers.items():
        distinct: list[Any] = []
        for _, value in writes:
            if not any(value == seen for seen in distinct):
                distinct.append(value)
        if len(distinct) > 1:
            conflicts[key] = [index for index, _ in writes]
        combined[key] = writes[0][1] if strategy == "first_writer_wins" else writes[-1][1]
    if conflicts and strategy == "raise":
        raise MergeConflict(list(conflicts))
    return MergeResult(apply_changes(base if onto is None else onto, combined), combined, conflicts)
