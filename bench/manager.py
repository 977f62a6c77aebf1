"""The SessionManager's costs (not a test): update under contention, and sweep cost as the store grows.

    python bench/manager.py --backend memory|redis|postgres|all [--tasks 1000] [--rounds 3]
                            [--sizes 10000,1000000] [--budget 240] [--parts update,sweep] [--out DIR]

* ``update``: ``tasks`` concurrent ``mgr.update(+1)`` calls on one session (single-flight per
  session in-process, CAS with full-jitter backoff) against the store-level client of
  bench/contention.py (``backoff``: get, apply with expected_version, full-jitter backoff on
  conflict) doing the same increments on the same store, alternating, ``rounds`` times each.
  Reported: seconds, increments/s, retries, and speedup = backoff seconds / manager seconds.
* ``sweep``: ``mgr.sweep()`` (purge_expired + the manager's due sessions) on a namespace
  holding N sessions of which 1% are expired, for each N in ``sizes``, in the same run; and
  once more with a fixed 100 expired at every N, which separates O(expired) from O(stored).
  Sessions (state ``{"k": 1}``) are bulk-loaded in the store's own layout (bench/loaders.py:
  a server-side script per 10,000 sessions for Redis, COPY for Postgres); MemoryStore is
  filled through create() on a fake clock. A size whose load would not fit in ``budget``
  seconds (estimated from the previous size's load rate) is skipped and reported as such.
  Each sweep is timed in wall time and in this process's CPU time (the whole cost for
  MemoryStore, and immune to preemption by other jobs on a shared machine).
  The manager's own part, ExpirySchedule.due over N tracked sessions with 1% due, is timed
  alongside (pure Python).

Writes ``<out>/manager-<backend>-<UTC time>.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contention import KEY, contend
from loaders import Planned, load_postgres, load_redis_lua

from sessionspec.conformance.contract import SessionInfo
from sessionspec.conformance.provision import provision
from sessionspec.reference.manager import Backoff, SessionManager
from sessionspec.reference.manager.lifecycle import ExpirySchedule
from sessionspec.reference.memory import MemoryStore

RESULTS = Path(__file__).resolve().parent / "results"
TTL = 3600.0
STATE = {"k": 1}
"""Every swept-bench session's state: the sweep's cost is index work, and a small state loads 1M fast."""


# -- update under contention -----------------------------------------------------------------------
async def manager_contend(store: Any, *, tasks: int, max_seconds: float) -> dict[str, Any]:
    mgr = SessionManager(store, sweep_interval=None, backoff=Backoff(max_seconds=max_seconds))
    session = await store.create({KEY: 0}, ttl=TTL)
    start = time.perf_counter()
    timed_out = False
    try:
        async with asyncio.timeout(max_seconds):
            await asyncio.gather(*(mgr.update(session.id, lambda s: {**s, KEY: s[KEY] + 1}) for _ in range(tasks)))
    except TimeoutError:
        timed_out = True
    seconds = time.perf_counter() - start
    final = await store.get(session.id)
    await store.delete(session.id)
    return {"policy": "manager", "seconds": round(seconds, 3), "final_value": final.state[KEY],
            "retries": mgr.counters["conflict_retried"], "increments_per_s": round(final.state[KEY] / seconds, 1),
            "timed_out": timed_out}


async def update_part(store: Any, *, tasks: int, rounds: int, max_seconds: float) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for r in range(rounds):
        order = ("manager", "backoff") if r % 2 == 0 else ("backoff", "manager")
        for policy in order:
            if policy == "manager":
                runs.append(await manager_contend(store, tasks=tasks, max_seconds=max_seconds))
            else:
                runs.append(await contend(store, tasks=tasks, policy="backoff", max_seconds=max_seconds))
            print(f"  update {policy}: {runs[-1]['seconds']} s, retries {runs[-1]['retries']}", flush=True)
    seconds = {p: statistics.median(run["seconds"] for run in runs if run["policy"] == p)
               for p in ("manager", "backoff")}
    return {
        "tasks": tasks,
        "seconds": seconds,
        "retries": {p: statistics.median(run["retries"] for run in runs if run["policy"] == p)
                    for p in ("manager", "backoff")},
        "speedup_vs_backoff": round(seconds["backoff"] / seconds["manager"], 1),
        "speedup_is_lower_bound": any(run["timed_out"] for run in runs if run["policy"] == "backoff"),
        "committed_in_time": {p: [run.get("committed", run["final_value"]) for run in runs if run["policy"] == p]
                              for p in ("manager", "backoff")},
        "exact": all(run["final_value"] == run.get("committed", tasks) for run in runs if not run["timed_out"]),
        "runs": runs,
    }


# -- sweep cost ----------------------------------------------------------------------------------------------
def planned(count: int, *, live: bool, owner: str = "o") -> list[Planned]:
    now = time.time_ns() // 1000
    ago = 0 if live else int((TTL + 10) * 1e6)
    return [Planned(secrets.token_urlsafe(24), owner, live, now - ago) for _ in range(count)]


class Filler:
    """Puts live and expired sessions into one namespace of a backend."""

    def __init__(self, backend: str, store: Any, namespace: str, clock: list[float] | None = None) -> None:
        self.backend, self.store, self.namespace, self.clock = backend, store, namespace, clock
        self.version = 1

    async def add(self, count: int, *, live: bool) -> None:
        if self.backend == "memory":
            assert self.clock is not None
            saved = self.clock[0]
            if not live:
                self.clock[0] = saved - TTL - 10  # written long ago: already expired now
            for _ in range(count):
                await self.store.create(STATE, ttl=TTL)
            self.clock[0] = saved
        elif self.backend == "redis":
            self.version = await load_redis_lua(self.store.client, self.namespace, planned(count, live=live),
                                                self.version, state=STATE)
        else:
            await load_postgres(self.store.pool, self.namespace, planned(count, live=live), chunk=20_000, state=STATE)


async def open_backend(backend: str, url: str | None, namespace: str) -> tuple[Any, list[float] | None]:
    if backend == "memory":
        clock = [time.time()]
        return MemoryStore(clock=lambda: clock[0]), clock
    if backend == "redis":
        from sessionspec.reference.redis import RedisStore

        return RedisStore.from_url(url or "", namespace=namespace), None
    from sessionspec.reference.postgres import PostgresStore

    return await PostgresStore.connect(url or "", namespace=namespace), None


async def timed_sweeps(mgr: SessionManager, filler: Filler, expired: int,
                       reps: int) -> tuple[list[float], list[float], list[float]]:
    """``reps`` sweeps, each after adding ``expired`` expired sessions; wall, client CPU, Redis CPU seconds each.

    The CPU time is the whole cost for MemoryStore (the sweep runs in this process) and is
    immune to preemption on a shared machine, where a wall time of a few ms can be one
    time slice of another job; for Redis and Postgres it is only the client's share. For
    Redis the server's CPU time (INFO cpu) is the store's share, likewise immune.
    """
    wall, cpu, server = [], [], []
    for _ in range(reps):
        await filler.add(expired, live=False)
        server_before = await server_cpu(filler)
        start, start_cpu = time.perf_counter(), time.process_time()
        report = await mgr.sweep()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        server_after = await server_cpu(filler)
        if server_before is not None and server_after is not None:
            server.append(server_after - server_before)
        if report.purged != expired:
            raise RuntimeError(f"sweep purged {report.purged}, expected {expired}")
    return wall, cpu, server


async def server_cpu(filler: Filler) -> float | None:
    """Redis's own CPU seconds (INFO cpu, main thread), immune to preemption; None for the other backends."""
    if filler.backend != "redis":
        return None
    info = await filler.store.client.info("cpu")
    return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])


