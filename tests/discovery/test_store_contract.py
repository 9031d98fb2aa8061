"""The rules of discovery's store ports (services/discovery/ports.py: DiscoveryStore, ScheduleRunStore), held
against the in-memory fakes (tests/discovery/fakes.py) and the PostgreSQL adapters alike."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from services.discovery import domain as d
from services.discovery.domain import SessionDecision, SessionRecord, StoredJob
from services.discovery.domain_schedule import COULD_NOT_START
from services.discovery.domain_split import ranges_of
from services.discovery.ports import Conflict, DiscoveryStore, ScheduleRunStore
from services.discovery.store import DiscoveryStore as PostgresDiscoveryStore
from services.discovery.store import ScheduleRuns
from services.platform.db import open_pool
from tests.discovery.fakes import FakeDiscoveryStore, FakeScheduleRuns

T0 = dt.datetime(2026, 1, 1, 2, 0, tzinfo=dt.UTC)
CONNECTION = d.Connection("https://login.example.com", d.AuthFlow.CLIENT_CREDENTIALS, "id", "env:X")


@dataclasses.dataclass
class Stores:
    store: DiscoveryStore
    runs: ScheduleRunStore


@pytest.fixture(params=["fake", "postgres"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    if request.param == "fake":
        yield Stores(FakeDiscoveryStore(), FakeScheduleRuns())
        return
    pool = await open_pool(request.getfixturevalue("database_url"))
    try:
        real = PostgresDiscoveryStore(pool)
        await real.setup()
        yield Stores(real, ScheduleRuns(real))
    finally:
        await pool.close()


async def test_orgs_are_created_once_read_changed_and_deleted_when_no_policy_names_them(stores: Stores) -> None:
    store = stores.store
    created = await store.create_org(d.Org("acme", "Acme", CONNECTION))
    assert created.created_at is not None and created.connection == CONNECTION
    with pytest.raises(Conflict):
        await store.create_org(d.Org("acme", "Other", CONNECTION))
    await store.create_org(d.Org("beta", "Beta", CONNECTION))
    assert [o.org_id for o in await store.list_orgs()] == ["acme", "beta"]
    moved = dataclasses.replace(CONNECTION, login_url="https://test.salesforce.com")
    updated = await store.update_org(d.Org("acme", "Acme Inc", moved))
    assert updated is not None and updated.name == "Acme Inc" and updated.connection == moved
    assert await store.update_org(d.Org("nobody", "", CONNECTION)) is None
    await store.set_org_identity("acme", "00D000000000001", "https://acme.my.salesforce.com")
    org = await store.get_org("acme")
    assert org is not None and org.salesforce_org_id == "00D000000000001" and org.name == "Acme Inc"
    await store.create_policy(d.Policy(policy_id="nightly", org_id="acme"))
    with pytest.raises(Conflict):
        await store.delete_org("acme")
    assert await store.delete_policy("nightly")
    assert not await store.delete_policy("nightly")
    assert await store.delete_org("acme")
    assert await store.get_org("acme") is None


async def test_policies_are_created_once_listed_by_org_and_updated(stores: Stores) -> None:
    store = stores.store
    await store.create_org(d.Org("acme", "Acme", CONNECTION))
    await store.create_org(d.Org("beta", "Beta", CONNECTION))
    scope = d.Scope(exclude_objects=("Task",), exclude_fields={"Account": ("Secret__c",)})
    policy = d.Policy(policy_id="nightly", org_id="acme", scope=scope, schedule="daily@02:00", daily_share_percent=30)
    created = await store.create_policy(policy)
    assert created.created_at is not None
    assert dataclasses.replace(created, created_at=None, updated_at=None) == policy
    with pytest.raises(Conflict):
        await store.create_policy(policy)
    await store.create_policy(d.Policy(policy_id="adhoc", org_id="beta"))
    assert [p.policy_id for p in await store.list_policies()] == ["adhoc", "nightly"]
    assert [p.policy_id for p in await store.list_policies("acme")] == ["nightly"]
    changed = await store.update_policy(dataclasses.replace(policy, schedule="hourly", files=False))
    assert changed is not None and changed.schedule == "hourly" and not changed.files
    assert changed.created_at == created.created_at
    assert await store.update_policy(d.Policy(policy_id="nobody", org_id="acme")) is None


async def test_a_session_is_recorded_once_with_its_schema_jobs_and_describes(stores: Stores) -> None:
    store = stores.store
    await store.create_org(d.Org("acme", "Acme", CONNECTION))
    await store.create_policy(d.Policy(policy_id="nightly", org_id="acme"))
    field = d.FieldState(d.FieldInfo("Name", "string", label="Name"), d.FieldStatus.IN_SCOPE)
    schema = d.Schema(
        (
            d.ObjectState("Contact", d.ObjectStatus.GONE, reason="gone"),
            d.ObjectState("Account", d.ObjectStatus.IN_SCOPE, fields=(field,), describe_hash="h1", full=True),
        )
    )
    jobs = [StoredJob("data-Account", "data", "Account", b"spec-1"), StoredJob("files", "file", "", b"spec-2")]
    first = SessionRecord("s1", "nightly", "acme", planned=True, initial=True, warnings=("w",), planned_at=T0)
    assert await store.save_session(SessionDecision(first, schema, tuple(jobs), {"h1": b"{}"})) == first
    again = dataclasses.replace(first, warnings=("other",))
    assert await store.save_session(SessionDecision(again, d.Schema(()))) == first  # the first decision stands
    assert await store.get_session("s1") == first
    assert await store.session_jobs("s1") == jobs
    assert [o.name for o in (await store.session_schema("s1")).objects] == ["Account", "Contact"]
    assert (await store.session_schema("s1")).get("Account") == schema.objects[1]
    assert await store.describes(["h1", "h2", ""]) == {"h1": b"{}"}
    await store.mark_published("s1")
    published = await store.get_session("s1")
    assert published is not None and published.published

    later = SessionRecord("s2", "nightly", "acme", planned=True, planned_at=T0 + dt.timedelta(days=1))
    failed = SessionRecord("s3", "nightly", "acme", planned=False, failure_reason="login refused")
    await store.save_session(SessionDecision(later))
    await store.save_session(SessionDecision(failed))
    previous = await store.previous_session("nightly", "s4")
    assert previous is not None and previous.session_id == "s2"  # the last planned one, not the failed one
    previous = await store.previous_session("nightly", "s2")
    assert previous is not None and previous.session_id == "s1"
    assert await store.get_session("nobody") is None


async def test_an_org_is_a_sandbox_or_production_and_keeps_it_when_changed(stores: Stores) -> None:
    store = stores.store
    sandbox = await store.create_org(d.Org("uat", "UAT", CONNECTION, sandbox=True))
    production = await store.create_org(d.Org("prod", "Prod", CONNECTION))
    assert sandbox.sandbox and not production.sandbox
    renamed = await store.update_org(dataclasses.replace(sandbox, name="UAT 2"))
    assert renamed is not None and renamed.sandbox and renamed.name == "UAT 2"
    await store.set_org_identity("uat", "00D000000000002", "https://uat.example.com")
    assert [(o.org_id, o.sandbox) for o in await store.list_orgs()] == [("prod", False), ("uat", True)]


async def test_a_restore_session_keeps_its_kind_and_resolved_spec_and_is_no_policy_s_previous(stores: Stores) -> None:
    store = stores.store
    backup = SessionRecord("b1", "nightly", "acme", planned=True, planned_at=T0)
    restore = SessionRecord(
        "r1",
        "",
        "acme",
        planned=True,
        planned_at=T0 + dt.timedelta(hours=1),
        kind=d.SessionKind.RESTORE,
        restore_spec=b"\x0a\x04acme",
        stall_timeout=dt.timedelta(hours=2),
    )
    await store.save_session(SessionDecision(backup))
    assert (
        await store.save_session(
            SessionDecision(restore, jobs=(StoredJob("restore", "JOB_TYPE_RESTORE", "", b"spec"),))
        )
        == restore
    )
    assert await store.get_session("r1") == restore
    assert (await store.get_session("b1")) == backup and backup.kind is d.SessionKind.BACKUP
    assert await store.session_jobs("r1") == [StoredJob("restore", "JOB_TYPE_RESTORE", "", b"spec")]
    assert (await store.session_schema("r1")).objects == ()
    previous = await store.previous_session("nightly", "b2")
    assert previous is not None and previous.session_id == "b1"


async def test_the_first_outcome_of_a_job_stands(stores: Stores) -> None:
    store = stores.store
    await store.record_outcomes([("s1", "data-A", "JOB_OUTCOME_ERROR"), ("s1", "data-B", "JOB_OUTCOME_SUCCESS")])
    await store.record_outcomes([("s1", "data-A", "JOB_OUTCOME_SUCCESS"), ("s2", "data-C", "JOB_OUTCOME_WARNING")])
    assert await store.completed_jobs("s1", ["JOB_OUTCOME_SUCCESS", "JOB_OUTCOME_WARNING"]) == {"data-B"}
    assert await store.completed_jobs("s2", ["JOB_OUTCOME_WARNING"]) == {"data-C"}


async def test_a_scheduled_run_is_claimed_once_and_a_failed_start_is_found_within_its_window(stores: Stores) -> None:
    runs = stores.runs
    await stores.store.create_org(d.Org("acme", "Acme", CONNECTION))
    await stores.store.create_policy(d.Policy(policy_id="nightly", org_id="acme", schedule="daily@02:00"))
    assert await runs.last_due("nightly") is None
    assert await runs.claim("nightly", T0)
    assert not await runs.claim("nightly", T0)
    await runs.decide("nightly", T0, session_id="sched-1")
    assert await runs.failed_start("nightly", T0 - dt.timedelta(minutes=30)) is None
    due = T0 + dt.timedelta(days=1)
    assert await runs.claim("nightly", due)
    assert await runs.last_due("nightly") == due
    await runs.decide("nightly", due, skipped=f"{COULD_NOT_START}: ConnectionError")
    assert await runs.failed_start("nightly", due - dt.timedelta(minutes=30)) == due
    assert await runs.failed_start("nightly", due) is None  # past its window


async def test_a_split_is_kept_once_and_only_its_kept_form_is_replaced(stores: Stores) -> None:
    store = stores.store
    await store.create_org(d.Org("acme", "Acme", CONNECTION))
    await store.create_policy(d.Policy(policy_id="nightly", org_id="acme"))
    assert await store.object_splits("nightly") == {}
    three = ranges_of(["001000000000100AAA", "001000000000200AAA"])
    other = ranges_of(["001000000000150AAA"])
    assert await store.keep_split("nightly", "Account", three) == three
    assert await store.keep_split("nightly", "Account", other) == three  # decided already: the first stands
    assert await store.object_splits("nightly") == {"Account": three}
    grown = (*three[:2], *ranges_of(["001000000000300AAA"], three[2].id_from))
    assert await store.keep_split("nightly", "Account", grown, replacing=other) == three  # not what is kept
    assert await store.keep_split("nightly", "Account", grown, replacing=three) == grown
    assert await store.object_splits("nightly") == {"Account": grown}
    assert await store.delete_policy("nightly")
    assert await store.object_splits("nightly") == {}
