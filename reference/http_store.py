"""HttpStore: the session-store contract spoken to a deployed reference service over HTTP.

``sessionspec check http://host:port`` tests a deployment end to end through this
client: pooled keep-alive connections (httpx), every phase of a request bounded by
``timeout`` (waiting for one of the ``max_connections`` slots is not: load slows the
store down, it does not fail it). Input is validated here first, so a bad id or state raises before
any request (ID-3, ST-2) with the same error a local store gives; the service's
problem responses come back as the contract errors they name. A service that cannot be
reached raises BackendUnavailable, never anything softer (FL-1). Writes are never
retried: a lost reply after the request left could otherwise apply a delta twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from sessionspec.conformance.contract import (
    CAPABILITIES,
    DELETE,
    KEEP,
    BackendUnavailable,
    Keep,
    Page,
    Session,
    SessionInfo,
    SessionNotFound,
    TtlArg,
)
from sessionspec.conformance.validation import (
    validate_changes,
    validate_cursor,
    validate_expected_version,
    validate_id,
    validate_items,
    validate_key,
    validate_limit,
    validate_owner,
    validate_state,
    validate_ttl,
)

from ._json import loads
from .service import wire

__all__ = ["HttpStore"]

_EMPTY = b"{}"


def _ttl_member(ttl: TtlArg) -> dict[str, Any]:
    period = validate_ttl(ttl)
    return {} if isinstance(period, Keep) else {"ttl": period}


class HttpStore:
    """A client of the reference service; one instance per namespace (None = the service's default).

    ``max_connections`` also caps the requests in flight: more callers wait here, where waiting
    costs nothing, instead of queueing inside the service until their read timeout fires (four
    instances at 64 each queued 256 creates on one Postgres-backed service with 8 connections
    and 13 of 1000 timed out; at 16 none did).
    """

    def __init__(self, base_url: str, *, namespace: str | None = None, token: str | None = None,
                 timeout: float = 5.0, max_connections: int = 16,
                 capabilities: frozenset[str] = frozenset({"core"})) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.base_url = base_url.rstrip("/")
        self.namespace = namespace
        self.timeout = float(timeout)
        self.capabilities = capabilities
        self.prefix = "/v1" if namespace is None else f"/v1/ns/{wire.quote_segment(namespace)}"
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                              keepalive_expiry=2.0)  # below uvicorn's 5 s idle close: no reuse of a closing socket
        self._slots = asyncio.Semaphore(max_connections)
        self.client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, trust_env=False,
            timeout=httpx.Timeout(self.timeout, pool=None),
            transport=httpx.AsyncHTTPTransport(limits=limits, retries=0),
        )

    @classmethod
    async def connect(cls, base_url: str, *, namespace: str | None = None, token: str | None = None,
                      timeout: float = 5.0, max_connections: int = 16) -> HttpStore:  # noqa: ASYNC109
        """A store whose capabilities are what the service reports for the namespace (opening it)."""
        store = cls(base_url, namespace=namespace, token=token, timeout=timeout, max_connections=max_connections)
        try:
            body = await store._call("GET", store.prefix)
            claimed = frozenset(str(c) for c in body.get("capabilities", ())) & CAPABILITIES
            store.capabilities = claimed | {"core"}
        except BaseException:
            await store.aclose()
            raise
        return store

    # -- plumbing -----------------------------------------------------------------------
    def _path(self, id: str, action: str = "") -> str:
        return f"{self.prefix}/sessions/{wire.quote_segment(id)}" + (f"/{action}" if action else "")

    async def _call(self, method: str, path: str, *, body: Mapping[str, Any] | None = None,
                    params: Mapping[str, Any] | None = None, expected: int | None = None,
                    id: str = "") -> Any:
        """One request; the decoded JSON body on success, the contract error raised otherwise."""
        headers = {"If-Match": wire.etag(expected)} if expected is not None else None
        content = None if body is None else (wire.dumps(body) if body else _EMPTY)
        try:
            async with self._slots:  # queue here, not in httpx's pool (its wait queue is O(n) per release)
                response = await self.client.request(method, path, content=content, params=params,
                                                     headers=headers)
        except httpx.TimeoutException as exc:
            raise BackendUnavailable(f"the service at {self.base_url} did not answer within {self.timeout:g} s "
                                     f"({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"cannot reach the service at {self.base_url}: {type(exc).__name__}: {exc}") \
                from exc
        if response.status_code == 204:
            return None
        try:
            decoded = loads(response.content) if response.content else None
        except ValueError:
            decoded = None
        if response.status_code >= 400:
            raise wire.error_from_problem(response.status_code, decoded, id=id)
        if not isinstance(decoded, dict):
            raise wire.HttpProtocolError(f"the service answered {response.status_code} without a JSON object",
                                         response.status_code)
        return decoded

    # -- the contract -------------------------------------------------------------------
    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        body: dict[str, Any] = {"state": validate_state({} if state is None else state), **_ttl_member(ttl)}
        if id is not None:
            body["id"] = validate_id(id)
        own = validate_owner(owner)
        if own is not None:
            body["owner"] = own
        return wire.decode_session(await self._call("POST", f"{self.prefix}/sessions", body=body, id=id or ""))

    async def get(self, id: str) -> Session | None:
        sid = validate_id(id)
        try:
            return wire.decode_session(await self._call("GET", self._path(sid), id=sid))
        except SessionNotFound:
            return None

    async def save(self, id: str, state: Mapping[str, Any], *, expected_version: int | None = None,
                   ttl: TtlArg = KEEP) -> Session:
        sid = validate_id(id)
        body = {"state": validate_state(state), **_ttl_member(ttl)}
        expected = validate_expected_version(expected_version)
        return wire.decode_session(await self._call("PUT", self._path(sid), body=body, expected=expected, id=sid))

    async def apply(self, id: str, changes: Mapping[str, Any], *,
                    expected_version: int | None = None) -> Session:
        sid = validate_id(id)
        delta = validate_changes(changes)
        expected = validate_expected_version(expected_version)
        body = {"set": {k: v for k, v in delta.items() if v is not DELETE},
                "delete": [k for k, v in delta.items() if v is DELETE]}
        return wire.decode_session(await self._call("PATCH", self._path(sid), body=body, expected=expected, id=sid))

    async def append(self, id: str, key: str, items: Sequence[Any], *,
                     expected_version: int | None = None) -> SessionInfo:
        sid = validate_id(id)
        name = validate_key(key)
        body = {"key": name, "items": validate_items(name, items)}
        expected = validate_expected_version(expected_version)
        return wire.decode_info(await self._call("POST", self._path(sid, "append"), body=body, expected=expected,
                                                 id=sid))

    async def touch(self, id: str, *, ttl: TtlArg = KEEP) -> SessionInfo:
        sid = validate_id(id)
        return wire.decode_info(await self._call("POST", self._path(sid, "touch"), body=_ttl_member(ttl), id=sid))

    async def delete(self, id: str) -> bool:
        sid = validate_id(id)
        try:
            await self._call("DELETE", self._path(sid), id=sid)
        except SessionNotFound:
            return False
        return True

    async def list(self, *, owner: str | None = None, limit: int = 100, cursor: str | None = None) -> Page:
        params: dict[str, Any] = {"limit": validate_limit(limit)}
        own, after = validate_owner(owner), validate_cursor(cursor)
        if own is not None:
            params["owner"] = own
        if after is not None:
            params["cursor"] = after
        return wire.decode_page(await self._call("GET", f"{self.prefix}/sessions", params=params))

    async def count(self, *, owner: str | None = None) -> int:
        own = validate_owner(owner)
        body = await self._call("GET", f"{self.prefix}/count", params=None if own is None else {"owner": own})
        return int(body["count"])

    async def purge_expired(self) -> int:
        return int((await self._call("POST", f"{self.prefix}/purge", body={}))["purged"])

    async def drop_namespace(self) -> bool:
        """Ask the service to delete this namespace's data and close its store (test cleanup)."""
        if self.namespace is None:
            raise ValueError("the default namespace cannot be dropped")
        return bool((await self._call("DELETE", self.prefix)).get("dropped"))

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> HttpStore:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
