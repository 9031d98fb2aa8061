"""The planner on in-memory fakes of its ports (store, org, bus, storage probe): a session planned, published
and enqueued, and the next one planned against it, in milliseconds. tests/discovery/test_sessions.py plans
against sforg, PostgreSQL and NATS."""

from __future__ import annotations

import dataclasses

import pytest
from sfvault.events.v1 import events_pb2 as ev

from services.discovery import domain as d
from services.discovery.application import Planner
from services.discovery.ports import StorageUnreachable
from tests.discovery.fakes import FakeClock, FakeDiscoveryStore, FakeOrg
from tests.platform.fakes import FakeBus

FIELDS: list[dict[str, object]] = [
    {"name": "Id", "type": "id", "nillable": False},
    {"name": "Name", "type": "string"},
    {"name": "SystemModstamp", "type": "datetime", "nillable": False},
]
CONNECTION = d.Connection("https://login.example.com", d.AuthFlow.CLIENT_CREDENTIALS, "id", "env:X")


@dataclasses.dataclass
class World:
    store: FakeDiscoveryStore
    org: FakeOrg
    bus: FakeBus
    planner: Planner
    storage_away: bool = False


@pytest.fixture
async def world() -> World:
    store = FakeDiscoveryStore()
    await store.create_org(d.Org("acme", "Acme", CONNECTION))
    await store.create_policy(d.Policy(policy_id="nightly", org_id="acme", files=False, metadata=False))
    org = FakeOrg({"Account": FIELDS, "Contact": FIELDS}, {"Account": {"001A"}, "Contact": {"003A", "003B"}})
    bus = FakeBus()
    w = World(store, org, bus, None)  # type: ignore[arg-type]

    async def storage() -> None:
        if w.storage_away:
            raise StorageUnreachable("storage at 127.0.0.1:1 is unreachable (UNAVAILABLE)")

    w.planner = Planner(store, lambda connection: org, storage, bus, FakeClock())
    return w


def kinds(bus: FakeBus, session_id: str) -> list[str | None]:
    return [e.WhichOneof("payload") for e in bus.events if e.session_id == session_id]


async def test_a_session_is_planned_published_and_enqueued_once(world: World) -> None:
    request = ev.SessionRequested(policy_id="nightly", org_id="acme")
    record = await world.planner.plan("s1", request)
    assert record.planned and record.initial
    assert kinds(world.bus, "s1") == ["session_started", "jobs_planned"]
    assert sorted(s.object_name for s in world.bus.jobs) == ["Account", "Contact"]
    again = await world.planner.plan("s1", request)  # a redelivery: decided and published already, nothing new
    assert again == dataclasses.replace(record, published=True)
    assert len(world.bus.jobs) == 2 and kinds(world.bus, "s1") == ["session_started", "jobs_planned"]

    world.org.change("Fri, 02 Jan 2026 00:00:00 GMT")
    second = await world.planner.plan("s2", ev.SessionRequested(policy_id="nightly", org_id="acme"))
    assert second.planned and not second.initial  # planned against the first


async def test_storage_away_or_an_unknown_policy_fails_the_session_with_its_reason(world: World) -> None:
    world.storage_away = True
    failed = await world.planner.plan("s1", ev.SessionRequested(policy_id="nightly", org_id="acme"))
    assert not failed.planned and "unreachable" in failed.failure_reason
    [event] = [e for e in world.bus.events if e.session_id == "s1"]
    assert event.WhichOneof("payload") == "session_failed" and world.bus.jobs == []
    unknown = await world.planner.plan("s2", ev.SessionRequested(policy_id="nobody", org_id="acme"))
    assert not unknown.planned and "nobody" in unknown.failure_reason
