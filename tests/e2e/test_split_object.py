"""One large object split across jobrunner replicas (issue 21, "Across machines"), every service a separate
process: discovery splits each object of more than SPLIT records into Id ranges, one data job each; two
jobrunners (each one job at a time, each with a storage replica of its own) share them. The initial backup, an
incremental after records were created, changed and soft-deleted in different ranges, and a reconciling one
after hard deletes in the lowest and the highest range, and one after the object outgrew its top range (cut
further), each reconcile exactly with sforg's ground truth: no record missing, stale or duplicated, and no
range's reconciliation deletes a record of another range; the session service counts the object's ranges
together."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api

from devstack.embedded import free_port
from devstack.localstack import ServiceProcess, Stack, local_stack
from services.cli import local
from services.cli.client import Clients
from services.cli.demo import secrets_dir
from sforg.testing import Admin
from tests.e2e.conftest import register
from tests.e2e.reconcile import reconcile, same
from tests.e2e.test_backup import data_objects, run_session

pytestmark = pytest.mark.e2e

SPLIT = 70  # the tiny org: Contact (200 records) and Task (150) in 3 ranges, Account, Lead, Case, ... in 2
SYSTEM = {"SystemModstamp", "LastModifiedDate", "LastModifiedById", "LastActivityDate", "LastViewedDate"}


def replica(stack: Stack, name: str, suffix: str, **env: str) -> ServiceProcess:
    """Another process of service `name` on a port of its own, the first one's settings otherwise."""
    port = free_port()
    first = stack.services[name]
    settings = {**first.env, f"SFVAULT_{name.upper()}_PORT": str(port), **env}
    svc = ServiceProcess(name, port, settings, stack.state_dir / "logs" / f"{name}-{suffix}.log")
    svc.start()
    svc.wait_serving()
    return svc


@pytest.fixture(scope="module")
def stack(stack_home: Path, stack_database: str) -> Iterator[Stack]:
    env = {
        **local.prepare_auth(stack_home),
        "SFVAULT_STORAGE_CANONICAL_CHECK_EVERY": "1",
        "SFVAULT_SECRETS_DIR": str(secrets_dir(stack_home)),
        "SFVAULT_DISCOVERY_SPLIT_RECORDS": str(SPLIT),
        "SFVAULT_JOBRUNNER_CONCURRENCY": "1",  # one job at a time each: both replicas take ranges
    }
    with local_stack(stack_home, with_org="tiny", org_seed=7, extra_env=env, database_url=stack_database) as s:
        storage2 = replica(s, "storage", "2")
        jobrunner2 = replica(s, "jobrunner", "2", SFVAULT_STORAGE_ADDR=storage2.address)
        try:
            yield s
        finally:
            jobrunner2.stop()
            storage2.stop()


def by_object(jobs: dict[str, api.Job], name: str) -> list[api.Job]:
    return sorted((j for j in jobs.values() if j.object_name == name and j.type == pb.JOB_TYPE_DATA), key=job_order)


def job_order(job: api.Job) -> str:
    return job.job_id


def summed(jobs: list[api.Job], field: str) -> int:
    return sum(int(getattr(j.counts, field)) for j in jobs)


