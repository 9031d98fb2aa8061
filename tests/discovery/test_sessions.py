"""Discovery end to end in-process: real NATS, PostgreSQL and an sforg org; SessionRequested in, events and
JobSpecs out. The org is shared by the module: tests that change its schema undo it or come last."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import socket
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from sfvault.discovery.v1 import discovery_pb2 as api
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2
from sfvault.restore.v1 import restore_pb2 as rpb

from services.discovery import storage_client
from sforg.testing import Admin
from tests.discovery.conftest import SECRET_ENV, Running

pytestmark = pytest.mark.integration


def payloads(envs: list[ev.Envelope]) -> list[str]:
    return [e.WhichOneof("payload") or "" for e in envs]


def by_id(specs: list[jobs_pb2.JobSpec]) -> dict[str, jobs_pb2.JobSpec]:
    return {s.job_id: s for s in specs}


async def test_initial_session_plans_every_job(
    running: Running, connection: api.OrgConnection, org: dict[str, Any]
) -> None:
    await running.create_org(connection)
    await running.create_policy(
        "p1",
        scope=api.Scope(exclude_objects=["Task"], exclude_fields={"Account": api.FieldList(fields=["Phone"])}),
        api_budget=api.ApiBudget(daily_share_percent=80, per_run_cap=1000),
    )
    await running.request("s1", "p1", "org-1")
    envs = await running.outcome("s1")
    assert payloads(envs) == ["session_requested", "session_started", "jobs_planned"]
    assert envs[1].session_started.initial and envs[1].session_started.policy_id == "p1"
    planned = [j.job_id for j in envs[2].jobs_planned.jobs]
    assert planned[:2] == ["metadata", "files"]
    assert "data-Account" in planned and "data-Invoice__c" in planned and "data-Task" not in planned

    # largest first (the org's record counts), so no large object is left to be read alone at the end
    data_jobs = [j for j in planned if j.startswith("data-")]
    truth = Admin(org).ground_truth([j.removeprefix("data-") for j in data_jobs], values=False)["objects"]
    sizes = [len(truth[j.removeprefix("data-")]) for j in data_jobs]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]
    enqueued = await running.job_specs("s1")
    assert [s.job_id for s in enqueued if s.job_id.startswith("data-")] == data_jobs

    specs = by_id(enqueued)
    assert set(specs) == set(planned)
    account = specs["data-Account"]
    assert account.type == ev.JOB_TYPE_DATA and account.object_name == "Account"
    assert account.initial and account.data.full
    assert {"Id", "SystemModstamp", "IsDeleted", "Name"} <= set(account.fields)
    assert "Phone" not in account.fields
    assert list(account.fields) == [f.name for f in account.data.fields]
    name = next(f for f in account.data.fields if f.name == "Name")
    assert name.sf_type == "string" and not name.nillable and name.label
    assert account.data.key_prefix == "001"
    assert account.data.bulk_supported and account.data.queryall_supported and account.data.has_system_modstamp
    assert account.data.reconcile_every.ToTimedelta().days == 7
    assert b'"name":"Account"' in account.data.describe_json
    assert not specs["data-Attachment"].data.bulk_supported
    assert account.salesforce_org_id == org["org_id"]
    assert account.instance_url == org["instance_url"]
    assert account.connection.client_secret_ref.startswith("env:")
    assert org["client_secret"].encode() not in account.SerializeToString()
    assert account.stall_timeout.ToTimedelta().total_seconds() == 0  # neither request nor policy: the default
    assert not envs[1].session_started.HasField("stall_timeout")
    assert account.api_reserve_percent == 20
    assert 0 < account.api_call_cap <= 1000 // len(specs)
    files = specs["files"]
    assert files.type == ev.JOB_TYPE_FILE and files.file.content_versions and files.file.attachments
    assert specs["metadata"].type == ev.JOB_TYPE_METADATA

    plan = await running.stub.GetSessionPlan(api.GetSessionPlanRequest(session_id="s1"))
    assert plan.planned and plan.initial and plan.api_calls > 0
    assert {o.object_name: o.status for o in plan.objects}["Task"] == "EXCLUDED"
    # the records each object's job is expected to read (the org's count at planning): a progress bar's 100 %
    expected = {o.object_name: o.expected_records for o in plan.objects if o.job_id}
    assert expected == {n: len(truth[n]) for n in expected}
    assert account.data.expected_records == len(truth["Account"]) > 0
    org_now = await running.stub.GetOrg(api.GetOrgRequest(org_id="org-1"))
    assert org_now.salesforce_org_id == org["org_id"]

    # a redelivered request (same session, another delivery) plans nothing again
    await running.request("s1", "p1", "org-1", "again")
    record = await running.planner.plan("s1", ev.SessionRequested(policy_id="p1", org_id="org-1"))
    assert record.planned
    assert len(await running.job_specs("s1")) == len(specs)
    assert payloads(await running.events("s1")).count("jobs_planned") == 1

    # the next session of the policy is incremental and, with nothing changed, reads no describe again;
    # an object whose full read did not complete is read in full again
    await running.finish("s1", failing=("data-Contact",))
    await running.request("s2", "p1")
    envs = await running.outcome("s2")
    assert not envs[1].session_started.initial
    specs2 = by_id(await running.job_specs("s2"))
    assert set(specs2) == set(specs)
    assert not specs2["data-Account"].data.full and not specs2["data-Account"].initial
    assert not any(f.backfill for f in specs2["data-Account"].data.fields)
    assert specs2["data-Contact"].data.full
    assert specs2["data-Account"].data.describe_json == account.data.describe_json
    plan2 = await running.stub.GetSessionPlan(api.GetSessionPlanRequest(session_id="s2"))
    assert plan2.api_calls < plan.api_calls


async def test_a_manual_session_stalls_at_the_policy_timeout(
    running: Running, connection: api.OrgConnection, database_url: str, nats_url: str, bus_namespace: str
) -> None:
    """One rule: the request's stall timeout, else the policy's, else the session service's default. A manual
    StartSession sets none; discovery puts the policy's into SessionStarted and the session service applies it."""
    from sfvault.session.v1 import session_pb2 as session_api
    from sfvault.session.v1 import session_pb2_grpc

    from services.platform.auth import aio_channel
    from tests.session.conftest import FakeClock, serving, session_settings
    from tests.session.conftest import token as session_token

    await running.create_org(connection)
    await running.create_policy(
        "short",
        files=False,
        metadata=False,
        scope=api.Scope(include_objects=["Account"]),
        stall_timeout=Duration(seconds=1800),
    )
    clock = FakeClock()
    async with serving(session_settings(database_url, nats_url, bus_namespace), clock) as (port, _app):
        async with aio_channel(f"127.0.0.1:{port}", session_token("operator")) as channel:
            sessions = session_pb2_grpc.SessionServiceStub(channel)
            started = await sessions.StartSession(session_api.StartSessionRequest(policy_id="short", org_id="org-1"))
            sid = started.session_id
            envs = await running.outcome(sid)
            assert envs[1].session_started.stall_timeout.ToTimedelta() == dt.timedelta(minutes=30)
            async for update in sessions.WatchSession(session_api.WatchSessionRequest(session_id=sid)):
                if update.planned:
                    break
            assert update.stall_timeout.ToTimedelta() == dt.timedelta(minutes=30)
            clock.advance(dt.timedelta(minutes=31))  # nobody runs the job: it stalls at the policy's 30 minutes

            async def final() -> session_api.Session:
                async for update in sessions.WatchSession(session_api.WatchSessionRequest(session_id=sid)):
                    last = update
                return last

            ended = await asyncio.wait_for(final(), 15)
            assert ended.status == ev.SESSION_STATUS_FAILED
            [job] = (await sessions.ListJobs(session_api.ListJobsRequest(session_id=sid))).jobs
            assert "stall timeout 0h30m00s" in job.message


