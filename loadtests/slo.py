"""SLO gates over Locust's statistics: p95/p99 latency, error ratio, consistency; they set the exit code.

Evaluated where the statistics are complete (the master, or the single process of a
local run) when Locust quits. Latency and error ratio cover every operation except the
``CHECK`` entries; the consistency gate fails on any failed check and on a run that
checked nothing. The verdict is also written as JSON for ``sessionspec load`` to print.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from .config import Gates
from .ops import CHECK

__all__ = ["GateResult", "evaluate", "summary"]


@dataclass(frozen=True, slots=True)
class GateResult:
    name: str
    limit: str
    value: str
    passed: bool


def summary(stats: Any) -> dict[str, Any]:
    """Requests, failures, requests/s and percentiles over the non-CHECK entries, plus per operation."""
    from locust.stats import StatsEntry

    total = StatsEntry(stats, "Aggregated", "", use_response_times_cache=False)
    per_op: list[dict[str, Any]] = []
    checks = {"requests": 0, "failures": 0}
    for entry in stats.entries.values():
        if entry.method == CHECK:
            checks["requests"] += entry.num_requests
            checks["failures"] += entry.num_failures
            continue
        total.extend(entry)
        per_op.append({"name": entry.name, "type": entry.method, "requests": entry.num_requests,
                       "failures": entry.num_failures, "p50": entry.get_response_time_percentile(0.5),
                       "p95": entry.get_response_time_percentile(0.95),
                       "p99": entry.get_response_time_percentile(0.99)})
    elapsed = max(1e-9, stats.total.last_request_timestamp - stats.total.start_time) \
        if stats.total.last_request_timestamp else 0.0
    return {
        "requests": total.num_requests, "failures": total.num_failures,
        "rps": total.num_requests / elapsed if elapsed else 0.0,
        "p50": total.get_response_time_percentile(0.5) if total.num_requests else 0,
        "p95": total.get_response_time_percentile(0.95) if total.num_requests else 0,
        "p99": total.get_response_time_percentile(0.99) if total.num_requests else 0,
        "checks": checks, "operations": sorted(per_op, key=lambda o: str(o["name"])),
        "check_errors": [f"{e.name}: {e.error}" for e in stats.errors.values() if e.method == CHECK][:10],
    }


def evaluate(stats: Any, gates: Gates) -> tuple[list[GateResult], dict[str, Any]]:
    """Each gate's verdict and the summary they were read from."""
    s = summary(stats)
    ratio = s["failures"] / s["requests"] if s["requests"] else 1.0
    checks = s["checks"]
    results = [
        GateResult("p95 latency", f"<= {gates.p95_ms:g} ms", f"{s['p95']:g} ms", s["p95"] <= gates.p95_ms),
        GateResult("p99 latency", f"<= {gates.p99_ms:g} ms", f"{s['p99']:g} ms", s["p99"] <= gates.p99_ms),
        GateResult("error ratio", f"<= {gates.max_error_ratio:.2%}", f"{ratio:.2%} of {s['requests']}",
                   s["requests"] > 0 and ratio <= gates.max_error_ratio),
        GateResult("consistency", f"0 lost/duplicated, >= {gates.min_checks} checks",
                   f"{checks['failures']} failed of {checks['requests']}",
                   checks["failures"] == 0 and checks["requests"] >= gates.min_checks),
    ]
    return results, s


def write_verdict(path: str, results: list[GateResult], s: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"passed": all(r.passed for r in results), "gates": [asdict(r) for r in results], **s}, fh,
                  indent=2)