async def sweep_part(backend: str, url: str | None, sizes: list[int], budget: float, reps: int) -> dict[str, Any]:
    stages: list[dict[str, Any]] = []
    rate: float | None = None
    for size in sizes:
        if rate is not None and size / rate > budget:
            stages.append({"stored": size, "skipped": f"loading would take ~{size / rate:.0f} s > budget {budget:g} s"})
            print(f"  sweep N={size}: skipped (load ~{size / rate:.0f} s)", flush=True)
            continue
        namespace = f"mgrbench{secrets.token_hex(4)}"
        store, clock = await open_backend(backend, url, namespace)
        try:
            filler = Filler(backend, store, namespace, clock)
            t0, cpu0 = time.perf_counter(), await server_cpu(filler)
            await filler.add(size - size // 100, live=True)
            load_s = time.perf_counter() - t0
            cpu1 = await server_cpu(filler)
            rate = (size - size // 100) / load_s
            mgr = SessionManager(store, sweep_interval=None)
            one_pct, one_pct_cpu, one_pct_server = await timed_sweeps(mgr, filler, size // 100, reps)
            fixed, fixed_cpu, fixed_server = await timed_sweeps(mgr, filler, 100, reps)
            stages.append({"stored": size, "load_s": round(load_s, 1),
                           "sweep_1pct_expired_ms": round(statistics.median(one_pct) * 1000, 2),
                           "expired_1pct": size // 100,
                           "sweep_100_expired_ms": round(statistics.median(fixed) * 1000, 2),
                           "client_cpu_1pct_expired_ms": round(statistics.median(one_pct_cpu) * 1000, 2),
                           "client_cpu_100_expired_ms": round(statistics.median(fixed_cpu) * 1000, 2)})
            if cpu0 is not None and cpu1 is not None:
                stages[-1] |= {"load_server_cpu_s": round(cpu1 - cpu0, 1),
                               "server_cpu_1pct_expired_ms": round(statistics.median(one_pct_server) * 1000, 2),
                               "server_cpu_100_expired_ms": round(statistics.median(fixed_server) * 1000, 2)}
            print(f"  sweep N={size}: {stages[-1]}", flush=True)
        finally:
            await _drop(backend, store, namespace)
            await store.aclose()
    done = [s for s in stages if "skipped" not in s]
    ratios: dict[str, Any] = {}
    if len(done) >= 2:
        small, big = done[0], done[-1]
        ratios = {
            "stored_ratio": big["stored"] / small["stored"],
            "sweep_1pct_ratio": round(big["sweep_1pct_expired_ms"] / small["sweep_1pct_expired_ms"], 2),
            "sweep_100_expired_ratio": round(big["sweep_100_expired_ms"] / small["sweep_100_expired_ms"], 2),
            "client_cpu_1pct_ratio": _ratio(big["client_cpu_1pct_expired_ms"], small["client_cpu_1pct_expired_ms"]),
            "client_cpu_100_expired_ratio": _ratio(big["client_cpu_100_expired_ms"],
                                                   small["client_cpu_100_expired_ms"]),
        }
        if "server_cpu_1pct_expired_ms" in small and "server_cpu_1pct_expired_ms" in big:
            ratios["server_cpu_1pct_ratio"] = _ratio(big["server_cpu_1pct_expired_ms"],
                                                     small["server_cpu_1pct_expired_ms"])
            ratios["server_cpu_100_expired_ratio"] = _ratio(big["server_cpu_100_expired_ms"],
                                                            small["server_cpu_100_expired_ms"])
    return {"stages": stages, "ratios": ratios, "repetitions": reps}


def _ratio(big: float, small: float) -> float | None:
    return round(big / small, 2) if small > 0 else None


async def _drop(backend: str, store: Any, namespace: str) -> None:
    try:
        if backend == "postgres":
            await store.pool.execute("DELETE FROM sessionspec.sessions WHERE namespace = $1", namespace, timeout=600)
        elif backend == "redis":
            keys = [k async for k in store.client.scan_iter(match="{" + namespace + "}:*", count=10_000)]
            for i in range(0, len(keys), 10_000):
                await store.client.unlink(*keys[i:i + 10_000])
    except Exception as exc:  # a bench leftover is not worth a crash
        print(f"  (could not drop {namespace}: {exc})", file=sys.stderr)


def schedule_part(sizes: list[int]) -> dict[str, Any]:
    """ExpirySchedule.due with N tracked sessions of which 1% are due (the manager's share of a sweep)."""
    out = []
    now = time.time()
    for size in sizes:
        schedule = ExpirySchedule()
        stamp = datetime.fromtimestamp(now, UTC)
        for i in range(size):
            expires = datetime.fromtimestamp(now - 1 if i % 100 == 0 else now + TTL, UTC)
            schedule.note(SessionInfo(f"s{i}", None, 1, stamp, stamp, expires, TTL))
        start = time.perf_counter()
        due = schedule.due(now)
        out.append({"tracked": size, "due": len(due), "due_ms": round((time.perf_counter() - start) * 1000, 2)})
    return {"stages": out}


# -- main ------------------------------------------------------------------------------------------------------
async def bench(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    server = None if backend == "memory" else provision(backend)
    try:
        url = server.url if server else None
        result: dict[str, Any] = {"backend": backend, "at": datetime.now(UTC).isoformat(timespec="seconds"),
                                  "python": sys.version.split()[0]}
        if "update" in args.parts:
            store, _ = await open_backend(backend, url, f"mgrbench{secrets.token_hex(4)}")
            print(f"{backend}: update under {args.tasks}-way contention", flush=True)
            try:
                result["update"] = await update_part(store, tasks=args.tasks, rounds=args.rounds,
                                                     max_seconds=args.max_seconds)
            finally:
                await store.aclose()
        if "sweep" in args.parts:
            print(f"{backend}: sweep cost", flush=True)
            result["sweep"] = await sweep_part(backend, url, args.sizes, args.budget, args.reps)
        return result
    finally:
        if server is not None:
            server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="all", choices=["memory", "redis", "postgres", "all"])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 1_000_000])
    parser.add_argument("--budget", type=float, default=240.0, help="seconds a size's load may take")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--schedule-sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[10_000, 1_000_000])
    parser.add_argument("--parts", type=lambda s: set(s.split(",")), default={"update", "sweep"},
                        help="comma-separated: update, sweep (default both)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    backends = ["memory", "redis", "postgres"] if args.backend == "all" else [args.backend]
    args.out.mkdir(parents=True, exist_ok=True)
    schedule = schedule_part(args.schedule_sizes)
    print(f"ExpirySchedule.due: {schedule['stages']}", flush=True)
    for backend in backends:
        result = asyncio.run(bench(backend, args))
        result["schedule"] = schedule
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = args.out / f"manager-{backend}-{stamp}.json"
        path.write_text(json.dumps(result, indent=2))
        if "update" in result:
            u = result["update"]
            print(f"{backend}: update {u['tasks']} tasks: manager {u['seconds']['manager']} s "
                  f"({u['retries']['manager']} retries) vs backoff {u['seconds']['backoff']} s "
                  f"({u['retries']['backoff']} retries): {u['speedup_vs_backoff']}x"
                  f"{' (lower bound: backoff hit the time cap)' if u['speedup_is_lower_bound'] else ''}, "
                  f"exact={u['exact']}")
        if "sweep" in result:
            print(f"{backend}: sweep ratios {result['sweep']['ratios']}")
        print(f"{backend}: -> {path}")
    return 0


if __name__ == "__main__":
    random.seed()
    sys.exit(main())
