"""The CI load smoke: about 20 s of chat load on the service over memory and over Redis, gated on SLOs.

Loopback only, bounded in users (8) and time (10 s per backend). The SLOs here are loose
enough for a shared CI runner (p95 1 s, p99 3 s, under 1 % errors) and strict where it
matters: zero lost or duplicated acknowledged writes, and at least one consistency check.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("locust") is None:  # never import it here: it monkey-patches the whole process
    pytest.skip("pip install sessionspec[load]", allow_module_level=True)

from tests.fixtures.service import running_service
from tests.test_load import gates, load
from tests.test_load import redis_server as redis_server  # the module-scoped provisioning fixture

SMOKE = ("--users", "8", "--duration", "10", "--p95-ms", "1000", "--p99-ms", "3000", "--max-error-ratio", "0.01")


@pytest.fixture(params=[pytest.param("memory", id="memory"),
                        pytest.param("redis", id="redis", marks=pytest.mark.redis)])
def service_url(request: pytest.FixtureRequest) -> Iterator[str]:
    store = "memory" if request.param == "memory" else request.getfixturevalue("redis_server").url
    with running_service(store) as (url, _):
        yield url


def test_load_smoke_meets_its_slos(service_url: str, tmp_path: Path) -> None:
    code, output, verdict = load(service_url, *SMOKE, out=tmp_path)
    assert code == 0, output
    assert all(gates(verdict).values()), output
    assert verdict is not None and verdict["checks"]["requests"] > 0

