"""The session-store contract: the types every store implements and every test speaks.

These names belong to the specification (docs/spec.md), not to any implementation, so
third parties import them from ``sessionspec.conformance`` and the reference stores
implement them. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol, runtime_checkable

__all__ = [
    "CAPABILITIES",
    "DELETE",
    "KEEP",
    "BackendUnavailable",
    "Delete",
    "InvalidSessionId",
    "InvalidState",
    "InvalidTtl",
    "Keep",
    "Page",
    "Session",
    "SessionExists",
    "SessionInfo",
    "SessionNotFound",
    "SessionStore",
    "SessionStoreError",
    "TtlArg",
    "VersionConflict",
]


class Keep:
    """Sentinel type: ``ttl=KEEP`` keeps the current period (on create: the store's default)."""

    _instance: Keep | None = None

    def __new__(cls) -> Keep:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "KEEP"

    def __reduce__(self) -> str:
        return "KEEP"


class Delete:
    """Sentinel type: a value of ``DELETE`` in ``apply`` removes that top-level key."""

    _instance: Delete | None = None

    def __new__(cls) -> Delete:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DELETE"

    def __reduce__(self) -> str:
        return "DELETE"


KEEP: Final = Keep()
DELETE: Final = Delete()

TtlArg = float | None | Keep
"""What every ``ttl=`` parameter accepts: seconds, ``None`` for never, or ``KEEP``."""

Capability = Literal["core", "atomic", "listing", "shared", "durable"]
CAPABILITIES: Final[frozenset[str]] = frozenset({"core", "atomic", "listing", "shared", "durable"})


# ---------------------------------------------------------------- errors
class SessionStoreError(Exception):
    """Base of every error a store raises on purpose; callers catch this, not driver errors."""


class SessionNotFound(SessionStoreError, KeyError):
    """The id names no live session (never created, deleted, or expired)."""

    def __init__(self, id: str) -> None:
        super().__init__(f"no live session with id {id!r}")
        self.id = id

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class SessionExists(SessionStoreError):
    """create() was given the id of a live session."""

    def __init__(self, id: str) -> None:
        super().__init__(f"a live session with id {id!r} already exists")
        self.id = id


class VersionConflict(SessionStoreError):
    """expected_version did not match: somebody else wrote first. Re-read and retry."""

    def __init__(self, id: str, expected: int, actual: int | None) -> None:
        super().__init__(
            f"session {id!r}: expected version {expected}, but the stored version is {actual}"
        )
        self.id = id
        self.expected = expected
        self.actual = actual


class InvalidSessionId(SessionStoreError, ValueError):
    """An id or owner breaks ID-2/ID-3; raised before any backend call."""


class InvalidState(SessionStoreError, ValueError):
    """State is not a JSON object the store can hold (ST-1, ST-2); ``path`` names where."""

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(f"{message} at {path}")
        self.path = path


class InvalidTtl(SessionStoreError, ValueError):
    """ttl is not None, KEEP, or a finite number > 0 (TTL-0)."""


class BackendUnavailable(SessionStoreError):
    """The backend could not be reached in time. Never answered by a silent fallback (FL-1)."""


# ---------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session's metadata. Datetimes are timezone-aware UTC; expires_at None means never."""

    id: str
    owner: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    ttl: float | None


@dataclass(frozen=True, slots=True)
class Session(SessionInfo):
    """SessionInfo plus ``state``: a fresh dict the caller owns (ST-3)."""

    state: dict[str, Any] = field(default_factory=dict)

    def info(self) -> SessionInfo:
        """The metadata alone, e.g. to compare with what ``list`` returns."""
        return SessionInfo(
            self.id, self.owner, self.version, self.created_at, self.updated_at, self.expires_at, self.ttl
        )


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ``list``: items ordered by id; next_cursor None on the last page."""

    items: list[SessionInfo]
    next_cursor: str | None


# ---------------------------------------------------------------- the protocol
@runtime_checkable
class SessionStore(Protocol):
    """What a session store is. See docs/spec.md for every clause each method must keep."""

    capabilities: frozenset[str]

    async def create(
        self,
        state: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        owner: str | None = None,
        ttl: TtlArg = KEEP,
    ) -> Session: ...

    async def get(self, id: str) -> Session | None: ...

    async def save(
        self,
        id: str,
        state: Mapping[str, Any],
        *,
        expected_version: int | None = None,
        ttl: TtlArg = KEEP,
    ) -> Session: ...

    async def apply(
        self, id: str, changes: Mapping[str, Any], *, expected_version: int | None = None
    ) -> Session: ...

    async def append(
        self, id: str, key: str, items: Sequence[Any], *, expected_version: int | None = None
    ) -> SessionInfo: ...

    async def touch(self, id: str, *, ttl: TtlArg = KEEP) -> SessionInfo: ...

    async def delete(self, id: str) -> bool: ...

    async def list(
        self, *, owner: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page: ...

    async def count(self, *, owner: str | None = None) -> int: ...

    async def purge_expired(self) -> int: ...

    async def aclose(self) -> None: ...
