"""A three-master Redis Cluster from local binaries (no Docker path: see provision()).

Stores that claim Redis Cluster support must keep each session's keys in one hash
slot; a real cluster (not a single node) is the only honest check. Each node keeps
its nodes.conf in the temp dir, so stop()/start() on the same ports re-forms the same
cluster with the same data (AOF, clean SHUTDOWN).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess

from .base import (
    LOOPBACK,
    REDIS_ARGS,
    MethodUnavailable,
    cleanup_on_failure,
    free_ports,
    port_refuses,
    redis_ready,
    register_cleanup,
    resp_command,
    unregister_cleanup,
    wait_until,
)
from .local import STOP_GRACE, ServerProcess, find_redis_server, make_tempdir, reap_local_orphans, retry_port_clash

NODES = 3


def _cluster_ok(port: int, nodes: int) -> bool:
    """The node sees every slot served and every peer: clients can use it now."""
    try:
        info = resp_command(LOOPBACK, port, "CLUSTER", "INFO").decode(errors="replace")
    except OSError:
        return False
    return "cluster_state:ok" in info and "cluster_slots_ok:16384" in info and f"cluster_known_nodes:{nodes}" in info


def _ports_without_cluster_port(count: int) -> list[int]:
    """Redis < 7 has no cluster-port: the bus is port + 10000, which must be free too."""
    chosen: list[int] = []
    for _ in range(200):
        for port in free_ports(count * 2):
            if port + 10000 <= 65535 and port not in chosen and port_refuses(LOOPBACK, port + 10000):
                chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise MethodUnavailable("no free port pairs (port, port+10000) for a Redis < 7 cluster")


class LocalRedisCluster:
    kind = "redis-cluster"
    controllable = True
    persistent = True

    def __init__(self, binary: str, version: str, *, timeout: float = 60.0, nodes: int = NODES) -> None:
        self.cli = shutil.which("redis-cli") or os.path.join(os.path.dirname(binary), "redis-cli")
        if not os.access(self.cli, os.X_OK):
            raise MethodUnavailable(f"redis-cli not found (on PATH or beside {binary}); it creates the cluster")
        self.nodes = nodes
        self._closed = False
        self.tmpdir = make_tempdir("sessionspec-cluster-")
        if int(version.split(".")[0]) >= 7:
            all_ports = free_ports(nodes * 2)
            self.ports, bus_ports = all_ports[:nodes], all_ports[nodes:]
        else:
            self.ports, bus_ports = _ports_without_cluster_port(nodes), []
        self.processes: list[ServerProcess] = []
        for i, port in enumerate(self.ports):
            node_dir = os.path.join(self.tmpdir, f"node{i}")
            os.mkdir(node_dir)
            argv = [
                binary,
                "--port",
                str(port),
                "--bind",
                LOOPBACK,
                "--dir",
                node_dir,
                "--daemonize",
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                os.path.join(node_dir, "nodes.conf"),
                "--cluster-node-timeout",
                "5000",
                *REDIS_ARGS,
            ]
            if bus_ports:
                argv += ["--cluster-port", str(bus_ports[i])]
            self.processes.append(ServerProcess(argv, os.path.join(node_dir, "redis.log")))
        self.url = f"redis+cluster://{LOOPBACK}:{self.ports[0]}"
        self.method = f"local {binary} {version}, cluster of {nodes} masters"
        register_cleanup(self, self.close)
        with cleanup_on_failure(self.close):
            self._spawn_and_wait_nodes(timeout)
            self._create(timeout)
            self._wait_cluster(timeout)

    def _spawn_and_wait_nodes(self, timeout: float) -> None:
        for proc in self.processes:
            if not proc.running():
                proc.spawn()
        for port, proc in zip(self.ports, self.processes, strict=True):
            wait_until(
                functools.partial(redis_ready, LOOPBACK, port),
                timeout=timeout,
                what=f"cluster node on port {port}",
                alive=proc.death_note,
            )

    def _create(self, timeout: float) -> None:
        argv = [
            self.cli,
            "--cluster",
            "create",
            *(f"{LOOPBACK}:{p}" for p in self.ports),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ]
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
        if out.returncode != 0 or "[OK]" not in out.stdout:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{(out.stdout + out.stderr)[-2000:]}")

    def _wait_cluster(self, timeout: float) -> None:
        for port in self.ports:
            wait_until(
                functools.partial(_cluster_ok, port, self.nodes),
                timeout=timeout,
                what=f"cluster_state:ok on port {port}",
            )

    def stop(self) -> None:
        """Clean SHUTDOWN of every node (in parallel), then every port refuses."""
        for proc in self.processes:
            proc.send(signal.SIGTERM)
        for proc in self.processes:
            proc.terminate(None, STOP_GRACE)
        for port in self.ports:
            wait_until(functools.partial(port_refuses, LOOPBACK, port), timeout=10, what="port release")

    def start(self, timeout: float = 60.0) -> None:
        """Every node back on its port; returns once each says cluster_state:ok."""
        if self._closed:
            raise RuntimeError("server was closed")
        self._spawn_and_wait_nodes(timeout)
        self._wait_cluster(timeout)

    def close(self) -> None:
        """Kill every node and delete the temp dir; idempotent."""
        if self._closed:
            return
        for proc in self.processes:
            proc.send(signal.SIGKILL)
        for proc in self.processes:
            proc.terminate(None, 5.0)
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        self._closed = True
        unregister_cleanup(self)

    def __repr__(self) -> str:
        return f"<LocalRedisCluster {self.url} ({self.method})>"


def local_redis_cluster(timeout: float = 60.0) -> LocalRedisCluster:
    reap_local_orphans()
    binary, version = find_redis_server()
    return retry_port_clash(lambda: LocalRedisCluster(binary, version, timeout=timeout))
