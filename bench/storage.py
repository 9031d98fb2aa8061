"""Storage benchmark: 1,000,000 records (10 objects x 100,000, 25 fields) through PutRecords against a plain
COPY of the same rows; the same records again unchanged; peak RSS of the service while streaming a 1 GB file.

Storage runs as its own process (`python -m services.storage`) on embedded PostgreSQL and NATS, as deployed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import psycopg
from sfvault.storage.v1 import storage_pb2 as pb
from sfvault.storage.v1 import storage_pb2_grpc

from devstack.embedded import free_port, nats_server, postgres_server
from services.jobrunner.storage_client import fill_columns
from services.storage.domain import FieldDef, FieldType, ObjectSchema, RecordCanonicalizer, id_suffix
from services.storage.migrations import PARTITIONS

OBJECTS = 10
PER_OBJECT = int(os.environ.get("BENCH_STORAGE_RECORDS_PER_OBJECT", "100000"))
CHUNK = 10_000
IN_FLIGHT = 3
FILE_BYTES = int(os.environ.get("BENCH_STORAGE_FILE_MB", "1024")) << 20
ORG = "00D000000000062EAA"
PREFIXES = [f"a{i:02d}" for i in range(OBJECTS)]

FIELDS: list[tuple[str, int, bool]] = [
    ("Id", pb.FIELD_TYPE_ID, False),
    ("Name", pb.FIELD_TYPE_STRING, False),
    *[(f"Text{i}__c", pb.FIELD_TYPE_STRING, False) for i in range(6)],
    *[(f"Amount{i}__c", pb.FIELD_TYPE_DOUBLE, False) for i in range(4)],
    *[(f"Count{i}__c", pb.FIELD_TYPE_INTEGER, False) for i in range(3)],
    *[(f"Flag{i}__c", pb.FIELD_TYPE_BOOLEAN, False) for i in range(3)],
    *[(f"Day{i}__c", pb.FIELD_TYPE_DATE, False) for i in range(2)],
    ("OwnerId", pb.FIELD_TYPE_ID, False),
    ("CreatedDate", pb.FIELD_TYPE_DATETIME, False),
    ("LastModifiedDate", pb.FIELD_TYPE_DATETIME, False),
    ("SystemModstamp", pb.FIELD_TYPE_DATETIME, False),
    ("Total__c", pb.FIELD_TYPE_DOUBLE, True),
]


def _id(prefix: str, n: int) -> str:
    id15 = f"{prefix}{n:012d}"
    return id15 + id_suffix(id15)


def _record(obj: int, n: int) -> bytes:
    base = dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=n)
    stamp = base.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    values: dict[str, object] = {
        "attributes": {"type": f"Obj{obj}__c"},
        "Id": _id(PREFIXES[obj], n),
        "Name": f"Record {obj}-{n}",
        **{f"Text{i}__c": f"text value {i} for record {n} of object {obj}" for i in range(6)},
        **{f"Amount{i}__c": round((n * 7.31 + i) % 100000, 2) for i in range(4)},
        **{f"Count{i}__c": (n * (i + 3)) % 5000 for i in range(3)},
        **{f"Flag{i}__c": (n + i) % 2 == 0 for i in range(3)},
        **{f"Day{i}__c": (base + dt.timedelta(days=i)).date().isoformat() for i in range(2)},
        "OwnerId": _id("005", n % 50),
        "CreatedDate": stamp,
        "LastModifiedDate": stamp,
        "SystemModstamp": stamp,
        "Total__c": n * 1.5,
    }
    return json.dumps(values, separators=(",", ":")).encode()


def _schema(obj: int) -> pb.ObjectSchema:
    return pb.ObjectSchema(
        object_name=f"Obj{obj}__c",
        key_prefix=PREFIXES[obj],
        fields=[pb.FieldSchema(name=n, type=t, calculated=c) for n, t, c in FIELDS],  # type: ignore[arg-type]
    )


def _cpu_s(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each of these processes; the machine is shared, so CPU per
    record says what wall time cannot."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _cpu_since(before: dict[int, float], pids: list[int]) -> float:
    """CPU seconds used since `before` by these processes (those started since count whole)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in _cpu_s(pids).items())


