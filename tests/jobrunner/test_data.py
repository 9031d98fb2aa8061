"""Data jobs against sforg with real storage, NATS and PostgreSQL: full copies through REST and Bulk,
incremental windows, deletes and Id reconciliation, each reconciled against the org's ground truth."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sfvault.events.v1 import events_pb2 as ev

from sforg.testing import Admin
from tests.jobrunner.conftest import Stack, data_spec, reconcile

pytestmark = pytest.mark.integration


async def test_full_copy_rest_and_bulk_then_incremental_and_reconciliation(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    # Bulk for anything above 50 rows, pages of 40 and chunks of 30: every page boundary case is exercised
    await stack.start_jobrunner(jobrunner_bulk_threshold=50, jobrunner_bulk_page=40, jobrunner_chunk_records=30)
    sforg_id = org["org_id"]
    specs = [data_spec(org, name, "s1", f"j-{name}") for name in ("Account", "Campaign", "Invoice__c")]
    for spec in specs:
        done = await stack.run(spec)
        assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    truth = admin.ground_truth(objects=[s.object_name for s in specs])
    for spec in specs:
        result = reconcile(truth, await stack.export(sforg_id, spec.object_name), spec)
        assert result.clean, f"{spec.object_name}: {result}"

    # changes: 5 updates, 2 soft deletes, 2 hard deletes; then past the settle margin
    updated = admin.update("Account", n=5)["ids"]
    soft = admin.soft_delete("Account", n=2)["ids"]
    hard = admin.hard_delete("Account", n=2)["ids"]
    admin.advance_clock(400)
    inc = data_spec(org, "Account", "s2", "j-Account")
    done = await stack.run(inc)
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert "incremental" in done.message
    # besides the updated ones, the accounts whose parent was deleted: their ParentId was cleared (as Salesforce does)
    after = admin.ground_truth(objects=["Account"])["objects"]["Account"]
    system = {"SystemModstamp", "LastModifiedDate", "LastModifiedById"}
    before = truth["objects"]["Account"]
    changed = {
        i
        for i, v in after.items()
        if i in before and any(before[i].get(k) != x for k, x in v.items() if k not in system)
    }
    assert set(updated) - set(soft) - set(hard) <= changed
    assert done.counts.changed == len(changed)
    assert done.counts.deleted == len(soft) + len(hard)  # the hard deletes found by the count check at once
    assert done.counts.new_versions == 0
    stored = await stack.export(sforg_id, "Account")
    assert all(stored[i].get("_deleted") == "soft" for i in soft)
    # caught at once: the count check saw fewer records in the org and ran the Id reconciliation
    assert "count check" in done.message and "reconciled" in done.message, done.message
    assert all(stored.get(i, {}).get("_deleted", "hard") == "hard" for i in hard)

    # a window larger than the Bulk threshold is read through Bulk
    many = admin.update("Account", n=70)["ids"]
    admin.advance_clock(400)
    done = await stack.run(data_spec(org, "Account", "s2b", "j-Account"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert "incremental" in done.message and done.counts.changed == len(set(many)), done

    # the scheduled reconciliation (due at once here) finds nothing more: the count check caught the hard deletes
    rec = data_spec(org, "Account", "s3", "j-Account", reconcile_every=dt.timedelta(seconds=1))
    done = await stack.run(rec)
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert "reconciled" in done.message
    assert done.counts.deleted == 0
    assert done.counts.changed == 0 and done.counts.new_versions == 0
    result = reconcile(admin.ground_truth(objects=["Account"]), await stack.export(sforg_id, "Account"), rec)
    assert result.clean, str(result)
