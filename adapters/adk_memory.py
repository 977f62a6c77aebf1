"""Google ADK ``InMemorySessionService``: target ``sessionspec.adapters.adk_memory:factory``.

One service per store instance, so nothing is shared between instances or processes:
claims ``core`` and ``listing`` only. ADK's in-memory ``append_event`` has no stale-session
check (google/adk/sessions/in_memory_session_service.py, ``append_event``), so there is no
conflict detection to build ``atomic`` on. Expiry is emulated (ADK has none). See
``_adk`` for the mapping.
"""

from __future__ import annotations

from ._adk import AdkStore

__all__ = ["factory"]


def factory(namespace: str) -> AdkStore:
    """ADK InMemorySessionService (embedded; expiry and versions emulated)"""
    from google.adk.sessions import InMemorySessionService

    store = AdkStore(InMemorySessionService(), namespace)
    store.capabilities = frozenset({"core", "listing"})
    return store
