"""Session's NATS consumers: the projection's durable consumer of EVENTS, and the replay of the whole stream
that `rebuild` folds into an empty projection. (Its publications go through the bus port: ports.Publisher.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.platform.bus import Bus
from services.platform.ports import BatchHandler, Consuming

CONSUMER = "session-projection"


async def consume_events(
    bus: Bus, handler: BatchHandler, stop: asyncio.Event, batch_size: int, ack_wait_s: float
) -> None:
    """Fold EVENTS into the projection until `stop`: each batch is acked once `handler` committed it."""
    await bus.consume_events(CONSUMER, handler, stop, Consuming(batch_size=batch_size, ack_wait_s=ack_wait_s))


async def replay(bus: Bus, durable: str, batch_size: int) -> AsyncIterator[list[tuple[int, bytes]]]:
    """Every message of EVENTS from the first up to the last one now, in batches of (stream sequence, data),
    through a consumer named `durable` that the caller deletes."""
    stream = bus.config.events_stream
    last = (await bus.js.stream_info(stream)).state.last_seq
    sub = await bus.js.pull_subscribe(
        bus.config.events_subject(),
        durable=durable,
        stream=stream,
        config=ConsumerConfig(
            durable_name=durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            max_ack_pending=-1,
        ),
    )
    seq = 0
    while seq < last:
        try:
            msgs = await sub.fetch(batch_size, timeout=5)
        except (TimeoutError, NatsTimeoutError):
            break
        batch = []
        for msg in msgs:
            seq = msg.metadata.sequence.stream
            if seq > last:
                break
            batch.append((seq, msg.data))
        yield batch
