"""The session service with real NATS and PostgreSQL: statuses, stall timeouts, duplicates, the API."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api
from sfvault.session.v1 import session_pb2_grpc

from tests.session.conftest import Running

OK, WARN, ERR = pb.JOB_OUTCOME_SUCCESS, pb.JOB_OUTCOME_WARNING, pb.JOB_OUTCOME_ERROR


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ({"a": OK, "b": ERR, "c": OK}, pb.SESSION_STATUS_WARNING),
        ({"a": ERR, "b": ERR, "c": ERR}, pb.SESSION_STATUS_FAILED),
        ({"a": OK, "b": WARN, "c": WARN}, pb.SESSION_STATUS_SUCCESS),
    ],
)
async def test_three_job_session_status(running: Running, outcomes: dict[str, int], status: int) -> None:
    await running.run_session("s1", outcomes)
    final = await running.final("s1")
    assert final.status == status
    assert final.jobs_total == 3 and final.jobs_finished == 3
    assert final.totals.received == 600 and final.totals.new_versions == 360 and final.totals.api_calls == 9


async def test_critical_error_fails_the_session(running: Running) -> None:
    await running.run_session("s1", {"a": OK, "b": 0, "c": 0})
    await running.publish(pb.SessionFailed(reason="authentication refused by the org"), "s1")
    final = await running.final("s1")
    assert final.status == pb.SESSION_STATUS_FAILED
    assert final.reason == "authentication refused by the org"


async def _finished_events(running: Running, session_id: str) -> int:
    """How many SessionFinished messages the EVENTS stream holds for the session."""
    subject = running.bus.config.events_subject(f"{session_id}.SessionFinished")
    info = await running.bus.js.stream_info(running.bus.config.events_stream, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


@pytest.mark.parametrize("only_job", [False, True])
async def test_stalled_job_is_terminated(running: Running, only_job: bool) -> None:
    outcomes = {"stuck": 0} if only_job else {"a": OK, "b": OK, "stuck": 0}
    await running.run_session("s1", outcomes, chunks=1, stall=dt.timedelta(hours=2))
    # wait until the projection has folded the uploads, then let 2 hours pass on the service's clock
    watcher = running.stub.WatchSession(api.WatchSessionRequest(session_id="s1"))
    async for update in watcher:
        if update.jobs_finished == len(outcomes) - 1 and update.totals.received == 100 * len(outcomes):
            break
    watcher.cancel()
    running.clock.advance(dt.timedelta(hours=2, minutes=1))
    final = await running.final("s1")
    assert final.status == (pb.SESSION_STATUS_FAILED if only_job else pb.SESSION_STATUS_WARNING)
    jobs = (await running.stub.ListJobs(api.ListJobsRequest(session_id="s1"))).jobs
    stuck = next(j for j in jobs if j.job_id == "stuck")
    assert stuck.state == api.JOB_STATE_TERMINATED
    assert stuck.outcome == ERR and "stall timeout" in stuck.message
    terminated = await running.bus.js.get_last_msg(
        running.bus.config.events_stream, running.bus.config.events_subject("s1.JobTerminated")
    )
    assert terminated is not None
    assert await _finished_events(running, "s1") == 1


async def test_planned_job_that_never_starts_is_terminated(running: Running) -> None:
    await running.publish(pb.SessionRequested(policy_id="p", org_id="o"), "s2")
    await running.publish(pb.JobsPlanned(jobs=[pb.PlannedJob(job_id="never", type=pb.JOB_TYPE_FILE)]), "s2")
    watcher = running.stub.WatchSession(api.WatchSessionRequest(session_id="s2"))
    async for update in watcher:
        if update.planned:
            break
    watcher.cancel()
    running.clock.advance(dt.timedelta(hours=25))
    final = await running.final("s2")
    assert final.status == pb.SESSION_STATUS_FAILED
    assert "never started" in final.reason or final.jobs_with_errors == 1


async def test_duplicates_and_reordering_give_the_same_result(running: Running) -> None:
    # the normal order for s-ref; s-mix gets a JobFinished before its JobStarted, a chunk before the plan,
    # and every event published twice with distinct message ids (so JetStream cannot de-duplicate them)
    await running.run_session("sref", {"a": OK, "b": ERR})
    ref = await running.final("sref")

    sid = "smix"
    envelopes = []
    from services.platform import events as ev

    def add(payload: object, job: str = "", *parts: object) -> None:
        envelopes.append(ev.envelope(payload, session_id=sid, job_id=job, producer="test", id_parts=parts))

    counts = pb.Counts(received=100, new_versions=60, unchanged=40, bytes=1000)
    total = pb.Counts(received=200, new_versions=120, unchanged=80, api_calls=3)
    add(pb.JobFinished(outcome=ERR, counts=total), "b")
    add(pb.ChunkUploaded(chunk_seq=2, counts=counts), "a", 2)
    add(pb.JobStarted(worker_id="w1", attempt=1, type=pb.JOB_TYPE_DATA), "b")
    add(pb.ChunkUploaded(chunk_seq=1, counts=counts), "b", 1)
    add(pb.JobFinished(outcome=OK, counts=total), "a")
    add(pb.ChunkUploaded(chunk_seq=1, counts=counts), "a", 1)
    add(pb.JobStarted(worker_id="w1", attempt=1, type=pb.JOB_TYPE_DATA), "a")
    add(pb.ChunkUploaded(chunk_seq=2, counts=counts), "b", 2)
    add(pb.SessionRequested(policy_id="policy-1", org_id="org-1", trigger="test"))
    add(pb.SessionStarted(policy_id="policy-1", org_id="org-1", initial=True))
    add(pb.JobsPlanned(jobs=[pb.PlannedJob(job_id=j, type=pb.JOB_TYPE_DATA, object_name=j) for j in "ab"]))
    for copy in range(2):
        for env in envelopes:
            await running.bus.js.publish(
                running.bus.config.events_subject(f"{sid}.{ev.event_type(env)}"),
                env.SerializeToString(),
                headers={"Nats-Msg-Id": f"{env.event_id}#{copy}"},
            )
    mixed = await running.final(sid)
    assert mixed.status == ref.status == pb.SESSION_STATUS_WARNING
    assert mixed.totals == ref.totals
    assert mixed.jobs_with_errors == ref.jobs_with_errors == 1
    assert await _finished_events(running, sid) == 1


async def test_api_errors_are_clear(running: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await running.stub.GetSession(api.GetSessionRequest(session_id="nope"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    for bad in ["", "a.b", "x y", "a*"]:
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await running.stub.GetSession(api.GetSessionRequest(session_id=bad))
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "session_id" in invalid.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as no_policy:
        await running.stub.StartSession(api.StartSessionRequest(org_id="o"))
    assert no_policy.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "policy_id" in no_policy.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as bad_token:
        await running.stub.ListSessions(api.ListSessionsRequest(page_token="garbage!"))
    assert bad_token.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_start_list_cancel(running: Running) -> None:
    started = [
        await running.stub.StartSession(api.StartSessionRequest(policy_id=f"p{i % 2}", org_id="o", trigger="manual"))
        for i in range(5)
    ]
    assert all(s.status == pb.SESSION_STATUS_PENDING for s in started)
    # wait until the last one is folded
    async for _update in running.stub.WatchSession(api.WatchSessionRequest(session_id=started[-1].session_id)):
        break
    ids: list[str] = []
    token = ""
    while True:
        page = await running.stub.ListSessions(api.ListSessionsRequest(page_size=2, page_token=token))
        ids += [s.session_id for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    assert sorted(ids) == sorted(s.session_id for s in started)
    p0 = await running.stub.ListSessions(api.ListSessionsRequest(policy_id="p0"))
    assert len(p0.sessions) == 3
    # cancel one that has no plan yet: it stops at once
    target = started[0].session_id
    await running.stub.CancelSession(api.CancelSessionRequest(session_id=target, reason="maintenance window"))
    final = await running.final(target)
    assert final.status == pb.SESSION_STATUS_STOPPED
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await running.stub.CancelSession(api.CancelSessionRequest(session_id=target))
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stopped = await running.stub.ListSessions(api.ListSessionsRequest(status=pb.SESSION_STATUS_STOPPED))
    assert [s.session_id for s in stopped.sessions] == [target]


async def test_cancel_drops_queued_and_waits_for_running(running: Running) -> None:
    await running.run_session("s1", {"a": 0, "b": 0})  # both running, none finished
    await running.publish(pb.JobsPlanned(jobs=[pb.PlannedJob(job_id="queued", type=pb.JOB_TYPE_FILE)]), "s1", "", 2)
    watcher = running.stub.WatchSession(api.WatchSessionRequest(session_id="s1"))
    async for update in watcher:
        if update.jobs_total == 3:
            break
    watcher.cancel()
    await running.stub.CancelSession(api.CancelSessionRequest(session_id="s1"))
    for job in "ab":
        await running.publish(pb.JobFinished(outcome=pb.JOB_OUTCOME_CANCELLED), "s1", job)
    final = await running.final("s1")
    assert final.status == pb.SESSION_STATUS_STOPPED
    jobs = {j.job_id: j for j in (await running.stub.ListJobs(api.ListJobsRequest(session_id="s1"))).jobs}
    assert jobs["queued"].state == api.JOB_STATE_DROPPED


async def test_cancel_ends_a_session_whose_job_never_finishes(running: Running) -> None:
    # "hung" runs on a jobrunner that never answers again; "never" is queued and never taken
    await running.run_session("s1", {"hung": 0})
    await running.publish(pb.JobsPlanned(jobs=[pb.PlannedJob(job_id="never", type=pb.JOB_TYPE_FILE)]), "s1", "", 2)
    watcher = running.stub.WatchSession(api.WatchSessionRequest(session_id="s1"))
    async for update in watcher:
        if update.jobs_total == 2 and update.totals.received == 200:
            break
    watcher.cancel()
    await running.stub.CancelSession(api.CancelSessionRequest(session_id="s1", reason="wrong org"))
    running.clock.advance(dt.timedelta(seconds=10))  # the grace (the default); the day-long stall timeout is far
    final = await running.final("s1", within=15)
    assert final.status == pb.SESSION_STATUS_STOPPED
    assert "wrong org" in final.reason and "cancel grace" in final.reason
    jobs = {j.job_id: j for j in (await running.stub.ListJobs(api.ListJobsRequest(session_id="s1"))).jobs}
    assert jobs["never"].state == api.JOB_STATE_DROPPED
    assert jobs["hung"].state == api.JOB_STATE_TERMINATED and jobs["hung"].outcome == pb.JOB_OUTCOME_CANCELLED
    # the jobrunner was told to stop twice: the SessionCancelled, then the JobTerminated of its job
    for kind in ("SessionCancelled", "JobTerminated"):
        msg = await running.bus.js.get_last_msg(
            running.bus.config.events_stream, running.bus.config.events_subject(f"s1.{kind}")
        )
        assert pb.Envelope.FromString(msg.data or b"").WhichOneof("payload") is not None
    terminated = await running.bus.js.get_last_msg(
        running.bus.config.events_stream, running.bus.config.events_subject("s1.JobTerminated")
    )
    assert pb.Envelope.FromString(terminated.data or b"").job_id == "hung"
    assert await _finished_events(running, "s1") == 1


async def test_every_rpc_checks_token_and_role(running: Running) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from services.platform.auth import aio_channel
    from tests.session.conftest import token

    calls = {
        "GetSession": (api.GetSessionRequest(session_id="x"), "viewer"),
        "ListSessions": (api.ListSessionsRequest(), "viewer"),
        "ListJobs": (api.ListJobsRequest(session_id="x"), "viewer"),
        "WatchSession": (api.WatchSessionRequest(session_id="x"), "viewer"),
        "StartSession": (api.StartSessionRequest(policy_id="p", org_id="o"), "operator"),
        "CancelSession": (api.CancelSessionRequest(session_id="x"), "operator"),
    }
    running.app.watch_grace_s = 0.2  # an unknown session is NOT_FOUND after this grace
    address = f"127.0.0.1:{running.port}"
    for who, tok in [("nobody", ""), ("forged", token("admin")[:-4] + "AAAA"), ("viewer", token("viewer"))]:
        async with aio_channel(address, tok) as channel:
            stub = session_pb2_grpc.SessionServiceStub(channel)
            for method, (request, role) in calls.items():
                code = grpc.StatusCode.OK
                try:
                    result = getattr(stub, method)(request)
                    if method == "WatchSession":
                        async for _ in result:
                            pass
                    else:
                        await result
                except grpc.aio.AioRpcError as err:
                    code = err.code()
                if who != "viewer":
                    assert code == grpc.StatusCode.UNAUTHENTICATED, (who, method)
                elif role == "operator":
                    assert code == grpc.StatusCode.PERMISSION_DENIED, method
                else:  # allowed through: the unknown session is simply not found
                    assert code in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND), method
        # health stays open
        async with aio_channel(address, "") as channel:
            status = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert status.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_started_session_is_readable_at_once(running: Running) -> None:
    for i in range(40):
        started = await running.stub.StartSession(api.StartSessionRequest(policy_id=f"p{i}", org_id="o"))
        got = await running.stub.GetSession(api.GetSessionRequest(session_id=started.session_id))
        assert got.session_id == started.session_id and got.status == pb.SESSION_STATUS_PENDING
        jobs = await running.stub.ListJobs(api.ListJobsRequest(session_id=started.session_id))
        assert list(jobs.jobs) == []
        listed = await running.stub.ListSessions(api.ListSessionsRequest(policy_id=f"p{i}"))
        assert [s.session_id for s in listed.sessions] == [started.session_id]
    # and the same event, delivered from the stream afterwards, is folded once (its id is tracked)
    again = await running.stub.StartSession(api.StartSessionRequest(policy_id="p0", org_id="o", session_id="fixed"))
    await running.stub.CancelSession(api.CancelSessionRequest(session_id="fixed"))
    final = await running.final("fixed")
    assert final.status == pb.SESSION_STATUS_STOPPED and again.session_id == "fixed"
    assert (await running.stub.GetSession(api.GetSessionRequest(session_id="fixed"))).requested_at == again.requested_at


async def test_started_sessions_record_who_asked(running: Running) -> None:
    started = await running.stub.StartSession(api.StartSessionRequest(policy_id="p", org_id="o"))
    env = await running.bus.js.get_last_msg(
        running.bus.config.events_stream, running.bus.config.events_subject(f"{started.session_id}.SessionRequested")
    )
    requested = pb.Envelope.FromString(env.data or b"").session_requested
    assert requested.requested_by == "alice"
