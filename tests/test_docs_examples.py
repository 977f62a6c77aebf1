"""The runnable example in docs/ really runs, so the guide cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def test_the_plugging_in_example_passes_its_clauses() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sessionspec.conformance.cli", "check", "my_store:factory", "--clause", "LC-1",
         "--clause", "TTL-3"],
        cwd=EXAMPLES, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
