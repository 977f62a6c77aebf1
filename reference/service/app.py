"""The reference HTTP service: the session-store contract as a small JSON API (an ASGI app).

Routing reads the *raw* request path, segment by segment, and percent-decodes each one
alone: a session id is one opaque segment whatever it holds (``/``, ``..``, ``%``, emoji),
which a router matching the decoded path cannot promise. Every contract error becomes an
``application/problem+json`` response whose ``error`` member names it (see ``wire``).
Nothing here logs a session id, an owner or a state: logs and metrics carry route
templates, statuses and error names only.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope, Send

from sessionspec.conformance.contract import (
    DELETE,
    KEEP,
    InvalidSessionId,
    InvalidState,
    SessionStore,
    SessionStoreError,
    TtlArg,
)
from sessionspec.conformance.validation import validate_ttl

from . import wire
from .metrics import CONTENT_TYPE, CounterSource, Metrics
from .namespaces import DEFAULT_NAMESPACE, StoreProvider
from .openapi import openapi_document

__all__ = ["MAX_BODY", "SessionService", "create_app"]

log = logging.getLogger("sessionspec.service")

MAX_BODY: Final = 16 * 1024 * 1024
"""Largest request body read (a 1 MiB state, ST-1, with room for JSON escaping)."""
PROBLEM: Final = "application/problem+json"
METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
OPEN_PATHS: Final = frozenset({"/health", "/openapi.json"})
ROUTE: Final = "sessionspec.route"
"""Scope key holding the matched route template (metrics and logs name routes, never paths)."""


class Response:
    """A complete response sent as two ASGI messages (Starlette's Response builds its header list
    through several layers on every call; this is a third of the service's per-request cost less)."""

    __slots__ = ("body", "headers", "status_code")

    def __init__(self, body: bytes | str = b"", status_code: int = 200, headers: Mapping[str, str] | None = None,
                 media_type: str | None = None) -> None:
        self.body = body.encode() if isinstance(body, str) else body
        self.status_code = status_code
        raw = [(b"content-length", str(len(self.body)).encode())]
        if media_type is not None:
            raw.append((b"content-type", media_type.encode()))
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        self.headers = raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


class _Problem(Exception):
    def __init__(self, name: str, detail: str, allow: str | None = None) -> None:
        super().__init__(detail)
        self.name = name
        self.allow = allow


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(wire.dumps(body), status, headers, media_type="application/json")


def _problem_response(status: int, body: dict[str, Any], allow: str | None = None) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if allow is not None:
        headers["Allow"] = allow
    return Response(wire.dumps(body), status, headers, media_type=PROBLEM)


def _session_response(record: Any, status: int = 200) -> Response:
    body = wire.encode_session(record) if hasattr(record, "state") else wire.encode_info(record)
    return _json(body, status, {"ETag": wire.etag(record.version)})


async def _body(request: Request, *, required: bool = False) -> dict[str, Any]:
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _Problem("BadRequest", f"the request body exceeds {MAX_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        if required:
            raise _Problem("BadRequest", "this operation needs a JSON object body")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise _Problem("BadRequest", "the request body is not JSON text") from None
    if not isinstance(body, dict):
        raise _Problem("BadRequest", "the request body must be a JSON object")
    return body


def _ttl(body: Mapping[str, Any]) -> TtlArg:
    """An absent ``ttl`` member means KEEP; ``null`` means never expire.

    Validated here too, whatever store is behind the service: a store without the shared validator's
    cap (MAX_TTL) could write, then fail building an expiry no datetime can hold."""
    if "ttl" not in body:
        return KEEP
    return validate_ttl(body["ttl"], allow_keep=False)


def _expected(request: Request) -> int | None:
    return wire.parse_if_match(request.headers.get("if-match"))


# ---------------------------------------------------------------- handlers (one per operation)
Handler = Callable[[SessionStore, Request, str], Awaitable[Response]]


async def _create(store: SessionStore, request: Request, _: str) -> Response:
    body = await _body(request)
    session = await store.create(body.get("state"), id=body.get("id"), owner=body.get("owner"), ttl=_ttl(body))
    return _session_response(session, 201)


async def _get(store: SessionStore, request: Request, id: str) -> Response:
    session = await store.get(id)
    if session is None:
        status, problem = wire.problem("SessionNotFound", "no live session with this id")
        return _problem_response(status, problem)
    return _session_response(session)


async def _save(store: SessionStore, request: Request, id: str) -> Response:
    body = await _body(request, required=True)
    if "state" not in body:
        raise InvalidState("the body must carry the new state under \"state\"")
    return _session_response(await store.save(id, body["state"], expected_version=_expected(request),
                                              ttl=_ttl(body)))


async def _apply(store: SessionStore, request: Request, id: str) -> Response:
    body = await _body(request, required=True)
    sets = body.get("set", {})
    deletes = body.get("delete", [])
    if not isinstance(sets, dict):
        raise InvalidState("\"set\" must be a JSON object of top-level keys to set")
    if not isinstance(deletes, list) or not all(isinstance(k, str) for k in deletes):
        raise InvalidState("\"delete\" must be a list of top-level keys (strings) to remove")
    both = sorted(set(sets) & set(deletes))
    if both:
        raise InvalidState(f"{len(both)} key(s) are both set and deleted")
    changes: dict[str, Any] = {**sets, **dict.fromkeys(deletes, DELETE)}
    return _session_response(await store.apply(id, changes, expected_version=_expected(request)))


async def _append(store: SessionStore, request: Request, id: str) -> Response:
    body = await _body(request, required=True)
    key, items = body.get("key"), body.get("items")
    if not isinstance(items, list):
        raise InvalidState("\"items\" must be a JSON array of values to append")
    return _session_response(await store.append(id, key, items,  # type: ignore[arg-type]
                                                expected_version=_expected(request)))


async def _touch(store: SessionStore, request: Request, id: str) -> Response:
    body = await _body(request)
    return _session_response(await store.touch(id, ttl=_ttl(body)))


async def _delete(store: SessionStore, request: Request, id: str) -> Response:
    if await store.delete(id):
        return Response(status_code=204)
    status, problem = wire.problem("SessionNotFound", "no live session with this id")
    return _problem_response(status, problem)


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "100")
    if not raw.isdigit():
        raise ValueError("limit must be an integer from 1 to 1000")
    return int(raw)


async def _list(store: SessionStore, request: Request, _: str) -> Response:
    query = request.query_params
    page = await store.list(owner=query.get("owner"), limit=_limit(request), cursor=query.get("cursor"))
    return _json(wire.encode_page(page))


async def _count(store: SessionStore, request: Request, _: str) -> Response:
    return _json({"count": await store.count(owner=request.query_params.get("owner"))})


async def _purge(store: SessionStore, request: Request, _: str) -> Response:
    return _json({"purged": await store.purge_expired()})


COLLECTION: Final[dict[str, tuple[str, Handler]]] = {"POST": ("create", _create), "GET": ("list", _list)}
ITEM: Final[dict[str, tuple[str, Handler]]] = {
    "GET": ("get", _get), "PUT": ("save", _save), "PATCH": ("apply", _apply), "DELETE": ("delete", _delete)}
ACTIONS: Final[dict[str, tuple[str, Handler]]] = {"append": ("append", _append), "touch": ("touch", _touch)}


# ---------------------------------------------------------------- the app
class SessionService:
    """ASGI app serving one :class:`StoreProvider` (a store per namespace).

    ``token``: when set, every request except /health and /openapi.json must carry
    ``Authorization: Bearer <token>`` (compared in constant time).
    """

    def __init__(self, provider: StoreProvider, *, token: str | None = None,
                 counter_sources: list[CounterSource] | None = None, title: str = "sessionspec") -> None:
        self.provider = provider
        self.metrics = Metrics()
        for source in counter_sources or []:
            self.metrics.attach(source)
        self.metrics.gauge("sessionspec_open_namespaces", "Namespaces with an open store.",
                           lambda: provider.open_namespaces)
        self._token = token.encode() if token else None
        self._openapi = wire.dumps(openapi_document(title=title, auth=token is not None))

    def attach(self, source: CounterSource) -> None:
        """Export a manager's ``counters()`` at /metrics."""
        self.metrics.attach(source)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets: not part of this API
            return
        request = Request(scope, receive)
        started = time.perf_counter()
        error = None
        try:
            response = await self._dispatch(request)
        except ClientDisconnect:  # the client gave up (a cancelled call): nobody to answer, nothing to log
            self.metrics.observe(request.method if request.method in METHODS else "OTHER",
                                 scope.get(ROUTE, "unmatched"), 499, time.perf_counter() - started, "ClientDisconnect")
            return
        except _Problem as exc:
            error = exc.name
            response = _problem_response(*wire.problem(exc.name, str(exc)), allow=exc.allow)
        except (SessionStoreError, ValueError, TypeError) as exc:
            status, body = wire.problem_for(exc)
            error = body["error"]
            response = _problem_response(status, body)
        except Exception as exc:  # a driver error leaking out of a store: say what kind, never the data
            log.error("internal error on %s %s: %s", request.method, scope.get(ROUTE, "?"), type(exc).__name__)
            error = "InternalError"
            response = _problem_response(*wire.problem("InternalError", "the service failed; see its logs"))
        if error is None and response.status_code >= 400:
            error = "SessionNotFound" if response.status_code == 404 else str(response.status_code)
        method = request.method if request.method in METHODS else "OTHER"  # labels stay a fixed set
        self.metrics.observe(method, scope.get(ROUTE, "unmatched"), response.status_code,
                             time.perf_counter() - started, error)
        await response(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.provider.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        given = request.headers.get("authorization", "")
        scheme, _, credential = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(), self._token)

    async def _dispatch(self, request: Request) -> Response:
        raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
        try:
            path = raw.decode("ascii")
        except UnicodeDecodeError:  # two raw spellings must never name one session: demand percent-encoding
            raise InvalidSessionId("the path must be ASCII: percent-encode the id as UTF-8") from None
        method = request.method
        if path in OPEN_PATHS or path == "/metrics":
            request.scope[ROUTE] = path
            if path != "/metrics" or self._authorized(request):
                return await self._meta(path, method)
        if not self._authorized(request):
            raise _Problem("Unauthorized", "this service needs Authorization: Bearer <token>")
        parts = path.split("/")[1:]
        if not parts or parts[0] != "v1":
            raise _Problem("NotFound", "no such route; see /openapi.json")
        rest, namespace, prefix = parts[1:], DEFAULT_NAMESPACE, "/v1"
        if rest[:1] == ["ns"] and len(rest) >= 2:
            namespace, rest, prefix = wire.unquote_segment(rest[1]), rest[2:], "/v1/ns/{namespace}"
            StoreProvider.check(namespace)
        if not rest or rest == [""]:
            request.scope[ROUTE] = prefix
            return await self._namespace(namespace, method)
        return await self._session_route(request, namespace, prefix, rest)

    async def _meta(self, path: str, method: str) -> Response:
        if method != "GET":
            raise _Problem("MethodNotAllowed", f"{path} answers GET only", allow="GET")
        if path == "/health":
            return _json({"status": "ok"})
        if path == "/metrics":
            return Response(self.metrics.render(), media_type=CONTENT_TYPE)
        return Response(self._openapi, media_type="application/json")

    async def _namespace(self, namespace: str, method: str) -> Response:
        if method == "GET":
            store = await self.provider.get(namespace)
            return _json({"namespace": namespace, "capabilities": sorted(self.capabilities(store))})
        if method == "DELETE" and namespace != DEFAULT_NAMESPACE:
            dropped = await self.provider.drop(namespace)
            return _json({"dropped": dropped})
        raise _Problem("MethodNotAllowed", "a namespace answers GET (capabilities) and DELETE (drop its data)",
                       allow="GET" if namespace == DEFAULT_NAMESPACE else "GET, DELETE")

    @staticmethod
    def capabilities(store: SessionStore) -> frozenset[str]:
        """What the store claims, plus ``shared``: every client of this one service process sees one store."""
        return frozenset(store.capabilities) | {"shared"}

    async def _session_route(self, request: Request, namespace: str, prefix: str,
                             rest: list[str]) -> Response:
        method = request.method
        head, tail = rest[0], rest[1:]
        route: str
        table: Mapping[str, tuple[str, Handler]]
        id = ""
        if head == "sessions" and not tail:
            route, table = f"{prefix}/sessions", COLLECTION
        elif head == "sessions" and len(tail) == 1:
            route, table, id = f"{prefix}/sessions/{{id}}", ITEM, wire.unquote_segment(tail[0])
        elif head == "sessions" and len(tail) == 2 and tail[1] in ACTIONS:
            route, id = f"{prefix}/sessions/{{id}}/{tail[1]}", wire.unquote_segment(tail[0])
            table = {"POST": ACTIONS[tail[1]]}
        elif head == "count" and not tail:
            route, table = f"{prefix}/count", {"GET": ("count", _count)}
        elif head == "purge" and not tail:
            route, table = f"{prefix}/purge", {"POST": ("purge", _purge)}
        else:
            raise _Problem("NotFound", "no such route; see /openapi.json")
        request.scope[ROUTE] = route
        if method not in table:
            raise _Problem("MethodNotAllowed", f"{route} answers {', '.join(sorted(table))}",
                           allow=", ".join(sorted(table)))
        store = await self.provider.get(namespace)
        return await table[method][1](store, request, id)


def create_app(provider: StoreProvider, *, token: str | None = None,
               counter_sources: list[CounterSource] | None = None) -> SessionService:
    """The service as an ASGI app (``uvicorn.run(create_app(...))``)."""
    return SessionService(provider, token=token, counter_sources=counter_sources)

