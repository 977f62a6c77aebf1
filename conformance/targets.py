"""TARGET strings -> something that opens stores: ``memory``, URLs, throwaway servers, ``module:factory``.

A :class:`Target` is everything the suite knows about what it is testing: how to open a
store for a namespace, and the optional backdoors (see docs/plugging-in.md) that let it
check the stored truth or stop the backend. Bad targets raise :class:`TargetError`
with one paragraph saying what was expected; the CLI prints it and exits 2.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .answers import STORE_CALLS, count_answers
from .contract import CAPABILITIES, SessionStore

__all__ = [
    "BACKEND_SCHEMES",
    "Target",
    "TargetError",
    "TargetOptions",
    "open_store",
    "resolve_target",
]

RawTtl = Callable[[SessionStore, str], Awaitable[float | None]]
DropNamespace = Callable[[SessionStore, str], Awaitable[None]]
CommandCounts = Callable[[SessionStore], Awaitable[Mapping[str, int]]]
BackendSwitch = Callable[[], Awaitable[None] | None]

TARGET_FORMS = (
    "memory (the embedded MemoryStore); redis://HOST:PORT[/DB]; redis+cluster://HOST:PORT; "
    "postgresql://USER:PW@HOST:PORT/DB; redis, postgres or redis-cluster (a throwaway server "
    "provisioned for the run); http(s)://HOST (a deployed reference service); or "
    "package.module:factory, where factory(namespace: str) returns a store, an awaitable of one, "
    "or an async context manager of one"
)


class TargetError(Exception):
    """The TARGET cannot be used; the message is a paragraph meant for a human."""


@dataclass(frozen=True, slots=True)
class TargetOptions:
    """What the command line says about backends, shared by every target builder."""

    redis_url: str | None = None
    postgres_url: str | None = None
    redis_cluster_url: str | None = None
    require_backends: bool = False
    claims: frozenset[str] | None = None
    """Check these capabilities instead of the ones the store declares ([tool.sessionspec] capabilities)."""


@dataclass(slots=True)
class Target:
    """What the suite tests, and the backdoors it may use on it."""

    spec: str
    description: str
    factory: Callable[[str], Any]
    raw_ttl: RawTtl | None = None
    """Remaining TTL in seconds as the backend sees it; None = no expiry; KeyError when absent."""
    drop_namespace: DropNamespace | None = None
    """Remove everything stored under a namespace after a test (keeps shared servers clean)."""
    command_counts: CommandCounts | None = None
    """Server-side command counters (Redis INFO commandstats) for the hygiene probe HY-1."""
    db_timezone: Callable[[SessionStore], Awaitable[str]] | None = None
    """The database server's time zone (HY-2)."""
    stop_backend: BackendSwitch | None = None
    start_backend: BackendSwitch | None = None
    backend_kind: str | None = None
    """"redis", "postgres", "redis-cluster", "http", "custom", or None for an embedded store."""
    backend_address: tuple[str, int] | None = None
    """host, port of the server (TCP): where a FaultProxy forwards for FL-1's stalled-backend variant."""
    via_port: Callable[[int], Callable[[str], Any]] | None = None
    """Given a loopback port standing in for the server (a FaultProxy), the factory that connects there."""
    process_spec: str | None = None
    """A TARGET string another process can open to reach the same data (the `shared` clauses);
    None when the store lives in this process only."""
    closers: list[Callable[[], None]] = field(default_factory=list)
    claims: frozenset[str] | None = None
    """Capabilities to check instead of the store's declared ones (None: the store's own)."""

    @property
    def controllable(self) -> bool:
        return self.stop_backend is not None and self.start_backend is not None

    def close(self) -> None:
        """Release what resolving the target acquired (throwaway servers), newest first."""
        while self.closers:
            with contextlib.suppress(Exception):
                self.closers.pop()()


# scheme -> builder(spec, options) -> Target; backend modules register themselves here.
TargetBuilder = Callable[[str, TargetOptions], Target]
BACKEND_SCHEMES: dict[str, TargetBuilder] = {}


def _memory_target(spec: str, options: TargetOptions) -> Target:
    from sessionspec.reference import MemoryStore

    return Target(spec, "MemoryStore (embedded, in-process)", lambda namespace: MemoryStore())


def _module_target(spec: str) -> Target:
    module_name, _, attr = spec.partition(":")
    if not re.fullmatch(r"[A-Za-z_][\w.]*", module_name) or not re.fullmatch(r"[A-Za-z_][\w.]*", attr):
        raise TargetError(f"{spec!r} is not of the form package.module:factory. Expected {TARGET_FORMS}.")
    if "" not in sys.path:  # `sessionspec check mymod:factory` should find ./mymod.py like python -m does
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise TargetError(
            f"Could not import module {module_name!r} for target {spec!r}: {type(exc).__name__}: {exc}. "
            "The module must be importable from the current directory or the installed packages "
            "(check the spelling, your virtualenv, and that its own imports succeed)."
        ) from exc
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)  # type: ignore[assignment]
        if factory is None:
            raise TargetError(
                f"Module {module_name!r} has no attribute {attr!r}. The target names a callable "
                "factory(namespace: str) that returns a store, an awaitable of one, or an async "
                "context manager of one."
            )
    if not callable(factory):
        raise TargetError(
            f"{spec!r} names a {type(factory).__name__}, not a callable. Expected a factory "
            "factory(namespace: str) returning a store, an awaitable of one, or an async context manager of one."
        )
    hooks = {
        name: getattr(module, name)
        for name in ("raw_ttl", "drop_namespace", "command_counts", "db_timezone", "stop_backend", "start_backend")
        if callable(getattr(module, name, None))
    }
    doc = (inspect.getdoc(factory) or "").split("\n", 1)[0]
    return Target(spec, f"{spec}" + (f" ({doc})" if doc else ""), factory, backend_kind="custom",
                  process_spec=spec, **hooks)


