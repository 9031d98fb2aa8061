"""Restore sessions planned by discovery, on the pure rules (plan_restore) and on the planner with in-memory
fakes of its ports: the orgs resolved, the production guard, the point in time fixed once, one job with the
source and the target, published and enqueued once; a backup request is planned as before. Milliseconds."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sfvault.events.v1 import events_pb2 as ev
from sfvault.restore.v1 import restore_pb2 as rpb

from services.discovery import domain as d
from services.discovery import translate
from services.discovery.application import Catalog, Planner
from services.discovery.ports import StorageUnreachable
from tests.discovery.fakes import FakeClock, FakeDiscoveryStore, FakeOrg
from tests.platform.fakes import FakeBus

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
CONNECTION = d.Connection("https://login.example.com", d.AuthFlow.CLIENT_CREDENTIALS, "id", "env:X")
SANDBOX_CONNECTION = d.Connection("https://test.example.com", d.AuthFlow.CLIENT_CREDENTIALS, "sid", "env:Y")
PROD = d.Org("prod", "Production", CONNECTION, "00D000000000001AAA", "https://prod.example.com")
SANDBOX = d.Org("uat", "UAT", SANDBOX_CONNECTION, "00D000000000002AAA", "https://uat.example.com", sandbox=True)
ORGS = {o.org_id: o for o in (PROD, SANDBOX)}
FIELDS: list[dict[str, object]] = [
    {"name": "Id", "type": "id", "nillable": False},
    {"name": "SystemModstamp", "type": "datetime", "nillable": False},
]


def ask(**kw: object) -> d.RestoreAsk:
    values: dict[str, object] = {"kind": d.SessionKind.RESTORE, "org_id": "prod", "selections": 1}
    values.update(kw)
    return d.RestoreAsk(**values)  # type: ignore[arg-type]


# ---- the rules --------------------------------------------------------------------------------------------


def test_the_target_is_the_source_unless_named_and_the_point_is_now_unless_given() -> None:
    plan = d.plan_restore(ask(confirmed=True), ORGS, NOW)
    assert (plan.source, plan.target, plan.as_of, plan.job_id) == (PROD, PROD, NOW, "restore")
    earlier = NOW - dt.timedelta(days=3)
    plan = d.plan_restore(ask(org_id="", source_org_id="prod", target_org_id="uat", as_of=earlier), ORGS, NOW)
    assert (plan.source, plan.target, plan.as_of) == (PROD, SANDBOX, earlier)
    metadata = d.plan_restore(
        ask(kind=d.SessionKind.METADATA_RESTORE, selections=0, components=2, dry_run=True), ORGS, NOW
    )
    assert metadata.job_id == "metadata-restore"


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ({}, "target org prod is a production org: confirm the restore (--yes)"),
        ({"org_id": "", "source_org_id": "nobody"}, "source org 'nobody' does not exist"),
        ({"target_org_id": "gone", "confirmed": True}, "target org 'gone' does not exist"),
        ({"org_id": "", "confirmed": True}, "a restore names its source org (restore.source_org_id or org_id)"),
        ({"source_org_id": "uat", "confirmed": True}, "org 'prod' and restore.source_org_id 'uat' differ"),
        ({"selections": 0, "confirmed": True}, "a restore selects records: at least one selection, or the whole org"),
        (
            {"kind": d.SessionKind.METADATA_RESTORE, "selections": 0, "confirmed": True},
            "a metadata restore names its components (Type:FullName)",
        ),
    ],
)
def test_a_restore_that_cannot_be_planned_is_refused_with_its_reason(given: dict[str, object], reason: str) -> None:
    with pytest.raises(d.RestoreRefused) as refused:
        d.plan_restore(ask(**given), ORGS, NOW)
    assert str(refused.value) == reason


def test_a_production_target_needs_no_confirmation_for_a_dry_run_and_a_sandbox_none_at_all() -> None:
    assert d.plan_restore(ask(dry_run=True), ORGS, NOW).target == PROD
    assert d.plan_restore(ask(target_org_id="uat"), ORGS, NOW).target == SANDBOX
    # another org than the source without match_on is allowed: its records are created
    assert d.plan_restore(ask(whole_org=True, selections=0, retry_of="", target_org_id="uat"), ORGS, NOW)


# ---- the planner ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class World:
    store: FakeDiscoveryStore
    bus: FakeBus
    planner: Planner
    logins: list[str]
    storage_away: bool = False


@pytest.fixture
async def world() -> World:
    store = FakeDiscoveryStore()
    for org in ORGS.values():
        await store.create_org(org)
    # registered, never logged in: its 00D id and instance URL are learned at planning
    await store.set_org_identity("prod", PROD.salesforce_org_id, PROD.instance_url)
    org = FakeOrg({"Account": FIELDS})
    org.salesforce_org_id, org.instance_url = SANDBOX.salesforce_org_id, SANDBOX.instance_url
    await store.create_policy(d.Policy(policy_id="nightly", org_id="prod", files=False, metadata=False))
    bus = FakeBus()
    w = World(store, bus, None, [])  # type: ignore[arg-type]

    def connect(connection: d.Connection) -> FakeOrg:
        w.logins.append(connection.client_id)
        return org

    async def storage() -> None:
        if w.storage_away:
            raise StorageUnreachable("storage at 127.0.0.1:1 is unreachable (UNAVAILABLE)")

    w.planner = Planner(store, connect, storage, bus, FakeClock(NOW))
    return w


def restore_request(**spec: object) -> ev.SessionRequested:
    values: dict[str, object] = {
        "selections": [rpb.RestoreSelection(object_name="Account", ids=["001000000000001AAA"])],
        "requested_by": "alice",
    }
    values.update(spec)
    return ev.SessionRequested(org_id="prod", kind=rpb.SESSION_KIND_RESTORE, restore=rpb.RestoreSpec(**values))  # type: ignore[arg-type]


def published(bus: FakeBus, session_id: str) -> list[ev.Envelope]:
    return [e for e in bus.events if e.session_id == session_id]


async def test_a_restore_into_a_sandbox_is_planned_as_one_job_carrying_source_and_target(world: World) -> None:
    request = restore_request(target_org_id="uat", files=True)
    request.stall_timeout.FromTimedelta(dt.timedelta(hours=2))
    record = await world.planner.plan("r1", request)
    assert record.planned and record.kind is d.SessionKind.RESTORE and record.policy_id == ""
    assert world.logins == ["sid"]  # only the org whose identity was unknown was logged in to
    started, planned = (e for e in published(world.bus, "r1"))
    assert started.session_started.kind == rpb.SESSION_KIND_RESTORE
    resolved = started.session_started.restore
    assert (resolved.source_org_id, resolved.target_org_id) == ("prod", "uat")
    assert resolved.as_of.ToDatetime(dt.UTC) == NOW and resolved.files and resolved.requested_by == "alice"
    assert started.session_started.org_id == "prod" and started.session_started.stall_timeout.seconds == 7200
    assert [(j.job_id, j.type) for j in planned.jobs_planned.jobs] == [("restore", ev.JOB_TYPE_RESTORE)]

    [job] = world.bus.jobs
    assert (job.session_id, job.job_id, job.type, job.org_id) == ("r1", "restore", ev.JOB_TYPE_RESTORE, "prod")
    assert (job.salesforce_org_id, job.instance_url) == (PROD.salesforce_org_id, PROD.instance_url)
    assert job.connection.client_id == "id" and job.connection.client_secret_ref == "env:X"
    assert job.restore.spec == resolved
    assert job.restore.target_connection.client_id == "sid"
    assert job.restore.target_salesforce_org_id == SANDBOX.salesforce_org_id
    assert job.restore.target_instance_url == SANDBOX.instance_url
    assert not job.restore.target_is_production
    assert job.stall_timeout.seconds == 7200 and job.api_call_cap == 0 and job.api_reserve_percent == 50
    assert not job.HasField("data") and not job.fields  # nothing described: the jobrunner describes the target
    learned = await world.store.get_org("uat")
    assert learned is not None and learned.salesforce_org_id == SANDBOX.salesforce_org_id

    # a redelivery re-publishes the first decision, with the same point in time
    world.planner.clock = FakeClock(NOW + dt.timedelta(hours=1))
    await world.planner.plan("r1", request)
    assert len(world.bus.jobs) == 1 and len(published(world.bus, "r1")) == 2

    # GetSessionPlan's view: the one job
    plan = translate.session_plan_to_pb(*await Catalog(world.store, lambda c: None).session_plan("r1"))  # type: ignore[arg-type,return-value]
    assert plan.planned and [(j.job_id, j.type) for j in plan.jobs] == [("restore", ev.JOB_TYPE_RESTORE)]
    assert plan.org_id == "prod" and not plan.objects


async def test_a_production_target_is_refused_unless_confirmed_or_a_dry_run(world: World) -> None:
    failed = await world.planner.plan("r1", restore_request())
    assert not failed.planned
    assert failed.failure_reason == "target org prod is a production org: confirm the restore (--yes)"
    [event] = published(world.bus, "r1")
    assert event.session_failed.reason == failed.failure_reason and world.bus.jobs == []

    confirmed = await world.planner.plan("r2", restore_request(confirmed=True))
    dry = await world.planner.plan("r3", restore_request(dry_run=True))
    assert confirmed.planned and dry.planned and world.logins == []  # both identities known: no login
    assert [j.restore.target_is_production for j in world.bus.jobs] == [True, True]
    assert [j.restore.target_salesforce_org_id for j in world.bus.jobs] == [PROD.salesforce_org_id] * 2


async def test_an_unknown_org_or_storage_away_fails_the_restore_naming_why(world: World) -> None:
    unknown = await world.planner.plan("r1", restore_request(target_org_id="elsewhere"))
    assert unknown.failure_reason == "target org 'elsewhere' does not exist"
    world.storage_away = True
    away = await world.planner.plan("r2", restore_request(confirmed=True))
    assert "unreachable" in away.failure_reason and world.bus.jobs == []


async def test_a_retry_and_a_metadata_restore_are_planned_the_same_way(world: World) -> None:
    as_of = NOW - dt.timedelta(days=1)
    first = restore_request(target_org_id="uat")
    first.restore.as_of.FromDatetime(as_of)
    await world.planner.plan("r1", first)
    retry = restore_request(target_org_id="uat", retry_of="r1")
    retry.restore.as_of.FromDatetime(as_of)
    assert (await world.planner.plan("r2", retry)).planned
    not_a_restore = await world.planner.plan("r3", restore_request(target_org_id="uat", retry_of="nope"))
    assert not_a_restore.failure_reason == "session 'nope' is not a restore session: there is nothing to retry"

    metadata = ev.SessionRequested(
        org_id="prod",
        kind=rpb.SESSION_KIND_METADATA_RESTORE,
        restore=rpb.RestoreSpec(target_org_id="uat", metadata_components=["ApexClass:Foo"], check_only=True),
    )
    assert (await world.planner.plan("m1", metadata)).kind is d.SessionKind.METADATA_RESTORE
    r1, r2, m1 = world.bus.jobs
    assert r2.restore.spec.retry_of == "r1" and r2.restore.spec.as_of.ToDatetime(dt.UTC) == as_of
    assert r1.restore.spec.as_of == r2.restore.spec.as_of
    assert (m1.job_id, m1.type) == ("metadata-restore", ev.JOB_TYPE_METADATA_RESTORE)
    assert list(m1.restore.spec.metadata_components) == ["ApexClass:Foo"] and m1.restore.spec.check_only


async def test_restores_leave_backups_as_they_were(world: World) -> None:
    """A restore has no policy, so the next backup of the org is planned against the last backup."""
    backup = await world.planner.plan("b1", ev.SessionRequested(policy_id="nightly", org_id="prod"))
    await world.planner.plan("r1", restore_request(confirmed=True, dry_run=True))
    started = published(world.bus, "b1")[0].session_started
    assert started.kind == rpb.SESSION_KIND_UNSPECIFIED and not started.HasField("restore")
    previous = await world.store.previous_session("nightly", "b2")
    assert backup.initial and previous is not None and previous.session_id == "b1"


async def test_a_restore_alerts_whoever_the_source_orgs_policies_alert(world: World) -> None:
    hook = d.Webhook(url_ref="env:HOOK", format="slack")
    alerts = d.AlertSettings(webhooks=(hook,), emails=("ops@example.com",), on=("verification",))
    await world.store.create_policy(d.Policy(policy_id="weekly", org_id="prod", alerts=alerts))
    await world.store.create_policy(
        d.Policy(policy_id="other-org", org_id="uat", alerts=d.AlertSettings(emails=("uat@example.com",)))
    )
    await world.planner.plan("r2", restore_request(target_org_id="uat"))
    started = published(world.bus, "r2")[0].session_started
    assert translate.alerts_from_pb(started.alerts) == alerts  # the "nightly" policy alerts nobody


def test_restore_alerts_are_the_union_of_the_policies_each_once() -> None:
    a = d.AlertSettings(webhooks=(d.Webhook("https://h/1"),), emails=("x@e.com",), on=("failed",))
    b = d.AlertSettings(webhooks=(d.Webhook("https://h/1"), d.Webhook("https://h/2", "teams")), on=("verification",))
    assert d.restore_alerts([a, b, d.AlertSettings()]) == d.AlertSettings(
        webhooks=(d.Webhook("https://h/1"), d.Webhook("https://h/2", "teams")),
        emails=("x@e.com",),
        on=("failed", "verification"),
    )
    every = d.AlertSettings(emails=("y@e.com",))  # names no kind: every kind
    assert d.restore_alerts([a, every]).on == ()
    assert d.restore_alerts([]) == d.AlertSettings()
