"""``sessionspec serve``: the reference HTTP service on any store target, run by uvicorn.

The target is resolved exactly as ``check`` resolves it (``memory``, ``redis``, URLs,
``module:factory``), and every namespace a client names gets a store of its own from the
target's factory. The listening socket is bound before uvicorn starts, so ``--port 0``
works and the line ``listening on http://HOST:PORT`` is printed (and flushed) only once
connections are accepted: scripts and tests wait for it instead of sleeping.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from sessionspec.reference.service import StoreProvider

    from .contract import SessionStore
    from .targets import Target

__all__ = ["provider_for", "serve"]

TOKEN_ENV = "SESSIONSPEC_SERVICE_TOKEN"


def provider_for(target: Target) -> StoreProvider:
    """A StoreProvider opening one store per namespace through the target's factory."""
    from sessionspec.reference.service import StoreProvider

    from .targets import _check_store

    @contextlib.asynccontextmanager
    async def opener(namespace: str) -> AsyncIterator[SessionStore]:
        made: Any = target.factory(namespace)
        if inspect.isawaitable(made):
            made = await made
        if hasattr(made, "__aenter__") and not hasattr(made, "create"):
            async with made as entered:
                yield _check_store(entered, target)
            return
        store = _check_store(made, target)
        try:
            yield store
        finally:
            await store.aclose()

    return StoreProvider(opener, drop_data=target.drop_namespace)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # proto set: asyncio then sets TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@click.command("serve", short_help="Serve a store target over HTTP (the reference service).", epilog="""\b
Examples:
  sessionspec serve                                  # MemoryStore on http://127.0.0.1:8000
  sessionspec serve --store redis --port 0           # a throwaway Redis, any free port
  SESSIONSPEC_SERVICE_TOKEN=s3cret sessionspec serve --store postgresql://u:pw@db/app
  sessionspec check http://127.0.0.1:8000            # then test the deployment end to end
""")
@click.option("--store", "store_spec", default="memory", show_default=True, metavar="TARGET",
              help="The store behind the service: any TARGET `sessionspec check` accepts.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port, printed on start).")
@click.option("--token", envvar=TOKEN_ENV, default=None, metavar="TOKEN",
              help=f"Require `Authorization: Bearer TOKEN` on every API request [env: {TOKEN_ENV}].")
@click.option("--redis-url", envvar="SESSIONSPEC_REDIS_URL", metavar="URL",
              help="Use this Redis server for `--store redis` [env: SESSIONSPEC_REDIS_URL].")
@click.option("--postgres-url", envvar="SESSIONSPEC_POSTGRES_URL", metavar="URL",
              help="Use this Postgres server for `--store postgres` [env: SESSIONSPEC_POSTGRES_URL].")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(store_spec: str, host: str, port: int, token: str | None, redis_url: str | None,
          postgres_url: str | None, log_level: str) -> None:
    """Run the reference HTTP service (OpenAPI at /openapi.json, metrics at /metrics) on TARGET.

    Session ids, owners and states are never logged (uvicorn's access log is off: its
    lines carry the path, and the path carries the id).
    """
    try:
        import uvicorn

        from sessionspec.reference.service import create_app
    except ImportError as exc:
        raise click.ClickException(f"the service needs its extra: pip install sessionspec[service] ({exc})") \
            from None
    from .targets import TargetError, TargetOptions, resolve_target

    try:
        target = resolve_target(store_spec, TargetOptions(redis_url=redis_url, postgres_url=postgres_url))
    except TargetError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        app = create_app(provider_for(target), token=token)
        sock = _bind(host, port)
        bound = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                                timeout_keep_alive=30, server_header=False)
        server = uvicorn.Server(config)
        shown = f"[{host}]" if ":" in host else host
        described = re.sub(r"(://[^:/@\s]+):[^@\s]+@", r"\1:***@", target.description)  # no passwords in logs
        click.echo(f"serving {described} on http://{shown}:{bound}", err=True)
        click.echo(f"listening on http://{shown}:{bound}")
        sys.stdout.flush()
        # uvicorn re-raises SIGTERM after its graceful shutdown; exiting through SystemExit instead lets
        # `finally` tear down what the target provisioned (a throwaway Redis/Postgres would outlive us)
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        server.run(sockets=[sock])
    finally:
        target.close()
