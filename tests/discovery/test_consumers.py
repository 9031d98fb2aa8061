"""Discovery's SessionRequested consumer with real NATS: a request in hand is kept in progress however long
its plan takes, and one abandoned (discovery killed mid-plan) comes back within the short ack wait."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence

import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from sfvault.events.v1 import events_pb2 as ev

from devstack.embedded import nats_process
from services.discovery.config import DiscoverySettings
from services.discovery.consumers import (
    CONSUMER,
    OUTCOMES_CONSUMER,
    consume_job_outcomes,
    consume_session_requests,
    outcomes_caught_up,
)
from services.platform.bus import Bus, BusConfig, Delivery
from tests.discovery.conftest import Running

ACK_WAIT_S = 1.0


class Planner:
    """Records each delivery; `plan` is what planning does with it (by default nothing)."""

    def __init__(self, plan_s: float = 0.0, hang: bool = False) -> None:
        self.plan_s = plan_s
        self.hang = hang
        self.deliveries: list[tuple[str, int]] = []
        self.received = asyncio.Event()
        self.done = asyncio.Event()
        self.planned: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)  # by session

    async def handle_batch(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            self.deliveries.append((delivery.envelope.session_id, delivery.num_delivered))
        self.received.set()
        if self.hang:
            await asyncio.Event().wait()  # a plan that never ends: the process is killed in the middle of it
        await asyncio.sleep(self.plan_s)  # the plan's own work (Salesforce calls), not a wait for a condition
        self.done.set()
        for delivery in deliveries:
            self.planned[delivery.envelope.session_id].set()


@pytest.fixture
async def bus(nats_url: str, bus_namespace: str) -> AsyncIterator[Bus]:
    b = await Bus.connect(BusConfig(url=nats_url, namespace=bus_namespace), producer="test")
    yield b
    await b.close()


@contextlib.asynccontextmanager
async def consuming(bus: Bus, planner: Planner) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(consume_session_requests(bus, planner, stop, ACK_WAIT_S))  # type: ignore[arg-type]
    try:
        yield task
    finally:
        stop.set()
        if not task.done():
            await asyncio.wait_for(task, 30)


async def _consumer_seq(bus: Bus) -> tuple[int, int]:
    """(deliveries made, including redeliveries; messages awaiting their ack)."""
    info = await bus.js.consumer_info(bus.config.events_stream, CONSUMER)
    return info.delivered.consumer_seq, info.num_ack_pending


async def test_a_long_plan_is_kept_in_progress_and_never_redelivered(bus: Bus) -> None:
    planner = Planner(plan_s=4 * ACK_WAIT_S)
    async with consuming(bus, planner):
        await bus.emit(ev.SessionRequested(policy_id="p"), session_id="s-long")
        await asyncio.wait_for(planner.done.wait(), 30)

        async def acked() -> None:
            while (await _consumer_seq(bus))[1]:  # noqa: ASYNC110 - consumer state has no change feed
                await asyncio.sleep(0.05)

        await asyncio.wait_for(acked(), 10)
    assert planner.deliveries == [("s-long", 1)]
    assert (await _consumer_seq(bus))[0] == 1  # delivered once: four ack waits passed and it never came back


async def test_a_request_abandoned_mid_plan_comes_back_within_the_ack_wait(bus: Bus) -> None:
    killed = Planner(hang=True)
    async with consuming(bus, killed) as task:
        await bus.emit(ev.SessionRequested(policy_id="p"), session_id="s-killed")
        await asyncio.wait_for(killed.received.wait(), 30)
        task.cancel()  # the process dies mid-plan: no ack, no nak, no heartbeat any more
        with contextlib.suppress(asyncio.CancelledError):
            await task
    again = Planner()
    async with consuming(bus, again):
        # within the ack wait of a second (the wait_for only bounds a broken test)
        await asyncio.wait_for(again.done.wait(), 30)
    assert killed.deliveries == [("s-killed", 1)]
    assert again.deliveries == [("s-killed", 2)]


async def test_an_existing_consumer_takes_the_short_ack_wait(bus: Bus) -> None:
    # a consumer created by an older discovery, with its ten-minute ack wait
    await bus.js.add_consumer(
        bus.config.events_stream,
        ConsumerConfig(
            durable_name=CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            filter_subject=bus.config.events_subject("*.SessionRequested"),
            ack_wait=600,
        ),
    )
    planner = Planner()
    async with consuming(bus, planner):
        await bus.emit(ev.SessionRequested(policy_id="p"), session_id="s1")
        await asyncio.wait_for(planner.done.wait(), 30)
    info = await bus.js.consumer_info(bus.config.events_stream, CONSUMER)
    assert info.config.ack_wait == ACK_WAIT_S


async def test_the_service_runs_its_consumer_with_the_short_default_ack_wait(running: Running) -> None:
    assert DiscoverySettings.model_fields["discovery_ack_wait_s"].default <= 30
    info = await running.bus.js.consumer_info(running.bus.config.events_stream, CONSUMER)
    assert info.config.ack_wait == running.settings.discovery_ack_wait_s <= 30


async def test_the_consumer_goes_on_after_a_nats_restart_with_discovery_s_own_permissions() -> None:
    with nats_process() as nats:
        admin = await Bus.connect(BusConfig(url=nats.url), producer="test")
        own = BusConfig(url=nats.address, user="discovery", password=nats.passwords["discovery"])
        bus = await Bus.connect(own, producer="discovery")
        try:
            # an old consumer with a long ack wait: discovery may bring it to its setting
            await admin.js.add_consumer(
                admin.config.events_stream,
                ConsumerConfig(
                    durable_name=CONSUMER,
                    ack_policy=AckPolicy.EXPLICIT,
                    filter_subject=admin.config.events_subject("*.SessionRequested"),
                    ack_wait=600,
                ),
            )
            planner = Planner()
            async with consuming(bus, planner):
                await admin.emit(ev.SessionRequested(policy_id="p"), session_id="s-before")
                await asyncio.wait_for(planner.planned["s-before"].wait(), 30)
                nats.restart(kill=True)
                await admin.emit(ev.SessionRequested(policy_id="p"), session_id="s-after")
                await asyncio.wait_for(planner.planned["s-after"].wait(), 60)
            # (s-before may come again: an ack lost with the killed server only means a redelivery)
            assert {sid for sid, _ in planner.deliveries} == {"s-before", "s-after"}
            info = await admin.js.consumer_info(admin.config.events_stream, CONSUMER)
            assert info.config.ack_wait == ACK_WAIT_S
        finally:
            await bus.close()
            await admin.close()


class GatedOutcomes:
    """A store whose record_outcomes waits for `gate`: outcomes delivered to discovery but not yet recorded."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.held = asyncio.Event()
        self.recorded: list[tuple[str, str, str]] = []

    async def record_outcomes(self, outcomes: Sequence[tuple[str, str, str]]) -> None:
        self.held.set()
        await self.gate.wait()
        self.recorded.extend(outcomes)


