"""The fault-injection proxy: each mode does to a client what its name says (a real TCP echo server behind it)."""

from __future__ import annotations

import asyncio

import pytest

from sessionspec.conformance.faultproxy import FaultProxy


async def _echo_server() -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


async def _roundtrip(port: int, limit: float = 2.0) -> str:
    """'ok' if bytes come back, else what happened: 'refused', 'reset', 'closed' or 'stalled' (no answer in time)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), limit)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:  # the reset can land while the connect completes
        return "reset"
    try:
        writer.write(b"ping")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(4), limit)
        return "ok" if data == b"ping" else "closed"
    except TimeoutError:
        return "stalled"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    finally:
        writer.close()


def test_every_mode_does_what_it_says_and_pass_recovers() -> None:
    async def scenario() -> list[str]:
        server = await _echo_server()
        port = server.sockets[0].getsockname()[1]
        proxy = await asyncio.to_thread(FaultProxy.start, "127.0.0.1", port)
        seen = []
        try:
            for mode in ("pass", "stall", "pass", "refuse", "pass", "reset", "pass"):
                await asyncio.to_thread(proxy.set_mode, mode)  # type: ignore[arg-type]
                # only the stall needs a short wait (nothing will ever come); the rest may be slow on a busy machine
                seen.append(await _roundtrip(proxy.port, limit=0.5 if mode == "stall" else 10.0))
        finally:
            await asyncio.to_thread(proxy.close)
            server.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen[0::2] == ["ok", "ok", "ok", "ok"], seen
    assert seen[1] == "stalled", f"stall must accept and hold, answering nothing: {seen}"
    assert seen[3] == "refused", seen
    assert seen[5] in ("reset", "closed"), seen


def test_stall_black_holes_an_open_connection() -> None:
    """A pooled connection opened before the stall stops answering; it does not fail fast."""
    async def scenario() -> tuple[str, str]:
        server = await _echo_server()
        proxy = await asyncio.to_thread(FaultProxy.start, "127.0.0.1", server.sockets[0].getsockname()[1])
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"ping")
            first = await asyncio.wait_for(reader.read(4), 2)
            await asyncio.to_thread(proxy.set_mode, "stall")
            writer.write(b"ping")
            try:
                second = await asyncio.wait_for(reader.read(4), 0.5)
            except TimeoutError:
                second = b"stalled"
            writer.close()
        finally:
            await asyncio.to_thread(proxy.close)
            server.close()
        return first.decode(), second.decode()

    assert asyncio.run(scenario()) == ("ping", "stalled")


def test_an_unknown_mode_is_refused() -> None:
    proxy = FaultProxy.start("127.0.0.1", 9)
    try:
        with pytest.raises(ValueError, match="unknown fault mode"):
            proxy.set_mode("flaky")  # type: ignore[arg-type]
    finally:
        proxy.close()


def test_fl_3_is_not_checked_when_the_hooks_only_flip_a_proxy() -> None:
    """Durability needs the real server restarted: a proxy flip must not pass FL-3 (issue 12, item 9)."""
    from sessionspec.conformance.runner import run_suite
    from sessionspec.conformance.targets import Target
    from sessionspec.reference.memory import MemoryStore

    class Durable(MemoryStore):
        capabilities = frozenset({"core", "durable"})

    store = Durable()
    proxy = FaultProxy.start("127.0.0.1", 9)
    try:
        target = Target(spec="flip", description="hooks that only flip a proxy", factory=lambda namespace: store,
                        stop_backend=lambda: proxy.set_mode("stall"), start_backend=lambda: proxy.set_mode("pass"))
        verdicts = {c.clause.id: c for c in run_suite(target, clauses=["FL-3"]).clauses}
    finally:
        proxy.close()
    assert verdicts["FL-3"].verdict == "n/a", (verdicts["FL-3"].verdict, verdicts["FL-3"].reason)
    assert "real server" in verdicts["FL-3"].reason
