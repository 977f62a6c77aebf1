"""sessionspec.reference: reference implementations of the session-store contract.

MemoryStore is the embedded default; RedisStore and PostgresStore need their drivers
(``pip install sessionspec[redis]`` / ``[postgres]``) and are imported lazily so a
missing driver never breaks ``import sessionspec.reference``.
"""

from typing import TYPE_CHECKING, Any

from .memory import MemoryStore

if TYPE_CHECKING:
    from .postgres import PostgresStore
    from .redis import RedisStore

__all__ = ["MemoryStore", "PostgresStore", "RedisStore"]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":
        from .redis import RedisStore

        return RedisStore
    if name == "PostgresStore":
        from .postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
