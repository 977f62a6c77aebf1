"""Namespace name -> the one store the service keeps open for it.

The conformance suite gives every test a fresh namespace, and a deployment may serve
several tenants: the service opens a store per namespace on first use (through the
opener it was given), keeps it for every later request, and closes it on ``drop``. Two
concurrent first requests share one opening, so a namespace never gets two stores (two
MemoryStores would silently split its data).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Final

from sessionspec.conformance.contract import BackendUnavailable, SessionStore

__all__ = ["DEFAULT_NAMESPACE", "NAMESPACE_PATTERN", "InvalidNamespace", "StoreOpener", "StoreProvider"]

DEFAULT_NAMESPACE: Final = "default"
NAMESPACE_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Namespaces reach backend key prefixes and SQL parameters: a plain alphabet keeps them inert."""

StoreOpener = Callable[[str], AbstractAsyncContextManager[SessionStore]]
"""namespace -> an async context manager that yields the store and closes it on exit."""
DropHook = Callable[[SessionStore, str], Awaitable[None]]


class InvalidNamespace(ValueError):
    """The namespace is not 1..64 characters of ``[A-Za-z0-9_-]``."""


class StoreProvider:
    """The service's stores, one per namespace, opened lazily and closed on drop/aclose."""

    def __init__(self, opener: StoreOpener, *, drop_data: DropHook | None = None,
                 open_timeout: float = 10.0) -> None:
        self._opener = opener
        self._drop_data = drop_data
        self._open_timeout = open_timeout
        self._stores: dict[str, asyncio.Future[SessionStore]] = {}
        self._stacks: dict[str, contextlib.AsyncExitStack] = {}
        self._ready: dict[str, SessionStore] = {}

    @classmethod
    def from_factory(cls, factory: Callable[[str], SessionStore | Awaitable[SessionStore]], *,
                     drop_data: DropHook | None = None) -> StoreProvider:
        """From ``factory(namespace)`` returning a store (or an awaitable of one), closed with ``aclose``."""

        @contextlib.asynccontextmanager
        async def opener(namespace: str) -> AsyncIterator[SessionStore]:
            made = factory(namespace)
            store = await made if isinstance(made, Awaitable) else made
            try:
                yield store
            finally:
                await store.aclose()

        return cls(opener, drop_data=drop_data)

    @staticmethod
    def check(namespace: str) -> str:
        if not NAMESPACE_PATTERN.fullmatch(namespace):
            raise InvalidNamespace("a namespace is 1..64 characters of [A-Za-z0-9_-]")
        return namespace

    @property
    def open_namespaces(self) -> int:
        return len(self._stores)

    async def get(self, namespace: str) -> SessionStore:
        """The namespace's store, opening it on first use; an opener failure is BackendUnavailable."""
        ready = self._ready.get(namespace)
        if ready is not None:
            return ready
        future = self._stores.get(namespace)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._stores[namespace] = future
            try:
                store = await asyncio.wait_for(self._open(namespace), self._open_timeout)
            except BaseException as exc:
                del self._stores[namespace]
                error = exc if isinstance(exc, BackendUnavailable) else BackendUnavailable(
                    f"could not open the store for this namespace ({type(exc).__name__})")
                future.set_exception(error)
                future.exception()  # retrieved: waiters re-raise it, nobody logs "never retrieved"
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise error from exc
            future.set_result(store)
            self._ready[namespace] = store
            return store
        return await asyncio.shield(future)

    async def _open(self, namespace: str) -> SessionStore:
        stack = contextlib.AsyncExitStack()
        try:
            store = await stack.enter_async_context(self._opener(namespace))
        except BaseException:
            await stack.aclose()
            raise
        self._stacks[namespace] = stack
        return store

    async def drop(self, namespace: str) -> bool:
        """Delete the namespace's data (when the backend can) and close its store."""
        self._ready.pop(namespace, None)
        future = self._stores.pop(namespace, None)
        if future is None:
            return False
        try:
            store = await future
        except BackendUnavailable:
            return False
        try:
            if self._drop_data is not None:
                await self._drop_data(store, namespace)
        finally:
            stack = self._stacks.pop(namespace, None)
            if stack is not None:
                await stack.aclose()
        return True

    async def aclose(self) -> None:
        """Close every store (data stays in the backend)."""
        self._stores.clear()
        self._ready.clear()
        stacks, self._stacks = list(self._stacks.values()), {}
        for stack in reversed(stacks):
            with contextlib.suppress(Exception):
                await stack.aclose()
