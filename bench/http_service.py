"""The reference HTTP service's cost: requests/s against a bare ASGI endpoint on the same server.

One uvicorn process serves both the SessionService on a MemoryStore and, at ``/bare``, an
ASGI endpoint that answers a fixed small JSON body without reading anything. One Locust
process (FastHttpUser, headless) drives each in turn, alternating bare and service rounds
in the same run, so both share the server, the load generator and the machine's noise.

    python bench/http_service.py [--seconds 8] [--users 16] [--rounds 3] [--out bench/results]

Reported: requests/s of GET and PATCH (apply) on the service, the bare endpoint's
requests/s, the ratio service / bare per round (median; goal >= 0.5), and the bare
endpoint's requests/s as the throughput of one load-generating process (the generator is
the bottleneck there, not the server). Writes ``bench/results/http-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GOAL = 0.5


def serve() -> None:
    """Child mode: the service and the bare endpoint on one uvicorn server, port printed on stdout."""
    import socket

    import uvicorn

    from sessionspec.reference import MemoryStore
    from sessionspec.reference.service import StoreProvider, create_app

    service = create_app(StoreProvider.from_factory(lambda ns: MemoryStore()))
    body = b'{"status":"ok"}'

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/bare":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")]})
            await send({"type": "http.response.body", "body": body})
            return
        await service(scope, receive, send)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                  timeout_keep_alive=30)).run(sockets=[sock])


def locust_rps(user: str, host: str, seconds: float, users: int) -> dict[str, float]:
    """One headless Locust run of ``user``: requests/s and p50/p99 of its measured request."""
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "run")
        subprocess.run([sys.executable, "-m", "locust", "-f", str(HERE / "http_locustfile.py"), user, "--headless",
                        "--host", host, "--only-summary", "--loglevel", "ERROR", "--csv", prefix],
                       env={**os.environ, "HTTP_BENCH_USERS": str(users), "HTTP_BENCH_SECONDS": str(seconds)},
                       check=False, timeout=seconds + 120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(prefix + "_stats.csv", newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["Name"] not in ("setup", "Aggregated")]
    row = rows[0]
    return {"rps": float(row["Requests/s"]), "p50_ms": float(row["50%"]), "p99_ms": float(row["99%"]),
            "requests": float(row["Request Count"]), "failures": float(row["Failure Count"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        host = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        rounds: list[dict[str, Any]] = []
        for n in range(args.rounds):
            order = ["BareUser", "GetUser", "ApplyUser"] if n % 2 == 0 else ["ApplyUser", "GetUser", "BareUser"]
            got = {user: locust_rps(user, host, args.seconds, args.users) for user in order}
            bare = got["BareUser"]["rps"]
            rounds.append({"figures": got, "get_ratio": got["GetUser"]["rps"] / bare if bare else 0.0,
                           "apply_ratio": got["ApplyUser"]["rps"] / bare if bare else 0.0})
            print(f"round {n + 1}: bare {bare:.0f}/s, get {got['GetUser']['rps']:.0f}/s "
                  f"({rounds[-1]['get_ratio']:.2f}x), apply {got['ApplyUser']['rps']:.0f}/s "
                  f"({rounds[-1]['apply_ratio']:.2f}x)", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {
        "when": datetime.now(UTC).isoformat(), "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                           "load_avg": os.getloadavg()},
        "settings": {"seconds": args.seconds, "users": args.users, "rounds": args.rounds, "generator_processes": 1},
        "get_ratio": statistics.median(r["get_ratio"] for r in rounds),
        "apply_ratio": statistics.median(r["apply_ratio"] for r in rounds),
        "bare_rps_per_generator_process": statistics.median(r["figures"]["BareUser"]["rps"] for r in rounds),
        "goal": GOAL, "rounds": rounds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"http-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(result, indent=2))
    for name in ("get_ratio", "apply_ratio"):
        mark = "ok" if result[name] >= GOAL else "MISS"
        print(f"{name}: {result[name]:.2f}x of the bare endpoint (goal >= {GOAL}) {mark}")
    print(f"one Locust FastHttpUser process: {result['bare_rps_per_generator_process']:.0f} requests/s "
          f"(bare endpoint); written {path}")


if __name__ == "__main__":
    main()
