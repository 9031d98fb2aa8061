"""The restore job on the fakes (milliseconds): the per-record decisions against the target's state, the Id map
re-linking children of re-created parents, a dry run that writes nothing, a resume after a create whose answer
was lost (its intent resolved, nothing created twice), failed records that do not stop the rest, the owner
fallback, a retry of the Failed records, masking for another org, and the read-back proof."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2
from sfvault.restore.v1 import restore_pb2 as rpb

from services.jobrunner.application import JobExecutor, Result, finished
from services.jobrunner.job_run import JobControl, Tuning
from services.jobrunner.service import error_kinds
from sforg.testing import Admin
from tests.jobrunner.conftest import Stack, connection, data_spec
from tests.jobrunner.fakes import FakeRestoreStorage, FakeTables, FakeWriteOrg, describe_field

SOURCE = "00D000000000001AAA"
OTHER = "00D000000000002AAA"
T0 = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
DAMAGE = dt.datetime(2026, 2, 10, tzinfo=dt.UTC)
OWNER = "005000000000002AAA"


def acc(n: int) -> str:
    return f"001{n:012d}AAA"


def con(n: int) -> str:
    return f"003{n:012d}AAA"


def account(n: int, **kw: Any) -> dict[str, Any]:
    return {"Id": acc(n), "Name": f"Account {n}", "Phone": f"555-{n:04d}", "OwnerId": OWNER, **kw}


def contact(n: int, parent: int, **kw: Any) -> dict[str, Any]:
    return {"Id": con(n), "LastName": f"Contact {n}", "Email": f"c{n}@example.org", "AccountId": acc(parent), **kw}


def spec(session: str = "s1", *, target: str = SOURCE, **restore: Any) -> jobs_pb2.JobSpec:
    selections = restore.pop("selections", None)
    if selections is None:
        sel = rpb.RestoreSelection(object_name="Account")
        sel.deleted_since.FromDatetime(DAMAGE)
        changed = rpb.RestoreSelection(object_name="Account")
        changed.changed_since.FromDatetime(DAMAGE)
        selections = [sel, changed]
    rs = rpb.RestoreSpec(source_org_id="o1", target_org_id="o2", selections=selections, **restore)
    rs.as_of.FromDatetime(DAMAGE - dt.timedelta(hours=1))
    return jobs_pb2.JobSpec(
        session_id=session,
        job_id="restore",
        type=ev.JOB_TYPE_RESTORE,
        org_id="o1",
        salesforce_org_id=SOURCE,
        restore=jobs_pb2.RestoreJob(spec=rs, target_salesforce_org_id=target),
    )


def world() -> tuple[FakeRestoreStorage, FakeWriteOrg]:
    """The backup: accounts 1-6 with contacts 11-16 (one each). The org since the damage: account 1 in the recycle
    bin with its contact, account 2 and its contact purged, account 3's phone changed, accounts 4-6 untouched."""
    storage = FakeRestoreStorage()
    org = FakeWriteOrg()
    accounts = [account(n) for n in range(1, 7)]
    contacts = [contact(10 + n, n) for n in range(1, 7)]
    org.put("Account", *accounts)
    org.put("Contact", *contacts)
    for a in accounts:
        n = int(a["Id"][3:15])
        when = {"deleted_at": DAMAGE + dt.timedelta(hours=1)} if n in (1, 2) else {}
        if n == 3:
            when = {"changed_at": DAMAGE + dt.timedelta(hours=1)}
        storage.back_up(SOURCE, "Account", a, **when)
    for c in contacts:
        parent = int(c["AccountId"][3:15])
        when = {"deleted_at": DAMAGE + dt.timedelta(hours=1)} if parent in (1, 2) else {}
        storage.back_up(SOURCE, "Contact", c, **when)
    org.delete("Account", acc(1))
    org.delete("Account", acc(2), purge=True)
    org.records["Account"][acc(3)]["Phone"] = "000"
    return storage, org


def execute(storage: FakeRestoreStorage, org: FakeWriteOrg, job: jobs_pb2.JobSpec, attempt: int = 1) -> Result:
    executor = JobExecutor(
        storage, FakeTables(), lambda _spec: org, error_kinds(), tuning=Tuning(bulk_threshold=2000), mask_secret=b"k"
    )
    return executor.execute(job, JobControl(), attempt)


def states(storage: FakeRestoreStorage, session: str) -> dict[str, int]:
    return {sid: o.state for sid, o in storage.outcomes[session].items()}


def counts(result: Result) -> dict[str, tuple[int, int, int, int, int]]:
    return {c.object_name: (c.created, c.updated, c.undeleted, c.skipped, c.failed) for c in result.restore}


def test_each_record_is_decided_against_the_target_and_children_follow_their_new_parent() -> None:
    storage, org = world()
    result = execute(storage, org, spec())
    assert result.outcome == ev.JOB_OUTCOME_SUCCESS, result.message
    got = states(storage, "s1")
    assert got[acc(1)] == rpb.RECORD_STATE_UNDELETED
    assert got[acc(2)] == rpb.RECORD_STATE_CREATED
    assert got[acc(3)] == rpb.RECORD_STATE_UPDATED
    # account 1's contact was in the recycle bin when the restore started: Undeleted (it came back with its
    # account's undelete, not undeleted twice); account 2's contact re-created under the new Id
    assert got[con(11)] == rpb.RECORD_STATE_UNDELETED
    assert got[con(12)] == rpb.RECORD_STATE_CREATED
    new_account = storage.outcomes["s1"][acc(2)].target_id
    new_contact = storage.outcomes["s1"][con(12)].target_id
    assert new_account != acc(2) and org.records["Account"][new_account]["Name"] == "Account 2"
    assert org.records["Contact"][new_contact]["AccountId"] == new_account
    assert org.records["Account"][acc(3)]["Phone"] == "555-0003"
    assert storage.outcomes["s1"][acc(3)].changed_fields == ["Phone"]
    assert list(storage.outcomes["s1"][acc(2)].changed_fields) == []  # created whole: no fields listed
    assert storage.get_id_map(SOURCE, SOURCE, [acc(2), con(12)]) == {acc(2): new_account, con(12): new_contact}
    assert result.verification is not None and result.verification.done and result.verification.verified
    # the children (2 levels down) of the changed account 3 are in the scope too: its contact is as it was
    assert got[con(13)] == rpb.RECORD_STATE_SKIPPED
    assert result.verification.matching == 6 and result.verification.differing == 0
    assert counts(result) == {"Account": (1, 1, 1, 0, 0), "Contact": (1, 0, 1, 1, 0)}
    event = finished(result)
    assert event.verification.verified and {c.object_name for c in event.restore} == {"Account", "Contact"}

    # the same restore again: the org already holds the backup's state, nothing is written
    writes = org.write_calls
    again = execute(storage, org, spec("s2"))
    assert again.outcome == ev.JOB_OUTCOME_SUCCESS, again.message
    assert set(states(storage, "s2").values()) == {rpb.RECORD_STATE_SKIPPED}
    assert org.write_calls == writes
    assert len(org.live("Account")) == 6 and len(org.live("Contact")) == 6


