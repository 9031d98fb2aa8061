"""Discovery's NATS consumers on EVENTS: `discovery` (SessionRequested: plan the session) and
`discovery-outcomes` (JobFinished: remember which data jobs completed)."""

from __future__ import annotations

import asyncio
import functools

from services.common.bus import Bus
from services.discovery.application import Planner, record_job_outcomes
from services.discovery.store import DiscoveryStore

CONSUMER = "discovery"
OUTCOMES_CONSUMER = "discovery-outcomes"


async def consume_session_requests(bus: Bus, planner: Planner, stop: asyncio.Event, ack_wait_s: float) -> None:
    """One request at a time: a plan is seconds of Salesforce calls, and each is committed before its ack."""
    await bus.consume_events(
        CONSUMER,
        planner.handle_batch,
        stop,
        filter_subject=bus.config.events_subject("*.SessionRequested"),
        batch_size=1,
        ack_wait_s=ack_wait_s,
    )


async def consume_job_outcomes(bus: Bus, store: DiscoveryStore, stop: asyncio.Event) -> None:
    await bus.consume_events(
        OUTCOMES_CONSUMER,
        functools.partial(record_job_outcomes, store),
        stop,
        filter_subject=bus.config.events_subject("*.JobFinished"),
    )
