"""The exit codes of ``sessionspec``, and which failures to start a run are the backend's fault.

A CI gate must tell "the store is broken" (1) from "the runner is misconfigured" (2) from
"the server was not there" (3): the first is a bug to fix in the store, the second in the
CI file, the third in the CI machine. This module is the one place that decides.
"""

from __future__ import annotations

import socket

__all__ = [
    "EXIT_BACKEND",
    "EXIT_CODES_TEXT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "backend_cause",
    "exit_code_for",
]

EXIT_OK = 0
"""Conformant: every claimed clause that ran passed (known divergences allowed), every requirement met."""
EXIT_FAILED = 1
"""Not conformant: a clause failed, a ledger entry is stale, a requirement is unmet, or the run broke."""
EXIT_USAGE = 2
"""Usage or configuration error: options, target string, factory, ledger, [tool.sessionspec]."""
EXIT_BACKEND = 3
"""A backend could not be provisioned or reached (no server, wrong URL, connection refused, timeout)."""
EXIT_INTERRUPTED = 130

EXIT_CODES_TEXT = (
    "Exit codes: 0 conformant (every claimed clause that ran passed; known divergences allowed; "
    "requirements met); 1 not conformant (a clause failed, a divergence-ledger entry is stale, "
    "--require-level/--require unmet, or the run broke); 2 usage or configuration error (unknown "
    "target, option or clause ID, a factory that does not import, unreadable ledger or "
    "[tool.sessionspec], nothing selected); 3 a backend could not be provisioned or reached; 130 interrupted."
)

_NETWORK_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, socket.gaierror, TimeoutError)


def _chain(exc: BaseException) -> list[BaseException]:
    """exc, its cause and context, and theirs (each once; also through ``raise ... from None``)."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
    return seen


def backend_cause(exc: BaseException) -> BaseException | None:
    """The exception in exc's chain that says a backend was not there, or None.

    That is: provisioning found no method (ProvisionError), the store said so
    (BackendUnavailable), or the network did (refused, reset, unknown host, timed out).
    """
    from .contract import BackendUnavailable
    from .provision.base import ProvisionError

    for link in _chain(exc):
        if isinstance(link, (ProvisionError, BackendUnavailable, *_NETWORK_ERRORS)):
            return link
        name = type(link).__module__.split(".")[0], type(link).__name__
        # driver errors that do not subclass the builtins: redis-py's ConnectionError and TimeoutError
        if name in {("redis", "ConnectionError"), ("redis", "TimeoutError")}:
            return link
    return None


def exit_code_for(exc: BaseException) -> int:
    """3 when a target could not be used because its backend was not there, else 2."""
    return EXIT_BACKEND if backend_cause(exc) is not None else EXIT_USAGE
