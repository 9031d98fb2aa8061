"""Split-object benchmark (issue 21, "Across machines": one large object split across jobrunner replicas): the
largest object of an sforg org (BENCH_SPLIT_SCALE, default `large`) backed up twice, each time into a fresh
database of one PostgreSQL: read whole by one jobrunner writing to one storage process, then split into
BENCH_SPLIT_RANGES Id ranges (3; discovery's domain_split rules) read by BENCH_SPLIT_JOBRUNNERS jobrunners (3)
writing to BENCH_SPLIT_STORAGES storage replicas (2). Prints each run's records/s and CPU per record of each
component, and the split's CPU per record beside the single replica's: within 10 % is the proof that nothing
serialises or is done twice. Not part of `make bench` (it defines no run()): `python -m bench.split`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from sfvault.jobs.v1 import jobs_pb2

from bench.backup import (
    SECRET_ENV,
    _collecting_bus,
    _cpu_spent,
    _cpu_start,
    _creds,
    _jobrunner_env,
    _session,
    _specs,
    _start_jobrunner,
    in_session,
    with_services,
)
from bench.storage import StorageProcess
from devstack.localstack import ServiceProcess
from services.discovery.domain_split import inner_bounds, range_job_id, ranges_of
from services.sfclient import OrgClient
from sforg.testing import running_org

SCALE = os.environ.get("BENCH_SPLIT_SCALE", "large")
RANGES = int(os.environ.get("BENCH_SPLIT_RANGES", "3"))
JOBRUNNERS = int(os.environ.get("BENCH_SPLIT_JOBRUNNERS", "3"))
STORAGES = int(os.environ.get("BENCH_SPLIT_STORAGES", "2"))
SFVAULT = ("jobrunner", "storage", "PostgreSQL")
Specs = list[jobs_pb2.JobSpec]
IDLE_S = 5.0


def _edge(client: OrgClient, name: str, order: str) -> str:
    body = client.call(lambda sf: sf.query(f"SELECT Id FROM {name} ORDER BY Id {order} LIMIT 1"))
    return str(body["records"][0]["Id"])


def _split(info: dict[str, Any], spec: jobs_pb2.JobSpec, session: str) -> list[jobs_pb2.JobSpec]:
    """The object's jobs as discovery plans a split one: its lowest and highest Id cut into RANGES ranges."""
    client = OrgClient(_creds(info))
    name = spec.object_name
    ranges = ranges_of(inner_bounds(_edge(client, name, "ASC"), _edge(client, name, "DESC"), RANGES))
    out = []
    for i, r in enumerate(ranges):
        [job] = in_session([spec], session)
        job.job_id = range_job_id(name, i, len(ranges))
        job.data.id_from, job.data.id_to = r.id_from, r.id_to
        out.append(job)
    return out


