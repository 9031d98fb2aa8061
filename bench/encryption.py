"""Encryption at rest benchmark (issue 18): one org's initial backup -- file and metadata bodies, then records --
with storage's encryption off and on (SFVAULT_STORAGE_ENCRYPTION_KEY_REF unset / set), each leg into a fresh
database and file repository, with its own storage and jobrunner processes, on embedded PostgreSQL and NATS.

The org: sforg at BENCH_ENCRYPTION_SCALE (default `small`: 50,000 records, 300 files) plus BENCH_ENCRYPTION_EXTRA_MB
(default 96) of incompressible bodies in 8 MiB ContentVersions, so the bodies weigh. Each leg runs the file and
metadata jobs as one session (the bodies: MB/s, CPU per MB), then the data jobs as another (records/s, CPU per
record); the initial backup is both. BENCH_ENCRYPTION_ROUNDS (default 2) rounds, the order alternating (off, on;
on, off) so neither mode always runs on a warm org; the best leg of each mode is compared (the machine is shared:
the CPU figures say what the wall times cannot). Target: initial backup with encryption >= 0.9 x without.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2

from bench.backup import (
    SECRET_ENV,
    Collector,
    _collecting_bus,
    _connection,
    _cpu_spent,
    _cpu_start,
    _jobrunner_env,
    _specs,
    _start_jobrunner,
    stop_all,
    with_services,
)
from bench.storage import StorageProcess
from services.platform.bus import Bus
from services.platform.encryption import KEY_SETTING
from sforg.testing import Admin, running_org

SCALE = os.environ.get("BENCH_ENCRYPTION_SCALE", "small")
EXTRA_MB = int(os.environ.get("BENCH_ENCRYPTION_EXTRA_MB", "96"))
ROUNDS = int(os.environ.get("BENCH_ENCRYPTION_ROUNDS", "2"))
KEK_ENV = "BENCH_ENCRYPTION_KEK"
MB = 1 << 20


@dataclass(frozen=True)
class Leg:
    encrypted: bool
    bodies: int  # file bodies stored
    body_bytes: int  # their plaintext bytes (and the metadata components')
    body_s: float
    body_cpu: dict[str, float]
    records: int
    record_s: float
    record_cpu: dict[str, float]
    on_disk: int  # bytes in the file repository
    stored: int  # bodies in it (files and metadata)
    sealed: int  # of them at an encrypted address (enc/...)

    @property
    def initial_s(self) -> float:
        return self.body_s + self.record_s

    def lines(self) -> list[str]:
        mode = "on " if self.encrypted else "off"
        mb = self.body_bytes / MB
        body_cpu, record_cpu = sum(self.body_cpu.values()), sum(self.record_cpu.values())
        per_mb = {name: f"{cpu / mb * 1e3:.0f}" for name, cpu in self.body_cpu.items()}
        return [
            f"encryption {mode}: {self.bodies:,} files and the metadata ({mb:,.1f} MB of bodies) in"
            f" {self.body_s:.1f} s = {mb / self.body_s:,.1f} MB/s; CPU per MB {body_cpu / mb * 1e3:.0f} ms"
            f" (storage {per_mb['storage']}, jobrunner {per_mb['jobrunner']}); repository"
            f" {self.on_disk / MB:,.1f} MB, {self.sealed:,} of its {self.stored:,} bodies sealed",
            f"encryption {mode}: records {self.records:,} in {self.record_s:.1f} s"
            f" = {self.records / self.record_s:,.0f} records/s;"
            f" CPU per record {record_cpu / self.records * 1e6:.0f} us;"
            f" initial backup {self.initial_s:.1f} s",
        ]


def _database(server_url: str, name: str) -> str:
    """A new database on the server: the URL of it (each leg starts from nothing, as an initial backup does)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return psycopg.conninfo.make_conninfo(server_url, dbname=name)


def _body_specs(info: dict[str, Any], session: str) -> list[jobs_pb2.JobSpec]:
    """The file job and the metadata job of a session, as discovery plans them."""
    common: dict[str, Any] = {
        "session_id": session,
        "org_id": "bench",
        "policy_id": "bench",
        "connection": _connection(info),
        "salesforce_org_id": info["org_id"],
        "instance_url": info["instance_url"],
    }
    files = jobs_pb2.FileJob(content_versions=True, attachments=True, documents=True)
    return [
        jobs_pb2.JobSpec(job_id="files", type=ev.JOB_TYPE_FILE, file=files, **common),
        jobs_pb2.JobSpec(job_id="metadata", type=ev.JOB_TYPE_METADATA, metadata=jobs_pb2.MetadataJob(), **common),
    ]


