"""How the suite gets a SessionManager for the store under test (MG-3, MG-4, MG-6.., SC-*).

The manager clauses check what applications do with a store, through the reference
``SessionManager``. A target may hand the suite its own manager instead (a wrapper, or the
project's deliberately broken managers): give the factory an attribute
``sessionspec_manager``, a callable ``(store, **options) -> SessionManager``::

    def factory(namespace): ...
    factory.sessionspec_manager = MyManager

Managers built here have no background sweeper unless a test asks for one, and are
closed by the test that built them (``async with``).
"""

from __future__ import annotations

from typing import Any

from sessionspec.reference.manager import SessionManager

from .context import SuiteContext
from .contract import SessionStore

__all__ = ["HOOK", "manager_for"]

HOOK = "sessionspec_manager"


def manager_for(ctx: SuiteContext, store: SessionStore | None = None, **options: Any) -> SessionManager:
    """A manager over ``store`` (default ``ctx.store``) built by the target's hook or the reference class."""
    build = getattr(ctx.target.factory, HOOK, None) or SessionManager
    options.setdefault("sweep_interval", None)
    manager: SessionManager = build(ctx.store if store is None else store, **options)
    return manager
