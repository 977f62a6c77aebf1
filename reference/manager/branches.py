"""Parallel branches (spec MG-3, MG-4): fork deep copies, merge their changes in branch order, commit with CAS.

    async with mgr.branches(sid, 3) as branches:
        await asyncio.gather(*(work(b.state) for b in branches))
    branches.result.conflicts   # keys more than one branch changed differently

On exit (without an exception) each branch's changes relative to the fork point are merged
(:func:`.merge.merge`) and committed with ``expected_version`` of the fork. If another writer
got in first, the commit re-reads and re-merges: the other writer counts as a branch that
came before all of ours, so its changes to keys the branches left alone survive, and a key
both changed is a conflict like any other. Nothing from either side is lost.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sessionspec.conformance.contract import Session, SessionNotFound, VersionConflict
from sessionspec.reference.memory import clone_json

from .errors import MergeConflict, UpdateFailed
from .merge import MergeResult, Strategy, changes, merge
from .meta import META_KEY, user_view

if TYPE_CHECKING:
    from .manager import SessionManager

__all__ = ["Branch", "Branches"]


@dataclass(slots=True)
class Branch:
    """One branch: ``state`` is its own deep copy of the fork point; change it freely."""

    index: int
    state: dict[str, Any] = field(default_factory=dict)


class Branches:
    """The context manager :meth:`SessionManager.branches` returns."""

    def __init__(self, mgr: SessionManager, id: str, n: int, strategy: Strategy) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"the number of branches must be an int >= 1, not {n!r}")
        self.mgr, self.id, self.n, self.strategy = mgr, id, n, strategy
        self.fork: Session | None = None
        self.branches: list[Branch] = []
        self.result: MergeResult | None = None
        self.committed: Session | None = None
        self.attempts = 0

    async def __aenter__(self) -> list[Branch]:
        self.mgr.require("atomic", "branches()")
        raw = await self.mgr.store.get(self.id)
        if raw is None:
            raise SessionNotFound(self.id)
        self.fork = raw
        base = user_view(raw).state
        self.branches = [Branch(i, clone_json(base)) for i in range(self.n)]
        return self.branches

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc_type is None:
            self.committed = await self.commit()

    def merge_states(self, base: dict[str, Any], states: list[dict[str, Any]],
                     onto: dict[str, Any]) -> MergeResult:
        """The merge rule (a seam: the project's broken managers override it)."""
        return merge(base, states, self.strategy, onto=onto)

    async def commit(self) -> Session:
        """Merge and write; on VersionConflict re-read and re-merge, within the manager's backoff budget."""
        assert self.fork is not None
        mgr, fork = self.mgr, self.fork
        base = user_view(fork).state
        states = [b.state for b in self.branches]
        current = fork
        while True:
            self.attempts += 1
            here = user_view(current).state
            outside = [] if current.version == fork.version else [here]
            try:
                result = self.merge_states(base, [*outside, *states], onto=here)
            except MergeConflict as exc:
                await mgr.events.emit("merge_conflict", id=self.id, keys=list(exc.keys))
                raise MergeConflict(exc.keys, self.id) from None
            if outside:  # the other writer was branch 0; renumber so it is -1 and ours are 0..n-1
                result = MergeResult(result.state, result.changes,
                                     {k: [i - 1 for i in v] for k, v in result.conflicts.items()})
            self.result = result
            delta = changes(here, result.state)
            delta.pop(META_KEY, None)
            try:
                written = await mgr.store.apply(self.id, delta, expected_version=current.version)
            except VersionConflict:
                await mgr.events.emit("conflict_retried", id=self.id, attempt=self.attempts)
                if self.attempts >= mgr.backoff.max_attempts:
                    raise UpdateFailed(self.id, self.attempts, 0.0) from None
                await asyncio.sleep(mgr.backoff.delay(self.attempts))
                fresh = await mgr.store.get(self.id)
                if fresh is None:
                    raise SessionNotFound(self.id) from None
                current = fresh
                continue
            await mgr._after_write(written)
            if result.conflicts:
                await mgr.events.emit("merge_conflict", id=self.id, keys=sorted(result.conflicts))
            return user_view(written)
