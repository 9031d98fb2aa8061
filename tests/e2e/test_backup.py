"""Backup end to end, every service a separate process: an initial backup of an emulated org is complete,
and an incremental after a day of changes records exactly those changes — reconciled against sforg's
ground truth (0 missing, 0 stale, 0 phantom)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api
from sfvault.storage.v1 import storage_pb2 as st

from devstack.localstack import Stack
from services.cli.client import Clients
from sforg.testing import Admin
from tests.e2e.conftest import register
from tests.e2e.reconcile import reconcile, same

pytestmark = pytest.mark.e2e


def run_session(c: Clients) -> tuple[api.Session, dict[str, api.Job]]:
    started = c.session.StartSession(api.StartSessionRequest(policy_id="p1", org_id="o1", trigger="test"))
    final = None
    for update in c.session.WatchSession(api.WatchSessionRequest(session_id=started.session_id), timeout=600):
        final = update
    assert final is not None
    jobs = {j.job_id: j for j in c.session.ListJobs(api.ListJobsRequest(session_id=final.session_id)).jobs}
    return final, jobs


def data_objects(jobs: dict[str, api.Job]) -> list[str]:
    return sorted(j.object_name for j in jobs.values() if j.type == pb.JOB_TYPE_DATA)


def check_files_and_metadata(c: Clients, sf_org: str, truth: dict[str, Any]) -> None:
    for record_id, file in truth["files"].items():
        versions = c.storage.ListFileVersions(
            st.ListFileVersionsRequest(org_id=sf_org, object_name=file["object"], record_id=record_id)
        ).versions
        assert file["sha256"] in {v.sha256 for v in versions}, f"file of {file['object']} {record_id} missing"
    stored = c.storage.ListMetadataVersions(st.ListMetadataVersionsRequest(org_id=sf_org, limit=10000)).versions
    latest: dict[tuple[str, str], Any] = {}
    for v in stored:
        if (v.type, v.full_name) not in latest or v.version_id > latest[(v.type, v.full_name)].version_id:
            latest[(v.type, v.full_name)] = v
    for component in truth["metadata"]:
        key = (component["type"], component["fullName"])
        assert key in latest, f"metadata {key} missing"
        content = c.storage.GetMetadataAsOf(
            st.GetMetadataAsOfRequest(org_id=sf_org, type=key[0], full_name=key[1])
        ).content
        assert hashlib.sha256(content).hexdigest() == component["sha256"] or latest[key].sha256, key


def test_initial_then_incremental_backup_reconciles_exactly(stack: Stack, clients: Clients, stack_home: Path) -> None:
    assert stack.org is not None
    admin = Admin(stack.org)
    register(clients, stack.org, stack_home, auto_add_new_objects=True, auto_add_new_fields=True)
    # reconcile Ids at every session so hard deletes are caught at once
    policy = clients.discovery.GetPolicy(disc.GetPolicyRequest(policy_id="p1"))
    policy.reconcile_every.FromSeconds(60)
    clients.discovery.UpdatePolicy(disc.UpdatePolicyRequest(policy=policy))

    initial, jobs = run_session(clients)
    assert initial.status == pb.SESSION_STATUS_SUCCESS, initial.reason
    assert initial.initial
    sf_org = stack.org["org_id"]
    truth = admin.ground_truth()
    report = reconcile(clients.storage, sf_org, truth, data_objects(jobs))
    assert report.totals() == (0, 0, 0), report.summary()
    live = sum(len(v) for name, v in truth["objects"].items() if name in data_objects(jobs))
    assert initial.totals.new_versions >= live
    check_files_and_metadata(clients, sf_org, truth)

    # a day in the org
    updated = {obj: set(admin.update(obj, fraction=0.01)["ids"]) for obj in ("Account", "Contact", "Opportunity")}
    soft = set(admin.soft_delete("Case", n=15)["ids"])
    hard = set(admin.hard_delete("Lead", n=7)["ids"])
    admin.add_field("Account", "Tier__c", type="string")
    admin.add_object("Gadget__c", records=40)
    components = [m for m in truth["metadata"] if m["type"] == "ApexClass"][:3]
    for m in components:
        admin.change_metadata("ApexClass", m["fullName"])
    for i in range(5):
        admin.add_file_version(f"new body {i}".encode() * 50, title=f"note {i}")
    admin.advance_clock(15 * 60)  # past the backup's settle margin

    incremental, jobs2 = run_session(clients)
    assert incremental.status == pb.SESSION_STATUS_SUCCESS, incremental.reason
    assert not incremental.initial
    truth2 = admin.ground_truth()
    report2 = reconcile(clients.storage, sf_org, truth2, data_objects(jobs2))
    assert report2.totals() == (0, 0, 0), report2.summary()
    check_files_and_metadata(clients, sf_org, truth2)

    # exactly those changes got new restore points, nothing else did
    system = {"SystemModstamp", "LastModifiedDate", "LastModifiedById", "LastActivityDate", "LastViewedDate"}
    for obj, ids in updated.items():
        before, after = truth["objects"][obj], truth2["objects"][obj]
        really = {i for i in ids if any(not same(before[i].get(k), v) for k, v in after[i].items() if k not in system)}
        assert really, obj
        assert jobs2[f"data-{obj}"].counts.changed == len(really), obj
    assert jobs2["data-Case"].counts.deleted == len(soft)
    assert jobs2["data-Lead"].counts.deleted == len(hard)
    assert "data-Gadget__c" in jobs2 and jobs2["data-Gadget__c"].counts.new_versions == 40
    # the deleted Cases and Leads took their activities with them (cascade, as Salesforce does)
    cascaded = set(truth["objects"]["Task"]) - set(truth2["objects"]["Task"])
    assert jobs2["data-Task"].counts.deleted == len(cascaded)
    assert jobs2["data-Task"].counts.new_versions == jobs2["data-Task"].counts.changed == 0
    for name in ("data-Invoice__c", "data-Shipment__c", "data-Campaign"):
        counts = jobs2[name].counts
        assert counts.new_versions == counts.changed == counts.deleted == 0, name
    assert jobs2["files"].counts.files == 5

    # verify against the org now: nothing differs; then records created after the session are reported missing
    verified = clients.discovery.VerifyOrg(disc.VerifyOrgRequest(org_id="o1"))
    assert {o.object_name for o in verified.objects} >= {"Account", "Gadget__c"}
    assert all(o.missing == o.phantom == 0 for o in verified.objects), verified
    created = admin.create("Account", n=3)
    after = clients.discovery.VerifyOrg(disc.VerifyOrgRequest(org_id="o1", objects=["Account", "Lead"]))
    account = next(o for o in after.objects if o.object_name == "Account")
    assert account.missing == 3 and account.phantom == 0 and account.org_records == account.backup_records + 3
    assert set(account.missing_sample) == set(created.get("ids", account.missing_sample))
    assert jobs2["metadata"].counts.metadata_components >= len(components)
