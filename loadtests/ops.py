"""The workload's operations over HTTP (a FastHttpUser's client) and over a store bridge.

Both report every call to Locust's statistics under the operation's name (``create``,
``apply``, ``verify``...), so requests/s and percentiles read the same for a deployment
and for a store driven directly. Consistency checks are reported as requests of type
``CHECK``: the gates exclude them from latency and error ratio and fail on any failed one.
"""

from __future__ import annotations

import time
from typing import Any, Final
from urllib.parse import quote

from .bridge import BridgeClient, BridgeError
from .workload import Conflict, OpError

__all__ = ["CHECK", "BridgeOps", "HttpOps", "InconsistentSession"]

CHECK: Final = "CHECK"


class InconsistentSession(Exception):
    """A consistency check found lost or duplicated acknowledged writes."""


def _fire_check(environment: Any, name: str, problems: list[str]) -> None:
    environment.events.request.fire(
        request_type=CHECK, name=name, response_time=0, response_length=0, context={},
        exception=InconsistentSession("; ".join(problems)) if problems else None,
    )


def _segment(id: str) -> str:
    return quote(id, safe="").replace(".", "%2E")


class HttpOps:
    """Operations on the reference service through Locust's FastHttpSession."""

    def __init__(self, client: Any, environment: Any, namespace: str | None, token: str | None = None) -> None:
        self.client = client
        self.environment = environment
        self.prefix = "/v1" if namespace is None else f"/v1/ns/{_segment(namespace)}"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _do(self, method: str, path: str, name: str, body: Any = None, expected: int | None = None,
            ok: tuple[int, ...] = (200, 201, 204), absent_ok: bool = False) -> Any:
        headers = dict(self.headers)
        if expected is not None:
            headers["If-Match"] = f'"{expected}"'
        with self.client.request(method, path, name=name, json=body, headers=headers,
                                 catch_response=True) as response:
            status = response.status_code
            if status in ok:
                response.success()
                return None if status == 204 or not response.content else response.json()
            if status == 404 and absent_ok:
                response.success()
                return None
            if status == 412 and expected is not None:
                response.success()  # an optimistic race lost is part of the protocol, not an error
                raise Conflict(name)
            response.failure(f"{status}: {(response.text or '')[:200]}")
            raise OpError(name)

    def create(self, state: dict[str, Any], ttl: float | None) -> dict[str, Any]:
        result: dict[str, Any] = self._do("POST", f"{self.prefix}/sessions", "create", {"state": state, "ttl": ttl})
        return result

    def get(self, id: str, name: str = "get") -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._do("GET", f"{self.prefix}/sessions/{_segment(id)}", name,
                                                 absent_ok=True)
        return result

    def apply(self, id: str, changes: dict[str, Any], expected: int | None = None,
              name: str = "apply") -> dict[str, Any]:
        result: dict[str, Any] = self._do("PATCH", f"{self.prefix}/sessions/{_segment(id)}", name,
                                          {"set": changes}, expected)
        return result

    def append(self, id: str, key: str, items: list[Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._do("POST", f"{self.prefix}/sessions/{_segment(id)}/append", "append",
                                          {"key": key, "items": items})
        return result

    def touch(self, id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._do("POST", f"{self.prefix}/sessions/{_segment(id)}/touch", "touch", {})
        return result

    def delete(self, id: str) -> bool:
        return self._do("DELETE", f"{self.prefix}/sessions/{_segment(id)}", "delete", absent_ok=True) is None

    def purge(self) -> int:
        return int(self._do("POST", f"{self.prefix}/purge", "purge", {})["purged"])

    def check(self, name: str, problems: list[str]) -> None:
        _fire_check(self.environment, name, problems)


def _plain(record: Any) -> dict[str, Any]:
    out = {"id": record.id, "version": record.version}
    if hasattr(record, "state"):
        out["state"] = record.state
    return out


class BridgeOps:
    """Operations on a store target through the bridge, timed and reported as ``STORE`` requests."""

    def __init__(self, bridge: BridgeClient, environment: Any) -> None:
        self.bridge = bridge
        self.environment = environment

    def _call(self, name: str, method: str, *args: Any, conflict_ok: bool = False, **kwargs: Any) -> Any:
        started = time.perf_counter()
        error: Exception | None = None
        result: Any = None
        try:
            result = self.bridge.call(method, *args, **kwargs)
        except BridgeError as exc:
            if not (conflict_ok and exc.kind == "VersionConflict"):
                error = exc
            result = exc
        except OSError as exc:
            error = exc
        self.environment.events.request.fire(
            request_type="STORE", name=name, response_time=(time.perf_counter() - started) * 1000,
            response_length=0, context={}, exception=error)
        if isinstance(result, BridgeError):
            raise Conflict(name) if result.kind == "VersionConflict" else OpError(name)
        if error is not None:
            raise OpError(name)
        return result

    def create(self, state: dict[str, Any], ttl: float | None) -> dict[str, Any]:
        return _plain(self._call("create", "create", state, ttl=ttl))

    def get(self, id: str, name: str = "get") -> dict[str, Any] | None:
        got = self._call(name, "get", id)
        return None if got is None else _plain(got)

    def apply(self, id: str, changes: dict[str, Any], expected: int | None = None,
              name: str = "apply") -> dict[str, Any]:
        return _plain(self._call(name, "apply", id, changes, expected_version=expected,
                                 conflict_ok=expected is not None))

    def append(self, id: str, key: str, items: list[Any]) -> dict[str, Any]:
        return _plain(self._call("append", "append", id, key, items))

    def touch(self, id: str) -> dict[str, Any]:
        return _plain(self._call("touch", "touch", id))

    def delete(self, id: str) -> bool:
        return bool(self._call("delete", "delete", id))

    def purge(self) -> int:
        return int(self._call("purge", "purge_expired"))

    def check(self, name: str, problems: list[str]) -> None:
        _fire_check(self.environment, name, problems)
