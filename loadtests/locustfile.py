"""The locustfile ``sessionspec load`` runs: chat-agent users over HTTP or against a store directly.

``locust -f <this file> ChatHttpUser --host http://...`` load tests a deployed service;
``ChatStoreUser`` drives the store TARGET in ``SESSIONSPEC_LOAD`` through a bridge process
(see :mod:`.bridge`). The profile, shape, users, duration and SLO gates come from that
variable (:mod:`.config`); when Locust quits, the master (or the only process) evaluates the
gates, writes the verdict and sets the exit code.
"""

from __future__ import annotations

import itertools
import random
import secrets
from typing import Any

import gevent
from gevent.lock import Semaphore
from locust import FastHttpUser, User, constant, events, task
from locust.runners import MasterRunner, WorkerRunner

from sessionspec.loadtests.bridge import StoreBridge
from sessionspec.loadtests.config import LoadConfig
from sessionspec.loadtests.ops import BridgeOps, HttpOps
from sessionspec.loadtests.shapes import SHAPES
from sessionspec.loadtests.slo import evaluate, write_verdict
from sessionspec.loadtests.workload import PROFILES, Ledger, OpError, Ops, run_conversation, run_hot_appends

CONFIG = LoadConfig.from_env()
PROFILE = PROFILES[CONFIG.profile]
if CONFIG.merge_rate is not None:
    from dataclasses import replace

    PROFILE = replace(PROFILE, merge_rate=CONFIG.merge_rate)
PROCESS_TAG = secrets.token_hex(4)
_users = itertools.count(1)
_lock = Semaphore()
_bridge: StoreBridge | None = None
_hot: list[str] = []

Shape = SHAPES[CONFIG.shape]  # the one shape class Locust finds in this module


def _hot_sessions(ops: Ops) -> list[str]:
    """This process's few shared sessions for hot-session contention, created once."""
    with _lock:
        while len(_hot) < PROFILE.hot_sessions:
            try:
                _hot.append(ops.create({"agent": "hot"}, 3600.0)["id"])
            except OpError:
                gevent.sleep(0.1)
        return list(_hot)


class _Chat:
    """The workload loop shared by both user classes."""

    ops: Ops

    def _setup(self) -> None:
        self.rng = random.Random()
        self.tag = f"{PROCESS_TAG}:{next(_users)}"
        self.serial = itertools.count(1)
        self.ledgers: dict[str, Ledger] = {}

    def _iteration(self) -> None:
        n = next(self.serial)
        if PROFILE.hot_sessions:
            run_hot_appends(self.ops, PROFILE, _hot_sessions(self.ops), self.rng, f"{self.tag}:{n}",
                            gevent.sleep, self.ledgers)
        else:
            run_conversation(self.ops, PROFILE, self.rng, f"{self.tag}:{n}", gevent.sleep, n)


class ChatHttpUser(_Chat, FastHttpUser):  # type: ignore[misc]
    """A chat agent talking to the reference service (``--host http://HOST:PORT``)."""

    wait_time = constant(0)
    connection_timeout = 10.0
    network_timeout = 10.0

    def on_start(self) -> None:
        self._setup()
        self.ops = HttpOps(self.client, self.environment, CONFIG.namespace, CONFIG.token)

    @task
    def conversation(self) -> None:
        self._iteration()


class ChatStoreUser(_Chat, User):  # type: ignore[misc]
    """A chat agent calling a store TARGET directly (through this process's bridge)."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self._setup()
        with _lock:
            self.client = _start_bridge().client()
        self.ops = BridgeOps(self.client, self.environment)

    def on_stop(self) -> None:
        self.client.close()

    @task
    def conversation(self) -> None:
        self._iteration()


def _start_bridge() -> StoreBridge:
    global _bridge
    if _bridge is None:
        if not CONFIG.target:
            raise RuntimeError("ChatStoreUser needs a store TARGET in SESSIONSPEC_LOAD")
        _bridge = StoreBridge(CONFIG.target, CONFIG.namespace)
    return _bridge


@events.init.add_listener  # type: ignore[untyped-decorator]
def _warm_up(environment: Any, **_: Any) -> None:
    """Open the store before the clock starts (a child interpreter and a connection take seconds)."""
    if CONFIG.target and not isinstance(environment.runner, MasterRunner):
        with _lock:
            _start_bridge()


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _gate(environment: Any, **_: Any) -> None:
    if _bridge is not None:
        _bridge.close()
    if isinstance(environment.runner, WorkerRunner):
        return
    results, s = evaluate(environment.stats, CONFIG.gates)
    if CONFIG.verdict_path:
        write_verdict(CONFIG.verdict_path, results, s)
    environment.process_exit_code = 0 if all(r.passed for r in results) else 1
