"""Broken identity handling: predictable ids, pattern-matching ids, sanitised invalid ids (ID-*, CC-1)."""

from __future__ import annotations

import fnmatch
import itertools
import re
import secrets
from collections.abc import Mapping
from typing import Any

from sessionspec.conformance.contract import KEEP, Session, TtlArg
from sessionspec.conformance.validation import MAX_ID_LENGTH, validate_id
from sessionspec.reference.memory import MemoryStore

from ._case import broken

_SEQUENCE = itertools.count(1)
_NOT_ALLOWED = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@broken("ID-1")
class SequentialIds(MemoryStore):
    """Generated ids count up (000…01, 000…02): right alphabet and length, no randomness at all."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        if id is None:
            id = f"{next(_SEQUENCE):032x}"
        return await super().create(state, id=id, owner=owner, ttl=ttl)


@broken("CC-1", "ID-1")
class EightBitIds(MemoryStore):
    """Generated ids carry 8 random bits: among 1000 creates some must collide (pigeonhole)."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        if id is None:
            id = f"sess-{secrets.randbelow(256):027d}"
        return await super().create(state, id=id, owner=owner, ttl=ttl)


@broken("ID-2")
class DeleteMatchesGlob(MemoryStore):
    """delete() treats the id as a glob (like Redis KEYS/SCAN MATCH): ``*`` deletes every session."""

    async def delete(self, id: str) -> bool:
        pattern = validate_id(id)
        doomed: list[str] = []
        cursor: str | None = None
        while True:
            page = await self.list(limit=1000, cursor=cursor)
            doomed += [info.id for info in page.items if fnmatch.fnmatchcase(info.id, pattern)]
            cursor = page.next_cursor
            if cursor is None:
                break
        deleted = False
        for sid in doomed:  # a loop, not a comprehension: zero-argument super() needs the method's frame
            deleted = await super().delete(sid) or deleted
        return deleted


@broken("ID-3")
class InvalidIdSanitised(MemoryStore):
    """create() strips control characters and surrogates from a client id and writes the rest."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        if isinstance(id, str):
            id = _NOT_ALLOWED.sub("", id)[:MAX_ID_LENGTH] or "_"
        return await super().create(state, id=id, owner=owner, ttl=ttl)


@broken("ID-2")
class IdsCappedAt128(MemoryStore):
    """create() refuses client ids over 128 characters with a database-style error (a VARCHAR(128) column):
    ID-2 allows 256. ID-3's setup creates a 256-character sentinel, and must blame ID-2, not itself."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        if id is not None and len(id) > 128:
            raise RuntimeError("value too long for type character varying(128)")
        return await super().create(state, id=id, owner=owner, ttl=ttl)
