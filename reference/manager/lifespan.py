"""A Starlette/FastAPI lifespan that opens the store, runs a SessionManager, and shuts both down.

    app = Starlette(routes=..., lifespan=session_lifespan(lambda: RedisStore.from_url(url, namespace="app")))
    # in a handler: mgr = request.state.session_manager

Nothing here imports Starlette: a lifespan is an async context manager factory taking the app.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sessionspec.conformance.contract import SessionStore

from .manager import SessionManager

__all__ = ["session_lifespan"]


def session_lifespan(store_factory: Callable[[], SessionStore | Awaitable[SessionStore]], *,
                     state_key: str = "session_manager",
                     **options: Any) -> Callable[[Any], contextlib.AbstractAsyncContextManager[dict[str, Any]]]:
    """``lifespan=`` for Starlette/FastAPI; the manager lands in ``request.state.<state_key>``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        made = store_factory()
        store = await made if inspect.isawaitable(made) else made
        async with SessionManager(store, owns_store=True, **options) as manager:
            yield {state_key: manager}

    return lifespan
