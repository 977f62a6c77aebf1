"""Driving an asyncio store from Locust's gevent users without blocking the hub.

Why a child process and not a thread: Locust monkey-patches the process with gevent,
which swaps ``selectors`` for its own and removes ``select.epoll``; an asyncio loop in a
real thread of that process blocks on gevent's selector (tried: it hangs). So the store
runs in a child interpreter that gevent never touched, on its own asyncio loop
(``python -m sessionspec.loadtests.bridge TARGET NAMESPACE SOCKET``), and each Locust
user talks to it over its own Unix socket: the user's greenlet blocks only on a gevent
socket read, so the hub keeps running every other user while the store works.

Frames are a 4-byte length and a pickle: ``(method, args, kwargs)`` one way and
``(True, result)`` or ``(False, error class name, message)`` back (contract errors do
not round-trip through pickle with their own signatures, so they travel by name).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import struct
import subprocess
import sys
import tempfile
from typing import Any, Final

__all__ = ["BridgeClient", "BridgeError", "StoreBridge", "serve_bridge"]

HEADER: Final = struct.Struct("!I")
METHODS: Final = frozenset({"create", "get", "save", "apply", "append", "touch", "delete", "list", "count",
                            "purge_expired"})


class BridgeError(Exception):
    """A store call failed in the child; ``kind`` is the exception's class name (e.g. VersionConflict)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


# ---------------------------------------------------------------- the child (plain asyncio)
async def _serve(target_spec: str, namespace: str, path: str) -> None:
    from sessionspec.conformance.targets import open_store, resolve_target

    target = resolve_target(target_spec)
    try:
        async with open_store(target, namespace) as store:
            done = asyncio.get_running_loop().create_future()

            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                try:
                    while True:
                        size = HEADER.unpack(await reader.readexactly(HEADER.size))[0]
                        method, args, kwargs = pickle.loads(await reader.readexactly(size))
                        if method == "shutdown":
                            if not done.done():
                                done.set_result(None)
                            return
                        try:
                            if method not in METHODS:
                                raise AttributeError(f"no store method {method!r}")
                            reply: tuple[Any, ...] = (True, await getattr(store, method)(*args, **kwargs))
                        except Exception as exc:
                            reply = (False, type(exc).__name__, str(exc))
                        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
                        writer.write(HEADER.pack(len(data)) + data)
                        await writer.drain()
                except (asyncio.IncompleteReadError, ConnectionError):
                    pass
                finally:
                    writer.close()

            server = await asyncio.start_unix_server(handle, path, backlog=4096)
            print("ready", flush=True)
            loop = asyncio.get_running_loop()

            def stdin_readable() -> None:  # the parent closing our stdin (or dying) ends the bridge
                if not os.read(sys.stdin.fileno(), 4096) and not done.done():
                    done.set_result(None)

            loop.add_reader(sys.stdin.fileno(), stdin_readable)
            async with server:
                await done
            loop.remove_reader(sys.stdin.fileno())
    finally:
        target.close()


def serve_bridge(argv: list[str]) -> None:
    """Entry point of the child: ``TARGET NAMESPACE SOCKET``; exits when its stdin closes."""
    target_spec, namespace, path = argv
    asyncio.run(_serve(target_spec, namespace, path))


# ---------------------------------------------------------------- the parent (gevent-friendly)
class StoreBridge:
    """The child process holding the store; one per load-generating process."""

    def __init__(self, target_spec: str, namespace: str) -> None:
        self._dir = tempfile.mkdtemp(prefix="sessionspec-bridge-")
        self.path = os.path.join(self._dir, "store.sock")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sessionspec.loadtests.bridge", target_spec, namespace, self.path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            _, err = self.process.communicate(timeout=10)
            raise RuntimeError(f"the store bridge for {target_spec!r} did not start: {err.strip()[-2000:]}")

    def client(self) -> BridgeClient:
        return BridgeClient(self.path)

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)


class BridgeClient:
    """One user's connection to the bridge; ``call`` blocks only its own greenlet (gevent socket)."""

    def __init__(self, path: str) -> None:
        import socket  # the gevent-patched module under Locust: reads yield to the hub

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self._file = self.sock.makefile("rb")

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        data = pickle.dumps((method, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        self.sock.sendall(HEADER.pack(len(data)) + data)
        header = self._file.read(HEADER.size)
        if len(header) < HEADER.size:
            raise ConnectionError("the store bridge closed the connection")
        reply = pickle.loads(self._file.read(HEADER.unpack(header)[0]))
        if reply[0]:
            return reply[1]
        raise BridgeError(reply[1], reply[2])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
            self.sock.close()


if __name__ == "__main__":
    serve_bridge(sys.argv[1:])
