"""``sessionspec load``: run a chat-agent load profile with Locust, headless, and gate it on SLOs.

An ``http(s)://`` target is a deployed service (Locust ``FastHttpUser``s); any other TARGET
is a store driven directly (``redis`` and ``postgres`` are provisioned once here and every
load process reaches the same server). Locust runs as a subprocess on the locustfile in
``sessionspec.loadtests``; ``--processes`` and the master/worker flags pass straight through.
Locust's HTML and CSV reports land in ``--out``; the verdict table is printed at the end.
Exit codes: 0 every SLO gate passed, 1 a gate failed, 2 bad usage or Locust did not run.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

__all__ = ["load"]

MAX_USERS = 2000
MAX_DURATION = 3600.0
TOKEN_ENV = "SESSIONSPEC_HTTP_TOKEN"


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def _die_with_parent() -> None:
    """Linux: Locust gets SIGTERM if this process dies, so a killed `sessionspec load` leaves no load behind."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _drop_namespace(url: str, namespace: str, token: str | None) -> None:
    """Delete the run's sessions on the service (a memory-backed service would keep them forever)."""
    import httpx

    from sessionspec.reference.service.wire import quote_segment

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with contextlib.suppress(httpx.HTTPError):
        httpx.delete(f"{url.rstrip('/')}/v1/ns/{quote_segment(namespace)}", headers=headers, timeout=30,
                     trust_env=False)


def _print_verdict(verdict: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False, highlight=False)
    ops = Table(title="operations (ms)", show_edge=False)
    for column in ("operation", "requests", "failures", "p50", "p95", "p99"):
        ops.add_column(column, justify="left" if column == "operation" else "right")
    for op in verdict["operations"]:
        ops.add_row(f"{op['type']} {op['name']}", str(op["requests"]), str(op["failures"]),
                    str(op["p50"]), str(op["p95"]), str(op["p99"]))
    console.print(ops)
    gates = Table(title="SLO gates", show_edge=False)
    for column in ("gate", "limit", "measured", "verdict"):
        gates.add_column(column)
    for gate in verdict["gates"]:
        gates.add_row(gate["name"], gate["limit"], gate["value"],
                      "[green]pass[/green]" if gate["passed"] else "[red]FAIL[/red]")
    console.print(gates)
    console.print(f"{verdict['requests']} requests, {verdict['rps']:.1f} requests/s, p50 {verdict['p50']} ms, "
                  f"p95 {verdict['p95']} ms, p99 {verdict['p99']} ms: "
                  + ("[green]all SLO gates passed[/green]" if verdict["passed"] else "[red]SLO gates failed[/red]"))
    for line in verdict.get("check_errors", []):
        console.print(f"  [red]consistency:[/red] {line}")


@click.command("load", short_help="Load test a service or a store with Locust, gated on SLOs.", epilog="""\b
Examples:
  sessionspec load http://127.0.0.1:8000 --users 20 --duration 30
  sessionspec load redis --profile hot-session --shape spike --out load-report
  sessionspec load http://127.0.0.1:8000 --processes 2          # one master, 2 local workers
  sessionspec load http://127.0.0.1:8000 --master --expect-workers 2   # then, twice:
  sessionspec load http://127.0.0.1:8000 --worker --master-host 127.0.0.1
""")
@click.argument("target", metavar="TARGET")
@click.option("--profile", default="chat", show_default=True,
              type=click.Choice(["chat", "create-heavy", "hot-session", "sweep-under-load"]))
@click.option("--shape", default="steady", show_default=True, type=click.Choice(["steady", "ramp", "spike", "soak"]))
@click.option("--users", default=10, show_default=True, type=click.IntRange(1, MAX_USERS),
              help="Peak concurrent users.")
@click.option("--duration", default=20.0, show_default=True, type=click.FloatRange(1, MAX_DURATION),
              metavar="SECONDS", help="How long the shape runs.")
@click.option("--p95-ms", default=250.0, show_default=True, type=float, help="SLO: p95 latency over all operations.")
@click.option("--p99-ms", default=1000.0, show_default=True, type=float, help="SLO: p99 latency.")
@click.option("--max-error-ratio", default=0.01, show_default=True, type=click.FloatRange(0, 1),
              help="SLO: failed requests / requests.")
@click.option("--merge-rate", default=None, type=click.FloatRange(0, 1),
              help="Share of turns that run a parallel-branch merge (profile default otherwise).")
