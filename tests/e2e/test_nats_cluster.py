"""A backup on a NATS cluster of three servers (JetStream, every stream of 3 replicas): one server killed
-9 mid-backup, the services move to the others, the session ends Success and nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from sfvault.events.v1 import events_pb2 as pb

from devstack.embedded import nats_cluster
from devstack.localstack import local_stack
from services.cli import local
from services.cli.client import Clients
from services.platform.bus import BusConfig
from tests.e2e.conftest import endpoints, register
from tests.e2e.outages import check_complete, planned, run_with_outages, stream_info

# in `make test-long` (which names this file), not in `make test`: three NATS servers started, one lost mid-backup
pytestmark = [pytest.mark.e2e, pytest.mark.long]


def test_a_backup_survives_losing_one_of_three_nats_servers(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "stack"
    env = {**local.prepare_auth(home), "SFVAULT_EVENTS_REPLICAS": "3", "SFVAULT_JOBS_REPLICAS": "3"}
    with (
        nats_cluster(str(tmp_path / "nats")) as servers,
        local_stack(
            home, with_org="tiny", org_seed=11, extra_env=env, database_url=database_url, nats_cluster=servers
        ) as stack,
    ):
        assert stack.org is not None
        streams = BusConfig(url="")
        for name in (streams.events_stream, streams.jobs_stream):
            assert stream_info(stack.nats_url, name).config.num_replicas == 3, name
        c = Clients(endpoints(stack, home))
        killed: list[str] = []

        def kill_the_events_leader() -> None:
            leader = stream_info(stack.nats_url, streams.events_stream).cluster.leader
            victim = next(s for s in servers if s.server_name == leader)
            victim.stop(kill=True)
            killed.append(leader)

        try:
            register(c, stack.org, home)
            outcome = run_with_outages(c, [(planned, "kill the EVENTS leader", kill_the_events_leader)])
            assert killed and outcome.done == ["kill the EVENTS leader"]
            assert outcome.session.status == pb.SESSION_STATUS_SUCCESS, outcome.session.reason
            check_complete(c, stack, outcome)
        finally:
            c.close()
