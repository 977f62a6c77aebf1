"""Benchmark the reference stores against their raw drivers (not a test; see bench/README.md).

    python bench/run.py --backend redis|postgres|all [--quick] [--scale-max N] [--parts ops,cas,append,scale]
                        [--rounds N] [--round-ops N] [--cas-rounds N] [--load-budget S] [--out DIR]

Servers come from sessionspec's provisioning (SESSIONSPEC_REDIS_URL / SESSIONSPEC_POSTGRES_URL,
else a throwaway Docker container or local binaries; SESSIONSPEC_PROVISION=local is fastest).
Writes ``<out>/<backend>-<timestamp>.json`` and ``.png`` and prints a table per backend.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appendscale import append_scaling
from backends import BACKENDS, open_pair, open_store, server_info
from chart import render
from contention import race
from ops import Plan, compare, comparisons, prepare
from report import judge, machine, table
from scale import scaling

from sessionspec.conformance.provision import provision

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("ops", "cas", "append", "scale")


@dataclass(frozen=True, slots=True)
class Settings:
    plan: Plan = field(default_factory=Plan)
    cas_tasks: int = 1000
    cas_rounds: int = 2
    cas_seconds: float = 90.0
    history: int = 10_000
    scale_max: int = 1_000_000
    load_budget: float = 300.0
    parts: tuple[str, ...] = PARTS


QUICK = Settings(Plan(ops=3000, seconds=3.0, rounds=1, warmup_ops=1000, warmup_seconds=2.0, solo_ops=300),
                 cas_tasks=100, cas_rounds=1, cas_seconds=10.0, history=1000, scale_max=10_000, load_budget=20.0)


async def _drop_namespace(backend: str, store: Any) -> None:
    """Leave nothing behind on a server that is not ours."""
    if backend == "redis":
        keys = [k async for k in store.client.scan_iter(match=store.prefix + "*", count=1000)]
        for i in range(0, len(keys), 1000):
            await store.client.unlink(*keys[i:i + 1000])
    else:
        await store.pool.execute("DELETE FROM sessionspec.sessions WHERE namespace = $1", store.namespace)
        await store.pool.execute("DELETE FROM sessionspec.items WHERE namespace = $1", store.namespace)


async def bench(backend: str, url: str, settings: Settings, throwaway: bool,
                twin_url: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"backend": backend, "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
                              "machine": machine(), "settings": asdict(settings)}
    t0 = time.perf_counter()
    pair = await open_pair(backend, url)
    try:
        result["server"], result["server_config"] = await server_info(backend, pair.store)
        result["connection"] = pair.settings
        if "ops" in settings.parts:
            ids, chats = await prepare(pair, settings.plan.tasks)
            result["ops"] = [await compare(c, settings.plan, pair.server_cpu) for c in comparisons(pair, ids, chats)]
        if "cas" in settings.parts:
            result["cas"] = await race(pair.store, tasks=settings.cas_tasks, rounds=settings.cas_rounds,
                                       max_seconds=settings.cas_seconds)
        if "append" in settings.parts:
            result["append"] = await append_scaling(pair.store, history=settings.history)
        if not throwaway:
            await _drop_namespace(backend, pair.store)
    finally:
        await pair.aclose()
    if "scale" in settings.parts and settings.scale_max > 0:
        store = await open_store(backend, url, pair.namespace + "-scale")
        twin = None if twin_url is None else await open_store(backend, twin_url, pair.namespace + "-twin")
        try:
            result["scale"] = await scaling(backend, store, scale_max=settings.scale_max,
                                            load_budget=settings.load_budget, twin=twin)
            if not throwaway:
                await _drop_namespace(backend, store)
        finally:
            await store.aclose()
            if twin is not None:
                await twin.aclose()
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["machine"]["load_average_end"] = os.getloadavg()
    result["targets"] = judge(result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="a smoke run: < 60 s per backend")
    parser.add_argument("--scale-max", type=int, help="largest stored-session count (0 skips scaling)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"what to run, of {','.join(PARTS)}")
    parser.add_argument("--rounds", type=int, help="measured rounds per op (default 5; each alternates store and raw)")
    parser.add_argument("--round-ops", type=int, help="calls per variant per round (default 20,000)")
    parser.add_argument("--cas-rounds", type=int, help="contention rounds per policy (default 2)")
    parser.add_argument("--load-budget", type=float, help="seconds of scale loading before stages are skipped (300)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}; choose from {','.join(PARTS)}")
    settings = replace(QUICK if args.quick else Settings(), parts=parts)
    if args.scale_max is not None:
        settings = replace(settings, scale_max=args.scale_max)
    if args.rounds is not None or args.round_ops is not None:  # a shorter run on a busy machine
        settings = replace(settings, plan=replace(settings.plan, rounds=args.rounds or settings.plan.rounds,
                                                  ops=args.round_ops or settings.plan.ops))
    if args.cas_rounds is not None:
        settings = replace(settings, cas_rounds=args.cas_rounds)
    if args.load_budget is not None:
        settings = replace(settings, load_budget=args.load_budget)
    args.out.mkdir(parents=True, exist_ok=True)
    for backend in BACKENDS if args.backend == "all" else (args.backend,):
        server = provision(backend)
        twin = None
        try:
            if server.controllable and "scale" in parts:
                # a second throwaway server for scaling's small twin (none beside a server given by URL)
                twin = provision(backend)
            result = asyncio.run(bench(backend, server.url, settings, throwaway=server.controllable,
                                       twin_url=None if twin is None else twin.url))
        finally:
            server.close()
            if twin is not None:
                twin.close()
        result["provisioned_by"] = server.method
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = args.out / f"{backend}-{stamp}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        render(result, path.with_suffix(".png"))
        print(table(result))
        print(f"-> {path} (+ .png), {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