@click.option("--out", "out_dir", default="load-report", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where Locust's HTML and CSV reports go.")
@click.option("--namespace", default=None, help="Namespace of the run's sessions (default: a fresh one).")
@click.option("--processes", default=None, type=int, help="Locust --processes: local worker processes.")
@click.option("--master", is_flag=True, help="Locust --master: wait for workers (see --expect-workers).")
@click.option("--worker", is_flag=True, help="Locust --worker: take users from a master.")
@click.option("--master-host", default=None, help="Locust --master-host (for --worker).")
@click.option("--master-port", default=None, type=int, help="Locust --master-port.")
@click.option("--master-bind-host", default="127.0.0.1", show_default=True, help="Locust --master-bind-host.")
@click.option("--expect-workers", default=None, type=int, help="Locust --expect-workers (for --master).")
@click.option("--allow-remote", is_flag=True, help="Allow a non-loopback HTTP target (default: loopback only).")
def load(target: str, profile: str, shape: str, users: int, duration: float, p95_ms: float, p99_ms: float,
         max_error_ratio: float, merge_rate: float | None, out_dir: Path, namespace: str | None,
         processes: int | None, master: bool, worker: bool, master_host: str | None, master_port: int | None,
         master_bind_host: str, expect_workers: int | None, allow_remote: bool) -> None:
    """Run the PROFILE load against TARGET (an http(s):// service or a store TARGET) and gate it on SLOs."""
    if master and worker:
        raise click.UsageError("--master and --worker contradict each other.")
    from sessionspec.loadtests.config import Gates, LoadConfig

    from .targets import TargetError, TargetOptions, resolve_target

    http = target.split("://", 1)[0].lower() in ("http", "https")
    if http and not allow_remote and not _loopback(urlsplit(target).hostname):
        raise click.UsageError(f"{target!r} is not a loopback address; pass --allow-remote to load test it.")
    resolved = None
    store_spec: str | None = None
    if not http:
        try:
            resolved = resolve_target(target, TargetOptions())
        except TargetError as exc:
            raise click.UsageError(str(exc)) from None
        store_spec = resolved.process_spec or target
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        verdict_path = out_dir / "verdict.json"
        with contextlib.suppress(FileNotFoundError):
            verdict_path.unlink()
        config = LoadConfig(profile=profile, shape=shape, users=users, duration=duration, target=store_spec,
                            namespace=namespace or f"load-{secrets.token_hex(4)}",
                            token=os.environ.get(TOKEN_ENV) if http else None, merge_rate=merge_rate,
                            verdict_path=str(verdict_path.resolve()),
                            gates=Gates(p95_ms=p95_ms, p99_ms=p99_ms, max_error_ratio=max_error_ratio))
        import sessionspec.loadtests as package

        locustfile = Path(package.__file__).resolve().parent / "locustfile.py"
        command = [sys.executable, "-m", "locust", "-f", str(locustfile),
                   "ChatHttpUser" if http else "ChatStoreUser", "--headless", "--only-summary",
                   "--loglevel", "WARNING"]
        if http:
            command += ["--host", target.rstrip("/")]
        if not worker:
            command += ["--html", str(out_dir / "report.html"), "--csv", str(out_dir / "locust")]
        port_flag = "--master-bind-port" if master or processes else "--master-port"
        for flag, value in (("--processes", processes), ("--master-host", master_host),
                            (port_flag, master_port), ("--expect-workers", expect_workers)):
            if value is not None:
                command += [flag, str(value)]
        if master or processes:
            command += ["--master-bind-host", master_bind_host]
        command += ["--master"] if master else ["--worker"] if worker else []
        env = {**os.environ, **config.to_env()}
        try:
            code = subprocess.run(command, env=env, timeout=duration + 300, preexec_fn=_die_with_parent).returncode
        except subprocess.TimeoutExpired:
            raise click.ClickException(f"Locust did not finish within {duration + 300:g} s") from None
        if worker:
            sys.exit(code)
        if http:
            _drop_namespace(target, config.namespace, config.token)
        if not verdict_path.exists():
            click.echo(f"Locust exited with {code} and wrote no verdict (see its output above).", err=True)
            sys.exit(2)
        verdict = json.loads(verdict_path.read_text(encoding="utf-8"))
        _print_verdict(verdict)
        click.echo(f"reports: {out_dir / 'report.html'}, {out_dir}/locust_*.csv")
        sys.exit(0 if verdict["passed"] and code == 0 else 1)
    finally:
        if resolved is not None:
            resolved.close()
