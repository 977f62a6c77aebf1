"""Progress while the suite runs, fed by the runner's listener events.

The runner calls ``listener("collected", n)`` once and ``listener("outcome", TestOutcome)``
after every test. On a terminal a rich progress bar shows the current clause and test
and disappears before the report; in CI logs (not a TTY) one compact line per clause
family is printed instead (``LC    ..F.s   4 passed, 1 failed, 1 skipped``); ``--quiet``
prints nothing.
"""

from __future__ import annotations

from collections import Counter
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from .clauses import get_clause
from .results import TestOutcome

__all__ = ["LineProgress", "NullProgress", "RichProgress", "RunProgress", "progress_for"]

MARKS = {"passed": ".", "failed": "F", "error": "E", "skipped": "s"}
MAX_MARKS = 60


class RunProgress:
    """A listener for run_suite and a context manager around the run; shows nothing."""

    def __call__(self, event: str, payload: Any) -> None:
        if event == "collected":
            self.collected(int(payload))
        elif event == "outcome" and isinstance(payload, TestOutcome):
            self.outcome(payload)

    def collected(self, total: int) -> None:
        """The number of tests that will run is known."""

    def outcome(self, test: TestOutcome) -> None:
        """One test finished."""

    def start(self) -> None:
        """The run begins (the target is about to be opened)."""

    def stop(self) -> None:
        """The run ended, normally or not: leave the screen clean for the report."""

    def __enter__(self) -> RunProgress:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


NullProgress = RunProgress


def _family(test: TestOutcome) -> str:
    return get_clause(test.clauses[0]).family if test.clauses else "?"


class RichProgress(RunProgress):
    """A transient bar: tests done of collected, the clause and test running, failures so far."""

    def __init__(self, console: Console, target: str) -> None:
        self.target = target
        self.failed = 0
        self.bar = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True,
        )
        self.task = self.bar.add_task(f"opening {target}", total=None)

    def start(self) -> None:
        self.bar.start()

    def stop(self) -> None:
        self.bar.stop()

    def collected(self, total: int) -> None:
        self.bar.update(self.task, total=total, description=f"checking {self.target}")

    def outcome(self, test: TestOutcome) -> None:
        if test.status in ("failed", "error"):
            self.failed += 1
        failed = f" [red]{self.failed} failed[/red]" if self.failed else ""
        where = " ".join(test.clauses)
        description = f"{escape(where)} {escape(test.name)}{failed}"
        self.bar.update(self.task, advance=1, description=description)


class LineProgress(RunProgress):
    """Plain lines for logs: a header, then one line per clause family as each one finishes."""

    def __init__(self, console: Console, target: str) -> None:
        self.console = console
        self.target = target
        self.family: str | None = None
        self.marks: list[str] = []
        self.tally: Counter[str] = Counter()

    def _line(self, text: str) -> None:
        self.console.print(Text(text), soft_wrap=True, highlight=False)

    def start(self) -> None:
        self._line(f"sessionspec: checking {self.target}")

    def collected(self, total: int) -> None:
        self._line(f"running {total} test{'s' if total != 1 else ''}")

    def outcome(self, test: TestOutcome) -> None:
        family = _family(test)
        if family != self.family:
            self._flush()
            self.family = family
        self.marks.append(MARKS.get(test.status, "?"))
        self.tally[test.status] += 1

    def _flush(self) -> None:
        if self.family is None or not self.marks:
            return
        marks = "".join(self.marks)
        if len(marks) > MAX_MARKS:
            marks = marks[: MAX_MARKS - 1] + "…"
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.tally.items()))
        self._line(f"{self.family:<5} {marks:<{min(MAX_MARKS, 20)}}  {counts}")
        self.marks.clear()
        self.tally.clear()

    def stop(self) -> None:
        self._flush()
        self.family = None


def progress_for(console: Console, target: str, *, quiet: bool = False) -> RunProgress:
    """The right display for where the output goes."""
    if quiet:
        return NullProgress()
    if console.is_terminal:
        return RichProgress(console, target)
    return LineProgress(console, target)
