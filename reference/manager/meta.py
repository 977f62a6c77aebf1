"""The manager's own record inside each session's state: absolute deadline, activity, fencing token.

The store contract has no metadata field, so the manager keeps one reserved top-level key,
:data:`META_KEY`, which it strips from every state it hands out and refuses in every state
it is given. Because it lives in the stored state, every manager instance sees the same
absolute deadline, request count and fence.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sessionspec.conformance.contract import InvalidState, Keep, Session, TtlArg

__all__ = ["META_KEY", "MIN_TTL", "Activity", "check_user_state", "deadline_of", "meta_of", "past_deadline",
           "remaining_ttl", "user_view"]

META_KEY: Final = "__session__"
MIN_TTL: Final = 0.001
"""The shortest period the manager asks a store for (TTL-0 wants > 0): 'expire now'."""


def meta_of(state: Mapping[str, Any]) -> dict[str, Any]:
    value = state.get(META_KEY)
    return dict(value) if isinstance(value, Mapping) else {}


def user_view(session: Session) -> Session:
    """The session as applications see it: the state without the manager's reserved key."""
    if META_KEY not in session.state:
        return session
    state = {k: v for k, v in session.state.items() if k != META_KEY}
    return Session(session.id, session.owner, session.version, session.created_at, session.updated_at,
                   session.expires_at, session.ttl, state)


def check_user_state(state: Mapping[str, Any], what: str = "state") -> None:
    if META_KEY in state:
        raise InvalidState(f"the top-level key {META_KEY!r} is reserved for the session manager; {what} "
                           "must not set it", f"$.{META_KEY}")


def remaining_ttl(meta: Mapping[str, Any], idle: TtlArg, now: float | None = None) -> TtlArg:
    """The period to write with: the idle timeout, cut to what is left of the absolute lifetime.

    Returns ``idle`` when there is no absolute deadline; otherwise min(idle, left), at least
    MIN_TTL (a session past its deadline is then gone within a millisecond).
    """
    deadline = deadline_of(meta)
    if deadline is None:
        return idle
    left = max(MIN_TTL, deadline - (time.time() if now is None else now))
    return left if idle is None or isinstance(idle, Keep) else min(idle, left)


def deadline_of(meta: Mapping[str, Any]) -> float | None:
    deadline = meta.get("deadline")
    return float(deadline) if isinstance(deadline, int | float) and not isinstance(deadline, bool) else None


def past_deadline(meta: Mapping[str, Any], now: float | None = None) -> bool:
    deadline = deadline_of(meta)
    return deadline is not None and (time.time() if now is None else now) >= deadline


@dataclass(frozen=True, slots=True)
class Activity:
    """What an application shows about a session: SQL-style expires_at, last_activity, request_count."""

    id: str
    owner: str | None
    created_at: datetime
    last_activity: datetime
    request_count: int
    expires_at: datetime | None
    """When the store will expire it (idle timeout), never later than ``absolute_deadline``."""
    absolute_deadline: datetime | None

    @classmethod
    def of(cls, session: Session) -> Activity:
        meta = meta_of(session.state)
        last = meta.get("last_activity")
        deadline = meta.get("deadline")
        expires = session.expires_at
        if isinstance(deadline, int | float) and math.isfinite(deadline):
            cap = datetime.fromtimestamp(deadline, UTC)
            expires = cap if expires is None else min(expires, cap)
        return cls(session.id, session.owner, session.created_at,
                   datetime.fromtimestamp(last, UTC) if isinstance(last, int | float) else session.updated_at,
                   int(meta.get("requests", 0)), expires,
                   datetime.fromtimestamp(deadline, UTC) if isinstance(deadline, int | float) else None)