def _server(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@dataclass(frozen=True)
class Places:
    info: dict[str, Any]  # the org's
    server: str  # PostgreSQL: each run creates a database of its own there
    nats_url: str
    work: Path


async def _backup(label: str, at: Places, specs: Specs, n: int, s: int) -> dict[str, float]:
    """The specs run by `n` jobrunners over `s` storage processes (round robin) into a database of their own on
    the PostgreSQL `server` (dropped after: its autovacuum is not the next run's); prints the run's figures and
    returns its CPU seconds per record, by component."""
    _server(at.server, f"CREATE DATABASE bench_{label}")
    try:
        return await _measured(label, at, make_conninfo(at.server, dbname=f"bench_{label}"), specs, n, s)
    finally:
        _server(at.server, f"DROP DATABASE bench_{label} WITH (FORCE)")


async def _measured(label: str, at: Places, url: str, specs: Specs, n: int, s: int) -> dict[str, float]:
    info, nats_url, work = at.info, at.nats_url, at.work
    storages = [StorageProcess(url, nats_url, str(work / "files")) for _ in range(s)]
    jobrunners: list[subprocess.Popen[bytes]] = []
    bus, collector = await _collecting_bus(nats_url)
    try:
        serving = [ServiceProcess("storage", p.port, {}, work / "storage.log", proc=p.proc) for p in storages]
        for i in range(n):
            env = _jobrunner_env(url, nats_url, storages[i % s].port, "BENCH_SPLIT_LOG_LEVEL")
            env["SFVAULT_JOBRUNNER_WORKER_ID"] = f"bench-{label}-{i}"
            jobrunners.append(_start_jobrunner(env))  # on the port it writes into env
            port = int(env["SFVAULT_JOBRUNNER_PORT"])
            serving.append(ServiceProcess("jobrunner", port, {}, work / "jobrunner.log", proc=jobrunners[-1]))
        for svc in serving:  # every process serving before the CPU is counted: start-up is not the backup's
            svc.wait_serving()
        _server(url, "CHECKPOINT")  # the WAL of what came before is not this run's
        parts = {
            "sforg": [info["pid"]],
            "jobrunner": [p.pid for p in jobrunners],
            "storage": [p.proc.pid for p in storages],
        }
        # what the processes spend doing nothing (heartbeats, fetch loops, outbox relays), per second: part of any
        # run's CPU, and more processes spend more of it
        idle_from = _cpu_start(parts, url)
        await asyncio.sleep(IDLE_S)  # a measurement over a fixed time, not a wait for a condition
        idle = _cpu_spent(parts, url, idle_from)
        before = _cpu_start(parts, url)
        elapsed, records, calls = await _session(bus, collector, specs)
        print(
            f"{label}: idle CPU before the run, ms per second: "
            + ", ".join(f"{name} {v / IDLE_S * 1e3:.1f}" for name, v in idle.items())
            + f" (over the run's {elapsed:.1f} s: {sum(idle.values()) / IDLE_S * elapsed / max(records, 1) * 1e6:.1f}"
            " us per record)"
        )
        cpu = {name: v / max(records, 1) for name, v in _cpu_spent(parts, url, before).items()}
        per = sum(cpu.values())
        print(
            f"{label} ({len(specs)} jobs, {n} jobrunners, {s} storage): {records:,} records in {elapsed:.1f} s"
            f" = {records / elapsed:,.0f} records/s, {calls} API calls"
        )
        print(
            f"{label}: CPU per record {per * 1e6:.1f} us ("
            + ", ".join(f"{name} {v * 1e6:.1f}" for name, v in cpu.items())
            + ")"
        )
        return cpu
    finally:
        for p in jobrunners:
            p.terminate()
        for p in jobrunners:
            p.wait(60)
        for storage in storages:
            storage.stop()
        await bus.close()


async def _main(url: str, nats_url: str, work: Path) -> None:
    os.environ["SFVAULT_AUTH_DISABLED"] = "true"  # storage and jobrunner processes on a private loopback
    place: Path = work / "org"
    scale: str | int = SCALE
    if SCALE == "xlarge":  # the 10M org `make bench-scale` caches (.state/bench-scale), served in place
        from bench.scale import cached_org

        place, scale = cached_org(10_000_000), 10_000_000
    print(f"   sforg at scale {SCALE} ...", flush=True)
    with running_org(place, scale=scale, seed=3, timeout=3600) as info:
        os.environ[SECRET_ENV] = info["client_secret"]
        [largest, *_] = _specs(info, "whole")
        print(f"   the largest object: {largest.object_name}", flush=True)
        at = Places(info, url, nats_url, work)
        whole = await _backup("whole", at, [largest], 1, 1)
        split = await _backup("split", at, _split(info, largest, "split"), JOBRUNNERS, STORAGES)
        for what, names in (("all", list(whole)), ("sfvault (without the org emulator)", SFVAULT)):
            a, b = sum(split[n] for n in names), sum(whole[n] for n in names)
            print(
                f"split vs whole, CPU per record of {what}: {a * 1e6:.1f} vs {b * 1e6:.1f} us"
                f" ({(a / b - 1) * 100:+.1f} %; target within 10 %)"
            )


if __name__ == "__main__":
    with_services(_main)
