"""One attempt of a job, whatever its kind: stop signals, chunk numbering, write-ahead checkpoints and the
resume position they give, and storage's counts. A crashed attempt resumes exactly after the last chunk storage
committed and never re-sends a stored chunk_seq with other content."""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sfvault.jobs.v1 import jobs_pb2
from sfvault.storage.v1 import storage_pb2 as spb

from services.canonical import CANONICAL_RULES
from services.jobrunner import domain, translate
from services.jobrunner.domain import CountMismatch
from services.jobrunner.ports import CheckpointStore, Chunk, OrgClock, Storage
from services.platform.counts import ZERO, Counts

log = logging.getLogger("services.jobrunner.jobs")


class JobStopped(Exception):
    """The job was told to stop (terminated, cancelled, or the replica is shutting down)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why  # "terminated" | "cancelled" | "shutdown" | "dropped"


class JobControl:
    """Thread-safe stop signals for one running job; checked before every chunk and between pages."""

    def __init__(self) -> None:
        self._why: str | None = None
        self._lock = threading.Lock()
        self.on_stop: Callable[[str], None] | None = None

    def stop(self, why: str) -> None:
        with self._lock:
            # a termination outranks a cancellation, which outranks a shutdown
            order = {"terminated": 3, "dropped": 3, "cancelled": 2, "shutdown": 1}
            if self._why is None or order[why] > order[self._why]:
                self._why = why
        if self.on_stop is not None:
            self.on_stop(why)

    @property
    def why(self) -> str | None:
        return self._why

    def check(self) -> None:
        if self._why is not None:
            raise JobStopped(self._why)


@dataclass
class Tuning:
    chunk_records: int = domain.CHUNK_RECORDS
    chunk_bytes: int = 4 << 20  # a chunk also ends at this many bytes: memory per job stays bounded
    bulk_threshold: int = domain.BULK_THRESHOLD
    bulk_page: int = domain.BULK_PAGE
    rest_batch: int = domain.REST_BATCH
    overlap: dt.timedelta = domain.OVERLAP
    settle: dt.timedelta = domain.SETTLE
    metadata_batch: int = 2500  # components per retrieve: far below the 10,000-file limit


@dataclass
class JobRun:
    """Shared plumbing of a job attempt: chunk numbering, checkpoints, counts."""

    spec: jobs_pb2.JobSpec
    storage: Storage
    store: CheckpointStore
    control: JobControl
    tuning: Tuning
    client: OrgClock
    received: int = 0  # records read (the reader's own count); storage's counts of the chunks say the rest
    stored: Counts = ZERO  # storage's counts of the chunks stored (received and api_calls apart)
    seq: int = 0  # last chunk stored
    chunks: int = 0  # how many chunks storage held when this attempt began (fewer than `seq`: some are missing)
    checkpoint: dict[str, Any] = field(default_factory=dict)
    # one chunk may be in storage's hands while the next is read: they are still sent strictly in order, and a
    # chunk's checkpoint is written only once the chunk before it committed
    pipe: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="chunk"))
    pending: Future[None] | None = None
    waited_s: float = 0.0  # time the reader sat idle waiting for storage (where a slow backup spends its time)
    storage_s: float = 0.0  # time storage took for this job's chunks
    started: float = field(default_factory=time.monotonic)
    # whether storage counts a change of a formula field as a change (BeginJobResponse): the canonical records
    # are made so
    formula_changes_counted: bool = False

    @property
    def org(self) -> str:
        return self.spec.salesforce_org_id

    def chunk_of(self, seq: int, object_name: str) -> dict[str, Any]:
        """What names chunk `seq` of this job to storage."""
        return {
            "org_id": self.org,
            "session_id": self.spec.session_id,
            "job_id": self.spec.job_id,
            "chunk_seq": seq,
            "object_name": object_name,
        }

    def begin(self, object_name: str = "") -> None:
        resp = self.storage.begin_job(self.org, self.spec.session_id, self.spec.job_id, self.spec.type, object_name)
        self.seq = int(resp.last_chunk_seq)
        self.chunks = int(resp.chunks)
        self.formula_changes_counted = bool(resp.formula_changes_counted)
        self.received = int(resp.counts.received)
        self.stored = translate.chunk_counts(resp.counts)
        self.checkpoint = self.store.checkpoint(self.spec.session_id, self.spec.job_id) or {}

    def resume_position(self) -> dict[str, Any] | None:
        """Where to continue: after the last chunk storage committed (None: from the beginning)."""
        cp = self.checkpoint
        if not cp or self.seq == 0:
            return None
        if cp.get("seq") == self.seq:
            return dict(cp.get("pos") or {}) or None
        if cp.get("seq") == self.seq + 1:
            return dict(cp.get("prev") or {}) or None  # the chunk announced last never committed
        return None  # unknown: read again from the start (storage finds the re-read records unchanged)

    def wait_stored(self) -> None:
        """Until the chunk in flight is committed (its error, if any, is raised here)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            started = time.monotonic()
            try:
                pending.result()
            finally:
                self.waited_s += time.monotonic() - started

    def announce(self, pos: dict[str, Any], extra: dict[str, Any]) -> int:
        """Write-ahead: the next chunk's number and where reading continues after it, before storing it."""
        self.wait_stored()
        self.control.check()
        seq = self.seq + 1
        prev = self.checkpoint.get("pos") if self.checkpoint.get("seq") == self.seq else None
        self.checkpoint = {**self.checkpoint, **extra, "seq": seq, "pos": pos, "prev": prev or {}}
        self.store.save_checkpoint(self.spec.session_id, self.spec.job_id, self.checkpoint)
        return seq

    def save_state(self, **extra: Any) -> None:
        self.wait_stored()
        self.checkpoint = {**self.checkpoint, **extra}
        self.store.save_checkpoint(self.spec.session_id, self.spec.job_id, self.checkpoint)

    def committed(self, seq: int, result: spb.ChunkResult | spb.UploadFileResponse, received: int = 0) -> None:
        """Chunk `seq` is stored: the job goes on after it, with storage's counts of it (and `received`, what
        the job read for it, when the read does not count it itself)."""
        self.seq = seq
        self.stored += translate.chunk_counts(result.counts)
        if received:  # never a write of `received` from the storage thread while the reader counts
            self.received += received

    def count_read(self, records: int) -> None:
        """Records the job read (what storage's counts say it received once they are stored)."""
        self.received += records

    def chunk(self, seq: int, object_name: str = "") -> Chunk:
        """This job's chunk `seq` in storage."""
        return Chunk(self.org, self.spec.session_id, self.spec.job_id, seq, object_name)

    def put_records(self, object_name: str, records: list[Any], pos: dict[str, Any], **extra: Any) -> None:
        seq = self.announce(pos, extra)
        # in a copy of the job's context, so the chunk's storage call stays in the session's trace
        self.pending = self.pipe.submit(contextvars.copy_context().run, self._store, seq, object_name, records)

    def _store(self, seq: int, object_name: str, records: list[Any]) -> None:
        started = time.monotonic()
        sent = len(records)  # put_records empties the list once the request is built
        result = self.storage.put_records(
            self.chunk(seq, object_name),
            records,
            rules=CANONICAL_RULES,
            formula_changes_counted=self.formula_changes_counted,
        )
        self.storage_s += time.monotonic() - started
        # also what catches a storage that does not read the request's form (an older replica mid-upgrade takes
        # canonical columns for an empty chunk): the job fails loudly instead of skipping the chunk's records
        if not result.replayed and int(result.counts.received) != sent:
            raise CountMismatch(f"chunk {seq}: sent {sent} records, storage received {result.counts.received}")
        self.committed(seq, result)

    def mark_deleted(
        self, object_name: str, ids: list[str], state: int, pos: dict[str, Any], **extra: Any
    ) -> list[str]:
        seq = self.announce(pos, extra)
        result = self.storage.mark_deleted(self.chunk(seq, object_name), ids, state)
        self.committed(seq, result)
        return list(result.unknown_ids)

    def finish_counts(self) -> Counts:
        try:
            self.wait_stored()
        except Exception:
            log.debug("the chunk in flight failed", exc_info=True)
        self.pipe.shutdown(wait=False)
        return dataclasses.replace(self.stored, received=self.received, api_calls=self.client.api_calls)
