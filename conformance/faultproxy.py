"""A fault-injection TCP proxy for the FL clauses: put it between a store and its server, then flip it.

FL-1/FL-2 need a backend the suite can take away and give back. A store that talks TCP
to its server gets that in a few lines: connect the store to the proxy instead of the
server and hand the suite two hooks::

    from sessionspec.conformance.faultproxy import FaultProxy

    proxy = FaultProxy.start("127.0.0.1", 6379)        # your server; the proxy listens on proxy.port

    def factory(namespace):
        return MyStore(f"redis://127.0.0.1:{proxy.port}/0", namespace=namespace)

    def stop_backend():  proxy.set_mode("stall")       # or "refuse" / "reset"
    def start_backend(): proxy.set_mode("pass")

Modes: ``pass`` forwards bytes both ways; ``refuse`` closes the listening socket (connects
get ECONNREFUSED) and resets open connections; ``reset`` resets open connections and
every new one at once; ``stall`` is a black hole: open connections and new ones (accepted
and held) carry no byte either way (a network partition, a paused VM, ``CLIENT PAUSE``) —
the mode that catches a store with no socket timeout. Leaving ``stall`` or ``reset``
resets every connection it held. The proxy runs on its own thread and event loop, so it outlives the suite's per-test
loops; loopback only. It does not restart a server: FL-3 (durability) needs the real
server stopped and started, which a proxy cannot fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Literal

__all__ = ["MODES", "FaultProxy", "Mode", "switches"]

Mode = Literal["pass", "refuse", "reset", "stall"]
MODES: tuple[Mode, ...] = ("pass", "refuse", "reset", "stall")
_CHUNK = 65536
_SWITCHES = [0]


def switches() -> int:
    """How many times any proxy in this process changed mode: FL-3 tells a proxy flip from a real restart."""
    return _SWITCHES[0]


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a dead peer or a firewall reject would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """One listening port on 127.0.0.1 forwarding to ``upstream``; ``set_mode`` switches faults on and off."""

    def __init__(self, upstream_host: str, upstream_port: int, *, port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self.mode: Mode = "pass"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"faultproxy:{upstream_port}",
                                        daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()

    # -- control (any thread) ------------------------------------------------------------
    @classmethod
    def start(cls, upstream_host: str, upstream_port: int, *, port: int = 0) -> FaultProxy:
        """Start listening (``port`` 0: any free port, then read ``proxy.port``)."""
        proxy = cls(upstream_host, upstream_port, port=port)
        proxy._thread.start()
        proxy._call(proxy._listen())
        return proxy

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def set_mode(self, mode: Mode) -> None:
        """Switch the fault; returns once new connections see it and old ones were dealt with."""
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}; choose one of {', '.join(MODES)}")
        _SWITCHES[0] += 1
        self._call(self._switch(mode))

    def close(self) -> None:
        if not self._loop.is_closed() and self._thread.is_alive():
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: object) -> None:
        future: Future[None] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        future.result(10)

    # -- the proxy (its own loop) -----------------------------------------------------
    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _switch(self, mode: Mode) -> None:
        previous, self.mode = self.mode, mode
        if mode == "refuse":
            if self._server is not None:
                self._server.close()
                self._server = None
            self._reset_all()
        elif self._server is None:
            await self._listen()
        if mode == "reset" or previous in ("reset", "stall"):
            self._reset_all()  # entering stall keeps open connections: they just stop answering

    def _reset_all(self) -> None:
        for client, upstream in list(self._links):
            _abort(client)
            if upstream is not None:
                _abort(upstream)
        self._links.clear()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._reset_all()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "reset":
            _abort(writer)
            return
        if self.mode == "stall":  # accepted and held: the store's connect succeeds, its requests never answer
            link: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (writer, None)
            self._links.add(link)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _abort(writer)
            return
        link = (writer, up_writer)
        self._links.add(link)
        await asyncio.gather(self._pump(reader, up_writer, link), self._pump(up_reader, writer, link))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    link: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]) -> None:
        try:
            while data := await reader.read(_CHUNK):
                if self.mode != "pass":  # stalled mid-connection: swallow, answer nothing
                    continue
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if link in self._links:
                self._links.discard(link)
                for w in link:
                    if w is not None:
                        w.close()


@contextlib.contextmanager
def proxied(upstream_host: str, upstream_port: int) -> Iterator[FaultProxy]:
    """``with proxied(host, port) as proxy:`` — a proxy closed on exit."""
    proxy = FaultProxy.start(upstream_host, upstream_port)
    try:
        yield proxy
    finally:
        proxy.close()
