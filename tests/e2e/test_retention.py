"""Retention end to end (issue 18, keep), every service a separate process, on a tiny emulated org: five backups
with known changes, then a prune with a 7-day retention -- exactly the predicted versions go, an as-of inside the
window reads as before, one before the horizon is a clear FAILED_PRECONDITION, a pinned point stays intact, and a
legal hold keeps everything until released.

The clock: storage stamps every version with the database's now() and prunes against it, so the test places the
five backups 12.5, 9.5, 6.5, 3.5 and 0.5 days in the past by moving their versions' capture times in storage's
tables (what the backups would have stored had they run on those days); sforg's records are changed between them.

Predicted with 7 days: Account R (changed by backups 2-5) loses its first version (superseded 9.5 days ago), its
second stays (superseded 6.5 days ago); Account X (changed by backup 2 only) loses its first; Contact C (changed by
backups 2-5) keeps its first: a pin 11 days ago on Contact keeps the version in force then. So 2 record versions
go, the Account horizon is 9.5 days ago, Contact has none."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.protect.v1 import protect_pb2 as ppb
from sfvault.storage.v1 import storage_pb2 as st
from sfvault.storage.v1 import storage_pb2_grpc

from devstack.localstack import Stack, local_stack
from services.cli import local
from services.cli.client import Clients
from services.cli.demo import register_org, secrets_dir
from services.platform.auth import aio_channel, load_key, mint
from sforg.testing import Admin
from tests.e2e.restore_scenario import backup, timestamp

pytestmark = pytest.mark.e2e
SFVAULT = str(Path(sys.executable).parent / "sfvault")
AGES = [12.5, 9.5, 6.5, 3.5, 0.5]  # days before now of the five backups
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def stack(stack_home: Path) -> Iterator[Stack]:
    env = {
        **local.prepare_auth(stack_home),
        "SFVAULT_SECRETS_DIR": str(secrets_dir(stack_home)),
    }
    with local_stack(stack_home, with_org="tiny", org_seed=13, extra_env=env) as s:
        yield s


def sfvault(home: Path, stack: Stack, *args: str) -> Any:
    """`sfvault ARGS` as an admin, its --json output parsed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFVAULT_")}
    env.update(
        SFVAULT_HOME=str(home / "cli"),
        SFVAULT_SESSION_ADDR=stack.address("session"),
        SFVAULT_DISCOVERY_ADDR=stack.address("discovery"),
        SFVAULT_STORAGE_ADDR=stack.address("storage"),
        SFVAULT_TOKEN=mint(load_key(f"file:{home / 'auth.key'}"), "ada", "admin"),
        COLUMNS="200",
    )
    result = subprocess.run([SFVAULT, *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"sfvault {' '.join(args)}: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    return json.loads(result.stdout) if "--json" in args else result.stdout


def db_now(stack: Stack) -> dt.datetime:
    with psycopg.connect(stack.database_url) as conn:
        return conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index,no-any-return]


def place(stack: Stack, session_id: str, age_days: float) -> None:
    """The versions a backup stored, captured `age_days` ago (and the heads it changed, changed then)."""
    with psycopg.connect(stack.database_url) as conn:
        conn.execute(
            "UPDATE storage.record_versions SET captured_at = now() - make_interval(secs => %s)"
            " WHERE job_key IN (SELECT job_key FROM storage.jobs WHERE session_id = %s)",
            (age_days * 86400, session_id),
        )
        conn.execute(
            "UPDATE storage.record_head h SET changed_at = v.captured_at FROM storage.record_versions v"
            " JOIN storage.jobs j USING (job_key) WHERE j.session_id = %s AND h.org_key = v.org_key"
            " AND h.object_key = v.object_key AND h.record_id = v.record_id AND h.changed_at > v.captured_at",
            (session_id,),
        )


def versions(stack: Stack, obj: str) -> int:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM storage.record_versions v JOIN storage.objects o USING (object_key)"
            " WHERE o.object_name = %s",
            (obj,),
        ).fetchone()
        return int(row[0])  # type: ignore[index]


def as_of(c: Clients, sf_org: str, obj: str, rid: str, when: dt.datetime) -> str:
    request = st.GetRecordAsOfRequest(org_id=sf_org, object_name=obj, record_id=rid, as_of=timestamp(when))
    return c.storage.GetRecordAsOf(request).values_json.decode()


