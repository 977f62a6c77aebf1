"""The reference HTTP service: the session-store contract as a JSON API (ASGI, Starlette).

``create_app(StoreProvider.from_factory(lambda ns: MemoryStore()))`` is a complete
service; ``sessionspec serve --store TARGET`` runs one under uvicorn.
"""

from __future__ import annotations

from .app import SessionService, create_app
from .metrics import CounterSource, Metrics
from .namespaces import DEFAULT_NAMESPACE, InvalidNamespace, StoreProvider

__all__ = ["DEFAULT_NAMESPACE", "CounterSource", "InvalidNamespace", "Metrics", "SessionService", "StoreProvider",
           "create_app"]
