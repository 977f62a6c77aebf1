"""What a suite test gets: the store under test, more instances of it, and the backdoors.

Every suite test takes one argument, ``ctx``. The plugin opens ``ctx.store`` on a fresh
namespace before the test and closes everything (restarting a stopped backend, dropping
the namespace) after it, whatever happened, so one test can never poison the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from .contract import SessionStore

if TYPE_CHECKING:
    from .faultproxy import FaultProxy
from .results import NOT_APPLICABLE
from .targets import Target, open_store

__all__ = ["OPEN_TIMEOUT", "BackendRestartFailed", "SuiteContext", "new_namespace"]

T = TypeVar("T")
OPEN_TIMEOUT = 30.0


class BackendRestartFailed(RuntimeError):
    """start_backend failed twice: every later test would meet a dead backend, so the run stops (void)."""


def new_namespace() -> str:
    """A namespace no other test, run or process will use."""
    return f"ss{uuid.uuid4().hex[:16]}"


class SuiteContext:
    """Per-test handle on the target. Async tests run on ``self.runner``'s loop."""

    store: SessionStore

    def __init__(self, target: Target, capabilities: frozenset[str], *, timeout: float,
                 replay: dict[str, str] | None = None) -> None:
        self.target = target
        self.replay: dict[str, str] = dict(replay or {})
        """Model-check variant -> Hypothesis blob to replay (``sessionspec check --replay``)."""
        self.capabilities = capabilities
        self.timeout = timeout
        self.namespace = new_namespace()
        self.runner = asyncio.Runner()
        self.artifacts: dict[str, Any] = {}
        self._stack = contextlib.AsyncExitStack()
        self._backend_stopped = False
        self.backend_dead: str | None = None
        """Set when start_backend failed twice: the plugin stops the run and says why."""
        self.backend_note: str | None = None
        """Set when start_backend failed once and a second try brought the backend back."""

    # -- lifecycle (driven by the plugin) --------------------------------------------
    async def open(self) -> None:
        self.store = await asyncio.wait_for(
            self._stack.enter_async_context(open_store(self.target, self.namespace)), OPEN_TIMEOUT
        )

    async def close(self) -> None:
        if self._backend_stopped:
            await self.start_backend()
        try:
            if self.target.drop_namespace is not None and hasattr(self, "store"):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.target.drop_namespace(self.store, self.namespace), OPEN_TIMEOUT)
        finally:
            await self._stack.aclose()

    def run(self, coro: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run a coroutine on this test's loop (sync tests, e.g. Hypothesis machines, use this)."""
        return self.runner.run(asyncio.wait_for(coro, timeout or self.timeout))

    # -- what the tests use -----------------------------------------------------------
    def claims(self, capability: str) -> bool:
        return capability in self.capabilities

    def require(self, capability: str, why: str = "") -> None:
        """Skip (with the reason shown) unless the store claims ``capability``."""
        if capability not in self.capabilities:
            pytest.skip(f"the store does not claim {capability!r}" + (f" ({why})" if why else ""))

    async def another_store(self, namespace: str | None = None) -> SessionStore:
        """A further, independent store instance (same namespace by default), closed after the test."""
        return await asyncio.wait_for(
            self._stack.enter_async_context(open_store(self.target, namespace or self.namespace)),
            OPEN_TIMEOUT,
        )

    def require_backend_control(self) -> None:
        if not self.target.controllable:
            pytest.skip(
                f"{NOT_APPLICABLE}: the target has no backend the suite can stop and start "
                "(an embedded store, or a URL the suite does not own; use `redis`/`postgres` or a "
                "factory module with stop_backend/start_backend hooks)"
            )

    async def stop_backend(self) -> None:
        self.require_backend_control()
        assert self.target.stop_backend is not None
        self._backend_stopped = True
        await _maybe_await(self.target.stop_backend())

    async def start_backend(self) -> None:
        """Bring the backend back; one retry, and if that fails too the run is void (BackendRestartFailed)."""
        assert self.target.start_backend is not None
        try:
            await _maybe_await(self.target.start_backend())
        except Exception as first:
            try:
                await _maybe_await(self.target.start_backend())
            except Exception as exc:
                self.backend_dead = (f"start_backend failed twice ({type(first).__name__}: {first}; then "
                                     f"{type(exc).__name__}: {exc}); the backend is down")
                self._backend_stopped = False  # no third try in close()
                raise BackendRestartFailed(self.backend_dead) from exc
            self.backend_note = f"start_backend failed once ({type(first).__name__}: {first}) and was retried"
            self.attach("backend", self.backend_note)
        self._backend_stopped = False

    async def proxied_store(self) -> tuple[SessionStore, FaultProxy]:
        """A further store instance whose connections run through a FaultProxy in front of the real server
        (n/a when the target names no TCP address): FL-1 black-holes it to meet a stalled backend."""
        from dataclasses import replace

        from .faultproxy import FaultProxy

        if self.target.backend_address is None or self.target.via_port is None:
            pytest.skip(f"{NOT_APPLICABLE}: the target names no TCP server address to put a fault proxy in front "
                        "of (a factory module can black-hole its own backend: stop_backend = proxy.set_mode('stall'),"
                        " docs/plugging-in.md)")
        proxy = await asyncio.to_thread(FaultProxy.start, *self.target.backend_address)
        self._stack.callback(proxy.close)
        proxied = replace(self.target, factory=self.target.via_port(proxy.port))
        store = await asyncio.wait_for(self._stack.enter_async_context(open_store(proxied, self.namespace)),
                                       OPEN_TIMEOUT)
        # runs before the store closes (the stack unwinds last-in first): a store never closes into a black hole
        self._stack.push_async_callback(asyncio.to_thread, proxy.set_mode, "pass")
        return store, proxy

    async def raw_ttl(self, id: str) -> float | None:
        """The remaining TTL the backend itself holds for ``id`` (None = no expiry; KeyError if absent)."""
        if self.target.raw_ttl is None:
            pytest.skip(f"{NOT_APPLICABLE}: the target offers no raw_ttl backdoor")
        return await self.target.raw_ttl(self.store, id)

    def attach(self, name: str, value: Any) -> None:
        """Keep something for the report (a history, a seed, the failing example)."""
        self.artifacts[name] = value


async def _maybe_await(value: Awaitable[None] | None) -> None:
    if inspect.isawaitable(value):
        await value
