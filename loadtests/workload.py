"""The chat-agent workload, independent of Locust: profiles, the operations a user needs, the ledger.

A conversation creates a session, runs N turns of *read, apply a delta, append a message*
(with an occasional touch and, at ``merge_rate``, a parallel-branch merge: two deltas on
the same fork, the loser retrying on VersionConflict), then deletes the session or
abandons it to expire. Every write that was *acknowledged* goes into a :class:`Ledger`;
before the session is let go it is read once more and checked: every acknowledged
append present exactly once and in order, every acknowledged delta present. A write that
failed may or may not have landed (at most once), which is what a client can know.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

__all__ = [
    "PROFILES",
    "Conflict",
    "Ledger",
    "OpError",
    "Ops",
    "Profile",
    "Verdict",
    "run_conversation",
    "run_hot_appends",
]

MESSAGES: Final = "messages"


class OpError(Exception):
    """An operation failed (already recorded as a failed request by the client)."""


class Conflict(OpError):
    """The write lost an optimistic race (VersionConflict / 412): re-read and retry."""


class Ops(Protocol):
    """What a load user can do; implemented over HTTP (FastHttpUser) and over a store bridge."""

    def create(self, state: dict[str, Any], ttl: float | None) -> dict[str, Any]: ...
    def get(self, id: str, name: str = "get") -> dict[str, Any] | None: ...
    def apply(self, id: str, changes: dict[str, Any], expected: int | None = None,
              name: str = "apply") -> dict[str, Any]: ...
    def append(self, id: str, key: str, items: list[Any]) -> dict[str, Any]: ...
    def touch(self, id: str) -> dict[str, Any]: ...
    def delete(self, id: str) -> bool: ...
    def purge(self) -> int: ...
    def check(self, name: str, problems: list[str]) -> None:
        """Record the outcome of a consistency check (a CHECK request, failed when problems)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """One workload variant."""

    name: str
    turns: tuple[int, int] = (4, 10)
    touch_every: int = 4
    delete_ratio: float = 0.7
    ttl: float = 600.0
    abandon_ttl: float = 30.0
    merge_rate: float = 0.1
    hot_sessions: int = 0
    """> 0: hot-session contention (users append to these few shared sessions)."""
    purge_every: int = 0
    """> 0: every n-th conversation also calls purge_expired (sweep-under-load)."""
    think: tuple[float, float] = (0.0, 0.05)
    description: str = ""


PROFILES: Final[dict[str, Profile]] = {
    "chat": Profile("chat", description="create, 4-10 turns of read+apply+append, touch, delete or abandon"),
    "create-heavy": Profile("create-heavy", turns=(1, 1), delete_ratio=0.2, merge_rate=0.0,
                            description="mostly creates: one turn per session, most sessions left to expire"),
    "hot-session": Profile("hot-session", hot_sessions=4, merge_rate=0.0,
                           description="many users appending to 4 shared sessions (contention)"),
    "sweep-under-load": Profile("sweep-under-load", turns=(1, 3), delete_ratio=0.0, abandon_ttl=1.0,
                                purge_every=10, description="short-TTL sessions expiring and purged while "
                                                            "chat traffic runs"),
}


@dataclass(slots=True)
class Verdict:
    checked: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Ledger:
    """What one writer knows was acknowledged (and attempted) on one session."""

    deltas: dict[str, Any] = field(default_factory=dict)
    acked: list[str] = field(default_factory=list)
    """Message markers whose append was acknowledged, in order."""
    attempted: set[str] = field(default_factory=set)
    """Markers whose append failed: they may have landed, at most once."""
    unsure: dict[str, list[Any]] = field(default_factory=dict)
    """Per key, values of deltas that failed after the last acknowledged one: any may have landed."""

    def verify(self, state: dict[str, Any] | None, *, mine: Callable[[str], bool] | None = None) -> list[str]:
        """Lost or duplicated acknowledged writes in ``state`` (an empty list when consistent)."""
        if state is None:
            return [f"session vanished with {len(self.acked)} acknowledged append(s)"] if self.acked else []
        problems: list[str] = []
        lost_deltas = [k for k, v in self.deltas.items() if state.get(k) != v and state.get(k) not in
                       self.unsure.get(k, [])]
        if lost_deltas:
            problems.append(f"{len(lost_deltas)} acknowledged delta key(s) missing or overwritten")
        raw = state.get(MESSAGES, [])
        seen = [m for m in raw if isinstance(m, str) and (mine is None or mine(m))]
        counts = Counter(seen)
        lost = sum(1 for m in self.acked if counts[m] == 0)
        dup = sum(1 for m, n in counts.items() if n > 1)
        stray = sum(1 for m in counts if m not in self.attempted and m not in set(self.acked))
        if lost:
            problems.append(f"{lost} acknowledged append(s) lost")
        if dup:
            problems.append(f"{dup} append(s) present more than once")
        if stray:
            problems.append(f"{stray} message(s) nobody appended")
        order = [m for m in seen if m in set(self.acked)]
        if not lost and not dup and order != self.acked:
            problems.append("acknowledged appends out of order")
        return problems


