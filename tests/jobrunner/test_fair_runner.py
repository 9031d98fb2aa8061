"""Fair scheduling on real NATS (issue 21, "Many orgs"): an org queued behind another org's many jobs starts
long before those are done, also when the replica's window holds fewer jobs than the first org queued (its
overflow goes to the back of the stream, each job still started once, as its first attempt); a replica holding
jobs hands its surplus to a replica that waits idle."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from nats.js.api import DeliverPolicy
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2

from services.jobrunner import consumers
from services.platform import events
from sforg.testing import Admin
from tests.jobrunner.conftest import Stack, data_spec

SLOW = {"jobrunner_bulk_threshold": 10, "jobrunner_bulk_page": 10, "jobrunner_chunk_records": 10}

pytestmark = pytest.mark.integration

OBJECTS = ("Contact", "Task", "Opportunity", "Lead", "Account", "Case", "Invoice__c", "Shipment__c")


def org_jobs(org: dict[str, Any], org_id: str, objects: tuple[str, ...]) -> list[jobs_pb2.JobSpec]:
    out = []
    for name in objects:
        spec = data_spec(org, name, f"s-{org_id}", f"data-{name}")
        spec.org_id = org_id
        out.append(spec)
    return out


async def attempts_seen(stack: Stack) -> list[tuple[str, str, int, str]]:
    """Every JobStarted's session, job, attempt and worker, as published."""
    seen: list[tuple[str, str, int, str]] = []

    async def on_msg(msg: Any) -> None:
        env = events.decode(msg.data)
        seen.append((env.session_id, env.job_id, env.job_started.attempt, env.job_started.worker_id))

    assert stack.bus is not None
    await stack.bus.js.subscribe(
        stack.bus.config.events_subject("*.JobStarted"),
        cb=on_msg,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    return seen


async def all_finished(stack: Stack, specs: list[jobs_pb2.JobSpec]) -> None:
    for spec in specs:
        done = await stack.wait_finished(spec.session_id, spec.job_id, 120)
        assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message


async def test_an_org_queued_behind_another_orgs_many_jobs_starts_among_the_first(
    stack: Stack, org: dict[str, Any]
) -> None:
    a, b = org_jobs(org, "org-a", OBJECTS), org_jobs(org, "org-b", OBJECTS[:2])
    for spec in a + b:  # all queued before any replica runs: org-b's jobs behind org-a's eight
        await stack.enqueue(spec)
    await stack.start_jobrunner(jobrunner_concurrency=2)
    await all_finished(stack, a + b)
    first_b = min(i for i, (session, _job) in enumerate(stack.started) if session == "s-org-b")
    assert first_b < 2  # in publication order (FIFO) it would be the ninth
    assert len(stack.started) == len(set(stack.started)) == 10


async def test_a_window_smaller_than_one_orgs_queue_defers_its_overflow_and_keeps_attempts(
    stack: Stack, org: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = await attempts_seen(stack)
    a, b = org_jobs(org, "org-a", OBJECTS), org_jobs(org, "org-b", OBJECTS[:2])
    for spec in a + b:
        await stack.enqueue(spec)
    monkeypatch.setattr(consumers, "WINDOW", 3)  # the replica holds three jobs at a time: org-a's eight fill it
    running = await stack.start_jobrunner(jobrunner_concurrency=2)
    await all_finished(stack, a + b)
    await stack.wait_for(lambda: len(seen) >= 10)
    first_b = min(i for i, (session, _job) in enumerate(stack.started) if session == "s-org-b")
    assert first_b < 4  # in publication order it would be the ninth
    assert running.runner.jobs_deferred >= 1
    # every job started once, as its first attempt: a deferral is no attempt
    assert sorted(started[:3] for started in seen) == sorted((s.session_id, s.job_id, 1) for s in a + b)


@pytest.fixture
def slow_results(admin: Admin) -> Iterator[None]:
    admin.fault(endpoint="bulk2_results", latency=0.4)  # a job of about a hundred records: seconds
    yield
    admin.clear_faults()


async def test_a_replica_holding_jobs_hands_its_surplus_to_an_idle_replica(
    stack: Stack, org: dict[str, Any], slow_results: None
) -> None:
    seen = await attempts_seen(stack)
    jobs = org_jobs(org, "org-a", ("Account", "Lead", "Case", "Opportunity", "Invoice__c", "Shipment__c"))
    for spec in jobs:
        await stack.enqueue(spec)
    holder = await stack.start_jobrunner(**SLOW, jobrunner_concurrency=1, jobrunner_worker_id="holder")
    await stack.wait_for(lambda: len(holder.runner.waiting) == len(jobs) - 1)  # one runs, it holds the others
    await stack.start_jobrunner(**SLOW, jobrunner_concurrency=1, jobrunner_worker_id="idle")
    await all_finished(stack, jobs)
    await stack.wait_for(lambda: len(seen) >= len(jobs))
    assert {worker for *_job, worker in seen} == {"holder", "idle"}  # the idle one was handed some
    assert sorted(started[:3] for started in seen) == sorted((s.session_id, s.job_id, 1) for s in jobs)