def _postgres_pids(url: str) -> list[int]:
    """The postmaster of this server and its children (backends, WAL writer, checkpointer, ...)."""
    with psycopg.connect(url) as conn:
        data_dir = str(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
    postmaster = int(Path(data_dir, "postmaster.pid").read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return [postmaster, *children]


def _rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class StorageProcess:
    def __init__(self, database_url: str, nats_url: str, files_dir: str) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "SFVAULT_DATABASE_URL": database_url,
            "SFVAULT_NATS_URL": nats_url,
            "SFVAULT_STORAGE_PORT": str(self.port),
            "SFVAULT_FILE_REPOSITORY": f"file://{files_dir}",
            # a private loopback port of this benchmark: no tokens (the auth interceptor is measured by tests)
            "SFVAULT_AUTH_DISABLED": "true",
            "SFVAULT_LOG_LEVEL": "WARNING",
        }
        self.proc = subprocess.Popen([sys.executable, "-m", "services.storage"], env=env)

    async def wait_ready(self, channel: grpc.aio.Channel) -> None:
        ready = asyncio.ensure_future(channel.channel_ready())
        deadline = time.monotonic() + 60
        while not ready.done():
            if self.proc.poll() is not None:
                ready.cancel()
                raise RuntimeError(f"the storage process exited with {self.proc.returncode} (its stderr is above)")
            if time.monotonic() > deadline:
                ready.cancel()
                raise TimeoutError("the storage process did not serve within 60 s")
            await asyncio.wait([ready], timeout=0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


async def _load(
    stub: storage_pb2_grpc.StorageServiceStub,
    session: str,
    chunks: list[pb.CanonicalColumns],
    org: str = ORG,
) -> pb.ChunkResult:
    total = pb.ChunkResult()
    begun = pb.BeginJobResponse()
    for obj in range(OBJECTS):
        begun = await stub.BeginJob(
            pb.BeginJobRequest(org_id=org, session_id=session, job_id=f"j{obj}", type=3, object_name=f"Obj{obj}__c")
        )
        await stub.PutObjectSchema(pb.PutObjectSchemaRequest(org_id=org, session_id=session, schema=_schema(obj)))
    per_object = len(chunks) // OBJECTS
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def send(i: int) -> None:
        obj, seq = divmod(i, per_object)
        request = pb.PutRecordsRequest(
            org_id=org, session_id=session, job_id=f"j{obj}", chunk_seq=seq + 1, object_name=f"Obj{obj}__c"
        )
        request.canonical_columns.CopyFrom(chunks[i])
        request.canonical_rules = begun.canonical_rules
        request.formula_changes_counted = begun.formula_changes_counted
        async with sem:
            result = await stub.PutRecords(request)
        for field in ("received", "new_versions", "changed", "unchanged"):
            setattr(total.counts, field, getattr(total.counts, field) + getattr(result.counts, field))

    await asyncio.gather(*(send(i) for i in range(len(chunks))))
    return total


def _count_versions(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT count(*) FROM storage.record_versions").fetchone()[0])  # type: ignore[index]


def _canonical_chunks(chunks: list[list[bytes]]) -> tuple[list[pb.CanonicalColumns], float]:
    """The chunks as the jobrunner sends them (canonicalised from parsed records, column by column); and the
    seconds it took."""
    out = []
    started = time.perf_counter()
    canonicalizers = [RecordCanonicalizer(_domain_schema(obj)) for obj in range(OBJECTS)]
    for i, chunk in enumerate(chunks):
        canon = canonicalizers[i * OBJECTS // len(chunks)]
        columns = pb.CanonicalColumns()
        fill_columns(columns, [canon.parts(json.loads(raw)) for raw in chunk])
        out.append(columns)
    return out, time.perf_counter() - started


def _domain_schema(obj: int) -> ObjectSchema:
    return ObjectSchema(f"Obj{obj}__c", tuple(FieldDef(n, FieldType(t), c) for n, t, c in FIELDS), PREFIXES[obj])


def _copy_baseline(url: str, org_id: str | None = ORG) -> tuple[int, float, float]:
    """COPY the stored rows, as text, into a table indexed and partitioned like record_versions."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE bench_copy (LIKE storage.record_versions INCLUDING DEFAULTS INCLUDING IDENTITY)"
            " PARTITION BY HASH (record_id)"
        )
        for i in range(PARTITIONS):
            conn.execute(
                f"CREATE TABLE bench_copy_p{i:02d} PARTITION OF bench_copy"
                f" FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i})"
            )
        conn.execute("ALTER TABLE bench_copy ADD PRIMARY KEY (org_key, object_key, record_id, version_id)")
        conn.commit()
        columns = "org_key, object_key, record_id, job_key, schema_version, system_modstamp, deleted, hash, data"
        buffer = bytearray()
        query = f"SELECT {columns} FROM storage.record_versions"
        if org_id is not None:
            query += f" WHERE org_key = (SELECT org_key FROM storage.orgs WHERE org_id = '{org_id}')"
        with conn.cursor().copy(f"COPY ({query}) TO STDOUT") as out:
            for block in out:
                buffer += block
        rows = buffer.count(b"\n")
        cpu = _cpu_s(_postgres_pids(url))
        started = time.perf_counter()
        with conn.cursor().copy(f"COPY bench_copy ({columns}) FROM STDIN") as cp:
            view = memoryview(buffer)
            for i in range(0, len(view), 1 << 20):
                cp.write(view[i : i + (1 << 20)])
        conn.commit()
        return rows, time.perf_counter() - started, _cpu_since(cpu, _postgres_pids(url))


async def _file_peak(database_url: str, nats_url: str, files_dir: str) -> tuple[float, float, float]:
    proc = StorageProcess(database_url, nats_url, files_dir)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}")
    try:
        await proc.wait_ready(channel)
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        await stub.BeginJob(pb.BeginJobRequest(org_id=ORG, session_id="files", job_id="f1", type=2))
        baseline = _rss_peak_mb(proc.proc.pid)
        piece = os.urandom(1 << 20)

        async def stream() -> AsyncIterator[pb.UploadFileRequest]:
            yield pb.UploadFileRequest(
                header=pb.FileHeader(
                    org_id=ORG,
                    session_id="files",
                    job_id="f1",
                    chunk_seq=1,
                    object_name="ContentVersion",
                    record_id=_id("068", 1),
                    size=FILE_BYTES,
                )
            )
            for i in range(FILE_BYTES >> 20):
                yield pb.UploadFileRequest(data=i.to_bytes(8, "big") + piece[8:])

        started = time.perf_counter()
        await stub.UploadFile(stream())
        elapsed = time.perf_counter() - started
        return baseline, _rss_peak_mb(proc.proc.pid), elapsed
    finally:
        await channel.close()
        proc.stop()


def _chunks() -> Iterator[list[bytes]]:
    for obj in range(OBJECTS):
        for start in range(0, PER_OBJECT, CHUNK):
            yield [_record(obj, n) for n in range(start, min(start + CHUNK, PER_OBJECT))]


async def _main(database_url: str, nats_url: str, files_dir: str) -> None:
    started = time.perf_counter()
    chunks = list(_chunks())
    total = sum(len(c) for c in chunks)
    size = sum(len(r) for c in chunks for r in c)
    print(
        f"prepared {total:,} records ({size / total:.0f} bytes of JSON each) in {time.perf_counter() - started:.1f} s"
    )
    canonical, canon_s = _canonical_chunks(chunks)
    print(
        f"canonicalised them as a jobrunner does (parse + canonical form, one core): {canon_s / total * 1e6:.1f} us"
        " per record, the jobrunners' share of the work"
    )

    proc = StorageProcess(database_url, nats_url, files_dir)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}", options=[("grpc.max_send_message_length", 64 << 20)])
    try:
        await proc.wait_ready(channel)
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        cpu_before = _cpu_s([proc.proc.pid, *_postgres_pids(database_url)])
        started = time.perf_counter()
        first = await _load(stub, "initial", canonical)
        initial_s = time.perf_counter() - started
        cpu_storage = _cpu_since(cpu_before, [proc.proc.pid])
        cpu_pg = _cpu_since(cpu_before, _postgres_pids(database_url))
        versions = _count_versions(database_url)
        started = time.perf_counter()
        second = await _load(stub, "incremental", canonical)
        unchanged_s = time.perf_counter() - started
        versions_after = _count_versions(database_url)
        load_peak = _rss_peak_mb(proc.proc.pid)
    finally:
        await channel.close()
        proc.stop()

    rows, copy_s, copy_cpu = _copy_baseline(database_url)
    put_rate, copy_rate = total / initial_s, rows / copy_s
    print(
        f"initial load via PutRecords (canonical records column by column, as the jobrunner sends them):"
        f" {total:,} records in {initial_s:.1f} s = {put_rate:,.0f} records/s"
        f" (new versions {first.counts.new_versions:,})"
    )
    print(f"plain COPY of the same rows: {rows:,} rows in {copy_s:.1f} s = {copy_rate:,.0f} rows/s")
    print(f"  PutRecords / COPY = {put_rate / copy_rate:.2f} (target >= 0.5)")
    print(
        f"  CPU per record: PutRecords {(cpu_storage + cpu_pg) / total * 1e6:.0f} us (storage"
        f" {cpu_storage / total * 1e6:.0f}, PostgreSQL {cpu_pg / total * 1e6:.0f}); COPY {copy_cpu / rows * 1e6:.0f} us"
        f" (PostgreSQL); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"unchanged re-put: {total:,} records in {unchanged_s:.1f} s = {total / unchanged_s:,.0f} records/s "
        f"(unchanged {second.counts.unchanged:,}, versions written {versions_after - versions:,})"
    )
    print(f"  speed-up over the initial load = {initial_s / unchanged_s:.2f}x (target >= 2x, 0 versions written)")
    print(f"  storage peak RSS during the record loads: {load_peak:.0f} MB")

    base, peak, file_s = await _file_peak(database_url, nats_url, files_dir)
    print(
        f"1 GB file upload: {FILE_BYTES >> 20} MiB in {file_s:.1f} s = {(FILE_BYTES >> 20) / file_s:.0f} MiB/s; "
        f"storage peak RSS {peak:.0f} MB (idle {base:.0f} MB) (target <= 300 MB)"
    )


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="sfvault-bench-") as tmp, postgres_server() as pg, nats_server() as nats:
        asyncio.run(_main(pg, nats, str(Path(tmp) / "files")))


if __name__ == "__main__":
    run()