def _think(profile: Profile, rng: random.Random, sleep: Callable[[float], None]) -> None:
    low, high = profile.think
    if high > 0:
        sleep(rng.uniform(low, high))


def _append(ops: Ops, ledger: Ledger, id: str, marker: str) -> None:
    ledger.attempted.add(marker)
    try:
        ops.append(id, MESSAGES, [marker])
    except OpError:
        return
    ledger.acked.append(marker)


def _delta(ops: Ops, ledger: Ledger, id: str, changes: dict[str, Any], expected: int | None = None,
           name: str = "apply") -> dict[str, Any]:
    try:
        result = ops.apply(id, changes, expected, name=name)
    except OpError:
        for key, value in changes.items():
            ledger.unsure.setdefault(key, []).append(value)
        raise
    ledger.deltas.update(changes)
    for key in changes:
        ledger.unsure.pop(key, None)
    return result


def _merge(ops: Ops, ledger: Ledger, id: str, turn: int) -> None:
    """Two branches forked from one read; the second commit conflicts, re-reads and retries."""
    fork = ops.get(id, name="merge-read")
    if fork is None:
        return
    branches = [{f"branch_a_{turn}": turn}, {f"branch_b_{turn}": -turn}]
    for changes in branches:
        expected = fork["version"]
        for _ in range(5):
            try:
                done = _delta(ops, ledger, id, changes, expected, name="merge-apply")
                expected = done["version"]
                break
            except Conflict:
                again = ops.get(id, name="merge-read")
                if again is None:
                    return
                expected = again["version"]
            except OpError:
                break


def run_conversation(ops: Ops, profile: Profile, rng: random.Random, tag: str,
                     sleep: Callable[[float], None], serial: int) -> None:
    """One whole conversation; the final read is the consistency check."""
    deleting = rng.random() < profile.delete_ratio
    try:
        session = ops.create({"agent": "load", "turn": 0},
                             profile.ttl if deleting else profile.abandon_ttl)
    except OpError:
        return
    id, ledger = session["id"], Ledger()
    for turn in range(1, rng.randint(*profile.turns) + 1):
        try:
            if ops.get(id) is None:
                break
            _delta(ops, ledger, id, {"turn": turn, f"note_{turn}": f"{tag} turn {turn}"})
            _append(ops, ledger, id, f"{tag}:{turn}")
            if profile.merge_rate and rng.random() < profile.merge_rate:
                _merge(ops, ledger, id, turn)
            if profile.touch_every and turn % profile.touch_every == 0:
                ops.touch(id)
        except OpError:
            pass
        _think(profile, rng, sleep)
    try:
        final = ops.get(id, name="verify")
    except OpError:
        final = None
    else:
        ops.check("consistency", ledger.verify(final["state"] if final else None))
    if deleting:
        try:
            ops.delete(id)
        except OpError:
            pass
    if profile.purge_every and serial % profile.purge_every == 0:
        try:
            ops.purge()
        except OpError:
            pass


def run_hot_appends(ops: Ops, profile: Profile, hot_ids: list[str], rng: random.Random, tag: str,
                    sleep: Callable[[float], None], ledgers: dict[str, Ledger], rounds: int = 20) -> None:
    """Append ``rounds`` markers to shared hot sessions, then check this user's markers in each."""
    for n in range(rounds):
        id = rng.choice(hot_ids)
        _append(ops, ledgers.setdefault(id, Ledger()), id, f"{tag}:{n}")
        _think(profile, rng, sleep)
    prefix = f"{tag}:"
    for id, ledger in ledgers.items():
        try:
            final = ops.get(id, name="verify")
        except OpError:
            continue
        ops.check("consistency", ledger.verify(final["state"] if final else None,
                                               mine=lambda m: m.startswith(prefix)))
    ledgers.clear()
