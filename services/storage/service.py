"""Composition root: settings -> database, file repository, bus -> application -> gRPC server.

`start()` is what `python -m services.storage` runs and what the end-to-end tests start in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool
from sfvault.storage.v1 import storage_pb2, storage_pb2_grpc

from services.platform.auth import BusAccess
from services.platform.bus import Bus
from services.platform.grpcserver import GrpcServer, start_grpc_server
from services.platform.secrets import SecretError
from services.storage.api_retention import StorageServicer
from services.storage.application import Storage, StorageOptions
from services.storage.config import ConfigError, StorageSettings
from services.storage.consumers import BusChunkPublisher
from services.storage.files import EncryptedFileRepository, FileRepository, open_repository
from services.storage.outbox import ChunkPublisher
from services.storage.store import PostgresStore, open_store_pool

log = logging.getLogger(__name__)
SERVICE_NAME = storage_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name


# Reads are for viewers (the read audit for admins). Everything else -- every write (BeginJob, PutObjectSchema,
# PutRecords, MarkDeleted, UploadFile, PutMetadata) and any RPC added later -- needs the services' own role:
# backed-up history is append-only for people, whatever their role (an admin could otherwise fake a hard delete
# or plant a version).
READS = {
    "GetRecordHistory": "viewer",
    "GetRecordAsOf": "viewer",
    "ExportObjectAsOf": "viewer",
    "ListRestorePoints": "viewer",
    "GetFile": "viewer",
    "ListFileVersions": "viewer",
    "ListMetadataVersions": "viewer",
    "GetMetadataAsOf": "viewer",
    "ListReadAudit": "admin",  # who read what: for admins
    # restore (issue 17): what a restore did and the Id map are listings without backed-up values
    "ListRestoreRecords": "viewer",
    "GetIdMap": "viewer",
    "ListRestoreIntents": "viewer",
    # the backup's records in bulk, for a restore: the restorer role (which the services and admins include);
    # RecordRestoreIntent and PutRestoreOutcomes are writes: the service role, as every write
    "ReadRecordsAsOf": "restorer",
    # compare (issue 18): changed fields, and their values when asked (as GetRecordAsOf gives a viewer); the live
    # count per object (the hard-delete count check of every session)
    "CompareAsOf": "viewer",
    "CountLive": "viewer",
    # keep (issue 18): legal holds are set and released by admins, listed by viewers; PruneStep and
    # PinRestorePoint are the services' own calls (a prune session's job; a restore draft's point)
    "SetLegalHold": "admin",
    "ReleaseLegalHold": "admin",
    "ListLegalHolds": "viewer",
    # erasure (issue 18): an admin's act (audited: who, when, why, what); its verification takes the personal data
    # looked for and says where it is: admins too
    "Erase": "admin",
    "VerifyErasure": "admin",
}
ROLES = {
    m.name: READS.get(m.name, "service") for m in storage_pb2.DESCRIPTOR.services_by_name["StorageService"].methods
}


@dataclass
class RunningStorage:
    server: GrpcServer
    storage: Storage
    pool: AsyncConnectionPool
    bus: Bus | None
    relay: asyncio.Task[None] | None = None
    access: BusAccess | None = None  # revocations followed, people's changes audited
    read_audit: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace_s: float = 5.0) -> None:
        """Drain: NOT_SERVING first, then let in-flight chunks finish (their transactions commit or roll back
        whole), then stop the outbox relay (forgetting what was acknowledged), then close the bus and the pool."""
        await self.server.stop(grace_s)
        self.storage.sensitive.cancel()  # a background reseal: `python -m services.storage reseal` resumes it
        for task in (self.relay, self.read_audit):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(Exception):
            await self.storage.read_audit.flush()  # the reads of the drained calls
        with contextlib.suppress(Exception):
            await self.storage.relay.flush()  # else re-published at the next start (and dropped as duplicates)
        if self.access is not None:
            await self.access.close()
        if self.bus is not None:
            await self.bus.close()
        await self.pool.close()


async def start(
    settings: StorageSettings,
    *,
    files: FileRepository | None = None,
    publisher: ChunkPublisher | None = None,
) -> RunningStorage:
    try:
        keyring = settings.keyring()
    except SecretError as exc:
        raise ConfigError(f"storage: bad configuration: {exc}") from None
    pool = await open_store_pool(settings.database_url, max_size=settings.storage_db_pool_size)
    store = PostgresStore(pool)
    version = await store.migrate(count_formula_changes=settings.storage_count_formula_changes)
    log.info("storage schema at version %d", version)
    plain = files or open_repository(settings.file_repository, s3_endpoint_url=settings.s3_endpoint_url)
    repo = EncryptedFileRepository(plain, keyring, store.body_envelope)
    if keyring is not None:
        log.info("file repository: new bodies encrypted with key %s", keyring.current_id)
    unknown = await store.kek_ids_in_use() - set(keyring.ids if keyring else ())
    if unknown:  # plain bodies and the others stay readable: not a reason to refuse to start
        log.warning(
            "file repository: bodies encrypted with key(s) %s cannot be read: add their references to"
            " SFVAULT_STORAGE_ENCRYPTION_OLD_KEY_REFS",
            ", ".join(sorted(unknown)),
        )
    locked = {e.kek_id for _org, e in await store.value_keys_not_under("")} - set(keyring.ids if keyring else ())
    if locked:  # the other orgs' records (and these orgs' values in clear) stay readable
        log.warning(
            "sensitive fields: values sealed under key(s) %s cannot be read: add their references to"
            " SFVAULT_STORAGE_ENCRYPTION_OLD_KEY_REFS",
            ", ".join(sorted(locked)),
        )
    await repo.check()
    swept = await repo.sweep_temporary(settings.storage_tmp_grace_s)
    if swept:
        log.info("file repository: removed %d temporary bodies of killed uploads", swept)
    bus: Bus | None = None
    if publisher is None:
        # the streams as every service declares them (replicas, duplicate window): storage resets nothing
        bus = await Bus.connect(settings.bus_config(), producer="storage")
        publisher = BusChunkPublisher(bus)
    options = {f.name: getattr(settings, f"storage_{f.name}") for f in dataclasses.fields(StorageOptions)}
    storage = Storage(store, repo, publisher, StorageOptions(**options), keyring=keyring)
    # what a killed predecessor committed and never announced, before anything new
    try:
        relayed = await storage.relay.relay()
        if relayed:
            log.info("outbox: announced %d committed chunks left unpublished", relayed)
    except Exception as exc:  # the periodic relay tries again
        log.warning("outbox relay at start-up failed (%s); retrying periodically", type(exc).__name__)
    relay = asyncio.create_task(storage.relay.run(), name="storage-outbox-relay")
    read_audit = asyncio.create_task(storage.read_audit.run(), name="storage-read-audit")
    limit = settings.storage_max_message_mb << 20  # a 10,000-record chunk is larger than gRPC's 4 MiB default
    interceptors = settings.auth_interceptors(ROLES)
    access = await BusAccess.attach(interceptors, bus, "storage") if bus is not None else None
    server = await start_grpc_server(
        [(storage_pb2_grpc.add_StorageServiceServicer_to_server, StorageServicer(storage), SERVICE_NAME)],
        port=settings.storage_port,
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
        interceptors=interceptors,
        credentials=settings.server_credentials(),
    )
    await server.set_serving(True)  # database migrated, repository writable, bus connected
    log.info("storage serving on port %d", server.port)
    return RunningStorage(server, storage, pool, bus, relay=relay, access=access, read_audit=read_audit)
