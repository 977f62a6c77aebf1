"""Every Python example in docs/manager.md runs as written, so the guide cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "manager.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def _title(code: str) -> str:
    heading = ""
    text = DOC.read_text(encoding="utf-8")
    for line in text[: text.index(code)].splitlines():
        if line.startswith("#"):
            heading = line.lstrip("# ").strip()
    return heading


def test_the_guide_has_an_example_per_feature() -> None:
    assert len(BLOCKS) >= 12


@pytest.mark.parametrize("code", BLOCKS, ids=[f"{i}-{_title(code)[:30]}" for i, code in enumerate(BLOCKS)])
def test_example_runs(code: str) -> None:
    if "starlette" in code:
        pytest.importorskip("starlette")
        pytest.importorskip("httpx")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"this example from docs/manager.md failed:\n{code}\n{out.stdout}\n{out.stderr}"
