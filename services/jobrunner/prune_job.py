"""A prune job (JOB_TYPE_PRUNE, issue 18 keep): storage's PruneStep with chunk_seq 1, 2, ... until a step says
`done`, with the retention discovery resolved for the org (JobSpec.prune). Never calls Salesforce.

Wiring (services/jobrunner/application.py, JobExecutor.execute -- the lead's file), next to the other kinds:

    from services.jobrunner.prune_job import PruneJob, StoragePruner
    ...
    elif spec.type == ev.JOB_TYPE_PRUNE:
        job = PruneJob(run, StoragePruner(self.storage))

(with `job: DataJob | FileJob | MetadataJob | PruneJob`); then `message = job.execute()` and the outcome as for
the others: WARNING when `job.warnings` (a legal hold kept part of the org), else SUCCESS. StoragePruner calls
StorageService.PruneStep through the StorageClient's stub with its retries (or give StorageClient a
`prune_step(request)` method and pass the client itself: PruneJob only needs `prune_step`).

- Each step is one chunk: its counts are the job's progress (received = versions pruned, deleted = record
  versions, metadata_components = metadata versions, files = file bodies, bytes = bytes freed from the file
  repository), as storage announces them in its ChunkUploaded.
- Resumable: BeginJob tells the last step storage committed (and the totals so far); the job goes on at the next
  chunk_seq. A redelivered step is answered with its first result (storage keys it by chunk_seq).
- A dry run is one step (storage counts everything, deletes nothing); a resumed dry run that already has its step
  reports it again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any, Protocol

from sfvault.storage.v1 import storage_pb2 as spb

from services.jobrunner.job_run import JobRun
from services.platform.counts import Counts

log = logging.getLogger("services.jobrunner.prune")
MAX_STEPS = 1_000_000  # a safety net: a storage that never says done fails the job instead of looping forever
STEP_VERSIONS = 50_000  # versions (and bodies) per step: one transaction of a few seconds at most


class Pruner(Protocol):
    def prune_step(self, request: spb.PruneStepRequest) -> spb.PruneStepResponse: ...


class StoragePruner:
    """PruneStep through the jobrunner's StorageClient (its stub, its retries and error mapping)."""

    def __init__(self, client: Any, timeout_s: float = 600.0) -> None:
        self.client = client
        self.timeout_s = timeout_s

    def prune_step(self, request: spb.PruneStepRequest) -> spb.PruneStepResponse:
        own = getattr(self.client, "prune_step", None)
        if own is not None:
            return own(request)  # type: ignore[no-any-return]
        stub = self.client.stub
        return self.client._call(lambda: stub.PruneStep(request, timeout=self.timeout_s))  # type: ignore[no-any-return]


def step_counts(r: spb.PruneStepResponse) -> Counts:
    """A step's counts as storage records them with the chunk (and BeginJob sums them)."""
    return Counts(
        received=r.record_versions + r.metadata_versions + r.file_versions,
        deleted=r.record_versions,
        metadata_components=r.metadata_versions,
        files=r.file_bodies,
        bytes=r.bytes_freed,
    )


def summary(totals: Counts, *, dry_run: bool, held: bool, horizon: dt.datetime | None) -> str:
    """The job's message: what went (or would go), the bytes, the horizon, a hold."""
    record, metadata, bodies = totals.deleted, totals.metadata_components, totals.files
    files = totals.received - record - metadata
    verb = "would prune" if dry_run else "pruned"
    text = (
        f"{verb} {record:,} record versions, {metadata:,} metadata versions, {files:,} file versions and "
        f"{bodies:,} file bodies ({totals.bytes:,} bytes {'to free' if dry_run else 'freed'} in the file repository)"
    )
    if horizon is not None:
        text += f"; restore points before {horizon.isoformat()} {'would be' if dry_run else 'are'} gone"
    if held:
        text += "; a legal hold kept (part of) the org"
    return text


class PruneJob:
    def __init__(self, run: JobRun, pruner: Pruner, *, step_versions: int = STEP_VERSIONS) -> None:
        self.run = run
        self.pruner = pruner
        self.step_versions = step_versions
        self.warnings: list[str] = []

    def totals(self) -> Counts:
        """What the job pruned so far, this attempt's steps and the stored ones before it."""
        return dataclasses.replace(self.run.stored, received=self.run.received)

    def execute(self) -> str:
        run, spec = self.run, self.run.spec
        run.begin()
        dry_run = spec.prune.dry_run
        held, horizon = False, None
        if dry_run and run.seq > 0:
            # the dry run's one step is stored already: its counts are BeginJob's totals
            return summary(self.totals(), dry_run=True, held=False, horizon=None)
        for _ in range(MAX_STEPS):
            run.control.check()
            seq = run.seq + 1
            request = spb.PruneStepRequest(
                org_id=run.org,
                session_id=spec.session_id,
                job_id=spec.job_id,
                chunk_seq=seq,
                retention=spec.prune.retention,
                dry_run=dry_run,
                max_versions=self.step_versions,
            )
            response = self.pruner.prune_step(request)
            counts = step_counts(response)
            run.seq = seq
            run.stored += Counts(
                deleted=counts.deleted,
                metadata_components=counts.metadata_components,
                files=counts.files,
                bytes=counts.bytes,
            )
            run.count_read(counts.received)
            held = held or response.held
            if response.HasField("horizon"):
                horizon = response.horizon.ToDatetime(tzinfo=dt.UTC)
            log.info(
                "prune %s step %d: %d record, %d metadata, %d file versions, %d bodies%s",
                spec.session_id,
                seq,
                response.record_versions,
                response.metadata_versions,
                response.file_versions,
                response.file_bodies,
                " (dry run)" if dry_run else "",
            )
            if response.done:
                break
        else:
            raise RuntimeError(f"storage did not finish the prune in {MAX_STEPS} steps")
        if held:
            self.warnings.append("a legal hold kept (part of) the org")
        return summary(self.totals(), dry_run=dry_run, held=held, horizon=horizon)
