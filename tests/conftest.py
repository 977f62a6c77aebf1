"""Shared setup for the project's own tests (not the conformance suite, which ships in the package).

Puts the project root on sys.path so ``tests.broken`` imports however pytest was started
(``pytest`` from anywhere, or ``python -m pytest`` from the root), and makes
``tests.broken:<name>`` usable as a target string in the same run.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
