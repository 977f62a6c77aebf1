"""A load run's settings, carried to the locustfile (and every worker process) in the environment.

Locust decides the user classes and the shape when it imports the locustfile, before
its own options are parsed, so the settings travel as ``SESSIONSPEC_LOAD_*`` variables:
``sessionspec load`` sets them, and a worker started by hand on another machine gets the
same ones (docs/load-testing.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Final

__all__ = ["ENV", "Gates", "LoadConfig"]

ENV: Final = "SESSIONSPEC_LOAD"


@dataclass(frozen=True, slots=True)
class Gates:
    """The SLOs: latency percentiles in milliseconds over every operation, and the error ratio."""

    p95_ms: float = 250.0
    p99_ms: float = 1000.0
    max_error_ratio: float = 0.01
    min_checks: int = 1
    """Consistency checks that must have run (a run that checked nothing proves nothing)."""


@dataclass(frozen=True, slots=True)
class LoadConfig:
    profile: str = "chat"
    shape: str = "steady"
    users: int = 10
    duration: float = 10.0
    target: str | None = None
    """A store TARGET driven directly; None when the run goes to an HTTP host."""
    namespace: str = "load"
    token: str | None = None
    merge_rate: float | None = None
    verdict_path: str | None = None
    gates: Gates = field(default_factory=Gates)

    def to_env(self) -> dict[str, str]:
        return {ENV: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LoadConfig:
        raw = (environ if environ is not None else os.environ).get(ENV)
        if not raw:
            return cls()
        data = json.loads(raw)
        gates = Gates(**data.pop("gates", {}))
        return cls(**data, gates=gates)