def test_a_dry_run_predicts_the_real_run_and_writes_nothing() -> None:
    storage, org = world()
    preview = execute(storage, org, spec("dry", dry_run=True))
    assert preview.outcome == ev.JOB_OUTCOME_SUCCESS, preview.message
    assert org.write_calls == 0
    assert org.records["Account"][acc(1)]["IsDeleted"] and acc(2) not in org.records["Account"]
    assert preview.verification is not None and not preview.verification.done
    assert storage.get_id_map(SOURCE, SOURCE, []) == {}
    real = execute(storage, org, spec("real"))
    assert counts(preview) == counts(real)
    assert states(storage, "dry") == states(storage, "real")


def test_a_create_whose_answer_was_lost_is_found_not_created_again() -> None:
    storage, org = world()
    org.lose_create_answer = 1  # Account 2's create reaches the org, its answer does not come back
    first = execute(storage, org, spec())
    assert first.disposition == "nak" and first.outcome == 0, first.message
    assert [i.batch_key for i in storage.list_restore_intents("s1", "restore")] == ["Account:create:2.1"]
    second = execute(storage, org, spec(), attempt=2)
    assert second.outcome == ev.JOB_OUTCOME_SUCCESS, second.message
    assert [r["Id"] for r in org.live("Account") if r["Name"] == "Account 2"] == [
        storage.outcomes["s1"][acc(2)].target_id
    ]
    assert "answer was lost" in storage.outcomes["s1"][acc(2)].note
    assert storage.list_restore_intents("s1", "restore") == []
    assert len([r for r in org.live("Contact") if r["LastName"] == "Contact 12"]) == 1
    assert counts(second)["Account"] == (1, 1, 1, 0, 0)


def test_failed_records_do_not_stop_the_rest_and_a_retry_takes_only_them() -> None:
    storage, org = world()
    # account 5 and 6 purged; the backup of 5 has no Name (the org requires one), 6 has an inactive owner
    storage.back_up(SOURCE, "Account", account(5, Name=None), deleted_at=DAMAGE + dt.timedelta(hours=1))
    storage.back_up(SOURCE, "Account", account(6, OwnerId="005000000000003AAA"), deleted_at=DAMAGE)
    org.inactive_users.add("005000000000003AAA")
    org.delete("Account", acc(5), purge=True)
    org.delete("Account", acc(6), purge=True)
    result = execute(storage, org, spec())
    assert result.outcome == ev.JOB_OUTCOME_WARNING, result.message
    failed = storage.outcomes["s1"][acc(5)]
    assert failed.state == rpb.RECORD_STATE_FAILED and failed.error_code == "REQUIRED_FIELD_MISSING"
    owner = storage.outcomes["s1"][acc(6)]
    assert owner.state == rpb.RECORD_STATE_CREATED and "owner replaced" in owner.note
    assert org.records["Account"][owner.target_id]["OwnerId"] == org.user
    assert states(storage, "s1")[acc(2)] == rpb.RECORD_STATE_CREATED
    # contact 15's parent failed: it is re-created with its (optional) lookup left empty, and says so
    assert storage.outcomes["s1"][con(15)].state == rpb.RECORD_STATE_CREATED
    assert "AccountId" in storage.outcomes["s1"][con(15)].note
    assert "1 record(s) failed" in result.message

    # the user fixes the cause; the retry re-runs the Failed record only
    storage.back_up(SOURCE, "Account", account(5), deleted_at=DAMAGE + dt.timedelta(hours=1))
    retry = execute(storage, org, spec("s2", retry_of="s1", selections=[]))
    assert retry.outcome == ev.JOB_OUTCOME_SUCCESS, retry.message
    assert states(storage, "s2") == {acc(5): rpb.RECORD_STATE_CREATED}


def test_another_org_gets_masked_values_and_upserts_on_the_external_id() -> None:
    storage, _org = world()
    target = FakeWriteOrg()
    target.put("Account", {"Id": acc(500), "Name": "Seeded", "Ext__c": "E1", "OwnerId": target.user})
    storage.back_up(SOURCE, "Account", account(1, Ext__c="E1"), deleted_at=DAMAGE + dt.timedelta(hours=1))
    masks = [rpb.MaskRule(object_name="Account", field="Phone", rule="phone")]
    all_accounts = [rpb.RestoreSelection(object_name="Account", all=True)]
    result = execute(
        storage,
        target,
        spec(target=OTHER, selections=all_accounts, masks=masks, match_on="Ext__c", owner_map={OWNER: target.user}),
    )
    assert result.outcome == ev.JOB_OUTCOME_SUCCESS, result.message
    phones = {str(r.get("Phone")) for r in target.live("Account")}
    assert not phones & {f"555-{n:04d}" for n in range(1, 7)}
    assert target.records["Account"][acc(500)]["Name"] == "Account 1"  # matched on Ext__c, updated in place
    assert len(target.live("Account")) == 6
    contacts = {r["LastName"]: r for r in target.live("Contact")}
    new_of = storage.get_id_map(SOURCE, OTHER, [])
    assert contacts["Contact 12"]["AccountId"] == new_of[acc(2)]