async def _run(bus: Bus, collector: Collector, specs: list[jobs_pb2.JobSpec]) -> tuple[float, list[ev.JobFinished]]:
    started = time.perf_counter()
    for spec in specs:
        await bus.enqueue_job(spec)
    done = await collector.wait([(s.session_id, s.job_id) for s in specs])
    bad = [d.message for d in done if d.outcome != ev.JOB_OUTCOME_SUCCESS]
    if bad:
        raise RuntimeError(f"{len(bad)} jobs not successful: {bad[:3]}")
    return time.perf_counter() - started, done


def _repository(files_dir: Path) -> tuple[int, int, int]:
    """(bytes of the bodies in the repository, how many bodies, how many at an encrypted address: enc/...)."""
    bodies = [p for p in files_dir.rglob("*") if p.is_file() and ".tmp" not in p.relative_to(files_dir).parts]
    sealed = sum(1 for p in bodies if p.relative_to(files_dir).parts[0] == "enc")
    return sum(p.stat().st_size for p in bodies), len(bodies), sealed


async def _leg(server_url: str, nats_url: str, work: Path, info: dict[str, Any], encrypted: bool, n: int) -> Leg:
    name = f"{'on' if encrypted else 'off'}{n}"
    url = _database(server_url, f"bench_encryption_{name}")
    files_dir = work / f"files-{name}"
    if encrypted:
        os.environ[KEY_SETTING] = f"env:{KEK_ENV}"
    try:
        storage = StorageProcess(url, nats_url, str(files_dir))
    finally:
        os.environ.pop(KEY_SETTING, None)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{storage.port}")
    jobrunner = _start_jobrunner(_jobrunner_env(url, nats_url, storage.port, "BENCH_ENCRYPTION_LOG_LEVEL"))
    bus, collector = await _collecting_bus(nats_url)
    try:
        await storage.wait_ready(channel)
        parts = {"sforg": [info["pid"]], "jobrunner": [jobrunner.pid], "storage": [storage.proc.pid]}
        before = _cpu_start(parts, url)
        body_s, done = await _run(bus, collector, _body_specs(info, f"bodies-{name}"))
        body_cpu = _cpu_spent(parts, url, before)
        specs = _specs(info, f"records-{name}")  # the describes: not the backup's work here
        before = _cpu_start(parts, url)
        record_s, records = await _run(bus, collector, specs)
        record_cpu = _cpu_spent(parts, url, before)
        on_disk, stored, sealed = _repository(files_dir)
        return Leg(
            encrypted,
            sum(d.counts.files for d in done),
            sum(d.counts.bytes for d in done),
            body_s,
            body_cpu,
            sum(d.counts.received for d in records),
            record_s,
            record_cpu,
            on_disk,
            stored,
            sealed,
        )
    finally:
        await stop_all(jobrunner, storage, bus)
        await channel.close()


async def _main(server_url: str, nats_url: str, work: Path) -> None:
    os.environ["SFVAULT_AUTH_DISABLED"] = "true"  # storage and jobrunner processes on a private loopback
    os.environ[KEK_ENV] = secrets.token_hex(32)
    print(f"   generating sforg at scale {SCALE}, then {EXTRA_MB} MB of bodies in 8 MiB files ...", flush=True)
    with running_org(work / "org", scale=SCALE, seed=3, timeout=3600) as info:
        os.environ[SECRET_ENV] = info["client_secret"]
        admin = Admin(info)
        for i in range(EXTRA_MB // 8):
            admin.add_file_version(os.urandom(8 * MB), title=f"bench body {i} {uuid.uuid4().hex[:8]}")
        legs: list[Leg] = []
        for n in range(ROUNDS):
            for encrypted in (False, True) if n % 2 == 0 else (True, False):
                leg = await _leg(server_url, nats_url, work, info, encrypted, n)
                legs.append(leg)
                for line in leg.lines():
                    print(f"   round {n + 1}: {line}", flush=True)
        off = min((x for x in legs if not x.encrypted), key=lambda x: x.initial_s)
        on = min((x for x in legs if x.encrypted), key=lambda x: x.initial_s)
        for line in off.lines() + on.lines():
            print(f"best: {line}")
        body_ratio = (on.body_bytes / on.body_s) / (off.body_bytes / off.body_s)
        record_ratio = (on.records / on.record_s) / (off.records / off.record_s)
        print(
            f"on / off: initial backup {off.initial_s / on.initial_s:.2f} (target >= 0.9), bodies MB/s"
            f" {body_ratio:.2f}, records/s {record_ratio:.2f}; storage CPU per MB of bodies"
            f" {on.body_cpu['storage'] / max(off.body_cpu['storage'], 1e-9):.2f} x;"
            f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        for leg in legs:
            if leg.sealed != (leg.stored if leg.encrypted else 0):
                print(
                    f"   !! {leg.sealed} of {leg.stored} bodies sealed, encryption {'on' if leg.encrypted else 'off'}"
                )


def run() -> None:
    with_services(_main)


if __name__ == "__main__":
    run()
