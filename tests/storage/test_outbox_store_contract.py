"""The outbox port (services/storage/ports.OutboxStore) as one contract, run against the in-memory fake
(tests/storage/fakes.py) and PostgresStore (its rows left by committed chunks whose publish failed); then the relay
(ChunkEventRelay) on the fake alone, in milliseconds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from services.storage.domain import Counts
from services.storage.outbox import ChunkEventRelay
from services.storage.ports import OutboxStore
from tests.storage.conftest import ORG, RecordingPublisher, account, data_job, put_raw
from tests.storage.fakes import InMemoryOutbox


@dataclass
class Outbox:
    store: OutboxStore
    commit: Callable[[str, int], Awaitable[int]]  # a committed chunk (job, seq) whose event is pending: its job_key


@pytest.fixture(params=["fake", "postgres"])
def outbox(request: pytest.FixtureRequest) -> Outbox:
    if request.param == "fake":
        fake = InMemoryOutbox()
        keys: dict[str, int] = {}

        async def commit_fake(job: str, seq: int) -> int:
            key = keys.setdefault(job, len(keys) + 1)
            fake.committed(key, seq, "s1", job, Counts(received=1), dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
            return key

        return Outbox(fake, commit_fake)
    harness = request.getfixturevalue("harness")
    harness.publisher.fail = True  # the chunk commits, its event stays pending
    begun: set[str] = set()

    async def commit_real(job: str, seq: int) -> int:
        if job not in begun:
            await data_job(harness.storage, job=job)
            begun.add(job)
        await put_raw(harness.storage, ORG, "s1", job, seq, "Account", [account(seq)])
        ref = await harness.store.job("s1", job)
        assert ref is not None
        return ref.job_key

    return Outbox(harness.store, commit_real)


async def test_pending_events_are_listed_in_order_by_job_and_gone_once_published(outbox: Outbox) -> None:
    a = await outbox.commit("ja", 2)
    await outbox.commit("ja", 1)
    b = await outbox.commit("jb", 1)
    pending = await outbox.store.pending_events()
    assert [(p.job_key, p.chunk_seq) for p in pending] == sorted([(a, 1), (a, 2), (b, 1)])
    assert {(p.session_id, p.job_id) for p in pending} == {("s1", "ja"), ("s1", "jb")}
    assert all(p.counts.received == 1 for p in pending)
    assert [(p.job_key, p.chunk_seq) for p in await outbox.store.pending_events(job_key=b)] == [(b, 1)]
    assert len(await outbox.store.pending_events(limit=2)) == 2
    assert await outbox.store.pending_events(min_age_s=86_400) == []  # none committed a day ago
    await outbox.store.events_published([(a, 1), (b, 1)])
    assert [(p.job_key, p.chunk_seq) for p in await outbox.store.pending_events()] == [(a, 2)]


async def test_the_relay_publishes_what_is_pending_and_keeps_it_while_the_bus_is_away() -> None:
    store, publisher = InMemoryOutbox(), RecordingPublisher(fail=True)
    relay = ChunkEventRelay(store, publisher)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    for seq in (1, 2):
        store.committed(7, seq, "s1", "j1", Counts(received=seq), old)
    assert await relay.relay() == 0 and len(store.rows) == 2  # NATS away: kept
    publisher.fail = False
    assert await relay.relay() == 2 and store.rows == {}
    assert [(p[2], p[3].received) for p in publisher.published] == [(1, 1), (2, 2)]
