"""Composition root: settings -> schema, store, storage client, bus -> runner, plus a gRPC server that only
serves health and reflection. `start()` is what `python -m services.jobrunner` and the tests run."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass

import psycopg
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2

from services.jobrunner import migrations
from services.jobrunner.application import ErrorKinds, JobExecutor
from services.jobrunner.config import JobrunnerSettings
from services.jobrunner.consumers import Runner
from services.jobrunner.domain import CountMismatch
from services.jobrunner.job_run import Tuning
from services.jobrunner.restore_job import mask_secret
from services.jobrunner.salesforce import JobOrgClient, SessionLogins
from services.jobrunner.salesforce_write import WriteAnswerLost
from services.jobrunner.storage_client import StorageClient, StorageConflict, StorageError, StorageUnavailable
from services.jobrunner.store import JobStore
from services.platform import serving
from services.platform.auth import load_key
from services.platform.bus import Bus
from services.platform.errors import InvalidArgument
from services.platform.grpcserver import GrpcServer, start_grpc_server
from services.sfclient import ApiLimitExceeded, AuthenticationRefused, OrgUnreachable, SalesforceError, is_transient

log = logging.getLogger("sfvault.jobrunner")


def tuning(settings: JobrunnerSettings) -> Tuning:
    return Tuning(
        chunk_records=settings.jobrunner_chunk_records,
        chunk_bytes=int(settings.jobrunner_chunk_mb * (1 << 20)),
        bulk_threshold=settings.jobrunner_bulk_threshold,
        bulk_page=settings.jobrunner_bulk_page,
        rest_batch=settings.jobrunner_rest_batch,
        overlap=dt.timedelta(seconds=settings.jobrunner_overlap_s),
        settle=dt.timedelta(seconds=settings.jobrunner_settle_s),
    )


def error_kinds() -> ErrorKinds:
    """What the adapters' errors make of a job."""
    return ErrorKinds(
        # on Salesforce's side, what `is_transient` says (the one retry rule) and still failed after OrgClient's
        # own retries, or broke a streamed result page mid-body (the job resumes at that page's locator)
        # WriteAnswerLost: a create whose answer was lost; the next attempt resolves its intent first
        transient=(StorageUnavailable, StorageConflict, OrgUnreachable, psycopg.OperationalError, WriteAnswerLost),
        # InvalidArgument: a record the canonical form refuses (the message names the field, not the value)
        failing=(CountMismatch, SalesforceError, StorageError, AuthenticationRefused, InvalidArgument),
        limit=(ApiLimitExceeded,),
        is_transient=is_transient,
    )


def org_client(spec: jobs_pb2.JobSpec, timeout: float, logins: SessionLogins | None = None) -> JobOrgClient:
    """The org a job talks to: its own for a backup, the TARGET for a restore (spec.restore.target_connection);
    logged in once per session and org by this process (`logins`)."""
    if spec.type in (ev.JOB_TYPE_RESTORE, ev.JOB_TYPE_METADATA_RESTORE):
        return JobOrgClient.for_restore(spec, timeout=timeout, logins=logins)
    return JobOrgClient.for_job(spec, timeout=timeout, logins=logins)


def deployment_mask_secret(settings: JobrunnerSettings) -> bytes:
    """Restore masking's key: derived from the deployment's auth key (SFVAULT_AUTH_KEY), else from the bus
    namespace and database name (a deployment without auth: still stable across its replicas and runs)."""
    key = load_key(settings.auth_key) if settings.auth_key else b""
    database = settings.database_url.rsplit("/", 1)[-1]
    return mask_secret(key, f"{settings.bus_namespace}/{database}")


@dataclass
class RunningJobrunner:
    runner: Runner
    server: GrpcServer
    bus: Bus
    store: JobStore
    storage: StorageClient
    task: asyncio.Task[None]
    stop_event: asyncio.Event

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, drain_s: float = 30.0) -> None:
        """SIGTERM path: NOT_SERVING, stop taking jobs, let in-flight ones reach a chunk boundary (they are handed
        back with nak and resume elsewhere from their checkpoint), then close."""
        await self.server.set_serving(False)
        self.stop_event.set()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self.task), drain_s)
        await self.server.stop(1)
        await self.bus.close()
        await asyncio.to_thread(self.store.close)
        self.storage.close()


async def start(settings: JobrunnerSettings) -> RunningJobrunner:
    await migrations.migrate(settings.database_url, settings.jobrunner_db_schema)
    store = JobStore(settings.database_url, settings.jobrunner_db_schema, max_size=settings.jobrunner_concurrency + 2)
    storage = StorageClient(
        settings.storage_addr,
        max_message_mb=settings.storage_max_message_mb,
        token=settings.own_token("jobrunner"),
        credentials=settings.channel_credentials(),
    )
    bus = await Bus.connect(settings.bus_config(), producer="jobrunner")
    server = await start_grpc_server([], port=settings.jobrunner_port, credentials=settings.server_credentials())
    logins = SessionLogins()
    jobs = JobExecutor(
        storage,
        store,
        lambda spec: org_client(spec, settings.jobrunner_http_timeout_s, logins),
        error_kinds(),
        tuning=tuning(settings),
        max_deliver=bus.config.max_deliver,
        mask_secret=deployment_mask_secret(settings),
    )
    runner = Runner(
        bus,
        store,
        jobs,
        worker_id=settings.worker_id,
        concurrency=settings.jobrunner_concurrency,
        window=settings.jobrunner_window,
        org_cap=settings.jobrunner_org_cap,
        ack_wait_s=settings.jobrunner_ack_wait_s,
        heartbeat_s=settings.jobrunner_heartbeat_s,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await server.set_serving(True)
    log.info(
        "jobrunner %s serving health on port %d, %d jobs at once",
        settings.worker_id,
        server.port,
        settings.jobrunner_concurrency,
    )
    return RunningJobrunner(runner, server, bus, store, storage, task, stop)


async def serve(settings: JobrunnerSettings, stop: asyncio.Event) -> None:
    running = await start(settings)

    async def database_answers() -> bool:
        def ping() -> bool:
            with running.store.pool.connection() as conn:
                conn.execute("SELECT 1")
            return True

        return await asyncio.to_thread(ping)

    health = serving.watch_dependencies(
        running.server, stop, database_answers, running.bus, settings.health_check_interval_s
    )
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({waiter, running.task}, return_when=asyncio.FIRST_COMPLETED)
    if running.task in done and running.task.exception() is not None:
        log.error("the runner stopped: %r", running.task.exception())
    health.cancel()
    await running.stop(settings.jobrunner_drain_s)
