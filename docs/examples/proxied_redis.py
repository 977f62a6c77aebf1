"""FL-1/FL-2 for a TCP-backed store in a few lines: connect it through a FaultProxy and flip the proxy.

    cd docs/examples && MY_REDIS_URL=redis://127.0.0.1:6379/0 sessionspec check proxied_redis:factory

The store here is the reference RedisStore; yours goes in its place. The proxy listens on a
free loopback port and forwards to your server; ``stop_backend`` black-holes it (connections
are held and nothing answers, the outage that catches a client without a socket timeout),
``start_backend`` lets bytes through again. FL-3 (durability) needs the real server
restarted, which a proxy cannot fake: claim ``durable`` only with hooks that restart it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from sessionspec.conformance import SessionStore
from sessionspec.conformance.faultproxy import FaultProxy
from sessionspec.reference.redis import RedisStore

SERVER = urlsplit(os.environ.get("MY_REDIS_URL", "redis://127.0.0.1:6379/0"))
proxy = FaultProxy.start(SERVER.hostname or "127.0.0.1", SERVER.port or 6379)


@contextlib.asynccontextmanager
async def factory(namespace: str) -> AsyncIterator[SessionStore]:
    store = RedisStore.from_url(f"redis://127.0.0.1:{proxy.port}{SERVER.path or '/0'}", namespace=namespace,
                                timeout=2.0)  # every call bounded: FL-1 wants BackendUnavailable within 5 s
    try:
        yield await store.probe()
    finally:
        await store.aclose()


def stop_backend() -> None:
    proxy.set_mode("stall")  # or "refuse" / "reset"


def start_backend() -> None:
    proxy.set_mode("pass")
