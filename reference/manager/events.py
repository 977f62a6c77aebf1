"""Events as callbacks and as counters (the HTTP service exports :meth:`Events.snapshot`)."""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

__all__ = ["EVENTS", "Event", "Events", "Listener"]

log = logging.getLogger("sessionspec.manager")

Event = Literal["created", "expired", "deleted", "conflict_retried", "merge_conflict", "sweep_run",
                "sweep_error", "evicted", "callback_error"]
EVENTS: Final[tuple[str, ...]] = ("created", "expired", "deleted", "conflict_retried", "merge_conflict",
                                  "sweep_run", "sweep_error", "evicted", "callback_error")
Listener = Callable[[str, dict[str, Any]], Awaitable[None] | None]


class Events:
    """Counts every event and calls its listeners; a failing listener is logged, never raised."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter({name: 0 for name in EVENTS})
        self._listeners: dict[str, list[Listener]] = {}

    def on(self, event: str, listener: Listener) -> None:
        if event not in EVENTS and event != "*":
            raise ValueError(f"unknown event {event!r}; known: {', '.join(EVENTS)} or '*'")
        self._listeners.setdefault(event, []).append(listener)

    async def emit(self, event: str, **data: Any) -> None:
        self.counters[event] += 1
        for listener in [*self._listeners.get(event, ()), *self._listeners.get("*", ())]:
            try:
                result = listener(event, data)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.counters["callback_error"] += 1
                log.exception("session manager: listener for %r failed", event)

    def snapshot(self) -> dict[str, int]:
        """A copy of the counters, every known event present (0 when it never happened)."""
        return dict(self.counters)
