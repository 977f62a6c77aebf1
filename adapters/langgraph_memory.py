"""LangGraph ``InMemoryStore``: target ``sessionspec.adapters.langgraph_memory:factory``.

One store per instance (nothing shared), so it claims ``core`` and ``listing``.
``InMemoryStore`` does not support TTL (``supports_ttl = False``: ``aput(ttl=...)`` raises
``NotImplementedError``, langgraph/store/base/__init__.py), so expiry is emulated here.
See ``_langgraph`` for the mapping.
"""

from __future__ import annotations

from ._langgraph import LangGraphStore

__all__ = ["factory"]


def factory(namespace: str) -> LangGraphStore:
    """LangGraph InMemoryStore (embedded; create-if-absent, expiry and versions emulated)"""
    from langgraph.store.memory import InMemoryStore

    store = LangGraphStore(InMemoryStore(), namespace)
    store.capabilities = frozenset({"core", "listing"})
    return store