async def pin(stack: Stack, home: Path, sf_org: str, when: dt.datetime, objects: list[str]) -> None:
    token = mint(load_key(f"file:{home / 'auth.key'}"), "discovery", "service")
    async with aio_channel(stack.address("storage"), token) as channel:
        request = st.PinRestorePointRequest(org_id=sf_org, at=timestamp(when), objects=objects, reason="e2e")
        await storage_pb2_grpc.StorageServiceStub(channel).PinRestorePoint(request)


async def test_seven_days_prune_exactly_the_predicted_versions(
    stack: Stack, clients: Clients, stack_home: Path
) -> None:
    assert stack.org is not None
    admin = Admin(stack.org)
    register_org(clients, stack.org, stack_home, "o1", "emulated org")
    policy = disc.Policy(
        policy_id="p1",
        org_id="o1",
        name="keep a week",
        scope=disc.Scope(include_objects=["Account", "Contact"]),
        files=False,
        metadata=False,
        retention=ppb.RetentionSettings(days=7),
    )
    clients.discovery.CreatePolicy(disc.CreatePolicyRequest(policy=policy))
    truth = admin.ground_truth(objects=["Account", "Contact"])["objects"]
    r_acc, x_acc = sorted(truth["Account"])[:2]
    c_con = sorted(truth["Contact"])[0]

    sessions = [backup(clients).session_id]
    for day in range(1, 5):
        admin.update("Account", ids=[r_acc], values={"Name": f"Renamed on day {day}"})
        admin.update("Contact", ids=[c_con], values={"Title": f"Retitled on day {day}"})
        if day == 1:
            admin.update("Account", ids=[x_acc], values={"Name": "Renamed on day 1"})
        admin.advance_clock(15 * 60)  # past the backup's settle margin: the next backup reads these changes
        sessions.append(backup(clients).session_id)
    for sid, age in zip(sessions, AGES, strict=True):
        place(stack, sid, age)
    now = db_now(stack)
    sf_org = clients.discovery.GetOrg(disc.GetOrgRequest(org_id="o1")).salesforce_org_id
    inside, before, pinned = now - 5 * DAY, now - 11 * DAY, now - 11 * DAY
    records = (("Account", r_acc), ("Account", x_acc), ("Contact", c_con))
    seen = {(o, r, w): as_of(clients, sf_org, o, r, w) for o, r in records for w in (inside, before)}
    assert "Renamed on day 2" in seen[("Account", r_acc, inside)]  # backup 3, 6.5 days ago
    await pin(stack, stack_home, sf_org, pinned, ["Contact"])
    accounts_before, contacts_before = versions(stack, "Account"), versions(stack, "Contact")

    # a legal hold keeps everything
    sfvault(stack_home, stack, "hold", "set", "--policy", "p1", "--reason", "matter 42", "--json")
    held = sfvault(stack_home, stack, "prune", "o1", "--wait", "--json")
    assert held["record_versions"] == 0 and "legal hold" in held["message"], held
    assert versions(stack, "Account") == accounts_before
    sfvault(stack_home, stack, "hold", "release", "--policy", "p1", "--json")

    dry = sfvault(stack_home, stack, "prune", "o1", "--dry-run", "--json")
    assert dry["record_versions"] == 2 and dry["dry_run"], dry
    assert versions(stack, "Account") == accounts_before
    done = sfvault(stack_home, stack, "prune", "o1", "--wait", "--json")
    assert done["status"] == "SUCCESS" and done["record_versions"] == 2, done
    assert versions(stack, "Account") == accounts_before - 2 and versions(stack, "Contact") == contacts_before

    # inside the window: exactly as before; before the Account horizon: a clear error; the pinned Contact point
    for (obj, rid, when), values in seen.items():
        if obj == "Account" and when == before:
            with pytest.raises(grpc.RpcError) as refused:
                as_of(clients, sf_org, obj, rid, when)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "were pruned by retention" in refused.value.details()
        else:
            assert as_of(clients, sf_org, obj, rid, when) == values, (obj, rid, when)
    again = sfvault(stack_home, stack, "prune", "o1", "--wait", "--json")
    assert again["record_versions"] == 0
