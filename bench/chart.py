"""One PNG per backend result: ratio bars per operation, the scaling curves, append and contention."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from report import RATIO_TARGETS

__all__ = ["render"]

CURVES = ("get", "list_owner", "count_owner", "list_big_owner", "list_growing_owner", "count_growing_owner", "list_all",
          "count_all")


def _ratios(ax: Any, result: dict[str, Any]) -> None:
    ops = result.get("ops", [])
    targets = RATIO_TARGETS[result["backend"]]
    x = 0.0
    for o in ops:
        for i, (label, ratio) in enumerate(o["ratio"].items()):
            bar = ax.bar(x, ratio, width=0.8, color="tab:blue" if i == 0 else "tab:gray")
            ax.bar_label(bar, labels=[f"{ratio:.2f}"], fontsize=7)
            ax.text(x, -0.04, f"{o['op']}\nvs {label}".replace(", ", "\n"), ha="center", va="top", fontsize=7)
            if i == 0 and o["op"] in targets:
                ax.hlines(targets[o["op"]], x - 0.45, x + 0.45, colors="tab:red", linestyles="--")
            x += 1
        x += 0.5
    ax.axhline(1.0, color="black", linewidth=0.5)
    ax.set_xticks([])
    ax.set_ylabel("store throughput / raw driver")
    ax.set_title("throughput ratio, 1000 tasks (red: target)")


def _scaling(ax: Any, result: dict[str, Any]) -> None:
    stages = result.get("scale", {}).get("stages", [])
    sizes = [s["sessions"] for s in stages]
    for name in CURVES:
        if stages and name in stages[0]:
            line = ax.plot(sizes, [s[name]["p50_ms"] for s in stages], marker="o", label=name)[0]
            if "twin" in stages[0] and name in ("list_owner", "count_owner", "list_big_owner", "count_all"):
                # the small twin, same moments
                ax.plot(sizes, [s["twin"][name]["p50_ms"] for s in stages], linestyle="--", marker=".",
                        color=line.get_color(), label=f"{name}, 10k twin alongside")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("stored sessions (half expired)")
    ax.set_ylabel("p50 latency, ms")
    ax.set_title("latency vs stored sessions")
    if stages:
        ax.legend(fontsize=7)


def _append(ax: Any, result: dict[str, Any]) -> None:
    a = result.get("append")
    if not a:
        return
    labels = ["empty history", f"{a['history']:,} messages"]
    for i, q in enumerate(("p50_ms", "p99_ms")):
        values = [a["empty"][q], a["long"][q]]
        bars = ax.bar([x + 0.4 * i for x in (0, 1)], values, width=0.4, label=q.replace("_ms", ""))
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=7)
    ax.set_xticks([0.2, 1.2], labels)
    ax.set_ylabel("ms per append of one message")
    ax.set_title(f"append: {a['ratio_long_to_empty']:.2f}x at {a['history']:,} messages (target <= 1.5x)")
    ax.legend(fontsize=7)


def _contention(ax: Any, result: dict[str, Any]) -> None:
    c = result.get("cas")
    if not c:
        return
    policies = list(c["seconds"])
    values = [c["seconds"][p] for p in policies]
    bars = ax.bar(range(len(values)), values, color=["tab:red", "tab:blue", "tab:green"][:len(values)])
    capped = set(c.get("incomplete", []))
    ax.bar_label(bars, labels=[f"{'>= ' if p in capped else ''}{c['seconds'][p]:.2f} s\n{c['retries'][p]:,.0f} retries"
                               for p in policies], fontsize=7)
    ax.set_xticks(range(len(values)), [p + ("" if p == "naive" else f"\n{c['speedup'][p]:.1f}x faster")
                                       for p in policies])
    ax.set_ylim(top=max(values) * 1.15)
    ax.set_ylabel("seconds for all increments (median)")
    ax.set_title(f"{c['tasks']} contending increments (target: backoff and suite >= 4x faster than naive)")


def render(result: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    _ratios(axes[0][0], result)
    _scaling(axes[0][1], result)
    _append(axes[1][0], result)
    _contention(axes[1][1], result)
    m = result["machine"]
    fig.suptitle(f"sessionspec {result['backend']} bench, {result['started']} - {result['server'][:60]} - "
                 f"{m['cpus']} CPUs, {m['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":  # re-draw from a saved JSON: python bench/chart.py RESULT.json
    for arg in sys.argv[1:]:
        src = Path(arg)
        render(json.loads(src.read_text()), src.with_suffix(".png"))
