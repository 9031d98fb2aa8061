"""Starting a restore session: the request's checks (INVALID_ARGUMENT naming the field), the spec published
with the caller as requested_by and the source org filled in, the roles (a restorer restores, an operator
backs up; an admin does both), the audit of its scope (never a value), and kind/spec/counts read back through
GetSession, ListSessions and the SessionFinished announcement."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

import grpc
import pytest
from google.protobuf.json_format import ParseDict
from hypothesis import HealthCheck, given, settings
from sfvault.events.v1 import events_pb2 as pb
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.session.v1 import session_pb2 as api
from sfvault.session.v1 import session_pb2_grpc

from services.platform import errors
from services.platform.auth import StreamAudit, aio_channel
from services.session import domain as d
from services.session import restore_request
from tests.e2e.test_api_security import messages
from tests.session.conftest import Running, token
from tests.session.test_application import Harness

ACCOUNT_ID = "001000000000001AAA"


def spec(**fields: object) -> rpb.RestoreSpec:
    base: dict[str, object] = {"selections": [{"object_name": "Account", "ids": [ACCOUNT_ID]}]}
    return ParseDict(base | fields, rpb.RestoreSpec())


def edited(change: Callable[[rpb.RestoreSpec], object]) -> rpb.RestoreSpec:
    s = spec()
    change(s)
    return s


GOOD = [
    (d.Kind.RESTORE, "o1", spec()),
    (d.Kind.RESTORE, "", spec(source_org_id="o1")),
    (d.Kind.RESTORE, "o1", spec(source_org_id="o1", target_org_id="sandbox-2", dry_run=True)),
    (d.Kind.RESTORE, "o1", spec(selections=[], whole_org=True)),
    (
        d.Kind.RESTORE,
        "o1",
        spec(
            selections=[
                {"object_name": "Contact", "deleted_since": "2026-01-01T00:00:00Z", "fields": ["Email", "Ns__X__c"]},
                {"object_name": "ns__Thing__c", "changed_since": "2026-01-01T00:00:00Z"},
                {"object_name": "Case", "all": True},
                {"object_name": "Account", "ids": ["001000000000001", ACCOUNT_ID]},
            ],
            parents=0,
            children=5,
            match_on="External_Id__c",
            masks=[
                {"object_name": "Contact", "field": "Email", "rule": "email"},
                {"object_name": "Contact", "field": "Phone", "rule": "null"},
                {"object_name": "Contact", "field": "LastName", "rule": "pseudonym"},
                {"object_name": "Contact", "field": "Title", "rule": "fixed:n/a"},
            ],
            owner_map={"005000000000001AAA": "005000000000002AAA"},
        ),
    ),
    (d.Kind.METADATA_RESTORE, "o1", spec(selections=[], metadata_components=["ApexClass:Foo", "Layout:Account-A b"])),
    (
        d.Kind.METADATA_RESTORE,
        "o1",
        spec(selections=[], metadata_components=["CustomField:Account.X__c"], check_only=True),
    ),
]

BAD = [
    (d.Kind.RESTORE, "o1", None, "restore is required"),
    (d.Kind.RESTORE, "", spec(), "org_id"),
    (d.Kind.RESTORE, "o1", spec(source_org_id="o2"), "differ"),
    (d.Kind.RESTORE, "o 1", spec(), "restore.source_org_id"),
    (d.Kind.RESTORE, "o1", spec(target_org_id="a.b"), "restore.target_org_id"),
    (d.Kind.RESTORE, "o1", spec(selections=[]), "restore.selections"),
    (d.Kind.RESTORE, "o1", spec(whole_org=True), "not both"),
    (d.Kind.RESTORE, "o1", spec(selections=[{"object_name": "Account"}]), "exactly one"),
    (
        d.Kind.RESTORE,
        "o1",
        spec(selections=[{"object_name": "Account", "all": True, "ids": [ACCOUNT_ID]}]),
        "exactly one",
    ),
    (d.Kind.RESTORE, "o1", spec(selections=[{"object_name": "Acc ount", "all": True}]), "selections[0].object_name"),
    (d.Kind.RESTORE, "o1", spec(selections=[{"object_name": "Account__", "all": True}]), "object_name"),
    (d.Kind.RESTORE, "o1", spec(selections=[{"object_name": "1Account", "all": True}]), "object_name"),
    (d.Kind.RESTORE, "o1", spec(selections=[{"object_name": "Account", "ids": ["001x"]}]), "selections[0].ids[0]"),
    (d.Kind.RESTORE, "o1", spec(selections=[{"object_name": "Account", "ids": ["001000000000001AA!"]}]), "Id"),
    (
        d.Kind.RESTORE,
        "o1",
        spec(selections=[{"object_name": "Account", "all": True, "fields": ["Name", "Bad-Field"]}]),
        "selections[0].fields[1]",
    ),
    (d.Kind.RESTORE, "o1", spec(parents=6), "restore.parents"),
    (d.Kind.RESTORE, "o1", spec(children=-1), "restore.children"),
    (d.Kind.RESTORE, "o1", spec(masks=[{"object_name": "Contact", "field": "Email", "rule": "hash"}]), "masks[0].rule"),
    (
        d.Kind.RESTORE,
        "o1",
        spec(masks=[{"object_name": "Contact", "field": "E mail", "rule": "null"}]),
        "masks[0].field",
    ),
    (d.Kind.RESTORE, "o1", spec(match_on="x y"), "restore.match_on"),
    (d.Kind.RESTORE, "o1", spec(owner_map={"nobody": "005000000000002AAA"}), "owner_map"),
    (d.Kind.RESTORE, "o1", spec(metadata_components=["ApexClass:Foo"]), "metadata_components"),
    (d.Kind.RESTORE, "o1", spec(check_only=True), "check_only"),
    (d.Kind.RESTORE, "o1", edited(lambda s: s.as_of.FromSeconds(-5)), "restore.as_of"),
    (d.Kind.METADATA_RESTORE, "o1", spec(selections=[]), "metadata_components is empty"),
    (d.Kind.METADATA_RESTORE, "o1", spec(), "selections must be empty"),
    (d.Kind.METADATA_RESTORE, "o1", spec(selections=[], metadata_components=["ApexClass"]), "Type:FullName"),
    (d.Kind.METADATA_RESTORE, "o1", spec(selections=[], metadata_components=["Apex Class:Foo"]), "Type:FullName"),
    (d.Kind.METADATA_RESTORE, "o1", spec(selections=[], metadata_components=["ApexClass:"]), "Type:FullName"),
]


@pytest.mark.parametrize(("kind", "org_id", "given"), GOOD)
def test_a_well_formed_restore_is_accepted_with_its_source(kind: d.Kind, org_id: str, given: rpb.RestoreSpec) -> None:
    checked = restore_request.check(kind, org_id, given)
    assert checked.source_org_id == "o1"
    assert given.source_org_id in ("", "o1")  # the request itself is left as it was


@pytest.mark.parametrize(("kind", "org_id", "given", "named"), BAD)
def test_a_malformed_restore_is_refused_naming_the_field(
    kind: d.Kind, org_id: str, given: rpb.RestoreSpec | None, named: str
) -> None:
    with pytest.raises(errors.InvalidArgument, match=named.replace("[", r"\[").replace("]", r"\]")):
        restore_request.check(kind, org_id, given)


def test_the_audit_scope_names_objects_and_counts_never_values() -> None:
    given = spec(
        selections=[
            {"object_name": "Account", "ids": [ACCOUNT_ID, "001000000000002AAA"], "fields": ["Name"]},
            {"object_name": "Contact", "deleted_since": "2026-01-01T00:00:00Z"},
        ],
        target_org_id="sb1",
        as_of="2026-02-01T10:00:00Z",
        dry_run=True,
        masks=[{"object_name": "Contact", "field": "Title", "rule": "fixed:secret-value"}],
    )
    line = restore_request.audit_scope(d.Kind.RESTORE, "o1", given)
    assert line == (
        "kind=RESTORE source=o1 target=sb1 as_of=2026-02-01T10:00:00Z dry_run=true "
        "objects=Account(ids:2,fields:1) Contact(deleted_since:2026-01-01T00:00:00Z) masks=1"
    )
    assert ACCOUNT_ID not in line and "secret" not in line
    meta = spec(selections=[], metadata_components=["ApexClass:Secret", "ApexClass:B", "CustomField:Account.X__c"])
    assert "components=3 (ApexClass, CustomField)" in restore_request.audit_scope(d.Kind.METADATA_RESTORE, "o1", meta)


def test_who_may_start_which_kind() -> None:
    assert restore_request.role_for(d.Kind.BACKUP) == "operator"
    assert restore_request.role_for(d.Kind.RESTORE) == restore_request.role_for(d.Kind.METADATA_RESTORE) == "restorer"


async def test_a_restore_start_publishes_its_spec_with_the_caller_and_the_source() -> None:
    h = Harness()
    started = await h.app.start(
        policy_id="",
        org_id="o1",
        stall_timeout=None,
        trigger="",
        requested_by="rita",
        session_id="r1",
        kind=d.Kind.RESTORE,
        restore=spec(requested_by="mallory", dry_run=True),
    )
    assert started.kind is d.Kind.RESTORE and started.org_id == "o1" and started.requested_by == "rita"
    [env] = h.bus.events
    requested = env.session_requested
    assert requested.kind == rpb.SESSION_KIND_RESTORE and requested.org_id == "o1"
    assert requested.restore.requested_by == "rita" and requested.restore.source_org_id == "o1"
    assert requested.restore.dry_run and not requested.policy_id
    with pytest.raises(errors.InvalidArgument, match="only for a restore"):
        await h.app.start(policy_id="p", org_id="o1", stall_timeout=None, trigger="", requested_by="", restore=spec())
    with pytest.raises(errors.InvalidArgument, match="selections"):
        await h.app.start(
            policy_id="",
            org_id="o1",
            stall_timeout=None,
            trigger="",
            requested_by="",
            kind=d.Kind.RESTORE,
            restore=spec(selections=[]),
        )
    assert len(h.bus.events) == 1  # nothing published for a refused request


async def _start(address: str, role: str, request: api.StartSessionRequest) -> grpc.StatusCode:
    async with aio_channel(address, token(role, f"{role}-1")) as channel:
        try:
            await session_pb2_grpc.SessionServiceStub(channel).StartSession(request)
        except grpc.aio.AioRpcError as err:
            return err.code()
    return grpc.StatusCode.OK


async def test_a_restorer_restores_an_operator_backs_up_and_the_start_is_audited(running: Running) -> None:
    address = f"127.0.0.1:{running.port}"
    backup = api.StartSessionRequest(policy_id="p1", org_id="o1")
    restore = api.StartSessionRequest(org_id="o1", kind=rpb.SESSION_KIND_RESTORE, restore=spec(dry_run=True))
    meta = api.StartSessionRequest(
        org_id="o1",
        kind=rpb.SESSION_KIND_METADATA_RESTORE,
        restore=spec(selections=[], metadata_components=["ApexClass:A"]),
    )
    expected = {
        ("viewer", "backup"): grpc.StatusCode.PERMISSION_DENIED,
        ("viewer", "restore"): grpc.StatusCode.PERMISSION_DENIED,
        ("operator", "backup"): grpc.StatusCode.OK,
        ("operator", "restore"): grpc.StatusCode.PERMISSION_DENIED,
        ("operator", "meta"): grpc.StatusCode.PERMISSION_DENIED,
        ("restorer", "backup"): grpc.StatusCode.PERMISSION_DENIED,
        ("restorer", "restore"): grpc.StatusCode.OK,
        ("restorer", "meta"): grpc.StatusCode.OK,
        ("admin", "backup"): grpc.StatusCode.OK,
        ("admin", "restore"): grpc.StatusCode.OK,
    }
    requests = {"backup": backup, "restore": restore, "meta": meta}
    for (role, what), code in expected.items():
        assert await _start(address, role, requests[what]) == code, (role, what)
    bad = api.StartSessionRequest(org_id="o1", kind=rpb.SESSION_KIND_RESTORE, restore=spec(parents=9))
    assert await _start(address, "restorer", bad) == grpc.StatusCode.INVALID_ARGUMENT
    assert await _start(address, "restorer", api.StartSessionRequest(org_id="o1", kind=7)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    # the restorer's start is in the audit with its scope: objects, counts, the point, the orgs, dry_run
    audit = StreamAudit(running.bus.js, running.settings.bus_namespace)
    # the interceptor's publish is acknowledged before the call answers: the entries are there, no waiting
    entries = [e for e in (await audit.read())[0] if e.method == "StartSession" and e.actor == "restorer-1"]
    details = sorted(e.detail for e in entries)
    assert any(
        e.outcome == "OK"
        and "kind=RESTORE source=o1 target=o1 as_of=latest dry_run=true objects=Account(ids:1)" in e.detail
        for e in entries
    ), details
    assert any(e.outcome == "INVALID_ARGUMENT" for e in entries)
    assert all(ACCOUNT_ID not in e.detail for e in entries)


async def test_a_restore_reads_back_with_its_kind_spec_counts_and_read_back(running: Running) -> None:
    restorer = aio_channel(f"127.0.0.1:{running.port}", token("restorer", "rita"))
    try:
        stub = session_pb2_grpc.SessionServiceStub(restorer)
        started = await stub.StartSession(
            api.StartSessionRequest(org_id="o1", kind=rpb.SESSION_KIND_RESTORE, restore=spec(dry_run=True))
        )
        sid = started.session_id
        assert started.kind == rpb.SESSION_KIND_RESTORE and started.restore.requested_by == "rita"
        resolved = spec(dry_run=True, source_org_id="o1", target_org_id="o1", requested_by="rita")
        resolved.as_of.FromDatetime(dt.datetime(2026, 1, 1))
        await running.publish(pb.SessionStarted(org_id="o1", kind=rpb.SESSION_KIND_RESTORE, restore=resolved), sid)
        await running.publish(pb.JobsPlanned(jobs=[pb.PlannedJob(job_id="restore", type=pb.JOB_TYPE_RESTORE)]), sid)
        account = rpb.ObjectRestoreCounts(object_name="Account", created=1, failed=1)
        await running.publish(pb.ChunkUploaded(chunk_seq=1, restore=[account]), sid, "restore", 1)
        check = rpb.Verification(
            done=True, verified=False, matching=1, differing=1, samples=["Account x Name: differs"]
        )
        await running.publish(
            pb.JobFinished(outcome=pb.JOB_OUTCOME_WARNING, chunks=1, restore=[account], verification=check),
            sid,
            "restore",
        )
        final = await running.final(sid)
        assert final.status == pb.SESSION_STATUS_WARNING and final.kind == rpb.SESSION_KIND_RESTORE
        assert final.restore.target_org_id == "o1" and final.restore.as_of.seconds == resolved.as_of.seconds
        assert [(c.object_name, c.created, c.failed) for c in final.restore_counts] == [("Account", 1, 1)]
        assert final.verification.differing == 1 and not final.verification.verified
        got = await stub.GetSession(api.GetSessionRequest(session_id=sid))
        assert got.restore_counts == final.restore_counts and got.verification == final.verification
        listed = await stub.ListSessions(api.ListSessionsRequest(kind=rpb.SESSION_KIND_RESTORE))
        assert [s.session_id for s in listed.sessions] == [sid]
        await running.run_session("backup-1", {"a": pb.JOB_OUTCOME_SUCCESS})
        await running.final("backup-1")
        backups = await stub.ListSessions(api.ListSessionsRequest(kind=rpb.SESSION_KIND_BACKUP))
        assert [s.session_id for s in backups.sessions] == ["backup-1"]
        # the announcement carries the restore's totals and read-back
        finished = await running.app.projection.get(sid)
        assert finished is not None
        from services.session import translate

        payload = translate.finished_payload(finished)
        assert payload.restore == final.restore_counts and payload.verification.differing == 1
        # a restorer cancels a restore, not a backup
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CancelSession(api.CancelSessionRequest(session_id="backup-1"))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await restorer.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=messages(api.StartSessionRequest.DESCRIPTOR))
def test_no_restore_request_breaks_the_start(request: api.StartSessionRequest) -> None:
    """Whatever a StartSession carries (odd names, huge or negative numbers, timestamps out of range): a
    session, or a RequestError saying why — never another exception, and the audit line is always written."""
    from services.session import translate

    kind = translate.KIND_FROM_PB.get(request.kind)
    if kind is None:
        return  # refused by the servicer as an unknown kind
    restore_request.audit_scope(kind, request.org_id, request.restore)

    async def start() -> None:
        h = Harness()
        try:
            started = await h.app.start(
                policy_id=request.policy_id,
                org_id=request.org_id,
                stall_timeout=None,
                trigger=request.trigger,
                requested_by="fuzz",
                kind=kind,
                restore=request.restore if request.HasField("restore") else None,
            )
        except errors.RequestError:
            return
        translate.session_to_pb(started)

    asyncio.run(start())


def test_restore_events_translate_both_ways_and_a_bad_spec_is_malformed() -> None:
    from services.platform import events
    from services.session import translate

    resolved = spec(source_org_id="o1", target_org_id="sb1", parents=0, dry_run=True)
    resolved.as_of.FromSeconds(1_800_000_000)
    env = events.envelope(
        pb.SessionStarted(org_id="o1", kind=rpb.SESSION_KIND_RESTORE, restore=resolved), session_id="r1", producer="t"
    )
    started = translate.to_domain(env)
    assert isinstance(started, d.SessionStarted) and started.kind is d.Kind.RESTORE
    session = d.fold(None, started)
    assert translate.session_to_pb(session).restore == resolved  # parents=0 kept: presence survives the JSON
    counts = [
        rpb.ObjectRestoreCounts(object_name="Account", created=1),
        rpb.ObjectRestoreCounts(object_name="Account", failed=2),
    ]
    chunk = translate.to_domain(
        events.envelope(pb.ChunkUploaded(chunk_seq=1, restore=counts), session_id="r1", job_id="j", producer="t")
    )
    assert isinstance(chunk, d.ChunkUploaded) and chunk.restore == {"Account": d.RestoreCounts(created=1, failed=2)}
    broken = pb.SessionRequested(kind=rpb.SESSION_KIND_RESTORE, restore=rpb.RestoreSpec(source_org_id="o1"))
    broken.restore.as_of.seconds = -(10**15)
    with pytest.raises(events.MalformedEvent, match="restore spec"):
        translate.to_domain(events.envelope(broken, session_id="r2", producer="t"))
    with pytest.raises(events.MalformedEvent, match="kind"):
        translate.to_domain(events.envelope(pb.SessionRequested(kind=9), session_id="r3", producer="t"))  # type: ignore[arg-type]
