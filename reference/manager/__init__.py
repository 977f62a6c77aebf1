"""sessionspec.reference.manager: the SessionManager an application calls, on any conforming store.

See docs/manager.md. ``merge`` works on its own; everything else goes through
:class:`SessionManager`, which speaks only the SessionStore protocol.
"""

from .branches import Branch, Branches
from .chats import ChatInfo, Chats
from .errors import (
    CapabilityMissing,
    ChatNotFound,
    LeaseLost,
    LimitExceeded,
    LockTimeout,
    ManagerClosed,
    ManagerError,
    MergeConflict,
    UpdateFailed,
)
from .events import EVENTS, Events
from .facade import AsyncConversationStore, ConversationStore
from .keys import encode_key, key_id
from .lease import Lock
from .lifespan import session_lifespan
from .manager import DEFAULT_SWEEP_INTERVAL, SessionManager, SweepReport
from .merge import STRATEGIES, MergeResult, apply_changes, changes, merge
from .meta import META_KEY, Activity
from .scopes import ScopedState
from .update import Backoff

__all__ = [
    "DEFAULT_SWEEP_INTERVAL",
    "EVENTS",
    "META_KEY",
    "STRATEGIES",
    "Activity",
    "AsyncConversationStore",
    "Backoff",
    "Branch",
    "Branches",
    "CapabilityMissing",
    "ChatInfo",
    "ChatNotFound",
    "Chats",
    "ConversationStore",
    "Events",
    "LeaseLost",
    "LimitExceeded",
    "Lock",
    "LockTimeout",
    "ManagerClosed",
    "ManagerError",
    "MergeConflict",
    "MergeResult",
    "ScopedState",
    "SessionManager",
    "SweepReport",
    "UpdateFailed",
    "apply_changes",
    "changes",
    "encode_key",
    "key_id",
    "merge",
    "session_lifespan",
]