def test_a_large_selection_is_read_and_written_in_bulk() -> None:
    storage, org = world()
    for n in range(20, 60):  # 40 more accounts purged since the backup
        storage.back_up(SOURCE, "Account", account(n), deleted_at=DAMAGE + dt.timedelta(hours=1))
    executor = JobExecutor(
        storage, FakeTables(), lambda _spec: org, error_kinds(), tuning=Tuning(bulk_threshold=10), mask_secret=b"k"
    )
    calls: list[str] = []
    bulk_ingest, query_object = org.bulk_ingest, org.query_object
    org.bulk_ingest = lambda *a, **kw: calls.append("ingest") or bulk_ingest(*a, **kw)  # type: ignore[method-assign]
    org.query_object = lambda *a, **kw: calls.append("bulk read") or query_object(*a, **kw)  # type: ignore[method-assign]
    result = executor.execute(spec(), JobControl(), 1)
    assert result.outcome == ev.JOB_OUTCOME_SUCCESS, result.message
    # the state of the 42 deleted/changed accounts in one Bulk read, their creates in one ingest job, the proof in
    # one Bulk read again
    assert calls.count("ingest") == 1 and calls.count("bulk read") == 2
    assert counts(result)["Account"] == (41, 1, 1, 0, 0)
    assert result.verification is not None and result.verification.verified
    assert result.verification.matching == 43 + 3
    assert len(org.live("Account")) == 6 + 40


def test_batches_written_behind_the_next_ones_decisions_restore_each_record_once_with_its_parent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large selection in several Bulk batches, each written while the next is decided: every record created
    once, each pointing at its parent's new Id (a parent in the batch before or after: the second pass), the
    proof matching."""
    from services.jobrunner import restore_job

    monkeypatch.setattr(restore_job, "big_batch", lambda _fields, _records: 7)
    storage, org = world()
    for n in range(20, 60):  # purged since the backup, each the child of the one before it
        parent = {"ParentId": acc(n - 1)} if n > 20 else {}
        storage.back_up(SOURCE, "Account", account(n, **parent), deleted_at=DAMAGE + dt.timedelta(hours=1))
    executor = JobExecutor(
        storage, FakeTables(), lambda _spec: org, error_kinds(), tuning=Tuning(bulk_threshold=10), mask_secret=b"k"
    )
    calls: list[str] = []
    patched: list[str] = []
    create, update, bulk_ingest = org.create, org.update, org.bulk_ingest
    org.create = lambda *a, **kw: calls.append("create") or create(*a, **kw)  # type: ignore[method-assign]

    def updates(obj: str, records: list[dict[str, Any]]) -> Any:
        patched.extend(str(r["Id"]) for r in records if "ParentId" in r)
        return update(obj, records)

    def ingest(obj: str, operation: str, records: list[dict[str, Any]], **kw: Any) -> Any:
        if operation == "update":
            patched.extend(str(r["Id"]) for r in records if "ParentId" in r)
        return bulk_ingest(obj, operation, records, **kw)

    org.update, org.bulk_ingest = updates, ingest  # type: ignore[method-assign]
    result = executor.execute(spec(), JobControl(), 1)
    assert result.outcome == ev.JOB_OUTCOME_SUCCESS, result.message
    assert calls.count("create") == 7  # 43 records, 7 a batch
    # a parent created by an earlier batch is written with the create; one in the same batch by the second pass
    assert 0 < len(patched) < 39
    assert counts(result)["Account"] == (41, 1, 1, 0, 0)
    assert result.verification is not None and result.verification.verified
    assert result.verification.matching == 43 + 3
    live = {r["Name"]: r for r in org.live("Account")}
    assert len(live) == len(org.live("Account")) == 6 + 40  # none twice
    new_of = storage.get_id_map(SOURCE, SOURCE, [])
    assert all(live[f"Account {n}"]["ParentId"] == new_of[acc(n - 1)] for n in range(21, 60))


def test_two_bulk_jobs_at_the_org_whose_answers_are_lost_are_found_each_record_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch's Bulk job is sent before the one before it is finished: when the job's results are lost, two
    batches' intents are open. The next attempt finds what each created, a record already claimed (by a stored
    outcome, or by the other intent) never taken twice, although every record has the same values."""
    from services.jobrunner import restore_job

    monkeypatch.setattr(restore_job, "big_batch", lambda _fields, _records: 12)
    storage, org = world()
    for n in range(20, 60):  # purged since the backup, all alike but for their Ids
        storage.back_up(
            SOURCE, "Account", account(n, Name="Twin", Phone="555"), deleted_at=DAMAGE + dt.timedelta(hours=1)
        )
    # the second job's results are lost once the third job is sent, and the third's when it is finished on the way out
    org.lose_ingest_results = frozenset({2, 3})

    def run(attempt: int) -> Result:
        executor = JobExecutor(
            storage, FakeTables(), lambda _spec: org, error_kinds(), tuning=Tuning(bulk_threshold=10), mask_secret=b"k"
        )
        return executor.execute(spec(), JobControl(), attempt)

    first = run(1)
    assert first.disposition == "nak" and first.outcome == 0, first.message
    assert len(storage.list_restore_intents("s1", "restore")) == 2  # the second and the third batch
    assert org.ingests == 3
    second = run(2)
    assert second.outcome == ev.JOB_OUTCOME_SUCCESS, second.message
    assert storage.list_restore_intents("s1", "restore") == []
    twins = [r["Id"] for r in org.live("Account") if r["Name"] == "Twin"]
    assert len(twins) == 40  # none created twice
    targets = [storage.outcomes["s1"][acc(n)].target_id for n in range(20, 60)]
    assert sorted(targets) == sorted(twins)  # each made record the outcome of exactly one backed-up record
    assert second.verification is not None and second.verification.verified


