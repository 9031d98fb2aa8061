"""The job use cases on the fakes of their ports (tests/jobrunner/fakes.py): no server, milliseconds each. What
the integration tests prove against sforg, storage and PostgreSQL (test_data, test_adversity, test_runner), in
the cases that need no wire: full then incremental reads, the Bulk/REST fallback, expiring locators, the delete
log and the Id reconciliation, a crash resumed from its checkpoint, stop signals."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2

from services.jobrunner.application import JobExecutor, Result, Stops, finished, settled
from services.jobrunner.job_run import JobControl, Tuning
from services.jobrunner.service import error_kinds
from services.jobrunner.storage_client import StorageUnavailable
from services.platform.counts import Counts
from sforg.ids import to18
from tests.jobrunner.fakes import FakeOrg, FakeStorage, FakeTables

ORG = to18("00D000000000001")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
FIELDS = [
    ("Id", "id"),
    ("Name", "string"),
    ("Amount", "double"),
    ("IsDeleted", "boolean"),
    ("SystemModstamp", "datetime"),
]
SMALL = Tuning(chunk_records=70, rest_batch=200, bulk_threshold=200, bulk_page=60)


def stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def rid(n: int) -> str:
    return to18(f"006{n:012d}")


def record(n: int, when: dt.datetime, name: str = "") -> dict[str, Any]:
    return {"Id": rid(n), "Name": name or f"deal {n}", "Amount": float(n), "SystemModstamp": stamp(when)}


def spec(session: str, *, bulk: bool = True, full: bool = False, reconcile_every: bool = False) -> jobs_pb2.JobSpec:
    data = jobs_pb2.DataJob(
        fields=[jobs_pb2.FieldSpec(name=n, sf_type=t) for n, t in FIELDS],
        key_prefix="006",
        full=full,
        bulk_supported=bulk,
        queryall_supported=True,
        has_system_modstamp=True,
        replicateable=True,
    )
    if reconcile_every:
        data.reconcile_every.FromTimedelta(dt.timedelta(seconds=1))
    return jobs_pb2.JobSpec(
        session_id=session,
        job_id="j1",
        type=ev.JOB_TYPE_DATA,
        policy_id="p1",
        object_name="Opportunity",
        salesforce_org_id=ORG,
        data=data,
    )


class World:
    def __init__(self, n: int = 0, tuning: Tuning = SMALL) -> None:
        self.org = FakeOrg(now=T0)
        self.org.put("Opportunity", *(record(i, T0 - dt.timedelta(hours=1)) for i in range(n)))
        self.storage = FakeStorage()
        self.tables = FakeTables()
        self.jobs = JobExecutor(self.storage, self.tables, lambda _spec: self.org, error_kinds(), tuning=tuning)

    def run(self, job: jobs_pb2.JobSpec, attempt: int = 1, control: JobControl | None = None) -> Result:
        return self.jobs.execute(job, control or JobControl(), attempt)

    def held(self) -> dict[str, bool]:
        """Id -> soft-deleted, of what storage holds."""
        return dict(self.storage.stored_ids(ORG, "Opportunity"))

    def later(self, minutes: int) -> None:
        self.org.now += dt.timedelta(minutes=minutes)


def test_a_full_copy_then_an_incremental_window_reads_only_what_changed() -> None:
    w = World(300)
    first = w.run(spec("s1"))
    assert first.outcome == ev.JOB_OUTCOME_SUCCESS, first.message
    assert first.message.startswith("full"), first.message
    assert w.held() == {rid(i): False for i in range(300)}
    assert first.tally.received == 300 and first.tally.new_versions == 300
    w.later(30)
    w.org.put("Opportunity", record(3, w.org.now - dt.timedelta(minutes=10), "renamed"))
    second = w.run(spec("s2"))
    assert second.outcome == ev.JOB_OUTCOME_SUCCESS, second.message
    assert second.message.startswith("incremental"), second.message
    # the window re-reads the overlap: what it finds again is no new version
    assert second.tally.new_versions == 0 and second.tally.changed == 1
    assert second.tally.unchanged == second.tally.received - 1


def test_a_refused_bulk_job_is_read_through_rest_with_a_warning() -> None:
    w = World(300)  # above the Bulk threshold: the REST probe hands over to Bulk, which is refused
    w.org.refuse_bulk = "API_DISABLED_FOR_ORG"
    result = w.run(spec("s1"))
    assert result.outcome == ev.JOB_OUTCOME_WARNING, result.message
    assert "Bulk API unavailable for Opportunity (API_DISABLED_FOR_ORG): read through REST" in result.message
    assert len(w.held()) == 300


def test_bulk_pages_and_expiring_rest_locators_lose_nothing() -> None:
    w = World(450)
    assert w.run(spec("s1")).outcome == ev.JOB_OUTCOME_SUCCESS  # through Bulk, 6 rows a page
    assert len(w.held()) == 450
    w2 = World(450)
    w2.org.expire_locators = True  # every query_more: INVALID_QUERY_LOCATOR; the query is issued again after
    result = w2.run(spec("s1", bulk=False))
    assert result.outcome == ev.JOB_OUTCOME_SUCCESS, result.message
    assert len(w2.held()) == 450 and result.tally.received == 450


def test_the_delete_log_soft_deletes_and_the_id_reconciliation_hard_deletes() -> None:
    w = World(10)
    assert w.run(spec("s1")).outcome == ev.JOB_OUTCOME_SUCCESS
    w.later(30)
    w.org.delete("Opportunity", rid(1), purge=True)  # deleted and purged: only the delete log names it
    w.later(30)
    assert w.run(spec("s2")).outcome == ev.JOB_OUTCOME_SUCCESS
    assert w.held()[rid(1)] is True  # soft-deleted
    w.org.objects["Opportunity"].pop(rid(2))  # gone without a trace: only the Id reconciliation sees it
    w.later(30)
    result = w.run(spec("s3", reconcile_every=True))
    assert "hard-deleted" in result.message, result.message
    assert rid(1) not in w.held() and rid(2) not in w.held() and len(w.held()) == 8


def test_an_attempt_cut_by_a_storage_outage_resumes_after_its_last_stored_chunk() -> None:
    w = World(180)
    w.storage.fail_chunk, w.storage.failure = 2, StorageUnavailable("storage unavailable")
    first = w.run(spec("s1", bulk=False), attempt=1)
    assert (first.outcome, first.disposition) == (0, "nak")  # handed back, not reported
    second = w.run(spec("s1", bulk=False), attempt=2)
    assert second.outcome == ev.JOB_OUTCOME_SUCCESS, second.message
    assert len(w.held()) == 180
    # the second attempt read on after chunk 1: storage received each record once in all
    assert second.tally.received == 180 and second.tally.new_versions == 180
    assert sorted(w.storage.jobs[("s1", "j1")].results) == [1, 2, 3]


def test_a_cancelled_job_reports_cancelled_and_a_terminated_one_nothing() -> None:
    for why, expected in (("cancelled", (ev.JOB_OUTCOME_CANCELLED, "ack")), ("terminated", (0, "term"))):
        w = World(5)
        control = JobControl()
        control.stop(why)
        result = w.run(spec("s1"), control=control)
        assert (result.outcome, result.disposition) == expected
        assert w.held() == {}


def test_the_id_reconciliation_reads_ids_through_rest_when_bulk_is_unavailable() -> None:
    """(was an integration test on sforg: test_salesforce_contract holds a refused Bulk job to sforg's answer)"""
    w = World(300)
    assert w.run(spec("s1")).outcome == ev.JOB_OUTCOME_SUCCESS  # through Bulk
    for n, refusal in enumerate(("API_DISABLED_FOR_ORG", "FEATURENOTENABLED")):
        gone = [rid(2 * n), rid(2 * n + 1)]
        for record_id in gone:
            w.org.objects["Opportunity"].pop(record_id)  # hard-deleted: no recycle bin, no delete log
        w.later(30)
        w.org.refuse_bulk = refusal
        # an incremental: the count check finds fewer in the org and reconciles (a due full copy would take the
        # Ids it read instead: test_count_check)
        done = w.run(spec(f"s-{refusal}"))
        assert done.outcome == ev.JOB_OUTCOME_WARNING, done.message
        assert f"Id reconciliation of Opportunity ({refusal}): Ids read through REST" in done.message, done.message
        assert done.tally.deleted == len(gone)
        assert not any(i in w.held() for i in gone)
    assert set(w.held()) == set(w.org.objects["Opportunity"])


def test_a_rest_query_that_keeps_timing_out_is_read_through_bulk() -> None:
    """QUERY_TIMEOUT still after OrgClient's retries (an ordered query over a large table): not a failed job, the
    same read through Bulk, with a warning, in one attempt (was an integration test on sforg)."""
    w = World(300, Tuning(chunk_records=70, rest_batch=200, bulk_threshold=1_000_000, bulk_page=60))
    w.org.refuse_query = "QUERY_TIMEOUT"
    done = w.run(spec("s1"))
    assert (done.outcome, done.disposition) == (ev.JOB_OUTCOME_WARNING, "ack"), done.message
    assert "REST queries of Opportunity kept timing out (QUERY_TIMEOUT): read through Bulk" in done.message
    assert len(w.held()) == 300


def test_stops_reach_the_running_jobs_they_name_and_are_remembered() -> None:
    stops = Stops()
    mine, other, elsewhere = JobControl(), JobControl(), JobControl()
    stops.controls.update({("s1", "j1"): mine, ("s1", "j2"): other, ("s2", "j1"): elsewhere})
    stops.apply("JobTerminated", "s1", "j1")
    assert (mine.why, other.why, elsewhere.why) == ("terminated", None, None)
    stops.apply("SessionCancelled", "s1", "")
    assert (mine.why, other.why, elsewhere.why) == ("terminated", "cancelled", None)  # a termination outranks
    assert stops.known("s1", "j9") == "cancelled" and stops.known("s2", "j1") is None
    stops.apply("SessionFailed", "s1", "")
    assert stops.known("s1", "j9") == "cancelled"  # the first ending of a session is the one that counts
    stops.stop_all("shutdown")
    assert elsewhere.why == "shutdown"


def test_a_job_handed_back_at_its_last_delivery_ends_in_error_and_is_reported() -> None:
    handed_back = Result(0, "storage unavailable", Counts(received=3), 2, "nak")
    assert settled(handed_back, 2, max_deliver=6) is handed_back
    last = settled(handed_back, 6, max_deliver=6)
    assert (last.outcome, last.disposition, last.chunks) == (ev.JOB_OUTCOME_ERROR, "ack", 2)
    event = finished(Result(ev.JOB_OUTCOME_WARNING, "x" * 3000, Counts(received=3, changed=1), 2, "ack"))
    assert len(event.message) == 2000 and event.counts.received == 3 and event.counts.changed == 1
