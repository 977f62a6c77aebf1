"""The reference HTTP API's wire format, shared by the service and :class:`HttpStore`.

One module says how a session looks in JSON, how a contract error becomes an
``application/problem+json`` body and back, and how an id becomes one opaque path
segment, so the server and the client cannot drift apart. Nothing here does I/O and
nothing imports Starlette or httpx.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote, unquote

from sessionspec.conformance.contract import (
    BackendUnavailable,
    InvalidSessionId,
    InvalidState,
    InvalidTtl,
    Page,
    Session,
    SessionExists,
    SessionInfo,
    SessionNotFound,
    SessionStoreError,
    VersionConflict,
)

__all__ = [
    "PROBLEM_TYPE",
    "STATUS",
    "HttpProtocolError",
    "decode_info",
    "decode_page",
    "decode_session",
    "dumps",
    "encode_info",
    "encode_page",
    "encode_session",
    "error_from_problem",
    "etag",
    "parse_if_match",
    "problem_for",
    "quote_segment",
    "unquote_segment",
]

PROBLEM_TYPE: Final = "https://sessionspec.dev/problems/"
"""Prefix of every problem ``type``; the suffix is the contract error's name."""

STATUS: Final[dict[str, int]] = {
    "SessionNotFound": 404,
    "SessionExists": 409,
    "VersionConflict": 412,
    "InvalidSessionId": 400,
    "InvalidState": 422,
    "InvalidTtl": 422,
    "InvalidArgument": 400,
    "BadRequest": 400,
    "Unauthorized": 401,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "BackendUnavailable": 503,
    "InternalError": 500,
}
"""HTTP status of each problem the service answers with (the ``error`` member names it)."""


class HttpProtocolError(SessionStoreError):
    """The service answered something the contract has no error for (auth, a wrong URL, a 500)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


try:
    import orjson

    def dumps(value: Any) -> bytes:
        """Compact UTF-8 JSON (orjson: validated states never hold what it refuses)."""
        return orjson.dumps(value)
except ImportError:  # pragma: no cover - orjson ships with the redis/postgres/service extras

    def dumps(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


# ---------------------------------------------------------------- ids and versions
def quote_segment(value: str) -> str:
    """An id as one path segment: everything but ``[A-Za-z0-9_~-]`` percent-encoded (``.`` too,
    so ``..`` can never be read as a dot segment and ``/`` never splits the path)."""
    return quote(value, safe="").replace(".", "%2E")


def unquote_segment(segment: str) -> str:
    """The id a raw (still percent-encoded) path segment names; bad UTF-8 -> InvalidSessionId."""
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise InvalidSessionId("the id is not percent-encoded UTF-8") from None


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(value: str | None) -> int | None:
    """``If-Match: "7"`` (or ``7``, or ``W/"7"``) -> 7; absent -> None."""
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.lstrip("-").isdigit():
        raise ValueError(f"If-Match must carry a session version (an integer ETag), got {value!r}")
    return int(text)


# ---------------------------------------------------------------- records
def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def encode_info(info: SessionInfo) -> dict[str, Any]:
    return {
        "id": info.id, "owner": info.owner, "version": info.version,
        "created_at": _time(info.created_at), "updated_at": _time(info.updated_at),
        "expires_at": _time(info.expires_at), "ttl": info.ttl,
    }


def encode_session(session: Session) -> dict[str, Any]:
    return {**encode_info(session), "state": session.state}


def encode_page(page: Page) -> dict[str, Any]:
    return {"items": [encode_info(i) for i in page.items], "next_cursor": page.next_cursor}


_Fields = tuple[str, Any, int, datetime, datetime, datetime | None, float | None]


def _fields(body: Mapping[str, Any]) -> _Fields:
    try:
        expires = body["expires_at"]
        ttl = body["ttl"]
        return (
            str(body["id"]), body["owner"], int(body["version"]),
            datetime.fromisoformat(body["created_at"]), datetime.fromisoformat(body["updated_at"]),
            None if expires is None else datetime.fromisoformat(expires),
            None if ttl is None else float(ttl),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise HttpProtocolError(f"the service sent a malformed session record ({type(exc).__name__}: {exc})") from None


def decode_info(body: Mapping[str, Any]) -> SessionInfo:
    return SessionInfo(*_fields(body))


def decode_session(body: Mapping[str, Any]) -> Session:
    state = body.get("state")
    if not isinstance(state, dict):
        raise HttpProtocolError("the service sent a session without a state object")
    id, owner, version, created, updated, expires, ttl = _fields(body)
    return Session(id, owner, version, created, updated, expires, ttl, state)


def decode_page(body: Mapping[str, Any]) -> Page:
    items = body.get("items")
    cursor = body.get("next_cursor")
    if not isinstance(items, list) or not (cursor is None or isinstance(cursor, str)):
        raise HttpProtocolError("the service sent a malformed page")
    return Page([decode_info(i) for i in items], cursor)


# ---------------------------------------------------------------- errors
def problem_for(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and problem+json body for an error a store (or the request) raised."""
    name = type(exc).__name__
    extra: dict[str, Any] = {}
    for base in (SessionNotFound, SessionExists, VersionConflict, InvalidSessionId, InvalidState, InvalidTtl,
                 BackendUnavailable):
        if isinstance(exc, base):
            name = base.__name__
            break
    else:
        name = "InvalidArgument" if isinstance(exc, ValueError | TypeError) else "InternalError"
    if isinstance(exc, VersionConflict):
        extra = {"expected": exc.expected, "actual": exc.actual}
    elif isinstance(exc, InvalidState):
        extra = {"path": exc.path}
    detail = str(exc) if name != "InternalError" else "the service failed; see its logs"
    return problem(name, detail, **extra)


def problem(name: str, detail: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    status = STATUS[name]
    return status, {"type": PROBLEM_TYPE + name, "title": name, "status": status, "error": name,
                    "detail": detail, **extra}


def error_from_problem(status: int, body: Any, *, id: str = "") -> Exception:
    """The contract error a problem response stands for (raised by HttpStore)."""
    name = body.get("error") if isinstance(body, dict) else None
    detail = str(body.get("detail", "")) if isinstance(body, dict) else ""
    if name == "SessionNotFound":
        return SessionNotFound(id)
    if name == "SessionExists":
        return SessionExists(id)
    if name == "VersionConflict":
        actual = body.get("actual")
        return VersionConflict(id, int(body.get("expected", -1)), None if actual is None else int(actual))
    if name == "InvalidSessionId":
        return InvalidSessionId(detail)
    if name == "InvalidState":
        text = detail.rsplit(" at ", 1)[0] if " at " in detail else detail
        return InvalidState(text, str(body.get("path", "$")))
    if name == "InvalidTtl":
        return InvalidTtl(detail)
    if name == "InvalidArgument":
        return ValueError(detail)
    if name == "BackendUnavailable" or status in (502, 503, 504):
        return BackendUnavailable(f"the service reports its backend unavailable: {detail or status}")
    return HttpProtocolError(f"the service answered {status} {name or ''}: {detail}".rstrip(": "), status)
