"""Property: over random sequences of puts and deletes, history and as-of reads equal a simple in-memory
model (a list of versions per record, a new one only when content or deleted state changes)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.storage.application import ChunkRef
from services.storage.domain import Deleted, NotFound
from tests.storage.conftest import DATA, Harness, account, data_job, put_raw, random_org, sf_id

pytestmark = pytest.mark.integration

RECORDS = 3
NAMES = ["a", "b", "c"]


@dataclass(frozen=True)
class Put:
    batch: tuple[tuple[int, str, int], ...]  # (record, name, formula value): formula alone is no change


@dataclass(frozen=True)
class Delete:
    records: tuple[int, ...]
    state: Deleted


puts = st.builds(
    Put,
    st.lists(
        st.tuples(st.integers(0, RECORDS - 1), st.sampled_from(NAMES), st.integers(0, 2)), min_size=1, max_size=4
    ).map(tuple),
)
deletes = st.builds(
    Delete,
    st.lists(st.integers(0, RECORDS - 1), min_size=1, max_size=3).map(tuple),
    st.sampled_from([Deleted.SOFT, Deleted.HARD]),
)


class Model:
    def __init__(self) -> None:
        self.versions: dict[int, list[tuple[str, Deleted]]] = {r: [] for r in range(RECORDS)}

    def put(self, batch: tuple[tuple[int, str, int], ...]) -> None:
        last = {r: name for r, name, _f in batch}  # a record twice in a chunk: the last occurrence wins
        for r, name in last.items():
            head = self.versions[r][-1] if self.versions[r] else None
            if head != (name, Deleted.LIVE):
                self.versions[r].append((name, Deleted.LIVE))

    def delete(self, records: tuple[int, ...], state: Deleted) -> None:
        for r in set(records):
            if self.versions[r] and self.versions[r][-1][1] < state:
                self.versions[r].append((self.versions[r][-1][0], state))

    def snapshot(self) -> dict[int, tuple[str, Deleted] | None]:
        return {r: (v[-1] if v else None) for r, v in self.versions.items()}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.one_of(puts, deletes), min_size=1, max_size=8))
async def test_history_and_as_of_match_the_model(harness: Harness, ops: list[Put | Delete]) -> None:
    s = harness.storage
    # a fresh org and session per example: examples share the database, never the data
    org, session = random_org(), f"s{uuid.uuid4().hex[:12]}"
    await data_job(s, org=org, session=session)
    model = Model()
    snapshots: list[tuple[dt.datetime, dict[int, tuple[str, Deleted] | None]]] = []
    for seq, op in enumerate(ops, start=1):
        if isinstance(op, Put):
            await put_raw(s, org, session, "j1", seq, "Account", [account(r, n, Score__c=f) for r, n, f in op.batch])
            model.put(op.batch)
        else:
            await s.mark_deleted(
                ChunkRef(org, session, "j1", seq), "Account", [sf_id("001", r) for r in op.records], op.state
            )
            model.delete(op.records, op.state)
        # the next transaction starts after this instant, so as-of here sees exactly this state
        snapshots.append((dt.datetime.now(dt.UTC), model.snapshot()))

    for r in range(RECORDS):
        rid = sf_id("001", r)
        expected = model.versions[r]
        if not expected:
            with pytest.raises(NotFound):
                await s.record_history(org, "Account", rid)
            continue
        history = await s.record_history(org, "Account", rid)
        assert [(json.loads(v.values_json)["Name"], v.deleted) for v in history] == expected
    for when, snapshot in snapshots:
        for r, state in snapshot.items():
            rid = sf_id("001", r)
            if state is None:
                with pytest.raises(NotFound):
                    await s.record_as_of(org, "Account", rid, when)
            else:
                v = await s.record_as_of(org, "Account", rid, when)
                assert (json.loads(v.values_json)["Name"], v.deleted) == state
    # the job's totals equal the number of versions written
    _last, _chunks, totals = await s.begin_job(org, session, "j1", DATA, "Account")
    assert totals.new_versions + totals.changed + totals.deleted == sum(len(v) for v in model.versions.values())
