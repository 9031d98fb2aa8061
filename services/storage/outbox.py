"""The relay of storage's outbox: every committed chunk's ChunkUploaded reaches the stream, even when the
process dies between its commit and its publish.

A chunk's transaction leaves a row in the outbox (store.PostgresStore._finish). Right after the commit the
write RPC announces the event itself (`announce`); the relay publishes whatever is still pending at start-up,
on a job's resume (BeginJob), on a replayed chunk and every `interval_s`, and deletes the rows the stream
acknowledged (in batches, off the write path). Event ids are deterministic (`ChunkUploaded:<session>:<job>:
<chunk_seq>`): a repeat within the stream's duplicate window is dropped by JetStream, and the session
service's tracking table recognises one after it. A failed publish never fails a committed write.
"""

from __future__ import annotations

import asyncio
import logging

from services.storage.domain import PendingEvent
from services.storage.ports import ChunkPublisher, OutboxStore

log = logging.getLogger(__name__)


class ChunkEventRelay:
    def __init__(
        self, store: OutboxStore, publisher: ChunkPublisher, *, interval_s: float = 2.0, batch: int = 500
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.interval_s = interval_s
        self.announce_timeout_s = 10.0  # a write's own publish waits no longer (NATS away: the relay retries)
        self.batch = batch
        self._acked: set[tuple[int, int]] = set()  # published and acknowledged; their rows not yet deleted
        self._retry = asyncio.Event()

    async def announce(self, event: PendingEvent) -> bool:
        """Publish a chunk's event right after its commit; on failure the relay publishes it later."""
        try:
            async with asyncio.timeout(self.announce_timeout_s):
                await self.publisher.chunk_uploaded(event)
        except Exception as exc:  # the row stays in the outbox: nothing is lost
            log.warning(
                "ChunkUploaded of chunk %d of job %s not published now (%s); the outbox relay retries it",
                event.chunk_seq,
                event.job_id,
                type(exc).__name__,
            )
            self._retry.set()
            return False
        self._acked.add((event.job_key, event.chunk_seq))
        return True

    async def relay(self, *, job_key: int | None = None, min_age_s: float | None = None) -> int:
        """Publish the pending events (of one job, or all); returns how many were published. Stops at the first
        failed publish (the rest wait for the next run)."""
        published = 0
        while True:
            rows = [
                r
                for r in await self.store.pending_events(job_key=job_key, min_age_s=min_age_s, limit=self.batch)
                if (r.job_key, r.chunk_seq) not in self._acked
            ]
            poisoned = 0
            for row in rows:
                try:
                    await self.publisher.chunk_uploaded(row)
                except (ValueError, TypeError) as exc:
                    # an event that can never be made (not a bus failure): kept, and no bar to the others
                    poisoned += 1
                    log.error(
                        "outbox relay: ChunkUploaded of chunk %d of job %s cannot be published (%s); skipped",
                        row.chunk_seq,
                        row.job_id,
                        type(exc).__name__,
                    )
                    continue
                except Exception as exc:  # the bus: retried at the next run
                    log.warning(
                        "outbox relay: ChunkUploaded of chunk %d of job %s not published (%s); retrying later",
                        row.chunk_seq,
                        row.job_id,
                        type(exc).__name__,
                    )
                    await self.flush()
                    return published
                self._acked.add((row.job_key, row.chunk_seq))
                published += 1
            await self.flush()
            if len(rows) < self.batch or poisoned == len(rows):
                return published

    async def flush(self) -> None:
        """Delete the outbox rows of acknowledged events."""
        keys = sorted(self._acked)
        if not keys:
            return
        await self.store.events_published(keys)
        self._acked.difference_update(keys)

    async def run(self) -> None:
        """Until cancelled: every interval (sooner after a failed announce), delete what was acknowledged and
        publish what is still pending."""
        while True:
            retry = False
            try:
                async with asyncio.timeout(self.interval_s):
                    await self._retry.wait()
                    retry = True
            except TimeoutError:
                pass
            self._retry.clear()
            try:
                await self.flush()
                # periodically only chunks older than an interval: younger ones are being announced by their call
                await self.relay(min_age_s=None if retry else self.interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database or bus down: the next run tries again
                log.warning("outbox relay: %s; retrying in %.0f s", type(exc).__name__, self.interval_s)
