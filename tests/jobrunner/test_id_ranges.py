"""Data jobs over Id ranges (issue 21: one large object split across jobrunner replicas), on the fakes of the
job's ports: each range's job reads, stores and judges only the records of its range. Its Id reconciliation
never hard-deletes a record of another range (which its own range query cannot return), its delete log marks
only its own Ids, and the three ranges' jobs together store every record exactly once; each range keeps its
own mark."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2
from sfvault.storage.v1 import storage_pb2 as spb

from services.jobrunner.application import JobExecutor, Result
from services.jobrunner.job_run import JobControl
from services.jobrunner.service import error_kinds
from tests.jobrunner.fakes import FakeOrg, FakeStorage, FakeTables
from tests.jobrunner.test_count_check import OBJ, ORG, SMALL, T0, record, rid, spec

# [..., rid(10)), [rid(10), rid(20)), [rid(20), ...): 30 records, ten a range
RANGES = [("", rid(10)), (rid(10), rid(20)), (rid(20), "")]


def range_spec(session: str, index: int, *, reconcile: bool = False) -> jobs_pb2.JobSpec:
    id_from, id_to = RANGES[index]
    job: jobs_pb2.JobSpec = spec(session, id_from=id_from, id_to=id_to, reconcile=reconcile)
    job.job_id = f"data-{OBJ}-{index + 1}"
    return job


class World:
    """30 Opportunities backed up by three range jobs (full reads), the org's clock 30 minutes on."""

    def __init__(self) -> None:
        self.org = FakeOrg(now=T0)
        self.org.put(OBJ, *(record(i, T0 - dt.timedelta(hours=1)) for i in range(30)))
        self.storage = FakeStorage()
        self.tables = FakeTables()
        self.jobs = JobExecutor(self.storage, self.tables, lambda _spec: self.org, error_kinds(), tuning=SMALL)
        self.first = [self.run(range_spec("s0", i)) for i in range(3)]
        self.org.now += dt.timedelta(minutes=30)

    def run(self, job: jobs_pb2.JobSpec) -> Result:
        return self.jobs.execute(job, JobControl(), 1)

    def stored_by(self, session: str, index: int) -> list[str]:
        contents = self.storage.jobs[(session, f"data-{OBJ}-{index + 1}")].contents.values()
        return [p.record_id for c in contents if isinstance(c, list) for p in c]

    def marked(self, session: str, index: int, state: int) -> list[str]:
        contents = self.storage.jobs[(session, f"data-{OBJ}-{index + 1}")].contents.values()
        return [i for c in contents if isinstance(c, tuple) and c[1] == state for i in c[0]]

    def held(self) -> dict[str, Any]:
        return dict(self.storage.stored_ids(ORG, OBJ))


def test_three_range_jobs_store_every_record_exactly_once_each_its_own() -> None:
    w = World()
    assert [r.outcome for r in w.first] == [ev.JOB_OUTCOME_SUCCESS] * 3, [r.message for r in w.first]
    stored = [w.stored_by("s0", i) for i in range(3)]
    assert [sorted(s) for s in stored] == [sorted(rid(n) for n in range(a, a + 10)) for a in (0, 10, 20)]
    assert sum(len(s) for s in stored) == 30 == len(w.held())
    assert [r.tally.new_versions for r in w.first] == [10, 10, 10]
    # each range its own mark: the next session's jobs read windows
    for i, (id_from, id_to) in enumerate(RANGES):
        assert w.tables.marks("p1", OBJ, id_from, id_to).mark is not None, i
    assert w.tables.marks("p1", OBJ).mark is None  # the whole object has none


