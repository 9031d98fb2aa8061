"""What storage publishes on the bus: ChunkUploaded of each committed chunk, from the outbox (storage consumes
nothing); a restore chunk's carries its counts per object (`restore`)."""

from __future__ import annotations

from sfvault.events.v1 import events_pb2

from services.platform import events
from services.platform.bus import Bus
from services.storage.domain import PendingEvent


class BusChunkPublisher:
    """Publishes ChunkUploaded with the deterministic id (session, job, chunk_seq): a replayed chunk
    publishes the same fact again and JetStream drops the duplicate."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def chunk_uploaded(self, event: PendingEvent) -> None:
        payload = events_pb2.ChunkUploaded(
            chunk_seq=event.chunk_seq,
            counts=events.counts_to_pb(event.counts),
            restore=[events.restore_counts_to_pb(r) for r in event.restore],
        )
        env = events.envelope(
            payload,
            session_id=event.session_id,
            job_id=event.job_id,
            producer=self.bus.producer,
            id_parts=(event.chunk_seq,),
            occurred_at=event.committed_at,
        )
        await self.bus.publish(env)
