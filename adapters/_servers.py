"""Backends for the adapters: the suite's own provisioning, shared with worker processes.

The first factory call in a process provisions a server through
``sessionspec.conformance.provision`` (so ``SESSIONSPEC_PROVISION``, ``SESSIONSPEC_REDIS_URL``
and ``SESSIONSPEC_POSTGRES_URL`` work as for the built-in targets) and exports its URL as
``SESSIONSPEC_ADAPTERS_<KIND>_URL``: the suite's worker processes (the ``shared`` clauses)
inherit the environment and reach the same server instead of provisioning their own. Only
the process that provisioned a server can stop and start it (FL-1..3).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from typing import Any

from sessionspec.conformance.provision import provision

__all__ = ["scratch_path", "server_url", "start", "stop"]

_SERVERS: dict[str, Any] = {}
_GUARD = threading.Lock()


def _env(kind: str) -> str:
    return f"SESSIONSPEC_ADAPTERS_{kind.upper()}_URL"


def server_url(kind: str) -> str:
    """URL of the run's ``kind`` server ("redis" or "postgres"), provisioning it on first use."""
    with _GUARD:
        if kind in _SERVERS:
            return str(_SERVERS[kind].url)
        inherited = os.environ.get(_env(kind))
        if inherited:
            return inherited
        server = provision(kind)
        _SERVERS[kind] = server
        os.environ[_env(kind)] = server.url
        return str(server.url)


def _server(kind: str) -> Any:
    server_url(kind)
    server = _SERVERS.get(kind)
    if server is None or not server.controllable:
        raise RuntimeError(f"the {kind} server was not provisioned by this process: it cannot be stopped here")
    return server


async def stop(kind: str) -> None:
    await asyncio.to_thread(_server(kind).stop)


async def start(kind: str) -> None:
    await asyncio.to_thread(_server(kind).start)


def scratch_path(name: str) -> str:
    """A file path every process of this run derives alike (embedded databases shared by name)."""
    folder = os.environ.get("SESSIONSPEC_ADAPTERS_DIR") or os.path.join(tempfile.gettempdir(), "sessionspec-adapters")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, name)
