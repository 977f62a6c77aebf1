"""Manager calls in another process, for the manager clauses' cross-process runs (MG-6, MG-7 with ``shared``).

``python -m sessionspec.conformance.manager_worker TARGET`` resolves the target, then reads
one job (JSON on a stdin line: ``namespace``, ``op`` = "get_or_create" | "update", ``key`` or
``id``, ``count``, ``options`` for the manager), opens a store and a manager exactly as the
suite does (the factory's ``sessionspec_manager`` hook included), prints ``{"ready": true}``,
waits for a ``go`` line (so both processes start at once), runs ``count`` concurrent calls
and prints ``{"results": [...], "counters": {...}}``: per call ``{"id", "state"}`` or
``{"error": "ExceptionName: message"}``. Errors outside the calls exit 1 with stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import IO, Any, Final

from .targets import Target, open_store, resolve_target
from .worker import stop_child

__all__ = ["ManagerProcess", "run_job"]

READY_TIMEOUT: Final = 60.0


def _increment(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "n": state.get("n", 0) + 1}


async def run_job(target: Target, job: dict[str, Any]) -> dict[str, Any]:
    from sessionspec.reference.manager import SessionManager

    async with open_store(target, job["namespace"]) as store:
        build = getattr(target.factory, "sessionspec_manager", None) or SessionManager
        manager = build(store, **{"sweep_interval": None, **job.get("options", {})})
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        async def one(i: int) -> dict[str, Any]:
            try:
                if job["op"] == "get_or_create":
                    session = await manager.get_or_create(job["key"], {"task": f"p{i}"})
                else:
                    session = await manager.update(job["id"], _increment)
            except Exception as exc:
                return {"error": f"{type(exc).__name__}: {exc}"}
            return {"id": session.id, "state": session.state}

        try:
            results = await asyncio.gather(*(one(i) for i in range(int(job["count"]))))
        finally:
            await manager.aclose()
        return {"results": results, "counters": manager.counters}


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    if len(argv) != 1:
        print("usage: python -m sessionspec.conformance.manager_worker TARGET", file=sys.stderr)
        return 2
    target = resolve_target(argv[0])
    try:
        job = json.loads(sys.stdin.readline())
        print(json.dumps(asyncio.run(run_job(target, job))), flush=True)
        return 0
    except Exception as exc:
        print(f"manager worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        target.close()


class ManagerProcess:
    """The parent's side: spawn, hand over the job, release with :meth:`go`, collect :meth:`results`."""

    def __init__(self, process: subprocess.Popen[bytes], errors: IO[bytes]) -> None:
        self.process, self._errors = process, errors

    @classmethod
    def spawn(cls, target: str) -> ManagerProcess:
        paths = [p for p in sys.path if p]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *paths])}
        errors = tempfile.TemporaryFile()  # a file, not a pipe: a chatty child can never block on it
        process = subprocess.Popen([sys.executable, "-m", "sessionspec.conformance.manager_worker", target],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env)
        return cls(process, errors)

    @classmethod
    async def start(cls, target: str, job: dict[str, Any]) -> ManagerProcess:
        worker = cls.spawn(target)
        try:
            worker._send(json.dumps(job).encode())
            await asyncio.wait_for(worker._expect("ready"), READY_TIMEOUT)
        except BaseException:
            worker.kill()
            raise
        return worker

    def _send(self, line: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()

    async def _expect(self, key: str) -> Any:
        assert self.process.stdout is not None
        while line := await asyncio.to_thread(self.process.stdout.readline):
            if line.startswith(b"{"):
                with contextlib.suppress(ValueError):
                    message = json.loads(line)
                    if isinstance(message, dict) and key in message:
                        return message
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self._errors.seek(0)
        raise RuntimeError(f"manager worker exited with {self.process.poll()} before {key!r}: "
                           f"{self._errors.read()[-2000:].decode(errors='replace')}")

    def go(self) -> None:
        self._send(b"go")

    async def results(self) -> dict[str, Any]:
        try:
            return dict(await self._expect("results"))
        finally:
            self.kill()

    def kill(self) -> None:
        stop_child(self.process, self._errors)


if __name__ == "__main__":
    sys.exit(main())
