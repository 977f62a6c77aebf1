"""Deliberately broken SessionManagers: each one bug, and the manager/scenario clause(s) that must catch it.

The suite builds its manager through the target factory's ``sessionspec_manager`` hook
(conformance/manager_support.py), so each case is a MemoryStore target whose factory
carries a broken manager class. Races are forced with the Rendezvous of tests/broken/_race.py:
the bug needs the interleaving, and a single caller sees a correct manager. Also targets::

    sessionspec check tests.broken.manager:overlay_merge --clause MG-3
"""

from __future__ import annotations

import builtins
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sessionspec.conformance.clauses import get_clause
from sessionspec.conformance.contract import DELETE, Session, SessionNotFound
from sessionspec.conformance.targets import Target
from sessionspec.reference.manager import SessionManager
from sessionspec.reference.manager.branches import Branches
from sessionspec.reference.manager.chats import CHATS, ChatInfo, Chats
from sessionspec.reference.manager.errors import ChatNotFound, LimitExceeded
from sessionspec.reference.manager.facade import AsyncConversationStore
from sessionspec.reference.manager.keys import KeyPart, key_id
from sessionspec.reference.manager.lease import Lock
from sessionspec.reference.manager.lifecycle import Tracked
from sessionspec.reference.manager.merge import MergeResult, changes
from sessionspec.reference.manager.meta import META_KEY, user_view
from sessionspec.reference.manager.scopes import ScopedState
from sessionspec.reference.memory import MemoryStore, clone_json

from ._race import rendezvous

__all__ = ["MANAGER_BROKEN", "ManagerCase"]

MODULE = "tests.broken.manager"


@dataclass(frozen=True, slots=True)
class ManagerCase:
    """One broken manager class and the clauses that must fail with it (on a correct MemoryStore)."""

    name: str
    manager: type[SessionManager]
    clauses: tuple[str, ...]
    description: str

    def factory(self, namespace: str) -> MemoryStore:
        return MemoryStore()

    def target(self) -> Target:
        def factory(namespace: str) -> MemoryStore:
            return MemoryStore()

        factory.sessionspec_manager = self.manager  # type: ignore[attr-defined]
        return Target(spec=f"{MODULE}:{self.name}", description=f"broken manager {self.name}: {self.description}",
                      factory=factory)


MANAGER_BROKEN: dict[str, ManagerCase] = {}
M = TypeVar("M", bound=type[SessionManager])


def broken_manager(*clauses: str) -> Callable[[M], M]:
    for cid in clauses:
        get_clause(cid)

    def register(cls: M) -> M:
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
        doc = (inspect.getdoc(cls) or "").split("\n", 1)[0]
        assert doc and name not in MANAGER_BROKEN
        MANAGER_BROKEN[name] = ManagerCase(name, cls, tuple(clauses), doc)
        return cls

    return register


# -- MG-3 / SC-3: the classic overlay merge --------------------------------------------------------------
class _OverlayBranches(Branches):
    def merge_states(self, base: dict[str, Any], states: list[dict[str, Any]], onto: dict[str, Any]) -> MergeResult:
        merged = clone_json(onto)
        for state in states:
            merged.update(clone_json(state))  # the whole branch state: untouched keys overwrite others' changes
        return MergeResult(merged, changes(onto, merged), {})


@broken_manager("MG-3", "SC-3")
class OverlayMerge(SessionManager):
    """branches() merges by copying the fork and overlaying each branch's whole state in order (agno-go)."""

    branches_class = _OverlayBranches


# -- MG-4: a retry that replays the fork's merge ---------------------------------------------------------------
class _ReplayBranches(Branches):
    async def commit(self) -> Session:
        assert self.fork is not None
        base = user_view(self.fork).state
        result = self.merge_states(base, [b.state for b in self.branches], onto=base)
        self.result = result
        current = await self.mgr.store.get(self.id)
        if current is None:
            raise SessionNotFound(self.id)
        if current.version != self.fork.version:  # "conflict": write the state merged at the fork over it
            written = await self.mgr.store.save(self.id, {**result.state, META_KEY: self.fork.state.get(META_KEY, {})})
        else:
            written = await self.mgr.store.apply(self.id, result.changes, expected_version=current.version)
        return user_view(written)


@broken_manager("MG-4")
class MergeRetryReplaysFork(SessionManager):
    """A merge commit that met another writer retries with save(state merged at the fork): the other write is lost."""

    branches_class = _ReplayBranches


# -- MG-6: get-then-create ---------------------------------------------------------------------------------------
@broken_manager("MG-6")
class GetThenCreate(SessionManager):
    """get_or_create reads, then creates, and lets the loser's SessionExists escape (no retry, no turns)."""

    async def get_or_create(self, key: Sequence[KeyPart], state: Mapping[str, Any] | None = None, *,
                            owner: str | None = None) -> Session:
        id = key_id(key)
        found = await self.get(id)
        if found is not None:
            return found
        await rendezvous(self).meet()  # the round trip between the read and the create
        return await self.create(state, id=id, owner=owner)