def test_a_range_reconciliation_never_hard_deletes_the_records_of_other_ranges() -> None:
    w = World()
    # hard-deleted in the org (no recycle bin, no delete log): one record of the first range, one of the third
    for n in (4, 25):
        w.org.objects[OBJ].pop(rid(n))
    w.org.queries.clear()
    middle = w.run(range_spec("s1", 1, reconcile=True))
    assert middle.outcome == ev.JOB_OUTCOME_SUCCESS, middle.message
    # it judged its range only: every record storage holds outside it is left alone
    assert "reconciled 10 Ids, 0 hard-deleted" in middle.message, middle.message
    assert w.marked("s1", 1, spb.DELETED_STATE_HARD) == [] and rid(4) in w.held() and rid(25) in w.held()
    # the org's Ids came from its range's full read (every query of the job has the range), never the object's
    assert w.org.queries and all(f"Id >= '{rid(10)}'" in q and f"Id < '{rid(20)}'" in q for q in w.org.queries)
    low = w.run(range_spec("s1", 0, reconcile=True))
    assert "reconciled 9 Ids, 1 hard-deleted" in low.message, low.message
    assert w.marked("s1", 0, spb.DELETED_STATE_HARD) == [rid(4)] and rid(25) in w.held()
    high = w.run(range_spec("s1", 2, reconcile=True))
    assert w.marked("s1", 2, spb.DELETED_STATE_HARD) == [rid(25)], high.message
    assert set(w.held()) == set(w.org.objects[OBJ])


def test_a_range_s_delete_log_marks_only_its_own_ids() -> None:
    w = World()
    # deleted and purged within the window: the delete log names them, the window's read cannot return them
    w.org.delete(OBJ, rid(3), purge=True)
    w.org.delete(OBJ, rid(15), purge=True)
    w.org.delete(OBJ, rid(27), purge=True)
    w.org.now += dt.timedelta(minutes=10)
    done = [w.run(range_spec("s1", i)) for i in range(3)]
    assert [r.outcome for r in done] == [ev.JOB_OUTCOME_SUCCESS] * 3, [r.message for r in done]
    assert [w.marked("s1", i, spb.DELETED_STATE_SOFT) for i in range(3)] == [[rid(3)], [rid(15)], [rid(27)]]
    # the first two ranges' count checks saw the whole object differ (the later ranges' deletes not stored yet):
    # each reconciled its own range, and found its own purged record gone for good; never another range's
    assert [w.marked("s1", i, spb.DELETED_STATE_HARD) for i in range(3)] == [[rid(3)], [rid(15)], []]
    assert "its Id range reconciled" in done[0].message and "reconciled" not in done[2].message, done[2].message
    assert set(w.held()) == set(w.org.objects[OBJ]) | {rid(27)}  # the last one soft: hard at its reconciliation


def test_records_created_above_the_highest_range_bound_go_to_the_open_top_range() -> None:
    w = World()
    w.org.put(OBJ, *(record(n, w.org.now - dt.timedelta(minutes=20)) for n in (40, 41)))
    w.org.now += dt.timedelta(minutes=10)
    done = [w.run(range_spec("s1", i)) for i in range(3)]
    assert [r.tally.new_versions for r in done] == [0, 0, 2], [r.message for r in done]
    assert sorted(w.stored_by("s1", 2)) == [rid(40), rid(41)]


def test_a_hard_delete_in_one_range_is_found_by_that_range_s_count_check() -> None:
    """No delete log, nothing in any window: the whole object's count differs, each range reconciles its own
    range until the one holding the delete marks it; a range after that finds the counts equal again."""
    w = World()
    w.org.objects[OBJ].pop(rid(14))
    done = [w.run(range_spec("s1", i)) for i in range(3)]
    assert [r.outcome for r in done] == [ev.JOB_OUTCOME_SUCCESS] * 3, [r.message for r in done]
    assert [w.marked("s1", i, spb.DELETED_STATE_HARD) for i in range(3)] == [[], [rid(14)], []]
    assert "reconciled 10 Ids, 0 hard-deleted" in done[0].message, done[0].message
    assert "reconciled 9 Ids, 1 hard-deleted" in done[1].message, done[1].message
    assert "count check: 29 records in the org and the backup" in done[2].message, done[2].message
    assert set(w.held()) == set(w.org.objects[OBJ])
