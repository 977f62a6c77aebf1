"""Chats within a session: create, list, switch, delete; exactly one active chat; atomic histories.

The session's state holds ``chats`` (id -> title and creation time) and ``active_chat``:
one key, so there can never be two active chats, whatever concurrent switches do. Each
chat's history is its own top-level list ``chat:<id>``, extended with the store's atomic
``append`` (no read-modify-write of the history, ever).
"""

from __future__ import annotations

import builtins
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sessionspec.conformance.contract import SessionNotFound

from .errors import ChatNotFound

if TYPE_CHECKING:
    from .manager import SessionManager

__all__ = ["ACTIVE", "CHATS", "ChatInfo", "Chats", "history_key"]

CHATS: Final = "chats"
ACTIVE: Final = "active_chat"


def history_key(chat: str) -> str:
    return f"chat:{chat}"


@dataclass(frozen=True, slots=True)
class ChatInfo:
    id: str
    title: str | None
    created_at: float
    active: bool


class Chats:
    """The chats of one session (``mgr.chats(id)``)."""

    def __init__(self, mgr: SessionManager, id: str) -> None:
        self.mgr, self.id = mgr, id

    async def create(self, title: str | None = None, *, activate: bool = True, chat_id: str | None = None) -> str:
        """A new chat (active unless ``activate=False``; the first chat is always active); returns its id."""
        chat = chat_id or secrets.token_urlsafe(8)

        def add(state: dict[str, Any]) -> None:
            chats = dict(state.get(CHATS) or {})
            chats.setdefault(chat, {"title": title, "created_at": time.time()})
            state[CHATS] = chats
            state.setdefault(history_key(chat), [])
            if activate or state.get(ACTIVE) not in chats:
                state[ACTIVE] = chat

        await self.mgr.update(self.id, add)
        return chat

    async def list(self) -> builtins.list[ChatInfo]:
        state = await self._state()
        active = state.get(ACTIVE)
        return [ChatInfo(c, v.get("title"), float(v.get("created_at", 0)), c == active)
                for c, v in sorted((state.get(CHATS) or {}).items(), key=lambda kv: kv[1].get("created_at", 0))]

    async def active(self) -> str | None:
        return (await self._state()).get(ACTIVE)

    async def switch(self, chat: str) -> None:
        """Make ``chat`` the active one (ChatNotFound if the session has no such chat)."""

        def select(state: dict[str, Any]) -> None:
            if chat not in (state.get(CHATS) or {}):
                raise ChatNotFound(self.id, chat)
            state[ACTIVE] = chat

        await self.mgr.update(self.id, select)

    async def delete(self, chat: str) -> None:
        """Remove the chat and its history; if it was active, the newest remaining chat becomes active."""

        def remove(state: dict[str, Any]) -> None:
            chats = dict(state.get(CHATS) or {})
            if chats.pop(chat, None) is None:
                raise ChatNotFound(self.id, chat)
            state[CHATS] = chats
            state.pop(history_key(chat), None)
            if state.get(ACTIVE) == chat:
                newest = max(chats, key=lambda c: chats[c].get("created_at", 0), default=None)
                state[ACTIVE] = newest

        await self.mgr.update(self.id, remove)

    async def append(self, chat: str | None, messages: Sequence[Any]) -> None:
        """Append to ``chat``'s history (the active chat when None), atomically."""
        state = await self._state()
        target = chat or state.get(ACTIVE)
        if target is None or target not in (state.get(CHATS) or {}):
            raise ChatNotFound(self.id, str(target))
        await self.mgr.append(self.id, history_key(target), messages)

    async def history(self, chat: str | None = None) -> builtins.list[Any]:
        state = await self._state()
        target = chat or state.get(ACTIVE)
        if target is None or target not in (state.get(CHATS) or {}):
            raise ChatNotFound(self.id, str(target))
        return list(state.get(history_key(target)) or [])

    async def _state(self) -> dict[str, Any]:
        session = await self.mgr.get(self.id)
        if session is None:
            raise SessionNotFound(self.id)
        return session.state

