"""The runner's contract: JobTerminated stops a job with no JobFinished, a cancellation finishes the chunk in
hand and reports CANCELLED, jobs of an ended session are dropped, and a jobrunner killed with SIGKILL mid-job
has its job redelivered and resumed elsewhere without a duplicate version or a lost record."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from sfvault.events.v1 import events_pb2 as ev
from sfvault.storage.v1 import storage_pb2 as spb

from sforg.testing import Admin
from tests.jobrunner.conftest import Stack, data_spec, reconcile

pytestmark = pytest.mark.integration

SLOW = {"jobrunner_bulk_threshold": 10, "jobrunner_bulk_page": 10, "jobrunner_chunk_records": 10}


@pytest.fixture
def slow_results(admin: Admin) -> Iterator[None]:
    admin.fault(endpoint="bulk2_results", latency=0.4)
    yield
    admin.clear_faults()


async def test_terminated_job_stops_without_a_job_finished(
    stack: Stack, org: dict[str, Any], slow_results: None
) -> None:
    running = await stack.start_jobrunner(**SLOW)
    spec = data_spec(org, "Account", "s1", "jt", full=True)
    await stack.enqueue(spec)
    await stack.wait_for(lambda: len(stack.chunks.get(("s1", "jt"), ())) >= 2)
    assert stack.bus is not None
    await stack.bus.emit(ev.JobTerminated(reason="stall timeout"), session_id="s1", job_id="jt")
    await stack.wait_for(lambda: running.runner.jobs_done >= 1, 60)
    assert ("s1", "jt") not in stack.finished
    stored = len(stack.chunks[("s1", "jt")])
    assert stored < 10  # stopped well before the end


async def test_cancelled_session_finishes_the_chunk_and_reports_cancelled_and_drops_queued_jobs(
    stack: Stack, org: dict[str, Any], slow_results: None
) -> None:
    running = await stack.start_jobrunner(**SLOW)
    spec = data_spec(org, "Account", "s2", "jc", full=True)
    await stack.enqueue(spec)
    await stack.wait_for(lambda: len(stack.chunks.get(("s2", "jc"), ())) >= 2)
    assert stack.bus is not None
    await stack.bus.emit(ev.SessionCancelled(requested_by="test"), session_id="s2")
    done = await stack.wait_finished("s2", "jc", 60)
    assert done.outcome == ev.JOB_OUTCOME_CANCELLED
    await stack.wait_for(lambda: len(stack.chunks.get(("s2", "jc"), ())) >= done.chunks)
    assert stack.chunks[("s2", "jc")] == set(range(1, done.chunks + 1))

    # a job of the cancelled session taken later is dropped without starting
    await stack.enqueue(data_spec(org, "Campaign", "s2", "late"))
    await stack.wait_for(lambda: running.runner.jobs_dropped >= 1, 60)
    assert ("s2", "late") not in stack.started


async def test_sigkill_mid_job_is_redelivered_and_resumed_without_duplicates(
    stack: Stack, org: dict[str, Any], admin: Admin, slow_results: None
) -> None:
    settings = stack.jobrunner_settings(**SLOW, jobrunner_ack_wait_s=4.0)
    env = {
        **os.environ,
        "SFVAULT_DATABASE_URL": settings.database_url,
        "SFVAULT_NATS_URL": settings.nats_url,
        "SFVAULT_BUS_NAMESPACE": settings.bus_namespace,
        "SFVAULT_STORAGE_ADDR": settings.storage_addr,
        "SFVAULT_JOBRUNNER_PORT": "0",
        "SFVAULT_JOBRUNNER_BULK_THRESHOLD": "10",
        "SFVAULT_JOBRUNNER_BULK_PAGE": "10",
        "SFVAULT_JOBRUNNER_CHUNK_RECORDS": "10",
        "SFVAULT_JOBRUNNER_ACK_WAIT_S": "4",
        "SFVAULT_JOBRUNNER_WORKER_ID": "doomed",
    }
    # a real process, so SIGKILL leaves no chance to clean up
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "services.jobrunner"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        spec = data_spec(org, "Account", "s3", "jk", full=True)
        await stack.enqueue(spec)
        await stack.wait_for(lambda: len(stack.chunks.get(("s3", "jk"), ())) >= 3, 90)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    await stack.start_jobrunner(**SLOW, jobrunner_ack_wait_s=4.0, jobrunner_worker_id="survivor")
    done = await stack.wait_finished("s3", "jk", 120)
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    await stack.wait_for(lambda: len(stack.chunks.get(("s3", "jk"), ())) >= done.chunks)
    assert stack.chunks[("s3", "jk")] == set(range(1, done.chunks + 1))
    truth = admin.ground_truth(objects=["Account"])
    result = reconcile(truth, await stack.export(org["org_id"], "Account"), spec)
    assert result.clean, str(result)
    points = await stack.stub.ListRestorePoints(
        spb.ListRestorePointsRequest(org_id=org["org_id"], object_name="Account")
    )
    total = sum(p.counts.new_versions for p in points.restore_points)
    changed = sum(p.counts.changed for p in points.restore_points)
    stored_records = len(truth["objects"]["Account"]) + len(truth["recycle_bin"]["Account"])
    assert (total, changed) == (stored_records, 0)  # one version per record: nothing stored twice


async def test_sigterm_hands_the_job_back_and_another_replica_resumes_it(
    stack: Stack, org: dict[str, Any], admin: Admin, slow_results: None
) -> None:
    first = await stack.start_jobrunner(**SLOW, jobrunner_worker_id="leaving")
    spec = data_spec(org, "Account", "s4", "js", full=True)
    await stack.enqueue(spec)
    await stack.wait_for(lambda: len(stack.chunks.get(("s4", "js"), ())) >= 2)
    await first.stop(30)  # SIGTERM's path: the job stops at a chunk boundary and is handed back (nak)
    stack.runners.remove(first)
    assert ("s4", "js") not in stack.finished
    await stack.start_jobrunner(**SLOW, jobrunner_worker_id="staying")
    done = await stack.wait_finished("s4", "js", 120)
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    await stack.wait_for(lambda: len(stack.chunks.get(("s4", "js"), ())) >= done.chunks)
    assert stack.chunks[("s4", "js")] == set(range(1, done.chunks + 1))
    result = reconcile(admin.ground_truth(objects=["Account"]), await stack.export(org["org_id"], "Account"), spec)
    assert result.clean, str(result)


async def test_a_replica_started_after_the_session_ended_still_drops_its_jobs(
    stack: Stack, org: dict[str, Any]
) -> None:
    assert stack.bus is not None
    await stack.bus.emit(ev.SessionFailed(reason="org unreachable"), session_id="s5")
    await stack.bus.emit(ev.JobTerminated(reason="stall"), session_id="s6", job_id="t1")
    await stack.bus.emit(ev.JobTerminated(reason="stall"), session_id="s6", job_id="t2")
    running = await stack.start_jobrunner()  # learns both only from the stream's history
    await stack.enqueue(data_spec(org, "Campaign", "s5", "late"))
    await stack.enqueue(data_spec(org, "Campaign", "s6", "t1"))
    await stack.wait_for(lambda: running.runner.jobs_dropped >= 2, 60)
    assert not stack.started


async def test_a_job_hung_on_a_stalled_response_is_termed_at_once_when_terminated(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    running = await stack.start_jobrunner(**SLOW, jobrunner_http_timeout_s=3.0)
    admin.fault(endpoint="bulk2_results", hang=True)
    try:
        await stack.enqueue(data_spec(org, "Account", "s7", "jh", full=True))
        await stack.wait_for(lambda: ("s7", "jh") in stack.started)
        assert stack.bus is not None
        await stack.bus.emit(ev.JobTerminated(reason="stall timeout"), session_id="s7", job_id="jh")
        await stack.wait_for(lambda: running.runner.jobs_done >= 1, 30)
        assert ("s7", "jh") not in stack.finished
    finally:
        admin.clear_faults()
