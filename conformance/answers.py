"""Calls the store under test has answered, per thread: how a test out of time tells slow from hung.

Every store the suite opens (``targets.open_store``) counts here, whoever calls it: a suite test, a
worker task, or a SessionManager the test built over it. A test that runs out of time while its
store was still answering is "not checked" (too slow for the limit); one whose store had stopped
answering hung (plugin ``_out_of_time``).
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from typing import Any, Final, TypeVar

__all__ = ["COUNTED", "STORE_CALLS", "answered", "count_answers", "counts_itself", "note_answer"]

S = TypeVar("S")
STORE_CALLS: Final = ("create", "get", "save", "apply", "append", "touch", "delete", "list", "count",
                      "purge_expired")
COUNTED: Final = "_sessionspec_counts_answers"
"""Set on a counting wrapper, so a store opened twice (a factory that returns one instance) counts once."""

_ANSWERS = threading.local()
"""Per thread (a background suite test runs on its own): calls answered, and when the last one was."""


def answered() -> tuple[int, float]:
    """(calls this thread's tasks have had answered so far, time.monotonic() of the last answer).

    The plugin reads it when a test runs out of time: a store that was still answering is slow,
    one that had stopped answering is hung."""
    return getattr(_ANSWERS, "count", 0), getattr(_ANSWERS, "last", 0.0)


def note_answer(calls: int = 1) -> None:
    _ANSWERS.count = getattr(_ANSWERS, "count", 0) + calls
    _ANSWERS.last = time.monotonic()


def counts_itself(store: object, operation: str) -> bool:
    """Whether ``store.<operation>`` already counts its answers (wrapped by :func:`count_answers`)."""
    return bool(getattr(getattr(store, operation, None), COUNTED, False))


def count_answers(store: S) -> S:
    """``store`` with each async operation counted when it answers (a result or an error; a cancelled call
    did not answer). Wrapped on the instance, so the store keeps its type for isinstance and its own hooks;
    a store whose attributes cannot be set, or whose operations are not ``async def``, is left as it is."""
    for name in STORE_CALLS:
        method = getattr(store, name, None)
        if method is None or counts_itself(store, name) or not inspect.iscoroutinefunction(method):
            continue
        try:
            setattr(store, name, _counting(method))
        except (AttributeError, TypeError):
            return store
    return store


def _counting(method: Any) -> Any:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            result = await method(*args, **kwargs)
        except Exception:
            note_answer()
            raise
        note_answer()
        return result

    setattr(call, COUNTED, True)
    return call
