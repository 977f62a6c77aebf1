"""Composite keys as data: ("a:b", "c") and ("a", "b:c") are different keys, never joined by a separator.

The parts are encoded as a JSON array (strings and ints only), then hashed into a session
id that is deterministic, so every manager instance over one store derives the same id
for one key: create-if-absent on that id (CC-2) is what makes get_or_create exactly once.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence

from sessionspec.conformance.contract import InvalidSessionId

__all__ = ["KeyPart", "encode_key", "key_id"]

KeyPart = str | int


def encode_key(parts: Sequence[KeyPart]) -> str:
    """The canonical text of a composite key; raises InvalidSessionId naming a bad part."""
    if isinstance(parts, str | bytes) or not isinstance(parts, Sequence) or not parts:
        raise InvalidSessionId(f"a composite key is a non-empty sequence of str/int parts, not {parts!r}")
    for index, part in enumerate(parts):
        if isinstance(part, bool) or not isinstance(part, str | int):
            raise InvalidSessionId(f"key part {index} is {type(part).__name__} {part!r}; parts are str or int")
    return json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))


def key_id(parts: Sequence[KeyPart], *, prefix: str = "k") -> str:
    """The session id for a composite key: ``prefix`` + '_' + 43 URL-safe chars of SHA-256."""
    digest = hashlib.sha256(encode_key(parts).encode()).digest()
    return f"{prefix}_{base64.urlsafe_b64encode(digest).decode().rstrip('=')}"
