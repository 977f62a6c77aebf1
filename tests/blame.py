"""Measure blame: per one-bug store, how many clauses a FULL suite run fails, and is the intended one among them.

Not a pytest module (a full run per broken store takes minutes in all); run it by hand::

    python -m tests.blame                 # every broken MemoryStore, full suite each
    python -m tests.blame -n 5 --json out.json
    python -m tests.blame name1 name2     # some cases only

tests/test_blame.py keeps a bounded version of the same figure in CI.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass

from sessionspec.conformance.results import RunResult
from sessionspec.conformance.runner import run_suite
from tests.broken import BROKEN, BrokenCase


@dataclass(frozen=True, slots=True)
class Blame:
    name: str
    intended: tuple[str, ...]
    failed: tuple[str, ...]
    seconds: float
    reasons: tuple[str, ...] = ()

    @property
    def caught(self) -> bool:
        return self.intended[0] in self.failed

    @property
    def first(self) -> bool:
        """The intended clause is the one blamed first (spec order among the failures puts it first, or it is alone)."""
        return bool(self.failed) and self.failed[0] in self.intended


def failed_clauses(result: RunResult) -> tuple[str, ...]:
    return tuple(c.clause.id for c in result.failures)  # the order the report shows them in


def measure(case: BrokenCase, keyword: str | None = None) -> Blame:
    began = time.monotonic()
    result = run_suite(case.target(), keyword=keyword)
    if result.errors:
        print(f"{case.name}: run errors: {result.errors}", file=sys.stderr)
    reasons = tuple(c.reason.splitlines()[0][:300] if c.reason else "" for c in result.failures)
    return Blame(case.name, case.clauses, failed_clauses(result), time.monotonic() - began, reasons)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="broken store names (default: all)")
    parser.add_argument("-n", type=int, default=0, help="only the first N cases")
    parser.add_argument("-k", dest="keyword", default=None, help="pytest -k expression for each run")
    parser.add_argument("--json", default=None, help="write the per-case figures here")
    args = parser.parse_args(argv)
    names = args.names or list(BROKEN)
    if args.n:
        names = names[: args.n]
    rows = []
    for name in names:
        row = measure(BROKEN[name], args.keyword)
        rows.append(row)
        mark = "ok " if row.caught else "MISSED"
        print(f"{mark} {row.name:32} {len(row.failed):2} failed [{', '.join(row.failed)}] "
              f"(intended {', '.join(row.intended)}) {row.seconds:.1f} s", flush=True)
    counts = [len(r.failed) for r in rows]
    print(f"\n{len(rows)} broken stores: {statistics.mean(counts):.2f} clauses failed on average, "
          f"max {max(counts)}; intended caught {sum(r.caught for r in rows)}/{len(rows)}, "
          f"blamed first {sum(r.first for r in rows)}/{len(rows)}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump([{"name": r.name, "intended": r.intended, "failed": r.failed, "seconds": r.seconds,
                        "reasons": r.reasons} for r in rows], fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