def resolve_target(spec: str, options: TargetOptions | None = None) -> Target:
    """Turn a TARGET string into a :class:`Target`, or raise TargetError saying what was expected."""
    options = options or TargetOptions()
    if options.claims is not None:
        target = resolve_target(spec, replace(options, claims=None))
        target.claims = frozenset(options.claims)
        target.description += f" [claims overridden: {', '.join(sorted(target.claims))}]"
        return target
    spec = spec.strip()
    if not spec:
        raise TargetError(f"The target is empty. Expected {TARGET_FORMS}.")
    if spec == "memory":
        return _memory_target(spec, options)
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else spec.lower()
    _load_backend_builders()
    if scheme in BACKEND_SCHEMES:
        return BACKEND_SCHEMES[scheme](spec, options)
    if "://" in spec:
        known = ", ".join(sorted(s for s in BACKEND_SCHEMES if "+" in s or s in {"redis", "postgresql", "http"}))
        raise TargetError(
            f"Unknown URL scheme {scheme!r} in {spec!r}. Known schemes: {known or 'none installed'}. "
            f"Expected {TARGET_FORMS}."
        )
    if ":" in spec:
        return _module_target(spec)
    raise TargetError(f"Unknown target {spec!r}. Expected {TARGET_FORMS}.")


def _load_backend_builders() -> None:
    """Import the modules that register URL schemes; a missing driver registers a helpful stub."""
    for module in ("sessionspec.conformance.target_redis", "sessionspec.conformance.target_postgres",
                   "sessionspec.conformance.target_http"):
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(module)


def _check_store(obj: object, target: Target) -> SessionStore:
    missing = [
        name
        for name in (*STORE_CALLS, "aclose")
        if not callable(getattr(obj, name, None))
    ]
    caps = getattr(obj, "capabilities", None)
    problems = []
    if missing:
        problems.append(f"it has no method(s) {', '.join(missing)}")
    if not isinstance(caps, frozenset | set) or not caps:
        problems.append("its `capabilities` is not a non-empty frozenset")
    else:
        unknown = set(caps) - CAPABILITIES
        if unknown:
            problems.append(f"it claims unknown capabilities {sorted(unknown)} (known: {sorted(CAPABILITIES)})")
        if "core" not in caps:
            problems.append('its capabilities do not include "core"')
    if problems:
        raise TargetError(
            f"The factory of target {target.spec!r} returned a {type(obj).__name__}, which is not a "
            f"session store: {'; '.join(problems)}. A store implements the SessionStore protocol "
            "(from sessionspec.conformance import SessionStore) and declares capabilities, e.g. "
            'frozenset({"core", "atomic"}).'
        )
    if target.claims is not None:
        # A claims override ([tool.sessionspec] capabilities, --explore-claims) must be what the store
        # itself reports too, or code built on it (the SessionManager) would refuse what the suite checks.
        with contextlib.suppress(AttributeError, TypeError):
            obj.capabilities = target.claims  # type: ignore[attr-defined]
    return obj  # type: ignore[return-value]


@contextlib.asynccontextmanager
async def open_store(target: Target, namespace: str) -> AsyncIterator[SessionStore]:
    """Open one store for ``namespace`` however the factory delivers it, and close it after."""
    try:
        made = target.factory(namespace)
        if inspect.isawaitable(made):
            made = await made
    except TargetError:
        raise
    except Exception as exc:
        from .exitcodes import backend_cause

        if backend_cause(exc) is not None:  # the factory is fine; its server is not there
            raise TargetError(
                f"Target {target.spec!r}: the store's backend could not be reached: "
                f"{type(exc).__name__}: {str(exc).rstrip('.')}. "
                "Check that the server runs and that the URL (host, port, credentials) is right."
            ) from exc
        raise TargetError(
            f"The factory of target {target.spec!r} raised {type(exc).__name__}: {exc}. It is called "
            "as factory(namespace: str) and must return a store, an awaitable of one, or an async "
            "context manager of one."
        ) from exc
    if hasattr(made, "__aenter__") and not hasattr(made, "create"):
        async with made as entered:
            yield count_answers(_check_store(entered, target))
        return
    store = count_answers(_check_store(made, target))
    try:
        yield store
    finally:
        await store.aclose()


def netloc_with_port(url: str, port: int, host: str = "127.0.0.1") -> str:
    """``url`` with its host:port replaced (user and password kept): the same server, reached through a proxy."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo + '@' if userinfo else ''}{host}:{port}"))
