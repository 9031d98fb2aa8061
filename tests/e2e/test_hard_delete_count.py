"""Hard deletes noticed on every run, cheaply (issue 18), every service a separate process, on a tiny emulated org:
a backup; three Leads hard-deleted through sforg's admin API (no recycle bin, no delete log) and nothing else
changed; the next backup -- an incremental, its Id reconciliation not due -- finds them through the count check
that ends every incremental data job, marks them hard-deleted in storage, and its report (`sfvault session show
--json`) says so. Every other object's count agrees at one COUNT() and nothing more."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.events.v1 import events_pb2 as ev
from sfvault.storage.v1 import storage_pb2 as st

from devstack.localstack import Stack, local_stack
from services.cli import local
from services.cli.client import Clients
from services.cli.demo import register_org, secrets_dir
from services.platform.auth import load_key, mint
from sforg.testing import Admin
from tests.e2e.restore_scenario import backup

pytestmark = pytest.mark.e2e
SFVAULT = str(Path(sys.executable).parent / "sfvault")


@pytest.fixture(scope="module")
def stack(stack_home: Path, stack_database: str) -> Iterator[Stack]:
    env = {
        **local.prepare_auth(stack_home),
        "SFVAULT_STORAGE_CANONICAL_CHECK_EVERY": "1",
        "SFVAULT_SECRETS_DIR": str(secrets_dir(stack_home)),
    }
    with local_stack(stack_home, with_org="tiny", org_seed=5, extra_env=env, database_url=stack_database) as s:
        yield s


def session_report(home: Path, stack: Stack, session_id: str) -> dict[str, Any]:
    """`sfvault session show SESSION --json` as a viewer, parsed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFVAULT_")}
    env.update(
        SFVAULT_HOME=str(home / "cli"),
        SFVAULT_SESSION_ADDR=stack.address("session"),
        SFVAULT_DISCOVERY_ADDR=stack.address("discovery"),
        SFVAULT_STORAGE_ADDR=stack.address("storage"),
        SFVAULT_TOKEN=mint(load_key(f"file:{home / 'auth.key'}"), "vera", "viewer"),
        COLUMNS="200",
    )
    result = subprocess.run(
        [SFVAULT, "session", "show", session_id, "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"sfvault session show: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    return dict(json.loads(result.stdout))


def test_a_hard_delete_without_any_other_change_is_found_by_the_count_check(
    stack: Stack, clients: Clients, stack_home: Path
) -> None:
    assert stack.org is not None
    admin = Admin(stack.org)
    sf_org = stack.org["org_id"]
    register_org(clients, stack.org, stack_home, "o1", "emulated org")
    policy = disc.Policy(policy_id="p1", org_id="o1", name="all data", files=False, metadata=False)
    clients.discovery.CreatePolicy(disc.CreatePolicyRequest(policy=policy))
    first = backup(clients)
    assert first.initial
    leads = clients.storage.CountLive(st.CountLiveRequest(org_id=sf_org, objects=["Lead"])).live["Lead"]
    assert leads >= 10

    before = admin.ground_truth(values=False)["hard_deleted"]
    gone = set(admin.hard_delete("Lead", n=3)["ids"])
    assert len(gone) == 3
    # what went with them (a Lead's CampaignMembers are its cascade family): hard-deleted too, no trace either
    after = admin.ground_truth(values=False)["hard_deleted"]
    family = {obj: set(ids) - set(before.get(obj, [])) for obj, ids in after.items() if obj != "Lead"}
    family = {obj: ids for obj, ids in family.items() if ids}
    admin.advance_clock(15 * 60)  # past the backup's settle margin; nothing else changes in the org

    second = backup(clients)
    assert not second.initial
    report = session_report(stack_home, stack, second.session_id)
    jobs = {j["object_name"]: j for j in report["jobs"] if j["type"] == "JOB_TYPE_DATA"}
    lead = jobs.pop("Lead")
    assert lead["message"].startswith("incremental"), lead["message"]  # no reconciliation was due
    assert "reconciled" in lead["message"] and "3 hard-deleted" in lead["message"], lead["message"]
    assert f"count check: {leads - 3} records in the org and the backup after the Id reconciliation" in lead["message"]
    assert lead["outcome"] == "JOB_OUTCOME_SUCCESS" and int(lead["counts"]["deleted"]) == 3, lead

    # storage: each of them hard-deleted by this session, and no longer live
    for record_id in gone:
        versions = clients.storage.GetRecordHistory(
            st.GetRecordHistoryRequest(org_id=sf_org, object_name="Lead", record_id=record_id)
        ).versions
        assert versions[-1].deleted == st.DELETED_STATE_HARD, record_id
        assert versions[-1].session_id == second.session_id
    live = clients.storage.CountLive(st.CountLiveRequest(org_id=sf_org, objects=["Lead"])).live["Lead"]
    assert live == leads - 3

    # the cascade family: found the same way; every other object: its count agrees, nothing more was done for it
    assert jobs and set(family) <= set(jobs), family
    for name, job in jobs.items():
        assert job["outcome"] == "JOB_OUTCOME_SUCCESS", (name, job["message"])
        if job["message"].startswith("full (no field to window on)"):
            continue  # (a setup object without audit fields: read whole every session, nothing to count)
        assert "records in the org and the backup" in job["message"], (name, job["message"])
        if name in family:
            assert f", {len(family[name])} hard-deleted; count check:" in job["message"], (name, job["message"])
            assert int(job["counts"]["deleted"]) == len(family[name])
        else:
            assert "reconciled" not in job["message"], (name, job["message"])
    assert report["session"]["status"] == "SESSION_STATUS_SUCCESS"
    assert ev.SESSION_STATUS_SUCCESS == second.status
