"""A drop-in for the common ``ConversationStore`` shape, async and sync, on any conforming store.

Apps written against ``get_state / save_state / delete_state / create_new_session_id /
extend_ttl / get_all_session_ids`` move over by changing one import. Listing pages
through the store's ``list`` (an index on the reference stores, never a key scan). When
the backend is down every call raises (BackendUnavailable): there is no fallback to memory.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

from sessionspec.conformance.contract import SessionExists, SessionNotFound, SessionStore

from .manager import SessionManager
from .meta import META_KEY, check_user_state

__all__ = ["AsyncConversationStore", "ConversationStore"]

T = TypeVar("T")
DEFAULT_TTL = 3600.0


class AsyncConversationStore:
    """``ConversationStore`` on a SessionManager (or a bare store, wrapped in one without a sweeper)."""

    def __init__(self, backend: SessionManager | SessionStore, *, ttl: float | None = DEFAULT_TTL) -> None:
        self.manager = backend if isinstance(backend, SessionManager) else SessionManager(
            backend, idle_timeout=ttl, sweep_interval=None)
        self.ttl = ttl

    async def get_state(self, session_id: str) -> dict[str, Any] | None:
        session = await self.manager.get(session_id)
        return None if session is None else session.state

    async def save_state(self, session_id: str, state: Mapping[str, Any]) -> None:
        """Replace the state, creating the session under this id if it is not live."""
        atomic = "atomic" in self.manager.store.capabilities
        for _ in range(10):
            try:
                if atomic:
                    await self.manager.update(session_id, lambda _old: dict(state))
                else:  # a whole-state replace needs no version check; keep the manager's own key
                    current = await self.manager.store.get(session_id)
                    if current is None:
                        raise SessionNotFound(session_id)
                    check_user_state(state)
                    meta = current.state.get(META_KEY)
                    await self.manager.store.save(session_id, {**state, **({META_KEY: meta} if meta else {})})
                return
            except SessionNotFound:
                try:
                    await self.manager.create(state, id=session_id)
                    return
                except SessionExists:
                    continue
        raise SessionExists(session_id)

    async def delete_state(self, session_id: str) -> bool:
        return await self.manager.delete(session_id)

    async def create_new_session_id(self) -> str:
        return (await self.manager.create({})).id

    async def extend_ttl(self, session_id: str, ttl: float | None = None) -> bool:
        """Restart the idle period (``ttl`` sets a new one); False if the session is not live."""
        try:
            if ttl is None:
                await self.manager.touch(session_id)
            else:
                await self.manager.store.touch(session_id, ttl=ttl)
        except SessionNotFound:
            return False
        return True

    async def get_all_session_ids(self) -> list[str]:
        """Every live session id, paged through ``list`` (needs a store claiming `listing`)."""
        self.manager.require("listing", "get_all_session_ids()")
        ids: list[str] = []
        cursor: str | None = None
        while True:
            page = await self.manager.store.list(limit=1000, cursor=cursor)
            ids += [info.id for info in page.items]
            if page.next_cursor is None:
                return ids
            cursor = page.next_cursor

    async def aclose(self) -> None:
        await self.manager.aclose()


class ConversationStore:
    """The same, for synchronous code: the store lives on a private event loop in its own thread.

    ``store_factory`` is called on that loop (connections belong to the loop they were made on)
    and returns a store or an awaitable of one.
    """

    def __init__(self, store_factory: Callable[[], SessionStore | Awaitable[SessionStore]], *,
                 ttl: float | None = DEFAULT_TTL, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sessionspec-conversations", daemon=True)
        self._thread.start()

        async def open_store() -> AsyncConversationStore:
            made = store_factory()
            store = await made if isinstance(made, Awaitable) else made
            return AsyncConversationStore(SessionManager(store, idle_timeout=ttl, sweep_interval=None,
                                                         owns_store=True), ttl=ttl)

        try:
            self._inner = self._call(open_store())
        except BaseException:
            self._stop()
            raise

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(self.timeout)

    def get_state(self, session_id: str) -> dict[str, Any] | None:
        return self._call(self._inner.get_state(session_id))

    def save_state(self, session_id: str, state: Mapping[str, Any]) -> None:
        self._call(self._inner.save_state(session_id, state))

    def delete_state(self, session_id: str) -> bool:
        return self._call(self._inner.delete_state(session_id))

    def create_new_session_id(self) -> str:
        return self._call(self._inner.create_new_session_id())

    def extend_ttl(self, session_id: str, ttl: float | None = None) -> bool:
        return self._call(self._inner.extend_ttl(session_id, ttl))

    def get_all_session_ids(self) -> list[str]:
        return self._call(self._inner.get_all_session_ids())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._call(self._inner.aclose())
        finally:
            self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

