"""Restore chaos: a restore of deleted (cascade, half purged) and changed records through the whole stack as
supervised processes, while a jobrunner or storage is killed -9 mid-restore. The session must end by itself,
Success, verified, every record back as in test_restore.py, and no record created twice: no two live records
of the org (sforg's ground truth) carrying the same backed-up values.

A third victim: sforg holds the answer of the first Collections write it has made, and the jobrunner is killed
then (the batch's records exist, its answer never came: the intent must find them, not create them again).

Long: 5 trials per victim, each its own stack and seed; run by `make test-long` (SFVAULT_CHAOS_TRIALS set),
skipped otherwise. SFVAULT_RESTORE_CHAOS_TRIALS sets the trials per victim, SFVAULT_CHAOS_SEED the first seed
(a failing trial names its seed to replay it).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.events.v1 import events_pb2 as pb
from sfvault.restore.v1 import restore_pb2 as rs
from sfvault.session.v1 import session_pb2 as api

from devstack.localstack import RestartPolicy, Stack, local_stack
from services.cli import local
from services.cli.client import Clients
from services.cli.demo import secrets_dir
from sforg.testing import Admin
from tests.e2e.conftest import endpoints, register
from tests.e2e.restore_scenario import (
    FAMILY,
    Moment,
    backup,
    check_restored,
    counts,
    describe_session,
    do_damage,
    duplicates,
    fields_of,
    id_map,
    now,
    restore,
    timestamp,
)

# long: `make test-long` runs it (SFVAULT_RESTORE_CHAOS_TRIALS); `make test` does not collect it (tests/e2e/conftest.py)
TRIALS = int(os.environ.get("SFVAULT_RESTORE_CHAOS_TRIALS", "5"))
FIRST_SEED = int(os.environ.get("SFVAULT_CHAOS_SEED", "20261207"))

pytestmark = pytest.mark.e2e


def decided(s: api.Session) -> int:
    """Records the session has counted so far, whatever their state."""
    return sum(o.created + o.updated + o.undeleted + o.skipped + o.failed for o in s.restore_counts)


def at_progress(fraction: float, expected: int) -> Moment:
    """Once `fraction` of the expected records are decided (0: as soon as its job is planned)."""
    if fraction <= 0:
        return lambda s: s.planned and s.jobs_total > 0
    return lambda s: decided(s) >= fraction * expected


def kill(stack: Stack, name: str) -> Callable[[], None]:
    return lambda: stack.services[name].kill9()  # the supervisor starts it again


def kill_after_write(stack: Stack, admin: Admin, endpoint: str, fired: threading.Event) -> threading.Thread:
    """sforg makes its first `endpoint` write and then holds the answer (a stalled body); once the write is
    counted, the jobrunner is killed -9: a batch whose records exist in the org and whose answer never came."""
    admin.fault(endpoint=endpoint, stall_after=0, count=1)

    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if admin.accounting().get("write_calls", {}).get(endpoint, 0) >= 1:
                stack.services["jobrunner"].kill9()
                fired.set()
                return
            time.sleep(0.05)  # polling sforg's accounting: the session does not see a call in flight

    thread = threading.Thread(target=watch, name="kill-after-write", daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("seed", [FIRST_SEED + i for i in range(TRIALS)])
@pytest.mark.parametrize("victim", ["jobrunner", "storage", "jobrunner-after-write"])
def test_a_restore_killed_mid_way_ends_complete_and_creates_nothing_twice(
    tmp_path: Path, victim: str, seed: int
) -> None:
    rng = random.Random(f"{victim}:{seed}")
    home = tmp_path / "stack"
    env = {
        **local.prepare_auth(home),
        "SFVAULT_SECRETS_DIR": str(secrets_dir(home)),
        "SFVAULT_STALL_CHECK_INTERVAL_S": "1",
    }
    with local_stack(
        home,
        with_org="tiny",
        org_seed=seed % 1000,
        extra_env=env,
        supervise=True,
        restart_policy=RestartPolicy(initial_s=0.2, cap_s=2.0, healthy_s=10.0),
    ) as stack:
        assert stack.org is not None
        c = Clients(endpoints(stack, home))
        try:
            admin = Admin(stack.org)
            sf_org = stack.org["org_id"]
            register(c, stack.org, home)
            policy = c.discovery.GetPolicy(disc.GetPolicyRequest(policy_id="p1"))
            policy.reconcile_every.FromSeconds(60)
            c.discovery.UpdatePolicy(disc.UpdatePolicyRequest(policy=policy))
            backup(c)
            before = admin.ground_truth()
            as_of = timestamp(now())
            damage = do_damage(admin, before, accounts=30, purge=15, changes=60, seed=seed)
            admin.advance_clock(15 * 60)
            backup(c)
            selections = [rs.RestoreSelection(object_name="Account", deleted_since=as_of)]
            selections += [rs.RestoreSelection(object_name=o, changed_since=as_of) for o in sorted(damage.changed)]
            spec = rs.RestoreSpec(
                source_org_id="o1", as_of=as_of, selections=selections, confirmed=True, restore_empty=True
            )
            expected = sum(len(ids) for ids in damage.family.values()) + sum(len(i) for i in damage.changed.values())
            fraction = rng.choice([0.0, rng.uniform(0.05, 0.8)])
            name = victim.removesuffix("-after-write")
            restarts = stack.services[name].restarts
            outages = []
            fired = threading.Event()
            if victim == "jobrunner-after-write":
                fraction, watcher = 0.0, kill_after_write(stack, admin, "composite_sobjects", fired)
            else:
                outages = [(at_progress(fraction, expected), f"kill -9 {name} at {fraction:.0%}", kill(stack, name))]
            final = restore(c, spec, outages=outages, timeout=600)
            why = f"seed {seed}, kill -9 {victim} at {fraction:.0%}: {describe_session(final, c)}"
            if victim == "jobrunner-after-write":
                watcher.join(5)
                assert fired.is_set(), f"no write was stalled: {why}"
            assert stack.services[name].restarts > restarts, why
            assert final.status == pb.SESSION_STATUS_SUCCESS, why
            assert final.verification.verified and final.verification.differing == 0, why
            got = counts(final)
            for obj in ("Account", *FAMILY):
                assert got.get(obj, {}).get("created", 0) == len(damage.purged[obj]), f"{obj}: {why}"
            ids = id_map(c, sf_org, sf_org)
            after = admin.ground_truth()
            fields = fields_of(stack.org, ["Account", *FAMILY])
            twice = [
                d
                for obj in ("Account", *FAMILY)
                for d in duplicates(before, after, obj, fields[obj], ids, damage.family[obj])
            ]
            assert not twice, f"{why}: created twice: {twice[:10]}"
            for obj in ("Account", *FAMILY):  # and no more live records than the backup had
                assert len(after["objects"][obj]) == len(before["objects"][obj]), f"{obj}: {why}"
            problems = check_restored(before, after, damage, ids, fields)
            assert not problems, f"{why}: {len(problems)} problems: {problems[:10]}"
        finally:
            c.close()
