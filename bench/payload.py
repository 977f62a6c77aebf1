"""What the benchmarks store: a realistic session state (~20 keys, ~2 KB of JSON) and chat messages.

The same values go through the store and through the raw driver, so a ratio compares the
work around the payload, never two payloads. Deterministic per seed: runs are comparable.
"""

from __future__ import annotations

import json
import random
from typing import Any

__all__ = ["flat_state", "message", "session_state", "size_of"]

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def flat_state(seed: int = 0) -> dict[str, Any]:
    """20 top-level keys, ~2 KB, no top-level lists (each would be one more Redis key)."""
    rng = random.Random(seed)
    return {
        "user_id": f"user-{seed:08d}",
        "tenant": "acme-corp",
        "locale": "en-GB",
        "timezone": "Europe/London",
        "authenticated": True,
        "login_at": 1_767_225_600 + seed,
        "csrf_token": f"{rng.getrandbits(128):032x}",
        "theme": {"mode": "dark", "font_size": 14, "contrast": "normal"},
        "feature_flags": {f"flag_{i}": rng.random() < 0.5 for i in range(12)},
        "agent": {"model": "gpt-large", "temperature": 0.7, "max_tokens": 1024, "tools": "search,calc,code"},
        "current_task": {"id": f"task-{seed}", "status": "running", "step": 3, "title": _words(rng, 8)},
        "summary": _words(rng, 70),
        "scratchpad": _words(rng, 40),
        "profile": {"name": "Ada Lovelace", "email": f"ada{seed}@example.com", "plan": "pro", "seats": 5},
        "counters": {"turns": 12, "tool_calls": 7, "tokens_in": 18_450, "tokens_out": 5_012},
        "last_error": None,
        "retry_budget": 3,
        "score": 0.8125,
        "draft_reply": _words(rng, 40),
        "referrer": "https://example.com/landing?utm_source=newsletter&utm_campaign=spring",
    }


def session_state(seed: int = 0) -> dict[str, Any]:
    """flat_state with two of its 20 keys holding lists (recent pages, a cart), as real sessions do."""
    rng = random.Random(seed + 1)
    state = flat_state(seed)
    del state["scratchpad"], state["referrer"]
    state["recent_pages"] = [f"/docs/{_words(rng, 2).replace(' ', '-')}/{i}" for i in range(8)]
    state["cart"] = [{"sku": f"SKU-{rng.randrange(10**6):06d}", "qty": rng.randrange(1, 4)} for _ in range(3)]
    return state


def message(n: int) -> dict[str, Any]:
    """One chat message (~300 bytes), as an agent framework appends it to a history."""
    rng = random.Random(n)
    return {"role": "user" if n % 2 == 0 else "assistant", "content": _words(rng, 40), "n": n,
            "ts": 1_767_225_600 + n}


def size_of(value: Any) -> int:
    """Bytes of compact JSON, as the stores serialize it."""
    return len(json.dumps(value, separators=(",", ":")).encode())
