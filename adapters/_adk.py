"""Google ADK session services (``google.adk.sessions``) as a contract store.

Mapping: namespace -> ``app_name``; every session under one ``user_id`` ("sessionspec",
because the contract's ``get(id)`` has no owner to look a session up by); the contract
record -> one session-state key, ``"sessionspec"``, written through ``append_event`` with a
``state_delta``, the only write path ADK has. ADK state deltas can set keys but never
remove one, so the whole contract state lives under that single key (``save`` and
``apply`` with ``DELETE`` could not be expressed otherwise). ``create(id=None)`` lets ADK
generate the id. Reads use ``GetSessionConfig(num_recent_events=0)``: the event log is
out of scope, and loading it would make every read O(history).

Emulated (see ``_base``): versions, expiry (ADK has none), input validation, per-id
serialisation inside one store instance. Out of scope: the ``app:``/``user:``/``temp:``
state prefixes, events, artifacts, ``get_user_state``.
"""

from __future__ import annotations

from typing import Any

from sessionspec.conformance.contract import BackendUnavailable, SessionExists, SessionNotFound, SessionStoreError

from ._base import AdapterStore, Record, Stale

__all__ = ["KEY", "USER", "AdkStore"]

KEY = "sessionspec"
USER = "sessionspec"


class AdkStore(AdapterStore):
    """A ``BaseSessionService`` seen through the contract."""

    framework_ids = True

    def __init__(self, service: Any, namespace: str, *, owns_service: bool = True) -> None:
        super().__init__(namespace)
        from google.adk.sessions.base_session_service import GetSessionConfig

        self.service = service
        self._owns = owns_service
        self._no_events = GetSessionConfig(num_recent_events=0)

    async def _load(self, id: str) -> tuple[Record, Any] | None:
        s = await self.service.get_session(app_name=self.namespace, user_id=USER, session_id=id,
                                           config=self._no_events)
        if s is None:
            return None
        if KEY not in s.state:
            raise SessionStoreError(f"ADK returned session {id!r} without the {KEY!r} state key this adapter wrote")
        return Record.from_json(s.state[KEY]), s

    async def _insert(self, id: str | None, record: Record) -> str:
        from google.adk.errors.already_exists_error import AlreadyExistsError

        try:
            s = await self.service.create_session(app_name=self.namespace, user_id=USER,
                                                  state={KEY: record.to_json()}, session_id=id)
        except AlreadyExistsError:
            raise SessionExists(id or "") from None
        return str(s.id)

    async def _store(self, id: str, record: Record, token: Any) -> None:
        from google.adk.errors._stale_session_error import StaleSessionError
        from google.adk.errors.session_not_found_error import SessionNotFoundError
        from google.adk.events.event import Event
        from google.adk.events.event_actions import EventActions

        event = Event(author="sessionspec", invocation_id="sessionspec",
                      actions=EventActions(state_delta={KEY: record.to_json()}))
        try:
            await self.service.append_event(token, event)
        except StaleSessionError:
            raise Stale from None
        except SessionNotFoundError:
            raise SessionNotFound(id) from None

    async def _remove(self, id: str) -> None:
        await self.service.delete_session(app_name=self.namespace, user_id=USER, session_id=id)

    async def _scan(self) -> list[tuple[str, Record]]:
        listed = await self.service.list_sessions(app_name=self.namespace, user_id=USER)
        return [(s.id, Record.from_json(s.state[KEY])) for s in listed.sessions]

    def _classify(self, exc: Exception) -> SessionStoreError | None:
        return sqlalchemy_error(exc)

    async def _close(self) -> None:
        close = getattr(self.service, "close", None)
        if self._owns and close is not None:
            await close()


def sqlalchemy_error(exc: Exception) -> SessionStoreError | None:
    """SQLAlchemy's connectivity errors (and the drivers' beneath them) -> BackendUnavailable."""
    try:
        from sqlalchemy import exc as sa
    except ImportError:
        return None
    if isinstance(exc, sa.OperationalError) and "database is locked" in str(exc):
        return SessionStoreError(f"SQLite refused the write under contention: {exc}")
    if isinstance(exc, sa.DBAPIError) and (exc.connection_invalidated or isinstance(exc, sa.OperationalError
                                                                                     | sa.InterfaceError)):
        return BackendUnavailable(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, sa.TimeoutError):
        return BackendUnavailable(f"connection pool timeout: {exc}")
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError | ConnectionError | TimeoutError):
        return BackendUnavailable(f"{type(exc).__name__}: {exc}")
    return None