def spread(ids: list[str], n: int) -> list[str]:
    """n Ids spread over the sorted list: the lowest, the highest and between (so in different ranges)."""
    ordered = sorted(ids)
    return [ordered[i * (len(ordered) - 1) // (n - 1)] for i in range(n)]


def test_a_split_object_backed_up_by_two_replicas_reconciles_exactly(
    stack: Stack, clients: Clients, stack_home: Path
) -> None:
    assert stack.org is not None
    admin = Admin(stack.org)
    register(clients, stack.org, stack_home, files=False, metadata=False)
    sf_org = stack.org["org_id"]

    initial, jobs = run_session(clients)
    assert initial.status == pb.SESSION_STATUS_SUCCESS, initial.reason
    contact = by_object(jobs, "Contact")
    assert [j.job_id for j in contact] == ["data-Contact-1", "data-Contact-2", "data-Contact-3"]
    assert len({j.worker_id for j in jobs.values() if j.type == pb.JOB_TYPE_DATA}) == 2  # both replicas worked
    truth = admin.ground_truth()
    report = reconcile(clients.storage, sf_org, truth, data_objects(jobs))
    assert report.totals() == (0, 0, 0), report.summary()
    # every record stored once, by exactly one range's job: the ranges' new versions add up to the object
    held = len(truth["objects"]["Contact"]) + len(truth["recycle_bin"].get("Contact") or ())  # queryAll's
    assert summed(contact, "new_versions") == held
    assert all(j.counts.new_versions > 0 for j in contact)  # each range holds part of the object
    plan = clients.discovery.GetSessionPlan(disc.GetSessionPlanRequest(session_id=initial.session_id))
    [planned] = [o for o in plan.objects if o.object_name == "Contact"]
    assert planned.job_id == "data-Contact-1" and planned.expected_records >= len(truth["objects"]["Contact"])

    # changes in every range, creates (new Ids: the open top range) and soft deletes in the lowest and highest
    contacts = list(truth["objects"]["Contact"])
    changed = spread(contacts, 6)
    admin.update("Contact", ids=changed)
    soft = spread([i for i in contacts if i not in changed], 3)
    admin.soft_delete("Contact", ids=soft)
    created = admin.create("Contact", n=5)["ids"]
    admin.advance_clock(15 * 60)  # past the backup's settle margin

    second, jobs2 = run_session(clients)
    assert second.status == pb.SESSION_STATUS_SUCCESS, second.reason
    contact2 = by_object(jobs2, "Contact")
    assert [j.job_id for j in contact2] == [j.job_id for j in contact]  # the split is kept
    truth2 = admin.ground_truth()
    report2 = reconcile(clients.storage, sf_org, truth2, data_objects(jobs2))
    assert report2.totals() == (0, 0, 0), report2.summary()
    before, after = truth["objects"]["Contact"], truth2["objects"]["Contact"]
    # what changed in the org: the updated records, and those whose lookup to a deleted Contact was cleared
    really = {
        i
        for i in after
        if i in before and any(not same(before[i].get(k), v) for k, v in after[i].items() if k not in SYSTEM)
    }
    assert really & set(changed)
    assert summed(contact2, "changed") == len(really)
    assert summed(contact2, "deleted") == len(soft)
    assert summed(contact2, "new_versions") == len(created)
    assert contact2[-1].counts.new_versions == len(created)  # created records have the highest Ids

    # hard deletes in the lowest and the highest range, found by each range's own Id reconciliation
    policy = clients.discovery.GetPolicy(disc.GetPolicyRequest(policy_id="p1"))
    policy.reconcile_every.FromSeconds(60)
    clients.discovery.UpdatePolicy(disc.UpdatePolicyRequest(policy=policy))
    live = [i for i in after if i not in soft]
    hard = [min(live), max(live)]
    admin.hard_delete("Contact", ids=hard)
    admin.advance_clock(15 * 60)

    third, jobs3 = run_session(clients)
    assert third.status == pb.SESSION_STATUS_SUCCESS, third.reason
    contact3 = by_object(jobs3, "Contact")
    truth3 = admin.ground_truth()
    report3 = reconcile(clients.storage, sf_org, truth3, data_objects(jobs3))
    assert report3.totals() == (0, 0, 0), report3.summary()
    assert [j.counts.deleted for j in contact3] == [1, 0, 1]  # each range deleted its own, none another's
    assert all("hard-deleted" in j.message for j in contact3), [j.message for j in contact3]

    # the object grows past twice the split size above its lower ranges: its open top range alone is cut further
    grown = admin.create("Contact", n=3 * SPLIT)["ids"]
    admin.advance_clock(15 * 60)
    fourth, jobs4 = run_session(clients)
    # so many creates are an anomaly: the session service judged the object's counts summed over its ranges
    assert fourth.status == pb.SESSION_STATUS_WARNING, fourth.reason
    assert f"Contact: {len(grown)} records created" in fourth.reason, fourth.reason
    contact4 = by_object(jobs4, "Contact")
    assert len(contact4) > len(contact3) and [j.job_id for j in contact4[:2]] == [j.job_id for j in contact3[:2]]
    truth4 = admin.ground_truth()
    report4 = reconcile(clients.storage, sf_org, truth4, data_objects(jobs4))
    assert report4.totals() == (0, 0, 0), report4.summary()
    assert summed(contact4, "new_versions") == len(grown)  # the new ranges read in full: nothing twice
