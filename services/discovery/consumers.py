"""Discovery's NATS consumer: the durable `discovery` on EVENTS, filtered to SessionRequested."""

from __future__ import annotations

import asyncio

from services.common.bus import Bus
from services.discovery.application import Planner

CONSUMER = "discovery"


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