def test_a_large_selection_s_batches_hold_fewer_records_of_more_fields_and_are_evened_out() -> None:
    from services.jobrunner.restore_job import BATCH_FIELDS, BIG_BATCH, big_batch

    assert big_batch(BATCH_FIELDS, 100_000) <= BIG_BATCH
    wide, narrow = big_batch(60, 40_000), big_batch(15, 40_000)
    assert wide < BIG_BATCH < narrow <= 2 * BIG_BATCH  # a record of more fields holds more memory
    assert wide * 60 <= BIG_BATCH * BATCH_FIELDS  # the memory of a batch of BATCH_FIELDS fields, no more
    for fields, records in ((60, 24_000), (15, 24_000), (43, 49_105), (30, 12_501), (1, 10**7)):
        size = big_batch(fields, records)
        batches = -(-records // size)
        assert records - (batches - 1) * size >= size - batches  # the last batch as large as the others, within one
    assert big_batch(BATCH_FIELDS, 12_501) == 6_251  # two even batches, not one full and one of a single record


# ---------------------------------------------------------------- sforg, real storage, NATS and PostgreSQL


def sforg_restore_spec(
    org: dict[str, Any], session: str, ids: list[str], as_of: dt.datetime, **restore: Any
) -> jobs_pb2.JobSpec:
    rs = rpb.RestoreSpec(
        source_org_id="o1",
        target_org_id="o1",
        selections=[rpb.RestoreSelection(object_name="Account", ids=ids)],
        confirmed=True,
        **restore,
    )
    rs.as_of.FromDatetime(as_of)
    return jobs_pb2.JobSpec(
        session_id=session,
        job_id="restore",
        type=ev.JOB_TYPE_RESTORE,
        org_id="o1",
        connection=connection(org),
        salesforce_org_id=org["org_id"],
        instance_url=org["instance_url"],
        restore=jobs_pb2.RestoreJob(
            spec=rs,
            target_connection=connection(org),
            target_salesforce_org_id=org["org_id"],
            target_instance_url=org["instance_url"],
        ),
    )


@pytest.mark.integration
async def test_purged_and_changed_accounts_come_back_on_sforg(stack: Stack, org: dict[str, Any], admin: Admin) -> None:
    await stack.start_jobrunner()
    for name in ("Account", "Contact"):
        done = await stack.run(data_spec(org, name, "b1", f"data-{name}", full=True))
        assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    as_of = dt.datetime.now(dt.UTC)
    before = admin.ground_truth(objects=["Account", "Contact"])["objects"]
    accounts = sorted(before["Account"])
    purged = accounts[:3]
    # changed: Accounts with a Phone (a null in the backup is left as the org has it unless restore_empty)
    changed = [a for a in accounts[3:] if before["Account"][a].get("Phone")][:3]
    binned = [a for a in accounts[3:] if a not in changed][:2]
    family = {cid for cid, v in before["Contact"].items() if v.get("AccountId") in purged}
    admin.hard_delete("Account", ids=purged)
    admin.update("Account", ids=changed, fields=["Phone"])
    admin.soft_delete("Account", ids=binned)  # into the recycle bin with their contacts

    admin.reset_accounting()
    preview = await stack.run(sforg_restore_spec(org, "dry", purged + changed + binned, as_of, dry_run=True))
    assert preview.outcome == ev.JOB_OUTCOME_SUCCESS, preview.message
    assert admin.accounting().get("writes", 0) == 0
    real = await stack.run(sforg_restore_spec(org, "real", purged + changed + binned, as_of))
    assert real.outcome == ev.JOB_OUTCOME_SUCCESS, (real.message, list(real.verification.samples), list(real.restore))
    predicted = {c.object_name: (c.created, c.updated, c.undeleted, c.skipped, c.failed) for c in preview.restore}
    assert predicted == {c.object_name: (c.created, c.updated, c.undeleted, c.skipped, c.failed) for c in real.restore}
    by_object = {c.object_name: c for c in real.restore}
    # Updated: the changed ones, and the child Accounts whose ParentId the delete of their parent cleared
    kids = {a for a, v in before["Account"].items() if v.get("ParentId") in purged + binned}
    kids -= set(purged + changed + binned)
    assert by_object["Account"].created == 3 and by_object["Account"].updated == 3 + len(kids)
    assert by_object["Account"].undeleted == 2
    assert by_object["Contact"].created == len(family)
    assert real.verification.done and real.verification.verified, list(real.verification.samples)

    after = admin.ground_truth(objects=["Account", "Contact"])["objects"]
    names = {v["Name"]: rid for rid, v in after["Account"].items()}
    for rid in purged:
        assert before["Account"][rid]["Name"] in names  # back, with a new Id
    for rid in changed:
        assert after["Account"][rid]["Phone"] == before["Account"][rid]["Phone"]
    for rid in binned:  # back from the recycle bin with their Ids, their contacts with them
        assert rid in after["Account"]
    new_of = {rid: names[before["Account"][rid]["Name"]] for rid in purged}
    for rid in kids:  # under their parent again (a re-created one: its new Id)
        parent = before["Account"][rid]["ParentId"]
        assert after["Account"][rid]["ParentId"] == new_of.get(parent, parent)
    binned_family = {cid for cid, v in before["Contact"].items() if v.get("AccountId") in binned}
    assert binned_family <= set(after["Contact"])
    new_parents = {names[before["Account"][rid]["Name"]] for rid in purged}
    back = [v for v in after["Contact"].values() if v.get("AccountId") in new_parents]
    assert len(back) == len(family)

    # the same restore again: all Skipped, nothing written
    admin.reset_accounting()
    again = await stack.run(sforg_restore_spec(org, "again", purged + changed + binned, as_of))
    assert again.outcome == ev.JOB_OUTCOME_SUCCESS, again.message
    assert {(c.created, c.updated, c.undeleted, c.failed) for c in again.restore} == {(0, 0, 0, 0)}
    assert {c.object_name: c.skipped for c in again.restore} == {
        c.object_name: c.created + c.updated + c.undeleted + c.skipped for c in real.restore
    }
    assert admin.accounting().get("writes", 0) == 0


@pytest.mark.integration
async def test_a_create_answer_lost_on_sforg_is_resolved_by_the_next_attempt(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    await stack.start_jobrunner(jobrunner_http_timeout_s=2.0)
    done = await stack.run(data_spec(org, "Account", "b1", "data-Account", full=True))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    as_of = dt.datetime.now(dt.UTC)
    before = admin.ground_truth(objects=["Account"])["objects"]["Account"]
    purged = sorted(before)[-2:]
    admin.hard_delete("Account", ids=purged)
    # the create reaches the org and is committed; its answer stalls past the jobrunner's HTTP timeout
    admin.fault("composite_sobjects", stall_after=5, count=1)
    job = sforg_restore_spec(org, "lost", purged, as_of, children=0)
    finished = await stack.run(job, within=90)
    assert finished.outcome == ev.JOB_OUTCOME_SUCCESS, finished.message
    assert stack.started.count(("lost", "restore")) == 2  # handed back once, resumed once
    after = admin.ground_truth(objects=["Account"])["objects"]["Account"]
    for rid in purged:
        name = before[rid]["Name"]
        assert [r for r, v in after.items() if v["Name"] == name and r not in before] != []
        assert sum(1 for r, v in after.items() if v["Name"] == name and r not in before) == 1  # never twice
    assert {c.object_name: c.created for c in finished.restore} == {"Account": 2}
    assert finished.verification.verified, list(finished.verification.samples)


@pytest.mark.integration
async def test_a_large_restore_on_sforg_goes_through_bulk(stack: Stack, org: dict[str, Any], admin: Admin) -> None:
    await stack.start_jobrunner(jobrunner_bulk_threshold=5)
    for name in ("Account", "Contact"):
        done = await stack.run(data_spec(org, name, "b1", f"data-{name}", full=True))
        assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    as_of = dt.datetime.now(dt.UTC)
    before = admin.ground_truth(objects=["Account", "Contact"])["objects"]
    purged = sorted(before["Account"])[10:22]
    family = {cid for cid, v in before["Contact"].items() if v.get("AccountId") in purged}
    admin.hard_delete("Account", ids=purged)
    admin.reset_accounting()
    finished = await stack.run(sforg_restore_spec(org, "bulk", purged, as_of, children=1))
    assert finished.outcome == ev.JOB_OUTCOME_SUCCESS, (finished.message, list(finished.verification.samples))
    by_object = {c.object_name: c for c in finished.restore}
    assert by_object["Account"].created == len(purged) and by_object["Contact"].created == len(family)
    scope = sum(c.created + c.updated + c.undeleted + c.skipped for c in finished.restore)  # with child accounts
    assert finished.verification.verified and finished.verification.matching == scope
    calls = admin.accounting()["calls"]
    # creates through Bulk; at most the second pass's few patched references through Collections
    assert calls.get("bulk2_ingest", 0) > 0 and calls.get("composite_sobjects", 0) <= 1
    after = admin.ground_truth(objects=["Account", "Contact"])["objects"]
    new_ids = {rid for rid in after["Account"] if rid not in before["Account"]}
    assert len(new_ids) == len(purged)
    assert len([c for c in after["Contact"].values() if c.get("AccountId") in new_ids]) == len(family)


def test_the_proof_names_what_the_org_changed_after_the_write() -> None:
    for threshold in (2000, 2):  # read back by Id, and through one Bulk read
        storage, org = world()
        org.triggers["Account"] = {"Phone": "rewritten by a trigger"}
        executor = JobExecutor(
            storage,
            FakeTables(),
            lambda _spec, org=org: org,
            error_kinds(),
            tuning=Tuning(bulk_threshold=threshold),
            mask_secret=b"k",
        )
        result = executor.execute(spec(), JobControl(), 1)
        assert result.outcome == ev.JOB_OUTCOME_WARNING, result.message
        v = result.verification
        assert v is not None and v.done and not v.verified
        assert (v.matching, v.differing) == (5, 1)  # account 2, re-created: its phone is not the backup's
        assert v.samples == [f"Account {acc(2)} [Phone]: differs"]
        assert "rewritten" not in " ".join(v.samples)  # names, never values


def test_the_api_budget_stops_the_restore_cleanly_and_a_resume_finishes_it() -> None:
    from services.sfclient import ApiLimitExceeded

    storage, org = world()
    create = org.create

    def spent(*args: Any, **kwargs: Any) -> Any:
        raise ApiLimitExceeded("the policy's API budget of 10 calls for this run is spent")

    org.create = spent  # type: ignore[method-assign]
    stopped = execute(storage, org, spec())
    assert stopped.outcome == ev.JOB_OUTCOME_ERROR and stopped.disposition == "ack"
    assert stopped.message.startswith("stopped: ")
    # what was done before the stop is stored and reported: the undelete and the update, not the create
    assert counts(stopped)["Account"] == (0, 1, 1, 0, 0)
    org.create = create  # type: ignore[method-assign]
    resumed = execute(storage, org, spec(), attempt=2)
    assert resumed.outcome == ev.JOB_OUTCOME_SUCCESS, resumed.message
    assert counts(resumed)["Account"] == (1, 1, 1, 0, 0)
    assert len([r for r in org.live("Account") if r["Name"] == "Account 2"]) == 1


def test_a_resumed_restore_proves_what_the_first_attempt_wrote_in_place_of_the_backup() -> None:
    from services.sfclient import ApiLimitExceeded

    storage, org = world()
    # account 6 purged, its owner inactive now: re-created under the restoring user (the owner fallback)
    storage.back_up(SOURCE, "Account", account(6, OwnerId="005000000000003AAA"), deleted_at=DAMAGE)
    org.inactive_users.add("005000000000003AAA")
    org.delete("Account", acc(6), purge=True)
    create = org.create

    def accounts_only(object_name: str, records: list[dict[str, Any]]) -> Any:
        if object_name != "Account":
            raise ApiLimitExceeded("the policy's API budget of 10 calls for this run is spent")
        return create(object_name, records)

    org.create = accounts_only  # type: ignore[method-assign]
    stopped = execute(storage, org, spec())  # stopped after the Accounts' batch
    assert stopped.outcome == ev.JOB_OUTCOME_ERROR and stopped.disposition == "ack", stopped.message
    first = storage.outcomes["s1"][acc(6)]
    assert first.state == rpb.RECORD_STATE_CREATED and "owner replaced" in first.note
    assert org.records["Account"][first.target_id]["OwnerId"] == org.user
    org.create = create  # type: ignore[method-assign]
    resumed = execute(storage, org, spec(), attempt=2)
    assert resumed.outcome == ev.JOB_OUTCOME_SUCCESS, resumed.message
    v = resumed.verification
    assert v is not None and v.done and v.verified and v.differing == 0, v
    assert v.matching == len(storage.outcomes["s1"]), v
    assert storage.outcomes["s1"][acc(6)].target_id == first.target_id  # decided once, not again


def test_a_cancelled_restore_reports_cancelled_with_what_it_did() -> None:
    storage, org = world()
    control = JobControl()
    undelete = org.undelete

    def cancel_after(ids: list[str]) -> Any:
        control.stop("cancelled")  # the session is cancelled while the first write runs
        return undelete(ids)

    org.undelete = cancel_after  # type: ignore[method-assign]
    executor = JobExecutor(storage, FakeTables(), lambda _spec: org, error_kinds(), mask_secret=b"k")
    result = executor.execute(spec(), control, 1)
    assert result.outcome == ev.JOB_OUTCOME_CANCELLED and result.disposition == "ack"
    assert org.creates == 0  # nothing created after the cancellation
    # what was written before it is recorded
    assert storage.outcomes["s1"][acc(1)].state == rpb.RECORD_STATE_UNDELETED


def test_files_asked_for_records_without_files_change_nothing() -> None:
    storage, org = world()
    result = execute(storage, org, spec(files=True))
    assert result.outcome == ev.JOB_OUTCOME_SUCCESS, result.message
    assert counts(result) == {"Account": (1, 1, 1, 0, 0), "Contact": (1, 0, 1, 1, 0)}


def att(n: int) -> str:
    return f"00P{n:012d}AAA"


def test_the_files_of_children_at_every_level_are_restored_and_those_binned_at_the_start_are_noted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Files of every selected record, a child's too (not only the selection's own): an Attachment of a Contact
    whose Account is in the recycle bin (binned with it) and of one whose Account was purged go to restore_files,
    with the Ids in the recycle bin when the restore started (its parent's undelete brings the first back: it is
    Undeleted, as the preview says). The preview notes nothing: it undeletes nothing."""
    from services.jobrunner import restore_files

    storage, org = world()
    org.describes["Account"]["childRelationships"].append(
        {"childSObject": "Attachment", "field": "ParentId", "cascadeDelete": True}
    )
    org.describes["Contact"]["childRelationships"].append(
        {"childSObject": "Attachment", "field": "ParentId", "cascadeDelete": True}
    )
    files = {att(1): acc(1), att(2): con(11), att(3): con(12), att(4): con(14)}
    for aid, parent in files.items():
        storage.back_up(SOURCE, "Attachment", {"Id": aid, "ParentId": parent, "Name": f"{aid}.txt"})
    # what the delete left: account 1's family in the recycle bin, account 2's purged, contact 14's file live
    org.put("Attachment", {"Id": att(1), "ParentId": acc(1), "IsDeleted": True})
    org.put("Attachment", {"Id": att(2), "ParentId": con(11), "IsDeleted": True})
    org.put("Attachment", {"Id": att(4), "ParentId": con(14)})
    calls: list[tuple[bool, set[str], set[str]]] = []

    def files_restored(run: Any, writer: Any, reads: Any, items: Any, *, dry_run: bool, binned_at_start: Any = ()):
        listed = {sid for obj, sid, _t, _s in items if obj == "Attachment"}
        calls.append((dry_run, listed, set(binned_at_start)))
        # the files' own outcomes: one back from the recycle bin, one made anew (their counts join the job's)
        states = {att(1): rpb.RECORD_STATE_UNDELETED, att(2): rpb.RECORD_STATE_CREATED}
        return restore_files.FileRestoreResult(
            outcomes=[
                rpb.RecordOutcome(object_name="Attachment", source_id=a, target_id=a, state=st)
                for a, st in states.items()
            ]
        )

    monkeypatch.setattr(restore_files, "restore_files", files_restored)
    one_level = rpb.RestoreSelection(object_name="Account", ids=[acc(1), acc(2), acc(3)])
    for session, dry in (("dry", True), ("real", False)):
        result = execute(storage, org, spec(session, selections=[one_level], children=1, files=True, dry_run=dry))
        assert result.outcome == ev.JOB_OUTCOME_SUCCESS, result.message
        assert counts(result)["Attachment"] == (1, 0, 1, 0, 0), session  # every state's count, Undeleted too
    # the selected Accounts' file and their Contacts' (level 1); contact 14 is not a child of a selected Account
    selected = {att(1), att(2), att(3)}
    assert [(dry, listed) for dry, listed, _b in calls] == [(True, selected), (False, selected)]
    assert calls[0][2] == set()
    assert {a for a in calls[1][2] if a.startswith("00P")} == {att(1), att(2)}  # att(3) is gone: not in the bin


def test_a_child_whose_only_difference_is_its_deferred_self_lookup_is_updated_in_the_preview_and_the_restore() -> None:
    """Child Accounts whose ParentId (a self-lookup, written by the second pass) the delete of their parent
    cleared: one under the Account in the recycle bin, one under the purged one. Both are Updated (ParentId
    among their changed fields), in the preview as in the restore, and point at their parent afterwards."""
    storage, org = world()
    for n, parent in ((7, 1), (8, 2)):
        storage.back_up(SOURCE, "Account", account(n, ParentId=acc(parent)))
        org.put("Account", account(n))  # its ParentId cleared by the delete of its parent
    chosen = rpb.RestoreSelection(object_name="Account", ids=[acc(1), acc(2), acc(7), acc(8)])
    preview = execute(storage, org, spec("dry", selections=[chosen], children=0, dry_run=True))
    real = execute(storage, org, spec("real", selections=[chosen], children=0))
    assert real.outcome == ev.JOB_OUTCOME_SUCCESS, real.message
    assert counts(preview) == counts(real) == {"Account": (1, 2, 1, 0, 0)}
    for session in ("dry", "real"):
        for n in (7, 8):
            outcome = storage.outcomes[session][acc(n)]
            assert outcome.state == rpb.RECORD_STATE_UPDATED, (session, n)
            assert list(outcome.changed_fields) == ["ParentId"], (session, n)
    new_parent = storage.outcomes["real"][acc(2)].target_id
    assert org.records["Account"][acc(7)]["ParentId"] == acc(1)
    assert org.records["Account"][acc(8)]["ParentId"] == new_parent
    assert real.verification is not None and real.verification.verified


def test_a_self_lookup_the_undelete_of_its_record_put_back_counts_updated_as_the_preview_says() -> None:
    """Contact 14 (live) reports to contact 11, in the recycle bin with its Account: the delete cleared its
    ReportsToId (a self-lookup). The real run's Account undelete brings contact 11 back and Salesforce puts the
    lookup back before contact 14 is decided: Updated (no write), as the preview, which sees it cleared, says."""
    storage, org = world()
    org.describes["Contact"]["fields"].append(describe_field("ReportsToId", "reference", reference_to=["Contact"]))
    storage.back_up(SOURCE, "Contact", contact(14, 4, ReportsToId=con(11)))
    undelete = org.undelete

    def undelete_puts_lookups_back(ids: list[str]) -> Any:
        results = undelete(ids)
        if not org.records["Contact"][con(11)]["IsDeleted"]:
            org.records["Contact"][con(14)]["ReportsToId"] = con(11)
        return results

    org.undelete = undelete_puts_lookups_back  # type: ignore[method-assign]
    chosen = rpb.RestoreSelection(object_name="Account", ids=[acc(1), acc(4)])
    preview = execute(storage, org, spec("dry", selections=[chosen], children=1, dry_run=True))
    real = execute(storage, org, spec("real", selections=[chosen], children=1))
    assert real.outcome == ev.JOB_OUTCOME_SUCCESS, real.message
    assert counts(preview) == counts(real) == {"Account": (0, 0, 1, 1, 0), "Contact": (0, 1, 1, 0, 0)}
    assert storage.outcomes["real"][con(14)].state == rpb.RECORD_STATE_UPDATED
    assert org.records["Contact"][con(14)]["ReportsToId"] == con(11)
    assert real.verification is not None and real.verification.verified


# ---------------------------------------------------------------- reading ahead (speed, same records)


def test_read_ahead_gives_every_chunk_in_order_and_raises_where_the_read_failed() -> None:
    """The next batch is read from storage by a thread while this one is written: the same chunks, in order;
    a failed read is raised to the job where its chunk would have come."""
    from services.jobrunner.restore_job import read_ahead

    chunks = [[(f"001{n:03d}{i:03d}", f'{{"Name": "r{n}-{i}", "e": ""}}'.encode()) for i in range(7)] for n in range(9)]
    got = list(read_ahead(iter(chunks), 2))
    assert got == chunks
    assert list(read_ahead(iter([]), 2)) == []

    def broken() -> Any:
        yield chunks[0]
        raise RuntimeError("storage went away")

    reader = read_ahead(broken(), 2)
    assert next(reader) == chunks[0]
    with pytest.raises(RuntimeError, match="storage went away"):
        next(reader)

    closed: list[bool] = []

    def endless() -> Any:
        try:
            n = 0
            while True:
                n += 1
                yield [(str(n), b"{}")]
        finally:
            closed.append(True)

    reader = read_ahead(endless(), 1)
    assert next(reader) == [("1", b"{}")]
    reader.close()  # the job stops early: the reading thread stops and closes its source
    assert closed == [True]


# ---------------------------------------------------------------- the proof's digest (speed, same verdicts)


def test_the_proofs_digest_takes_a_number_in_any_spelling_and_sees_any_other_difference() -> None:
    """A read-back row counts at once when its digest equals what the restore wrote: a number read back as
    100.0 or "100.00" for the 100 written is the same; any other value, or a value in a field the restore left
    empty being the org's own, is judged by the backup's comparison (a different digest)."""
    from types import SimpleNamespace

    from services.jobrunner import restore_domain as rd
    from services.jobrunner.restore_job import RestoreJob

    def f(name: str, kind: str) -> dict[str, Any]:
        return {"name": name, "type": kind, "createable": True, "updateable": True, "nillable": True}

    info = rd.object_info(
        {
            "name": "Account",
            "fields": [f("Name", "string"), f("AnnualRevenue", "currency"), f("Since", "date"), f("Rating", "string")],
        }
    )
    run = SimpleNamespace(spec=jobs_pb2.JobSpec(restore=jobs_pb2.RestoreJob(spec=rpb.RestoreSpec())))
    job = RestoreJob(run=run, sf=None)  # type: ignore[arg-type]
    job.infos["Account"] = info
    job._expect("Account", "001A", {"Name": "Acme", "AnnualRevenue": 100, "Since": "2024-01-02", "Rating": None})
    known = job.expect["001A"]  # the digest's 16 bytes, then the mask's
    digest, mask = known[:16], int.from_bytes(known[16:], "little")
    assert mask == 0b0111  # Name, AnnualRevenue, Since: the fields it holds a value of
    same = {"Name": "Acme", "AnnualRevenue": 100.0, "Since": "2024-01-02", "Rating": "Hot"}  # Rating: not restored
    assert job._digest("Account", mask, same) == digest
    assert job._digest("Account", mask, {**same, "AnnualRevenue": "100.00"}) == digest
    for changed in ({"AnnualRevenue": 100.5}, {"Name": "Acme "}, {"Since": "2024-01-03"}, {"Name": None}):
        assert job._digest("Account", mask, {**same, **changed}) != digest, changed


# ---------------------------------------------------------------- resume (kill -9 between batches)


@pytest.mark.parametrize("ended_by", ["the answer of its next create was lost", "the API budget was spent"])
def test_a_restore_stopped_after_its_first_batch_resumes_every_deferred_reference_and_owner(
    ended_by: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second pass and the proof of a resumed restore do not depend on what the first attempt held in memory:
    the references it deferred (a self-lookup to a record created in a later batch, or to a record undeleted in
    the same batch) are patched by the attempt that ends the job, and the owner it wrote in place of an inactive
    one is expected, even for a batch whose answer was lost."""
    from services.jobrunner import restore_job
    from services.sfclient import ApiLimitExceeded

    monkeypatch.setattr(restore_job, "READ_BATCH", 4)  # Accounts 1-4 in the first batch, 7 in the second
    storage, org = world()
    inactive = "005000000000003AAA"
    org.inactive_users.add(inactive)
    org.put("User", {"Id": inactive, "IsActive": False})  # the restore sees it inactive before it writes
    # account 7 purged since the backup, its owner inactive now: re-created in the second batch under the
    # restoring user; account 4's parent was account 7 (the org cleared the lookup with the delete)
    storage.back_up(SOURCE, "Account", account(7, OwnerId=inactive), deleted_at=DAMAGE + dt.timedelta(hours=1))
    storage.back_up(SOURCE, "Account", account(4, ParentId=acc(7)), changed_at=DAMAGE + dt.timedelta(hours=1))
    # account 3's parent was account 1 (in the recycle bin now; undeleted in the same batch, keeping its Id)
    storage.back_up(SOURCE, "Account", account(3, ParentId=acc(1)), changed_at=DAMAGE + dt.timedelta(hours=1))
    org.put("Account", account(7, OwnerId=inactive))
    org.delete("Account", acc(7), purge=True)
    changed = rpb.RestoreSelection(object_name="Account")
    changed.changed_since.FromDatetime(DAMAGE)
    job = spec(selections=[changed])

    create = org.create
    if ended_by.startswith("the answer"):
        org.lose_create_answer = 2  # account 2's create (first batch) answered; account 7's (second) lost
    else:

        def first_batch_only(object_name: str, records: list[dict[str, Any]]) -> Any:
            if any(r.get("Name") == "Account 7" for r in records):
                raise ApiLimitExceeded("the policy's API budget of 10 calls for this run is spent")
            return create(object_name, records)

        org.create = first_batch_only  # type: ignore[method-assign]
    first = execute(storage, org, job)
    assert first.outcome != ev.JOB_OUTCOME_SUCCESS, first.message
    # account 4 decided (its parent differs: Updated), its parent deferred to a second pass the attempt never made
    assert storage.outcomes["s1"][acc(4)].state == rpb.RECORD_STATE_UPDATED
    assert list(storage.outcomes["s1"][acc(4)].changed_fields) == ["ParentId"]
    assert org.records["Account"][acc(4)].get("ParentId") is None  # never patched: the attempt ended first
    org.create = create  # type: ignore[method-assign]

    resumed = execute(storage, org, job, attempt=2)
    assert resumed.outcome == ev.JOB_OUTCOME_SUCCESS, resumed.message
    new_parent = storage.outcomes["s1"][acc(7)].target_id
    assert [r["Id"] for r in org.live("Account") if r["Name"] == "Account 7"] == [new_parent]  # created once
    assert org.records["Account"][new_parent]["OwnerId"] == org.user
    assert "owner replaced" in storage.outcomes["s1"][acc(7)].note
    assert org.records["Account"][acc(4)]["ParentId"] == new_parent
    assert org.records["Account"][acc(3)]["ParentId"] == acc(1)
    v = resumed.verification
    assert v is not None and v.done and v.verified and v.differing == 0, v
    assert v.matching == len(storage.outcomes["s1"]), v

    # a third attempt (the job delivered once more after it ended) writes nothing and proves the same
    writes = org.write_calls
    again = execute(storage, org, job, attempt=3)
    assert again.outcome == ev.JOB_OUTCOME_SUCCESS, again.message
    assert org.write_calls == writes
    assert again.verification is not None and again.verification.differing == 0, again.verification


def test_a_record_refused_mended_and_sent_again_whose_answer_was_lost_is_proved_as_written() -> None:
    """The org refuses account 6's owner (inactive, which the restore could not know before: no User to ask),
    the create is mended (the restoring user as owner) and sent again in a batch of its own, whose answer is
    lost: the next attempt finds the record made, notes the owner it holds, and proves it."""
    storage, org = world()
    inactive = "005000000000003AAA"
    storage.back_up(SOURCE, "Account", account(6, OwnerId=inactive), deleted_at=DAMAGE + dt.timedelta(hours=1))
    org.inactive_users.add(inactive)
    org.delete("Account", acc(6), purge=True)
    org.lose_create_answer = 2  # the first create (accounts 2 and 6: 6 refused), then the mended one: lost
    first = execute(storage, org, spec())
    assert first.disposition == "nak" and first.outcome == 0, first.message
    assert sorted(i.batch_key for i in storage.list_restore_intents("s1", "restore")) == [
        "Account:create:2.1",
        "Account:create:2.2:again",
    ]
    resumed = execute(storage, org, spec(), attempt=2)
    assert resumed.outcome == ev.JOB_OUTCOME_SUCCESS, resumed.message
    made = [r for r in org.live("Account") if r["Name"] == "Account 6"]
    assert [r["Id"] for r in made] == [storage.outcomes["s1"][acc(6)].target_id]  # found, not created again
    assert made[0]["OwnerId"] == org.user and "owner replaced" in storage.outcomes["s1"][acc(6)].note
    assert storage.list_restore_intents("s1", "restore") == []
    v = resumed.verification
    assert v is not None and v.verified and v.differing == 0 and v.matching == len(storage.outcomes["s1"]), v
