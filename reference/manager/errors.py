"""The manager's typed errors: each names the session (or owner) and what went wrong."""

from __future__ import annotations

from collections.abc import Sequence

from sessionspec.conformance.contract import SessionStoreError

__all__ = [
    "CapabilityMissing",
    "ChatNotFound",
    "LeaseLost",
    "LimitExceeded",
    "LockTimeout",
    "ManagerClosed",
    "ManagerError",
    "MergeConflict",
    "UpdateFailed",
]


class ManagerError(SessionStoreError):
    """Base of every error the SessionManager raises on purpose."""


class CapabilityMissing(ManagerError):
    """The store does not claim a capability this manager feature needs (no silent fallback)."""

    def __init__(self, feature: str, capability: str) -> None:
        super().__init__(f"{feature} needs a store that claims {capability!r}; this store does not")
        self.feature, self.capability = feature, capability


class UpdateFailed(ManagerError):
    """update() met a VersionConflict on every attempt within its budget."""

    def __init__(self, id: str, attempts: int, seconds: float) -> None:
        super().__init__(f"session {id!r}: no update committed after {attempts} attempts in {seconds:.2f} s "
                         "(every write met a VersionConflict)")
        self.id, self.attempts, self.seconds = id, attempts, seconds


class MergeConflict(ManagerError):
    """Strategy ``raise``: more than one writer changed these keys to different values."""

    def __init__(self, keys: Sequence[str], id: str | None = None) -> None:
        where = f"session {id!r}: " if id else ""
        super().__init__(f"{where}branches changed the same keys differently: {', '.join(sorted(keys))}")
        self.keys, self.id = tuple(sorted(keys)), id


class LimitExceeded(ManagerError):
    """Policy ``reject``: the owner already has max_active_sessions live sessions."""

    def __init__(self, owner: str, limit: int) -> None:
        super().__init__(f"owner {owner!r} already has the maximum of {limit} active sessions")
        self.owner, self.limit = owner, limit


class ChatNotFound(ManagerError, KeyError):
    """The session has no chat with this id."""

    def __init__(self, id: str, chat: str) -> None:
        super().__init__(f"session {id!r} has no chat {chat!r}")
        self.id, self.chat = id, chat

    def __str__(self) -> str:
        return str(self.args[0])


class LockTimeout(ManagerError):
    """lock() could not take the lease within its timeout."""

    def __init__(self, id: str, timeout: float) -> None:
        super().__init__(f"session {id!r}: the lock was not free within {timeout:g} s")
        self.id, self.timeout = id, timeout


class LeaseLost(ManagerError):
    """A write under a lease whose fencing token is stale: another holder took the lock since."""

    def __init__(self, id: str, token: int, current: int) -> None:
        super().__init__(f"session {id!r}: fencing token {token} is stale (the session is at {current}); "
                         "the lease expired and another holder took it")
        self.id, self.token, self.current = id, token, current


class ManagerClosed(ManagerError):
    """The manager was closed; open a new one."""
