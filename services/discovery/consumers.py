"""Discovery's NATS consumers on EVENTS: `discovery` (SessionRequested: plan the session) and
`discovery-outcomes` (JobFinished: remember which data jobs completed)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import Protocol

from nats.errors import ConnectionClosedError
from nats.js.errors import NotFoundError

from services.discovery.application import record_job_outcomes
from services.discovery.store import DiscoveryStore
from services.platform.bus import Bus, Delivery, heartbeat
from services.platform.ports import Consuming

log = logging.getLogger(__name__)
CONSUMER = "discovery"
OUTCOMES_CONSUMER = "discovery-outcomes"


class RequestHandler(Protocol):
    """What plans a batch of SessionRequested deliveries (application.Planner)."""

    async def handle_batch(self, deliveries: Sequence[Delivery]) -> None: ...


async def consume_session_requests(bus: Bus, planner: RequestHandler, stop: asyncio.Event, ack_wait_s: float) -> None:
    """One request at a time: a plan is seconds to minutes of Salesforce calls, each committed before its ack.

    The request in hand is kept in progress (a heartbeat every third of the ack wait), so the ack wait can be
    short: a request abandoned by a killed discovery comes back within `ack_wait_s`, not after the longest
    plan. Nothing is fetched ahead: a message waiting in hand would not be kept in progress.
    """
    subject = bus.config.events_subject("*.SessionRequested")
    consumer = await bus.pull_subscription(bus.config.events_stream, CONSUMER, subject, ack_wait_s=ack_wait_s)
    await _set_ack_wait(bus, ack_wait_s)
    beat_s = max(ack_wait_s / 3, 0.05)
    while not stop.is_set():
        try:
            msgs = await consumer.fetch(1, timeout=1.0, stop=stop)
        except ConnectionClosedError:
            if stop.is_set():
                return
            raise
        for msg in msgs:
            async with heartbeat(msg, beat_s):
                await bus.process_batch(CONSUMER, [msg], planner.handle_batch, stop)


async def _set_ack_wait(bus: Bus, ack_wait_s: float) -> None:
    """A durable consumer keeps the configuration it was created with: bring its ack wait to the setting."""
    stream = bus.config.events_stream
    try:
        info = await bus.js.consumer_info(stream, CONSUMER)
    except NotFoundError:
        return
    if info.config.ack_wait is not None and abs(info.config.ack_wait - ack_wait_s) < 1e-3:
        return
    log.info("consumer %s: ack wait %s s -> %s s", CONSUMER, info.config.ack_wait, ack_wait_s)
    await bus.js.add_consumer(stream, info.config.evolve(ack_wait=ack_wait_s))


async def outcomes_caught_up(bus: Bus, *, timeout_s: float = 30.0, poll_s: float = 0.05) -> None:
    """Wait until the outcomes consumer has recorded every JobFinished already in the stream. A session is reported
    ended only after its jobs' JobFinished events were published, so after this the previous session's outcomes
    are all known. Bounded: past `timeout_s` planning goes on, and a job whose outcome is still unknown is treated
    as not completed (its full read asked for again: more work, never less).

    Judged on stream sequences, not on the consumer's pending counter alone: the last JobFinished's sequence must
    be delivered to the consumer and nothing it delivered may wait for its ack. (A consumer just created reports
    0 pending before its first count, seen once under load: the counters alone said "caught up" too early.)"""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    stream = bus.config.events_stream
    last: int | None
    try:
        last = (await bus.js.get_last_msg(stream, bus.config.events_subject("*.JobFinished"))).seq or 0
    except NotFoundError:
        return  # no JobFinished in the stream: nothing to wait for
    except Exception as exc:  # NATS away or a permission missing: the counters alone, still bounded
        log.warning("last JobFinished unknown (%s); waiting on the consumer's counters", type(exc).__name__)
        last = None
    while True:
        try:
            info = await bus.js.consumer_info(stream, OUTCOMES_CONSUMER)
            delivered = (info.delivered.stream_seq if info.delivered is not None else 0) or 0
            if last is None:
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    return
            elif delivered >= last and info.num_ack_pending == 0:
                return
        except Exception:  # not created yet (the consumer task is starting), or NATS away: asked again
            pass
        if loop.time() >= deadline:
            log.warning("job outcomes still being recorded after %g s; planning goes on", timeout_s)
            return
        await asyncio.sleep(poll_s)


async def consume_job_outcomes(bus: Bus, store: DiscoveryStore, stop: asyncio.Event) -> None:
    outcomes = Consuming(filter_subject=bus.config.events_subject("*.JobFinished"))
    await bus.consume_events(OUTCOMES_CONSUMER, functools.partial(record_job_outcomes, store), stop, outcomes)
