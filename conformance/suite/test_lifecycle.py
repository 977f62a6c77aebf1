"""LC-*: create, get, delete, and no resurrection."""

from sessionspec.conformance.clauses import clause
from sessionspec.conformance.context import SuiteContext


@clause("LC-1")
async def test_create_returns_v0_and_get_returns_the_same_session(ctx: SuiteContext) -> None:
    created = await ctx.store.create({"a": 1}, owner="alice", ttl=60)
    got = await ctx.store.get(created.id)
    assert got is not None
    assert (got.state, got.owner, got.ttl, got.version) == ({"a": 1}, "alice", 60.0, created.version)
