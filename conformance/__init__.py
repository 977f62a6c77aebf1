"""sessionspec.conformance: the session-store contract and the suite that checks it.

Third parties import the contract types from here::

    from sessionspec.conformance import SessionStore, Session, KEEP, DELETE, SessionNotFound
"""

from .clauses import CLAUSES, Clause, clause, get_clause
from .contract import (
    CAPABILITIES,
    DELETE,
    KEEP,
    BackendUnavailable,
    Delete,
    InvalidSessionId,
    InvalidState,
    InvalidTtl,
    Keep,
    Page,
    Session,
    SessionExists,
    SessionInfo,
    SessionNotFound,
    SessionStore,
    SessionStoreError,
    TtlArg,
    VersionConflict,
)

__all__ = [
    "CAPABILITIES",
    "CLAUSES",
    "DELETE",
    "KEEP",
    "BackendUnavailable",
    "Clause",
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
    "clause",
    "get_clause",
]
