"""What storage publishes on the bus: ChunkUploaded of each committed chunk, from the outbox (storage consumes
nothing); a restore chunk's carries its counts per object (`restore`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sfvault.events.v1 import events_pb2

from services.platform import events
from services.platform.bus import Bus
from services.storage.domain import Counts, RestoreCounts


class BusChunkPublisher:
    """Publishes ChunkUploaded with the deterministic id (session, job, chunk_seq): a replayed chunk
    publishes the same fact again and JetStream drops the duplicate."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def chunk_uploaded(
        self,
        session_id: str,
        job_id: str,
        chunk_seq: int,
        counts: Counts,
        occurred_at: dt.datetime | None = None,
        *,
        restore: Sequence[RestoreCounts] = (),
    ) -> None:
        payload = events_pb2.ChunkUploaded(
            chunk_seq=chunk_seq,
            counts=events.counts_to_pb(counts),
            restore=[events.restore_counts_to_pb(r) for r in restore],
        )
        env = events.envelope(
            payload,
            session_id=session_id,
            job_id=job_id,
            producer=self.bus.producer,
            id_parts=(chunk_seq,),
            occurred_at=occurred_at,
        )
        await self.bus.publish(env)