async def test_unknown_policy_fails_the_session(running: Running) -> None:
    await running.request("s-unknown", "no-such-policy")
    envs = await running.outcome("s-unknown")
    assert envs[-1].session_failed.reason == "policy 'no-such-policy' does not exist"


async def test_refused_login_fails_the_session(
    running: Running, connection: api.OrgConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    await running.create_org(connection)
    await running.create_policy("p1")
    monkeypatch.setenv(SECRET_ENV, "not-the-secret")
    await running.request("s-refused", "p1")
    reason = (await running.outcome("s-refused"))[-1].session_failed.reason
    assert "refused" in reason and "not-the-secret" not in reason
    monkeypatch.delenv(SECRET_ENV)
    await running.request("s-nosecret", "p1")
    reason = (await running.outcome("s-nosecret"))[-1].session_failed.reason
    assert SECRET_ENV in reason
    assert await running.job_specs("s-refused") == []


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_storage_fails_the_session(running: Running, connection: api.OrgConnection) -> None:
    await running.create_org(connection)
    await running.create_policy("p1")
    running.planner.check_storage = functools.partial(storage_client.check_storage, f"127.0.0.1:{unused_port()}", 2.0)
    await running.request("s-nostorage", "p1")
    reason = (await running.outcome("s-nostorage"))[-1].session_failed.reason
    assert "storage" in reason and "unreachable" in reason


async def test_test_org_reports_access(running: Running, connection: api.OrgConnection, org: dict[str, Any]) -> None:
    await running.create_org(connection)
    reply = await running.stub.TestOrg(api.TestOrgRequest(org_id="org-1"))
    assert reply.ok, reply.problems
    assert reply.salesforce_org_id == org["org_id"] and reply.api_requests_max > 0


async def test_schema_changes_follow_the_policy_flags(
    running: Running, connection: api.OrgConnection, admin: Admin
) -> None:
    await running.create_org(connection)
    await running.create_policy("auto", auto_add_new_objects=True, auto_add_new_fields=True)
    await running.create_policy("manual", auto_add_new_objects=False, auto_add_new_fields=False)
    for policy in ("auto", "manual"):
        await running.request(f"{policy}-1", policy)
        await running.outcome(f"{policy}-1")
        await running.finish(f"{policy}-1")
    admin.add_field("Account", "Loyalty__c", type="string")
    admin.add_object("Gadget__c", records=3)
    admin.hide_fields({"Contact": ["Email"]})
    try:
        for policy in ("auto", "manual"):
            await running.request(f"{policy}-2", policy)
            await running.outcome(f"{policy}-2")
    finally:
        admin.hide_fields({})
    auto, manual = by_id(await running.job_specs("auto-2")), by_id(await running.job_specs("manual-2"))

    loyalty = next(f for f in auto["data-Account"].data.fields if f.name == "Loyalty__c")
    assert loyalty.backfill and auto["data-Account"].data.full  # a backfill reads every record
    assert not any(f.backfill for f in auto["data-Account"].data.fields if f.name != "Loyalty__c")
    assert auto["data-Gadget__c"].data.full and auto["data-Gadget__c"].initial is False
    assert "Loyalty__c" not in manual["data-Account"].fields
    assert "data-Gadget__c" not in manual
    for specs in (auto, manual):
        assert "Email" not in specs["data-Contact"].fields and "LastName" in specs["data-Contact"].fields
    plan = await running.stub.GetSessionPlan(api.GetSessionPlanRequest(session_id="manual-2"))
    assert any("Email" in w for w in plan.warnings)
    contact = next(o for o in plan.objects if o.object_name == "Contact")
    assert list(contact.left_out_fields) == ["Email"]
    assert {o.object_name: o.status for o in plan.objects}["Gadget__c"] == "DECLINED"

    # the field comes back: it rejoins the query with a backfill, whatever the flag says
    await running.finish("manual-2")
    await running.request("manual-3", "manual")
    await running.outcome("manual-3")
    contact3 = by_id(await running.job_specs("manual-3"))["data-Contact"]
    email = next(f for f in contact3.data.fields if f.name == "Email")
    assert email.backfill

    # a backfill whose job did not complete is asked for again
    await running.finish("auto-2", failing=("data-Account",))
    admin.remove_object("Gadget__c")
    await running.request("auto-3", "auto")
    envs = await running.outcome("auto-3")
    assert payloads(envs)[-1] == "jobs_planned"
    plan = await running.stub.GetSessionPlan(api.GetSessionPlanRequest(session_id="auto-3"))
    assert any("Gadget__c" in w for w in plan.warnings)
    auto3 = by_id(await running.job_specs("auto-3"))
    assert "data-Gadget__c" not in auto3
    assert [f.name for f in auto3["data-Account"].data.fields if f.backfill] == ["Loyalty__c"]


async def test_a_restore_session_is_planned_as_one_restore_job_on_its_subject(
    running: Running, connection: api.OrgConnection, org: dict[str, Any]
) -> None:
    """Real NATS, PostgreSQL and sforg: the target registered as a sandbox and never logged in to; discovery
    learns its identity, publishes SessionStarted with the resolved spec and JobsPlanned, and enqueues one
    JobSpec on `sfvault.jobs.restore` inside JOBS. Nothing is described (the jobrunner describes the target)."""
    await running.stub.CreateOrg(api.CreateOrgRequest(org_id="uat", name="uat", connection=connection, sandbox=True))
    admin = Admin(org)
    admin.reset_accounting()
    spec = rpb.RestoreSpec(
        source_org_id="uat",
        selections=[rpb.RestoreSelection(object_name="Account", all=True)],
        requested_by="alice",
    )
    await running.bus.emit(ev.SessionRequested(kind=rpb.SESSION_KIND_RESTORE, restore=spec), session_id="r1")
    envs = await running.outcome("r1")
    assert payloads(envs) == ["session_requested", "session_started", "jobs_planned"], envs[-1]
    started = envs[1].session_started
    assert started.kind == rpb.SESSION_KIND_RESTORE and started.org_id == "uat"
    assert started.restore.target_org_id == "uat" and started.restore.HasField("as_of")
    [job] = await running.job_specs("r1")
    assert (job.job_id, job.type, job.org_id) == ("restore", ev.JOB_TYPE_RESTORE, "uat")
    assert job.salesforce_org_id == org["org_id"] == job.restore.target_salesforce_org_id
    assert job.restore.target_instance_url == org["instance_url"] and not job.restore.target_is_production
    assert job.restore.spec == started.restore
    assert org["client_secret"].encode() not in job.SerializeToString()
    assert (await running.stub.GetOrg(api.GetOrgRequest(org_id="uat"))).salesforce_org_id == org["org_id"]
    stream = running.bus.config.jobs_stream
    info = await running.bus.js.stream_info(stream)
    subjects = {
        (await running.bus.js.get_msg(stream, seq)).subject
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    }
    assert running.bus.config.jobs_subject("restore") in subjects
    plan = await running.stub.GetSessionPlan(api.GetSessionPlanRequest(session_id="r1"))
    assert plan.planned and [j.job_id for j in plan.jobs] == ["restore"]
    calls = admin.accounting()["calls"]
    assert "describe" not in calls and "describe_global" not in calls
