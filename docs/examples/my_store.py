"""A runnable plug-in example: `cd docs/examples && sessionspec check my_store:factory`.

The factory the suite calls once per test with a fresh namespace. Here it wraps the
reference MemoryStore in an async context manager, the form most real adapters take
(open a client, yield the store, close on the way out). Replace the body with your store.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sessionspec.conformance import SessionStore
from sessionspec.reference import MemoryStore


@contextlib.asynccontextmanager
async def factory(namespace: str) -> AsyncIterator[SessionStore]:
    """MemoryStore with a 30-minute default TTL (an in-process store: namespaces need no prefix)."""
    store = MemoryStore(default_ttl=1800)
    try:
        yield store
    finally:
        await store.aclose()
