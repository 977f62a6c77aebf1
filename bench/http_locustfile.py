"""Locust users for bench/http_service.py: one request each, as fast as a FastHttpUser goes.

``BareUser`` hits the bare ASGI endpoint mounted beside the service; ``GetUser`` and
``ApplyUser`` read and write one small session per user through the service's API.
"""

from __future__ import annotations

import os
import secrets

from locust import FastHttpUser, LoadTestShape, constant, task

NAMESPACE = "bench"


class Fixed(LoadTestShape):
    """HTTP_BENCH_USERS users for HTTP_BENCH_SECONDS from the first spawn (not from process start: imports
    on a busy machine take seconds, and -t would count them)."""

    def tick(self) -> tuple[int, float] | None:
        users = int(os.environ.get("HTTP_BENCH_USERS", "16"))
        if self.get_run_time() >= float(os.environ.get("HTTP_BENCH_SECONDS", "8")):
            return None
        return users, float(users)


class BareUser(FastHttpUser):  # type: ignore[misc]
    wait_time = constant(0)

    @task
    def bare(self) -> None:
        self.client.get("/bare", name="bare")


class _SessionUser(FastHttpUser):  # type: ignore[misc]
    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        self.id = secrets.token_urlsafe(12)
        state = {"agent": "bench", "messages": ["hello", "world"], "turn": 0}
        self.client.post(f"/v1/ns/{NAMESPACE}/sessions", json={"id": self.id, "state": state}, name="setup")
        self.n = 0


class GetUser(_SessionUser):
    @task
    def get(self) -> None:
        self.client.get(f"/v1/ns/{NAMESPACE}/sessions/{self.id}", name="get")


class ApplyUser(_SessionUser):
    @task
    def apply(self) -> None:
        self.n += 1  # the body pre-encoded by hand: the generator's JSON encoding is not the service's cost
        self.client.patch(f"/v1/ns/{NAMESPACE}/sessions/{self.id}", data=b'{"set":{"turn":%d}}' % self.n,
                          headers={"Content-Type": "application/json"}, name="apply")
