"""Targets ``http://HOST:PORT`` and ``https://...``: a deployed reference service, through HttpStore.

Each suite namespace becomes a namespace of the service (``/v1/ns/{namespace}``), which
opens a fresh store for it on its side; after the test the namespace is dropped (its
data deleted, its store closed). The URL is also the ``process_spec``: a worker process
reaching the same URL and namespace reaches the same data, so the ``shared`` clauses run
across processes exactly as they would across app servers. A bearer token comes from
``SESSIONSPEC_HTTP_TOKEN`` (never from the URL, which ends up in reports).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from urllib.parse import urlsplit

from .contract import SessionStore
from .targets import BACKEND_SCHEMES, Target, TargetError, TargetOptions

__all__ = ["TOKEN_ENV", "build_http_target"]

TOKEN_ENV = "SESSIONSPEC_HTTP_TOKEN"


async def drop_namespace(store: SessionStore, namespace: str) -> None:
    """Delete the namespace on the service (its data and its server-side store)."""
    drop = getattr(store, "drop_namespace", None)
    if drop is not None:
        with contextlib.suppress(Exception):
            await drop()


def build_http_target(spec: str, options: TargetOptions) -> Target:
    """BACKEND_SCHEMES builder for ``http(s)://HOST[:PORT]``."""
    if importlib.util.find_spec("httpx") is None:
        raise TargetError(f"Target {spec!r} needs httpx, which is not installed. "
                          "Install it with: pip install sessionspec[service]")
    parts = urlsplit(spec)
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        raise TargetError(f"Target {spec!r}: expected http(s)://HOST[:PORT] of a reference service (no path, "
                          f"query or credentials; put a bearer token in {TOKEN_ENV}).")
    url = f"{parts.scheme}://{parts.netloc}"
    token = os.environ.get(TOKEN_ENV) or None

    async def factory(namespace: str) -> SessionStore:
        from sessionspec.reference.http_store import HttpStore

        return await HttpStore.connect(url, namespace=namespace, token=token)

    return Target(spec, f"HttpStore on the service at {url}", factory, drop_namespace=drop_namespace,
                  backend_kind="http", process_spec=url)


for _scheme in ("http", "https"):
    BACKEND_SCHEMES[_scheme] = build_http_target
