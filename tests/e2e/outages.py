"""Helpers of the outage tests (chaos, NATS cluster): a backup run through the whole stack while something
is done to it at chosen moments, then its outcome reconciled with the org's ground truth."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import nats
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api

from devstack.localstack import Stack
from services.cli.client import Clients
from sforg.testing import Admin
from tests.e2e.reconcile import reconcile

# when an outage strikes: a condition on the session as WatchSession shows it
Moment = Callable[[api.Session], bool]


def planned(s: api.Session) -> bool:
    return s.planned and s.jobs_total > 0


def some_chunks(s: api.Session) -> bool:
    return s.totals.new_versions > 0


@dataclass
class Outcome:
    session: api.Session
    jobs: dict[str, api.Job]
    done: list[str] = field(default_factory=list)  # the outages, in the order they struck


def run_with_outages(
    c: Clients, outages: list[tuple[Moment, str, Callable[[], None]]], *, policy_id: str = "p1", timeout: float = 300
) -> Outcome:
    """Start a session and watch it to its end; each outage runs (once) at the first update where its moment
    holds, or when the session ends before. The watch is opened again when an outage cut it."""
    started = c.session.StartSession(api.StartSessionRequest(policy_id=policy_id, org_id="o1", trigger="test"))
    pending = list(outages)
    done: list[str] = []
    final: api.Session | None = None
    while final is None:
        try:
            # wait_for_ready: while the session service is down (killed, restarting), the call waits for it
            watch = api.WatchSessionRequest(session_id=started.session_id)
            for update in c.session.WatchSession(watch, timeout=timeout, wait_for_ready=True):
                for outage in list(pending):
                    moment, name, act = outage
                    if moment(update) or update.status not in (pb.SESSION_STATUS_PENDING, pb.SESSION_STATUS_RUNNING):
                        pending.remove(outage)
                        act()
                        done.append(name)
                if update.status not in (pb.SESSION_STATUS_PENDING, pb.SESSION_STATUS_RUNNING) and not pending:
                    final = update
        except grpc.RpcError as exc:  # the session service itself was killed or restarted: watch again
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN):
                raise
    jobs = {j.job_id: j for j in c.session.ListJobs(api.ListJobsRequest(session_id=final.session_id)).jobs}
    return Outcome(final, jobs, done)


def check_complete(c: Clients, stack: Stack, outcome: Outcome) -> None:
    """Nothing lost, changed or duplicated: the backup equals the org's ground truth, record for record, and
    each data job's counts add up to the records it stored."""
    assert stack.org is not None
    truth = Admin(stack.org).ground_truth()
    data = sorted(j.object_name for j in outcome.jobs.values() if j.type == pb.JOB_TYPE_DATA)
    report = reconcile(c.storage, stack.org["org_id"], truth, data)
    assert report.totals() == (0, 0, 0), report.summary()
    live = sum(len(v) for name, v in truth["objects"].items() if name in data)
    every_job = sum(j.counts.new_versions for j in outcome.jobs.values())
    assert outcome.session.totals.new_versions == every_job, (outcome.session.totals, every_job)
    data_jobs = sum(j.counts.new_versions for j in outcome.jobs.values() if j.type == pb.JOB_TYPE_DATA)
    assert data_jobs >= live  # an initial backup: a restore point per live record (and per one in the bin)
    chunks = chunk_events(stack.nats_url, outcome.session.session_id)
    assert len(chunks) == len({(job, seq) for job, seq, _ in chunks}), "a chunk announced twice"
    assert sum(n for _, _, n in chunks) == outcome.session.totals.new_versions  # what was stored, folded once


def stream_info(nats_url: str, stream: str) -> Any:
    """A stream's info, asked as the admin (without declaring anything: Bus.connect would)."""

    async def ask() -> Any:
        nc = await nats.connect(nats_url.split(","), allow_reconnect=False)
        try:
            return await nc.jetstream().stream_info(stream)
        finally:
            await nc.close()

    return asyncio.run(ask())


def chunk_events(nats_url: str, session_id: str) -> list[tuple[str, int, int]]:
    """(job, chunk, new versions) of every ChunkUploaded of a session on the EVENTS stream, in stream order."""
    from services.platform import events

    async def read() -> list[tuple[str, int, int]]:
        nc = await nats.connect(nats_url.split(","), allow_reconnect=False)
        try:
            js = nc.jetstream()
            subject = f"sfvault.events.{session_id}.ChunkUploaded"
            info = await js.stream_info("EVENTS", subjects_filter=subject)
            expected = sum((info.state.subjects or {}).values())
            sub = await js.subscribe(subject, ordered_consumer=True)
            found = []
            while len(found) < expected:
                msg = await sub.next_msg(timeout=10)
                env = events.decode(msg.data)
                chunk = env.chunk_uploaded
                found.append((env.job_id, chunk.chunk_seq, chunk.counts.new_versions))
            await sub.unsubscribe()
            return found
        finally:
            await nc.close()

    return asyncio.run(read())
