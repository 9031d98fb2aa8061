"""The count check that ends every incremental data job (issue 18, "hard deletes noticed on every run, cheaply"),
on the fakes of the job's ports: counts equal cost one API call and nothing more; a hard delete (no delete log,
no change in the window) is found by the Id reconciliation the check runs, and the Id is marked HARD; a count
that still differs ends the job WARNING naming the object and both counts; records created while the job runs
are not a disagreement. And the port's count_live: the fake and StorageClient (CountLive on the storage service)
count alike."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2
from sfvault.storage.v1 import storage_pb2 as spb

from services.jobrunner.application import JobExecutor, Result
from services.jobrunner.deletes import count_disagreement, count_soql
from services.jobrunner.domain import parse_sf_datetime
from services.jobrunner.job_run import JobControl, Tuning
from services.jobrunner.ports import SalesforceReads
from services.jobrunner.service import error_kinds
from services.jobrunner.storage_client import StorageUnavailable
from sforg.ids import to18
from sforg.testing import Admin
from tests.jobrunner.fakes import FakeOrg, FakeStorage, FakeTables
from tests.jobrunner.test_salesforce_contract import reads as reads  # the fixture: the fake org, then sforg
from tests.jobrunner.test_storage_contract import ORG as SORG
from tests.jobrunner.test_storage_contract import SCHEMA, Calls, parts
from tests.jobrunner.test_storage_contract import calls as calls  # the fixture: the fake, then the storage service
from tests.jobrunner.test_storage_contract import rid as srid

ORG = to18("00D000000000001")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
FIELDS = [
    ("Id", "id"),
    ("Name", "string"),
    ("IsDeleted", "boolean"),
    ("CreatedDate", "datetime"),
    ("SystemModstamp", "datetime"),
]
SMALL = Tuning(chunk_records=70, rest_batch=200, bulk_threshold=200, bulk_page=60)
OBJ = "Opportunity"


def stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def rid(n: int) -> str:
    return to18(f"006{n:012d}")


def record(n: int, created: dt.datetime, modified: dt.datetime | None = None) -> dict[str, Any]:
    return {
        "Id": rid(n),
        "Name": f"deal {n}",
        "CreatedDate": stamp(created),
        "SystemModstamp": stamp(modified or created),
    }


def spec(session: str, *, full: bool = False, id_from: str = "", id_to: str = "", reconcile: bool = False) -> Any:
    data = jobs_pb2.DataJob(
        fields=[jobs_pb2.FieldSpec(name=n, sf_type=t) for n, t in FIELDS],
        key_prefix="006",
        full=full,
        bulk_supported=True,
        queryall_supported=True,
        has_system_modstamp=True,
        replicateable=True,
        id_from=id_from,
        id_to=id_to,
    )
    if reconcile:
        data.reconcile_every.FromTimedelta(dt.timedelta(seconds=1))
    return jobs_pb2.JobSpec(
        session_id=session,
        job_id="j1",
        type=ev.JOB_TYPE_DATA,
        policy_id="p1",
        object_name=OBJ,
        salesforce_org_id=ORG,
        data=data,
    )


class World:
    """An org of `n` Opportunities backed up once (a full copy), its clock 30 minutes on."""

    def __init__(self, n: int = 20) -> None:
        self.org = FakeOrg(now=T0)
        self.org.put(OBJ, *(record(i, T0 - dt.timedelta(hours=1)) for i in range(n)))
        self.storage = FakeStorage()
        self.tables = FakeTables()
        self.jobs = JobExecutor(self.storage, self.tables, lambda _spec: self.org, error_kinds(), tuning=SMALL)
        first = self.run(spec("s0"))
        assert first.outcome == ev.JOB_OUTCOME_SUCCESS and first.message.startswith("full"), first.message
        assert "count check" not in first.message  # a full copy is every record: nothing to check
        self.later(30)
        self.org.queries.clear()
        self.storage.counted.clear()

    def run(self, job: jobs_pb2.JobSpec) -> Result:
        return self.jobs.execute(job, JobControl(), 1)

    def later(self, minutes: int) -> None:
        self.org.now += dt.timedelta(minutes=minutes)

    def held(self) -> dict[str, bool]:
        return dict(self.storage.stored_ids(ORG, OBJ))

    def counts(self) -> list[str]:
        return [q for q in self.org.queries if q.startswith("SELECT COUNT() ")]

    def id_queries(self) -> list[str]:
        return [q for q in self.org.queries if q.startswith("SELECT Id FROM")]

    def hard_marked(self, session: str) -> list[str]:
        contents = self.storage.jobs[(session, "j1")].contents.values()
        return [i for c in contents if isinstance(c, tuple) and c[1] == spb.DELETED_STATE_HARD for i in c[0]]


def test_equal_counts_cost_one_call_and_nothing_more() -> None:
    w = World()
    w.org.put(OBJ, record(3, T0 - dt.timedelta(hours=1), w.org.now - dt.timedelta(minutes=10)))  # a change
    calls = w.org.api_calls
    done = w.run(spec("s1"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert "count check: 20 records in the org and the backup" in done.message, done.message
    # one COUNT() (the window's end bounds CreatedDate), one CountLive, no Id reconciliation
    end = w.org.now - dt.timedelta(minutes=5)
    assert w.counts() == [f"SELECT COUNT() FROM {OBJ} WHERE CreatedDate <= {end:%Y-%m-%dT%H:%M:%S}.000Z"]
    assert w.storage.counted == [OBJ] and w.id_queries() == []
    # the window's read, the delete log, the count: one call (/composite, services.jobrunner.prefetch)
    assert w.org.api_calls - calls == 1 and w.org.composite_calls == 1 and len(w.org.queries) == 2


def test_a_hard_delete_is_found_by_the_reconciliation_the_count_check_runs() -> None:
    w = World()
    gone = [rid(4), rid(7), rid(11)]
    for record_id in gone:
        w.org.objects[OBJ].pop(record_id)  # hard-deleted: no recycle bin, no delete log, nothing in the window
    done = w.run(spec("s1"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert "reconciled 17 Ids, 3 hard-deleted" in done.message, done.message
    assert "count check: 17 records in the org and the backup after the Id reconciliation" in done.message
    assert sorted(w.hard_marked("s1")) == sorted(gone)  # marked HARD in storage, nothing else
    assert set(w.held()) == set(w.org.objects[OBJ]) and done.tally.deleted == 3
    assert len(w.counts()) == 2 and w.storage.counted == [OBJ, OBJ] and len(w.id_queries()) == 1
    # the next session: counts equal again, one call
    w.later(30)
    w.org.queries.clear()
    again = w.run(spec("s2"))
    assert again.outcome == ev.JOB_OUTCOME_SUCCESS and len(w.counts()) == 1 and w.id_queries() == [], again.message


def test_a_count_that_still_differs_ends_the_job_warning_naming_the_object_and_both_counts() -> None:
    w = World()
    # deleted into the recycle bin while the job runs: after the window's end, before the count
    deleted = w.org.objects[OBJ][rid(5)]
    deleted.update(IsDeleted=True, SystemModstamp=stamp(w.org.now))
    done = w.run(spec("s1"))
    assert done.outcome == ev.JOB_OUTCOME_WARNING, done.message
    assert (
        f"count check of {OBJ}: 19 records in the org, 20 in the backup after the Id reconciliation" in done.message
    ), done.message
    assert "deleted while the backup ran" in done.message
    assert w.hard_marked("s1") == [] and rid(5) in w.held()  # the reconciliation ran and found nothing gone
    assert len(w.id_queries()) == 1 and len(w.counts()) == 2


def test_more_records_in_the_org_is_a_warning_without_a_reconciliation() -> None:
    w = World()
    # created before the window's end, changed after it: the window did not read it, the count has it
    w.org.put(OBJ, record(50, w.org.now - dt.timedelta(minutes=20), w.org.now - dt.timedelta(minutes=1)))
    done = w.run(spec("s1"))
    assert done.outcome == ev.JOB_OUTCOME_WARNING, done.message
    assert f"count check of {OBJ}: 21 records in the org, 20 in the backup: the backup lacks 1" in done.message
    assert w.id_queries() == [] and len(w.counts()) == 1


def test_records_created_while_the_job_runs_are_not_a_disagreement() -> None:
    w = World()
    w.org.put(OBJ, *(record(60 + i, w.org.now - dt.timedelta(minutes=1)) for i in range(4)))  # past the end
    done = w.run(spec("s1"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert "count check: 20 records in the org and the backup" in done.message
    assert w.id_queries() == []


def test_a_due_reconciliation_is_a_full_copy_and_no_count_check_on_top() -> None:
    w = World()
    w.org.objects[OBJ].pop(rid(2))
    done = w.run(spec("s1", reconcile=True))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert done.message.startswith("full") and "1 hard-deleted" in done.message, done.message
    assert "count check" not in done.message and w.counts() == []
    assert w.id_queries() == []  # the full copy read every Id: the reconciliation asks the org for none


def test_a_due_full_copy_resumed_mid_read_asks_the_org_for_its_ids() -> None:
    """The attempt that resumes after a stored chunk did not read every Id itself: the reconciliation queries
    them (no record of the first attempt's part is judged hard-deleted)."""
    w = World(190)  # three chunks of 70, read through REST
    w.org.objects[OBJ].pop(rid(150))
    w.storage.fail_chunk, w.storage.failure = 2, StorageUnavailable("storage unavailable")
    first = w.jobs.execute(spec("s1", reconcile=True), JobControl(), 1)
    assert (first.outcome, first.disposition) == (0, "nak"), first.message
    done = w.jobs.execute(spec("s1", reconcile=True), JobControl(), 2)
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert "1 hard-deleted" in done.message, done.message
    assert len(w.id_queries()) == 1
    assert set(w.held()) == {rid(i) for i in range(190) if i != 150}


@pytest.mark.parametrize("code", ["MALFORMED_QUERY", "QUERY_TIMEOUT"])
def test_a_count_salesforce_will_not_give_leaves_the_job_as_it_was(code: str) -> None:
    """Refused, or still timing out after OrgClient's retries: a note in the result, never a failed job."""
    w = World()
    w.org.refuse_count = code
    done = w.run(spec("s1"))
    assert (done.outcome, done.disposition) == (ev.JOB_OUTCOME_SUCCESS, "ack"), done.message
    assert f"count check unavailable ({code})" in done.message
    assert w.storage.counted == []


def test_an_org_unreachable_at_the_count_hands_the_job_back() -> None:
    w = World()
    w.org.refuse_count = "SERVER_UNAVAILABLE"
    done = w.run(spec("s1"))
    assert (done.outcome, done.disposition) == (0, "nak"), done.message
    w.org.refuse_count = ""
    again = w.run(spec("s1"))  # the next attempt: everything stored already, the check runs
    assert again.outcome == ev.JOB_OUTCOME_SUCCESS and "count check: 20 records" in again.message, again.message


def test_a_range_jobs_first_copy_of_its_range_is_not_checked() -> None:
    """A range's first copy (its marks are its own: a full read) has no count check, as a whole object's first
    copy has none; a range's incrementals count the whole object (tests/jobrunner/test_id_ranges.py)."""
    w = World()
    done = w.run(spec("s1", id_from=rid(0), id_to=rid(10)))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert w.counts() == [] and w.storage.counted == [] and "count check" not in done.message


@pytest.mark.parametrize(
    ("org", "backup", "reconciled", "says"),
    [
        (5, 5, False, ""),
        (6, 5, False, "count check of Lead: 6 records in the org, 5 in the backup: the backup lacks 1 records"),
        (4, 5, True, "count check of Lead: 4 records in the org, 5 in the backup after the Id reconciliation: 1"),
    ],
)
def test_what_a_disagreement_says(org: int, backup: int, reconciled: bool, says: str) -> None:
    text = count_disagreement("Lead", org, backup, reconciled=reconciled)
    assert text.startswith(says) and bool(text) == bool(says)


def test_the_count_query() -> None:
    assert count_soql("Lead", None) == "SELECT COUNT() FROM Lead"
    end = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    assert count_soql("Lead", end) == "SELECT COUNT() FROM Lead WHERE CreatedDate <= 2026-01-02T03:04:05.678Z"


# ---------------------------------------------------------------- CountLive: the fake and the client alike


async def test_count_live_counts_what_is_held_live_fake_and_storage_alike(calls: Calls) -> None:
    assert await calls(calls.storage.count_live, SORG, "Opportunity") == 0  # nothing stored yet: none
    await calls.begin("s1")
    await calls(calls.storage.put_schema, SORG, "s1", SCHEMA)
    await calls.put("s1", 1, parts((1, "a", False), (2, "b", False), (3, "c", True), (4, "d", False)))
    assert await calls(calls.storage.count_live, SORG, "Opportunity") == 3  # a soft-deleted record is not live
    await calls.delete("s1", 2, [srid(2)], spb.DELETED_STATE_HARD)
    assert await calls(calls.storage.count_live, SORG, "Opportunity") == 2
    await calls.delete("s1", 3, [srid(4)], spb.DELETED_STATE_SOFT)
    assert await calls(calls.storage.count_live, SORG, "Opportunity") == 1


# ---------------------------------------------------------------- COUNT(): the fake org and sforg alike


@pytest.fixture(scope="module")
def accounts(admin: Admin) -> None:
    """Accounts created at two org times, a few in the recycle bin: before `reads` loads the fake from the truth."""
    admin.create("Account", n=30)
    admin.advance_clock(3600)
    admin.create("Account", n=20)
    admin.soft_delete("Account", n=4)


@pytest.mark.integration
def test_the_count_of_live_records_created_by_a_time_fake_and_sforg_alike(
    accounts: None, reads: SalesforceReads, admin: Admin
) -> None:
    truth = admin.ground_truth(objects=["Account"])
    live = truth["objects"]["Account"]
    assert truth["recycle_bin"]["Account"]  # the recycle bin is not counted
    whole = reads.query_page(count_soql("Account", None), query_all=False)
    assert (whole.total_size, whole.records) == (len(live), [])
    created = sorted(parse_sf_datetime(str(r["CreatedDate"])) for r in live.values())
    cut = created[len(created) // 2]
    bounded = reads.query_page(count_soql("Account", cut), query_all=False)
    assert bounded.total_size == sum(1 for c in created if c <= cut)  # Salesforce's datetimes: milliseconds
    assert 0 < bounded.total_size < len(live)
