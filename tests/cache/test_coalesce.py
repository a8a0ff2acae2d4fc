"""Merged pokes leave exactly the state the pokes applied one by one leave."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cache.budget import Budget
from cache.coalesce import merge_pokes
from cache.local import LocalState
from cache.store import LocalStore
from queryplanner import Schema, bind, table
from queryplanner.protocol import MutationResult, Poke
from server.testing import issue
from tests.conftest import DEMO_SCHEMA_PATH

SCHEMA = Schema.load(DEMO_SCHEMA_PATH)
Q = bind(table("issue").build(), SCHEMA)


@st.composite
def pokes(draw: st.DrawFn) -> list[Poke]:
    out = []
    for v in range(2, 2 + draw(st.integers(1, 5))):
        ids = draw(st.lists(st.integers(1, 8), unique=True, max_size=5))
        split = draw(st.integers(0, len(ids)))
        put = [{**issue(i, title=f"v{v}"), "_v": v} for i in ids[:split]]
        dels = [[i] for i in ids[split:]]
        muts = (MutationResult(v, "applied", None, v),) if draw(st.booleans()) else ()
        out.append(Poke(v, {"issue": put}, {"issue": dels}, {Q.id: v} if v == 3 else {}, muts))
    return out


def _state(pokes_: list[Poke]) -> Any:
    local = LocalState(SCHEMA, LocalStore(SCHEMA), Budget(10**7))
    local.add_desired(Q, Q.id, pinned=True, ttl=None)
    for p in pokes_:
        local.apply_poke(p, f"{p.version}.1.t")
    d = local.desired[Q.id]
    return local.run(Q), sorted(local.budget.members(Q.id)), d.complete_at is not None


@settings(deadline=None, max_examples=40)
@given(ps=pokes())
def test_merged_pokes_equal_pokes_applied_one_by_one(ps: list[Poke]) -> None:
    merged = merge_pokes(SCHEMA, ps)
    assert merged.version == ps[-1].version
    assert [m.id for m in merged.mutations] == [m.id for p in ps for m in p.mutations]
    assert _state([merged]) == _state(ps)