# -- MG-7 / SC-4: update without CAS ----------------------------------------------------------------------------------
@broken_manager("MG-7", "SC-4")
class UpdateWithoutCas(SessionManager):
    """update() reads, applies fn, and writes the changes without expected_version (and without taking turns)."""

    async def update_raw(self, id: str, fn: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> Session:
        current = await self.store.get(id)
        if current is None:
            raise SessionNotFound(id)
        new = await fn(clone_json(current.state))
        await rendezvous(self).meet()
        return await self.store.apply(id, changes(current.state, new))


# -- MG-8 / SC-5: count, then create ---------------------------------------------------------------------------------
@broken_manager("MG-8", "SC-5")
class CountThenCreate(SessionManager):
    """The per-owner limit counts the owner's sessions, then creates: concurrent creates all pass the check."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None) -> Session:
        if self.max_active_sessions is None or owner is None:
            return await super().create(state, id=id, owner=owner)
        live = await self.store.count(owner=owner)
        await rendezvous(self).meet()
        if live >= self.max_active_sessions:
            if self.limit_policy == "reject":
                raise LimitExceeded(owner, self.max_active_sessions)
            page = await self.store.list(owner=owner, limit=1)
            if page.items:
                await self.store.delete(page.items[0].id)
        return await self._create(dict(state or {}), id=id, owner=owner)


# -- MG-9: an active flag per chat -------------------------------------------------------------------------------------
class _FlagChats(Chats):
    """Each chat has its own top-level ``active:<id>`` flag; switch sets the new one and clears the one it saw."""

    async def create(self, title: str | None = None, *, activate: bool = True, chat_id: str | None = None) -> str:
        chat = await super().create(title, activate=False, chat_id=chat_id)
        state = await self._state()
        if activate or not any(k.startswith("active:") for k in state):
            await self.switch(chat)
        return chat

    async def switch(self, chat: str) -> None:
        state = await self._state()
        if chat not in (state.get(CHATS) or {}):
            raise ChatNotFound(self.id, chat)
        await rendezvous(self.mgr).meet()
        seen = [k for k in state if k.startswith("active:") and k != f"active:{chat}"]
        await self.mgr.apply(self.id, {f"active:{chat}": True, **{k: DELETE for k in seen}})

    async def list(self) -> builtins.list[ChatInfo]:
        state = await self._state()
        return [ChatInfo(c, v.get("title"), float(v.get("created_at", 0)), bool(state.get(f"active:{c}")))
                for c, v in (state.get(CHATS) or {}).items()]

    async def active(self) -> str | None:
        state = await self._state()
        return next((k.split(":", 1)[1] for k in state if k.startswith("active:")), None)


@broken_manager("MG-9", "SC-5")
class ActiveFlagPerChat(SessionManager):
    """chats keep an active flag per chat and switch clears only the flag it read: concurrent switches leave two."""

    chats_class = _FlagChats


# -- MG-10: the absolute lifetime slides -------------------------------------------------------------------------------
@broken_manager("MG-10")
class AbsoluteLifetimeSlides(SessionManager):
    """Writes and touches use the idle timeout alone: activity carries a session past its absolute lifetime."""

    def _ttl(self, meta: Mapping[str, Any]) -> Any:
        return self.idle_timeout

    async def _cap_ttl(self, info: Any) -> None:
        return None


# -- MG-11: callbacks on every sighting ----------------------------------------------------------------------------
@broken_manager("MG-11")
class CallbackOnEverySighting(SessionManager):
    """Expiry callbacks run every time the manager notices a session is gone (on access and on each sweep)."""

    async def _end(self, tracked: Tracked, reason: str) -> bool:
        self._schedule.recheck(tracked, 0.0)  # keep it due: the next sweep notices it again
        await self._fire(tracked.id, reason)
        return True


# -- SC-1: shutdown leaks resources --------------------------------------------------------------------------
@broken_manager("SC-1")
class ShutdownLeaksResources(SessionManager):
    """Leaving the manager stops the sweeper but never closes the resources of sessions still live."""

    async def aclose(self) -> None:
        self._resources.clear()
        await super().aclose()


# -- SC-2: listing stops after one page -----------------------------------------------------------------------
class _FirstPageOnly(AsyncConversationStore):
    async def get_all_session_ids(self) -> list[str]:
        page = await self.manager.store.list(limit=100)
        return [info.id for info in page.items]


@broken_manager("SC-2")
class ListingFirstPageOnly(SessionManager):
    """get_all_session_ids returns the first page of list() and ignores next_cursor."""

    conversations_class = _FirstPageOnly



# -- MG-12: temp keys stored ------------------------------------------------------------------------------------
class _TempStoredScopes(ScopedState):
    async def write(self, changes: Mapping[str, Any]) -> None:
        temp = {k: v for k, v in changes.items() if k.startswith("temp:")}
        await super().write({k: v for k, v in changes.items() if k not in temp})
        if temp:
            await self.mgr.apply(self.id, temp)  # persisted with the session: it outlives the invocation


@broken_manager("MG-12")
class TempKeysStored(SessionManager):
    """Scoped writes store temp: keys in the session, where they outlive the invocation."""

    scoped_class = _TempStoredScopes


# -- MG-13: a lease without fencing ----------------------------------------------------------------------------
class _UnfencedLock(Lock):
    async def update(self, fn: Any) -> Session:
        return await self.mgr.update(self.id, fn)  # never compares the token


@broken_manager("MG-13")
class LeaseWithoutFencing(SessionManager):
    """A lease holder's writes never check the fencing token: a holder that outlived its lease still writes."""

    lock_class = _UnfencedLock


def __getattr__(name: str) -> Any:
    """``tests.broken.manager:<name>`` as a target factory carrying the broken manager."""
    case = MANAGER_BROKEN.get(name)
    if case is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    factory = case.target().factory
    factory.__doc__ = f"broken manager: {case.description}"
    return factory
