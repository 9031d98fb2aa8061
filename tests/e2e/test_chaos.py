"""Chaos: an initial backup of an emulated org through the whole stack as processes (supervised, as
Kubernetes would run it) while storage is killed -9 exactly between a chunk's commit and its event, each
other service is killed -9 at a random moment, and NATS and PostgreSQL are restarted mid-backup. The
session must end by itself, Success, with the right counts, and the backup must equal the org: nothing
lost, nothing duplicated (each chunk's ChunkUploaded once on the stream).

One trial in the suite; `make test-long` runs many (SFVAULT_CHAOS_TRIALS, each with its own seed; a failing
trial names its seed, and SFVAULT_CHAOS_SEED replays it).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api

from devstack.embedded import nats_process, postgres_server
from devstack.localstack import RestartPolicy, Stack, local_stack
from services.cli import local
from services.cli.client import Clients
from sforg.testing import Admin
from tests.e2e.conftest import endpoints, register
from tests.e2e.outages import Moment, check_complete, run_with_outages

pytestmark = pytest.mark.e2e

TRIALS = int(os.environ.get("SFVAULT_CHAOS_TRIALS", "1"))
FIRST_SEED = int(os.environ.get("SFVAULT_CHAOS_SEED", "20261206"))


def at_progress(fraction: float, expected: int) -> Moment:
    """Once `fraction` of the expected restore points are counted (0: as soon as the session is asked for)."""
    return lambda s: s.totals.new_versions >= fraction * expected


def outages(stack: Stack, rng: random.Random, expected: int) -> list[tuple[Moment, str, Callable[[], None]]]:
    def kill(name: str) -> Callable[[], None]:
        return lambda: stack.services[name].kill9()  # the supervisor starts it again

    plan: list[tuple[Moment, str, Callable[[], None]]] = []
    for name in ("session", "discovery", "jobrunner"):
        fraction = rng.uniform(0.0, 0.8)
        plan.append((at_progress(fraction, expected), f"kill -9 {name} at {fraction:.0%}", kill(name)))
    fraction = rng.uniform(0.1, 0.8)
    plan.append((at_progress(fraction, expected), f"restart NATS at {fraction:.0%}", stack.restart_nats))
    fraction = rng.uniform(0.1, 0.8)
    plan.append((at_progress(fraction, expected), f"restart PostgreSQL at {fraction:.0%}", stack.restart_postgres))
    rng.shuffle(plan)
    return plan


@pytest.mark.parametrize("seed", [FIRST_SEED + i for i in range(TRIALS)])
def test_every_session_ends_with_the_truth_whatever_is_killed(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    home = tmp_path / "stack"
    env = {
        **local.prepare_auth(home),
        "SFVAULT_FAILPOINTS": "storage.chunk_committed",  # storage dies between its first commit and event
        "SFVAULT_FAILPOINT_DIR": str(tmp_path),
        "SFVAULT_STALL_CHECK_INTERVAL_S": "1",
        # the killed jobrunner's jobs come back to its restarted self after the ack wait (60 s by default: the
        # suite's time, not the behaviour under test); its heartbeat keeps a live holder's jobs well within it
        "SFVAULT_JOBRUNNER_ACK_WAIT_S": "8",
        "SFVAULT_JOBRUNNER_HEARTBEAT_S": "2",
    }
    # this test restarts them: its own servers, whatever SFVAULT_DATABASE_URL / SFVAULT_NATS_URL say
    with (
        postgres_server(str(tmp_path / "pg")) as database_url,
        nats_process(str(tmp_path / "nats")) as nats,
        local_stack(
            home,
            with_org=1500,
            org_seed=seed % 1000,
            extra_env=env,
            database_url=database_url,
            nats_cluster=[nats],
            supervise=True,
            restart_policy=RestartPolicy(initial_s=0.2, cap_s=2.0, healthy_s=10.0),
        ) as stack,
    ):
        stack.pg_dir = tmp_path / "pg"
        assert stack.org is not None
        c = Clients(endpoints(stack, home))
        try:
            register(c, stack.org, home)
            truth = Admin(stack.org).ground_truth()
            expected = sum(len(records) for records in truth["objects"].values())
            plan = outages(stack, rng, expected)
            outcome = run_with_outages(c, plan)
            why = f"seed {seed}: {outcome.done}"
            assert (tmp_path / "storage.chunk_committed.fired").exists(), why
            assert outcome.session.status == pb.SESSION_STATUS_SUCCESS, f"{why}: {outcome.session.reason}"
            assert len(outcome.done) == len(plan), why
            check_complete(c, stack, outcome)
            assert sum(s.restarts for s in stack.services.values()) >= 4, why  # storage and the three killed
            # no service that was serving exited by itself: NATS and PostgreSQL restarts are waited out
            crashes = {s.name: s.exits for s in stack.services.values() if any(c != -9 and up for c, up in s.exits)}
            assert not crashes, f"{why}: {crashes}"
            # and the session service answers the truth after all that
            again = c.session.GetSession(api.GetSessionRequest(session_id=outcome.session.session_id))
            assert again.status == pb.SESSION_STATUS_SUCCESS and again.totals == outcome.session.totals
        finally:
            c.close()
