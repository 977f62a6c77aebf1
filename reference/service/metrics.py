"""Prometheus text exposition for the service: requests, latency, open namespaces, manager counters.

Hand-rolled (text format 0.0.4) rather than prometheus_client: a few counters and one
histogram keyed by route *template* and status, never by id, so cardinality stays fixed
and no session id ever reaches a scrape. Any object with a ``counters()`` method
returning ``Mapping[str, int]`` (e.g. the reference SessionManager) can be attached and
its counters are exported as ``sessionspec_manager_events_total{counter="..."}``.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Final, Protocol, runtime_checkable

__all__ = ["BUCKETS", "CONTENT_TYPE", "CounterSource", "Metrics"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LABEL_ESCAPE: Final = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})


@runtime_checkable
class CounterSource(Protocol):
    """What the service needs from a manager to export its counters."""

    def counters(self) -> Mapping[str, int]: ...


def _label(value: str) -> str:
    return value.translate(_LABEL_ESCAPE)


class _Histogram:
    __slots__ = ("counts", "sum", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.sum = 0.0
        self.total = 0

    def observe(self, seconds: float) -> None:
        index = bisect.bisect_left(BUCKETS, seconds)
        if index < len(BUCKETS):
            self.counts[index] += 1
        self.sum += seconds
        self.total += 1


class Metrics:
    """In-process counters; ``render()`` is the body of GET /metrics."""

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        self.errors: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.latency: defaultdict[tuple[str, str], _Histogram] = defaultdict(_Histogram)
        self.sources: list[CounterSource] = []
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def attach(self, source: CounterSource) -> None:
        """Export ``source.counters()`` on every scrape (the manager's counters)."""
        if not callable(getattr(source, "counters", None)):
            raise TypeError(f"{type(source).__name__} has no counters() method")
        self.sources.append(source)

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.gauges[name] = (help, read)

    def observe(self, method: str, route: str, status: int, seconds: float, error: str | None = None) -> None:
        self.requests[(method, route, status)] += 1
        self.latency[(method, route)].observe(seconds)
        if error is not None:
            self.errors[(route, error)] += 1

    def render(self) -> str:
        out: list[str] = [
            "# HELP sessionspec_http_requests_total HTTP requests answered, by method, route template and status.",
            "# TYPE sessionspec_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            out.append(f'sessionspec_http_requests_total{{method="{method}",route="{_label(route)}",'
                       f'status="{status}"}} {n}')
        out += ["# HELP sessionspec_http_errors_total Problem responses, by route template and contract error.",
                "# TYPE sessionspec_http_errors_total counter"]
        for (route, error), n in sorted(self.errors.items()):
            out.append(f'sessionspec_http_errors_total{{route="{_label(route)}",error="{_label(error)}"}} {n}')
        out += ["# HELP sessionspec_http_request_duration_seconds Time from request to response, per route.",
                "# TYPE sessionspec_http_request_duration_seconds histogram"]
        for (method, route), hist in sorted(self.latency.items()):
            labels = f'method="{method}",route="{_label(route)}"'
            running = 0
            for bound, count in zip(BUCKETS, hist.counts, strict=True):
                running += count
                out.append(f'sessionspec_http_request_duration_seconds_bucket{{{labels},le="{bound:g}"}} {running}')
            out.append(f'sessionspec_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {hist.total}')
            out.append(f"sessionspec_http_request_duration_seconds_sum{{{labels}}} {hist.sum:.6f}")
            out.append(f"sessionspec_http_request_duration_seconds_count{{{labels}}} {hist.total}")
        for name, (help, read) in sorted(self.gauges.items()):
            out += [f"# HELP {name} {help}", f"# TYPE {name} gauge", f"{name} {read():g}"]
        if self.sources:
            out += ["# HELP sessionspec_manager_events_total Counters of the attached session manager(s).",
                    "# TYPE sessionspec_manager_events_total counter"]
            merged: defaultdict[str, int] = defaultdict(int)
            for source in self.sources:
                for key, value in source.counters().items():
                    merged[re.sub(r"[^A-Za-z0-9_:.-]", "_", str(key))] += int(value)
            for key, value in sorted(merged.items()):
                out.append(f'sessionspec_manager_events_total{{counter="{_label(key)}"}} {value}')
        return "\n".join(out) + "\n"
