"""The reference HTTP service: problem+json errors, opaque ids, auth, metrics, no ids in logs.

Most tests talk to the ASGI app in process (httpx's ASGITransport: no socket, no timing);
the logging and token tests run the real ``sessionspec serve`` under uvicorn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="pip install sessionspec[service]")
pytest.importorskip("starlette", reason="pip install sessionspec[service]")

from sessionspec.reference import MemoryStore  # noqa: E402
from sessionspec.reference.service import SessionService, StoreProvider, create_app  # noqa: E402
from sessionspec.reference.service.wire import quote_segment  # noqa: E402
from tests.fixtures.service import running_service  # noqa: E402

HOSTILE_IDS = ["a/b", "a%2Fb", "..", ".", "../x", "?", "#frag", "%", "*", "a:b", "{t}", "[x]", "_",
               "' OR '1'='1", "세션", "🙂", " leading", "trailing ", "a+b", "a b", "~", "a;b", "a\\b"]


class FakeManager:
    """Anything with counters() can be attached (the reference SessionManager has one)."""

    def counters(self) -> Mapping[str, int]:
        return {"merges": 3, "merge conflicts": 1}


@pytest.fixture
def app() -> SessionService:
    return create_app(StoreProvider.from_factory(lambda ns: MemoryStore()), counter_sources=[FakeManager()])


async def _client(app: SessionService) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_every_contract_error_is_problem_json_naming_it(app: SessionService) -> None:
    async def go() -> dict[str, tuple[int, dict[str, Any], str]]:
        seen = {}
        async with await _client(app) as c:
            created = (await c.post("/v1/sessions", json={"id": "s1", "state": {"a": 1}})).json()
            for name, response in {
                "SessionNotFound": await c.get("/v1/sessions/missing"),
                "SessionExists": await c.post("/v1/sessions", json={"id": "s1"}),
                "VersionConflict": await c.put("/v1/sessions/s1", json={"state": {}},
                                               headers={"If-Match": f'"{created["version"] + 5}"'}),
                "InvalidSessionId": await c.get("/v1/sessions/" + quote_segment("a\x00b")),
                "InvalidState": await c.put("/v1/sessions/s1", content=b'{"state": {"n": [1, {"x": 1e400}]}}'),
                "InvalidTtl": await c.post("/v1/sessions", json={"ttl": -1}),
                "InvalidArgument": await c.get("/v1/sessions", params={"limit": "0"}),
            }.items():
                seen[name] = (response.status_code, response.json(), response.headers["content-type"])
        return seen

    seen = run(go())
    statuses = {name: status for name, (status, _, _) in seen.items()}
    assert statuses == {"SessionNotFound": 404, "SessionExists": 409, "VersionConflict": 412,
                        "InvalidSessionId": 400, "InvalidState": 422, "InvalidTtl": 422, "InvalidArgument": 400}
    for name, (status, body, content_type) in seen.items():
        assert content_type == "application/problem+json"
        assert body["error"] == name and body["title"] == name and body["status"] == status
        assert body["type"].endswith("/" + name)
    assert seen["VersionConflict"][1]["expected"] == seen["VersionConflict"][1]["actual"] + 5
    assert seen["InvalidState"][1]["path"] == "$.n[1].x"


def test_hostile_ids_are_opaque_segments_and_never_touch_another_session(app: SessionService) -> None:
    async def go() -> None:
        async with await _client(app) as c:
            for i, sid in enumerate(HOSTILE_IDS):
                r = await c.post("/v1/sessions", json={"id": sid, "state": {"i": i}})
                assert r.status_code == 201, (sid, r.text)
                assert r.json()["id"] == sid
            for i, sid in enumerate(HOSTILE_IDS):
                r = await c.get(f"/v1/sessions/{quote_segment(sid)}")
                assert r.status_code == 200 and r.json()["state"] == {"i": i} and r.json()["id"] == sid, sid
                r = await c.patch(f"/v1/sessions/{quote_segment(sid)}", json={"set": {"me": sid}})
                assert r.status_code == 200 and r.json()["state"] == {"i": i, "me": sid}
            listed = (await c.get("/v1/sessions", params={"limit": 1000})).json()
            assert sorted(item["id"] for item in listed["items"]) == sorted(HOSTILE_IDS)
            assert (await c.delete(f"/v1/sessions/{quote_segment('a/b')}")).status_code == 204
            assert (await c.get(f"/v1/sessions/{quote_segment('a%2Fb')}")).json()["state"]["me"] == "a%2Fb"
            assert (await c.get("/v1/count")).json() == {"count": len(HOSTILE_IDS) - 1}

    run(go())


def test_namespaces_are_separate_stores_and_drop_deletes_one(app: SessionService) -> None:
    async def go() -> None:
        async with await _client(app) as c:
            assert (await c.post("/v1/ns/one/sessions", json={"id": "x", "state": {"ns": 1}})).status_code == 201
            assert (await c.post("/v1/ns/two/sessions", json={"id": "x", "state": {"ns": 2}})).status_code == 201
            assert (await c.get("/v1/ns/one/sessions/x")).json()["state"] == {"ns": 1}
            assert (await c.get("/v1/sessions/x")).status_code == 404
            caps = (await c.get("/v1/ns/one")).json()["capabilities"]
            assert caps == ["atomic", "core", "listing", "shared"]
            assert (await c.delete("/v1/ns/one")).json() == {"dropped": True}
            assert (await c.get("/v1/ns/one/sessions/x")).status_code == 404
            assert (await c.get("/v1/ns/two/sessions/x")).json()["state"] == {"ns": 2}
            bad = await c.get("/v1/ns/" + quote_segment("a b") + "/sessions")
            assert bad.status_code == 400 and bad.json()["error"] == "InvalidArgument"

    run(go())


def test_delta_if_match_touch_append_and_listing_round_trip(app: SessionService) -> None:
    async def go() -> None:
        async with await _client(app) as c:
            s = (await c.post("/v1/sessions", json={"id": "d", "owner": "o", "state": {"a": 1, "b": 2},
                                                    "ttl": 60})).json()
            r = await c.patch("/v1/sessions/d", json={"set": {"c": 3}, "delete": ["a"]},
                              headers={"If-Match": f'"{s["version"]}"'})
            assert r.status_code == 200 and r.json()["state"] == {"b": 2, "c": 3}
            assert r.headers["etag"] == f'"{r.json()["version"]}"'
            both = await c.patch("/v1/sessions/d", json={"set": {"c": 4}, "delete": ["c"]})
            assert both.status_code == 422
            info = (await c.post("/v1/sessions/d/append", json={"key": "log", "items": [1, 2]})).json()
            assert "state" not in info and info["version"] > r.json()["version"]
            touched = (await c.post("/v1/sessions/d/touch", json={"ttl": None})).json()
            assert touched["ttl"] is None and touched["expires_at"] is None
            assert (await c.get("/v1/sessions", params={"owner": "o"})).json()["items"][0]["id"] == "d"
            assert (await c.get("/v1/count", params={"owner": "nobody"})).json() == {"count": 0}
            assert (await c.post("/v1/purge")).json() == {"purged": 0}

    run(go())


def test_metrics_name_routes_never_ids_and_include_the_manager_counters(app: SessionService) -> None:
    async def go() -> str:
        async with await _client(app) as c:
            await c.post("/v1/sessions", json={"id": "secret-id-123"})
            await c.get("/v1/sessions/secret-id-123")
            await c.get("/v1/sessions/nope-456")
            response = await c.get("/metrics")
            assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
            return response.text

    text = run(go())
    assert "secret-id-123" not in text and "nope-456" not in text
    assert 'sessionspec_http_requests_total{method="GET",route="/v1/sessions/{id}",status="200"} 1' in text
    assert 'sessionspec_http_errors_total{route="/v1/sessions/{id}",error="SessionNotFound"} 1' in text
    assert 'sessionspec_manager_events_total{counter="merges"} 3' in text
    assert 'sessionspec_manager_events_total{counter="merge_conflicts"} 1' in text
    assert "sessionspec_http_request_duration_seconds_bucket" in text


def test_openapi_document_lists_every_operation(app: SessionService) -> None:
    async def go() -> dict[str, Any]:
        async with await _client(app) as c:
            body: dict[str, Any] = (await c.get("/openapi.json")).json()
            return body

    doc = run(go())
    ops = {op["operationId"] for item in doc["paths"].values() for key, op in item.items() if key != "parameters"}
    assert {"create", "get", "save", "apply", "append", "touch", "delete", "list", "count", "purge", "health",
            "metrics", "createInNamespace", "dropNamespace"} <= ops


def test_bearer_token_is_required_and_ids_and_state_are_never_logged() -> None:
    with running_service("memory", token="s3cret-token", log_level="debug") as (url, process):
        with httpx.Client(base_url=url, trust_env=False) as c:
            assert c.get("/health").status_code == 200
            denied = c.post("/v1/sessions", json={"id": "private-id-789"})
            assert denied.status_code == 401 and denied.json()["error"] == "Unauthorized"
            assert denied.headers["www-authenticate"] == "Bearer"
            assert c.get("/v1/count", headers={"Authorization": "Bearer s3cret-tokeX"}).status_code == 401
            auth = {"Authorization": "Bearer s3cret-token"}
            made = c.post("/v1/sessions", json={"id": "private-id-789", "state": {"pw": "hunter2"}}, headers=auth)
            assert made.status_code == 201
            assert c.get("/v1/sessions/private-id-789", headers=auth).json()["state"] == {"pw": "hunter2"}
            assert c.get("/metrics").status_code == 401
        process.terminate()
        _, err = process.communicate(timeout=15)
    assert "private-id-789" not in err and "hunter2" not in err and "s3cret" not in err


def test_a_raw_non_ascii_path_is_refused_rather_than_guessed(app: SessionService) -> None:
    async def go() -> int:
        sent: list[dict[str, Any]] = []
        scope = {"type": "http", "method": "GET", "path": "/v1/sessions/é", "raw_path": "/v1/sessions/é".encode(),
                 "query_string": b"", "headers": [], "http_version": "1.1", "scheme": "http", "root_path": "",
                 "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1)}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return int(sent[0]["status"])

    assert run(go()) == 400
