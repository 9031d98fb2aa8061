"""Starting a prune session (issue 18, keep): admins only, an org and no policy, dry_run published for discovery,
the start audited; a prune with nothing to prune (no job planned) ends Success with discovery's message, one
with its prune job ends on the job's outcome with the chunks' counts."""

from __future__ import annotations

import grpc
import pytest
from sfvault.events.v1 import events_pb2 as pb
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.session.v1 import session_pb2 as api

from services.platform import errors
from services.platform.auth import StreamAudit
from services.session import domain as d
from services.session import restore_request
from tests.session.conftest import Running
from tests.session.test_application import Harness
from tests.session.test_restore_start import _start


def test_only_an_admin_prunes() -> None:
    assert restore_request.role_for(d.Kind.PRUNE) == "admin"


async def test_a_prune_start_publishes_the_org_and_dry_run() -> None:
    h = Harness()
    started = await h.app.start(
        policy_id="",
        org_id="o1",
        stall_timeout=None,
        trigger="",
        requested_by="ada",
        session_id="p1",
        kind=d.Kind.PRUNE,
        dry_run=True,
    )
    assert started.kind is d.Kind.PRUNE and started.org_id == "o1" and started.requested_by == "ada"
    [env] = h.bus.events
    requested = env.session_requested
    assert requested.kind == rpb.SESSION_KIND_PRUNE and requested.org_id == "o1" and requested.dry_run
    assert not requested.policy_id and not requested.HasField("restore")

    def start(**kw: object) -> object:
        args: dict[str, object] = {
            "policy_id": "",
            "org_id": "o1",
            "stall_timeout": None,
            "trigger": "",
            "requested_by": "",
            "kind": d.Kind.PRUNE,
        }
        return h.app.start(**(args | kw))  # type: ignore[arg-type]

    with pytest.raises(errors.InvalidArgument, match="org_id is required"):
        await start(org_id="")  # type: ignore[misc]
    with pytest.raises(errors.InvalidArgument, match="no policy_id"):
        await start(policy_id="p1")  # type: ignore[misc]
    with pytest.raises(errors.InvalidArgument, match="dry_run is for a PRUNE"):
        await start(kind=d.Kind.BACKUP, policy_id="p1", dry_run=True)  # type: ignore[misc]
    assert len(h.bus.events) == 1  # nothing published for a refused request


async def test_nothing_to_prune_ends_success_with_the_message_and_a_prune_job_counts() -> None:
    h = Harness()
    await h.app.start(
        policy_id="", org_id="o1", stall_timeout=None, trigger="", requested_by="a", session_id="p1", kind=d.Kind.PRUNE
    )
    await h.emit(pb.SessionStarted(org_id="o1", kind=rpb.SESSION_KIND_PRUNE), "p1")
    nothing = "nothing to prune: no policy of org o1 sets a retention"
    await h.emit(pb.JobsPlanned(warnings=[nothing]), "p1")
    await h.deliver()
    s = await h.app.get("p1")
    assert s.status is d.Status.SUCCESS and s.warnings == (nothing,)

    await h.app.start(
        policy_id="", org_id="o1", stall_timeout=None, trigger="", requested_by="a", session_id="p2", kind=d.Kind.PRUNE
    )
    await h.emit(pb.SessionStarted(org_id="o1", kind=rpb.SESSION_KIND_PRUNE), "p2")
    await h.emit(pb.JobsPlanned(jobs=[pb.PlannedJob(job_id="prune", type=pb.JOB_TYPE_PRUNE)]), "p2")
    await h.emit(pb.JobStarted(type=pb.JOB_TYPE_PRUNE), "p2", "prune")
    for seq, deleted in ((1, 50), (2, 7)):
        await h.emit(pb.ChunkUploaded(chunk_seq=seq, counts=pb.Counts(deleted=deleted)), "p2", "prune", seq)
    await h.deliver()
    running = await h.app.get("p2")
    assert running.status is d.Status.RUNNING and running.jobs["prune"].job_type == "prune"
    await h.emit(
        pb.JobFinished(outcome=pb.JOB_OUTCOME_SUCCESS, counts=pb.Counts(deleted=57), message="57 record versions"),
        "p2",
        "prune",
    )
    await h.deliver()
    done = await h.app.get("p2")
    assert done.status is d.Status.SUCCESS and done.jobs["prune"].counts.deleted == 57


async def test_an_admin_prunes_others_may_not_and_the_start_is_audited(running: Running) -> None:
    address = f"127.0.0.1:{running.port}"
    prune = api.StartSessionRequest(org_id="o1", kind=rpb.SESSION_KIND_PRUNE, dry_run=True)
    for role, code in (
        ("viewer", grpc.StatusCode.PERMISSION_DENIED),
        ("operator", grpc.StatusCode.PERMISSION_DENIED),
        ("restorer", grpc.StatusCode.PERMISSION_DENIED),
        ("admin", grpc.StatusCode.OK),
    ):
        assert await _start(address, role, prune) == code, role
    no_org = api.StartSessionRequest(kind=rpb.SESSION_KIND_PRUNE)
    assert await _start(address, "admin", no_org) == grpc.StatusCode.INVALID_ARGUMENT
    audit = StreamAudit(running.bus.js, running.settings.bus_namespace)
    # the interceptor's publish is acknowledged before the call answers: the entries are there, no waiting
    entries = [e for e in (await audit.read())[0] if e.method == "StartSession" and e.actor == "admin-1"]
    assert any(e.outcome == "OK" and "prune of org o1 (dry run)" in e.detail for e in entries), entries