@pytest.fixture
async def discovery_bus(nats_url: str, bus_namespace: str, nats_credentials, bus: Bus) -> AsyncIterator[Bus]:
    """Discovery's own connection, with its NATS user's permissions (the embedded server's), as the service has."""
    creds = nats_credentials("discovery")
    config = BusConfig(
        url=nats_url, namespace=bus_namespace, user=creds.get("nats_user", ""), password=creds.get("nats_password", "")
    )
    b = await Bus.connect(config, producer="discovery")
    yield b
    await b.close()


async def test_planning_waits_until_the_previous_sessions_outcomes_are_recorded(
    bus: Bus, discovery_bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    # CI once planned a session while the previous one's JobFinished was still on its way to the outcomes table:
    # a completed job looked unfinished and its object was read in full again
    store = GatedOutcomes()
    stop = asyncio.Event()
    task = asyncio.create_task(consume_job_outcomes(discovery_bus, store, stop))  # type: ignore[arg-type]
    try:
        await bus.emit(ev.JobFinished(outcome=ev.JOB_OUTCOME_SUCCESS), session_id="s1", job_id="data-Document")
        await bus.emit(ev.JobStarted(), session_id="s2", job_id="data-Lead")  # a later event the consumer skips
        caught_up = asyncio.create_task(outcomes_caught_up(discovery_bus, timeout_s=60))
        await asyncio.wait_for(store.held.wait(), 30)  # delivered, and held by the gate
        info = await bus.js.consumer_info(bus.config.events_stream, OUTCOMES_CONSUMER)
        assert info.num_ack_pending == 1 and not caught_up.done()
        store.gate.set()
        await asyncio.wait_for(caught_up, 30)
        assert store.recorded == [("s1", "data-Document", "JOB_OUTCOME_SUCCESS")]
        # judged on the stream's sequences, which discovery's NATS user may read (not on the counters alone)
        assert "last JobFinished unknown" not in caplog.text
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_wait_for_outcomes_is_bounded(bus: Bus, discovery_bus: Bus) -> None:
    # nobody records them (the consumer is not running): planning goes on after the bound, and reads more, never less
    await bus.emit(ev.JobFinished(outcome=ev.JOB_OUTCOME_SUCCESS), session_id="s1", job_id="data-Lead")
    await asyncio.wait_for(outcomes_caught_up(discovery_bus, timeout_s=0.3), 10)


async def test_with_no_job_finished_in_the_stream_there_is_nothing_to_wait_for(bus: Bus, discovery_bus: Bus) -> None:
    # the first session of a stack: no consumer yet, no outcome to wait for; the bound is not waited out
    await bus.emit(ev.JobStarted(), session_id="s1", job_id="data-Lead")
    await asyncio.wait_for(outcomes_caught_up(discovery_bus, timeout_s=600), 10)
