"""Backup benchmark: sforg (BENCH_BACKUP_SCALE, default `large` = 1,000,000 records; `small` for a quick
run) backed up by a jobrunner process (at its default concurrency, as deployed; BENCH_BACKUP_CONCURRENCY
overrides it) into a storage process, on embedded PostgreSQL and NATS. Prints the initial copy's records/s,
CPU per record of each process, API calls and the jobrunner's peak RSS; the source ceiling (every Bulk page
downloaded and discarded) and the sink ceiling (COPY of the same rows); incremental runs at 1 % and 0 % changed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import psycopg
import requests
from sfvault.discovery.v1 import discovery_pb2 as dpb
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2

from bench.storage import StorageProcess, _copy_baseline, _cpu_s, _cpu_since, _postgres_pids, _rss_peak_mb
from devstack.embedded import free_port, nats_server, postgres_server
from devstack.localstack import ServiceProcess
from services.discovery.domain import largest_first
from services.platform import events
from services.platform.bus import Bus, BusConfig
from services.sfclient import Credentials, OrgClient
from sforg.testing import Admin, running_org

SCALE = os.environ.get("BENCH_BACKUP_SCALE", "large")
SECRET_ENV = "SFVAULT_SECRET_BENCH_SFORG"  # an org secret: the allowed prefix
# the org's clock moved on between two sessions as an hourly schedule (the most frequent a policy offers) moves it:
# beyond the jobrunner's overlap (600 s re-read before the last mark, for late commits), so an incremental reads
# what changed since the session before, not that session's changes again (a shorter step made the "0 %" run
# re-read the "1 %" run's records)
SESSION_INTERVAL_S = 3600.0
# bodies go through the file job; ContentDocumentLink needs a filter (discovery leaves it out)
SKIP = {"ContentVersion", "Attachment", "Document", "ContentDocument", "ContentDocumentLink"}


def _creds(info: dict[str, Any]) -> Credentials:
    return Credentials(
        login_url=info["login_url"],
        auth_flow="client_credentials",
        client_id=info["client_id"],
        client_secret_ref=f"env:{SECRET_ENV}",
        ca_bundle_ref="file:" + info["ca_file"],
        api_version=info["api_version"],
    )


def _connection(info: dict[str, Any]) -> dpb.OrgConnection:
    """The org's connection as discovery puts it into a job spec (secret references only)."""
    return dpb.OrgConnection(
        login_url=info["login_url"],
        auth_flow=dpb.AUTH_FLOW_CLIENT_CREDENTIALS,
        client_id=info["client_id"],
        client_secret_ref=f"env:{SECRET_ENV}",
        ca_bundle_ref="file:" + info["ca_file"],
        api_version=info["api_version"],
    )


def _specs(info: dict[str, Any], session: str) -> list[jobs_pb2.JobSpec]:
    client = OrgClient(_creds(info))
    catalogue = client.request("GET", f"/services/data/v{info['api_version']}/sobjects").json()
    # what discovery would plan: the queryable objects (platform and change events are not)
    names = [o["name"] for o in catalogue["sobjects"] if o["name"] not in SKIP and o.get("queryable", True)]
    # the order discovery plans them in: largest first, by the org's record counts
    body = client.request(
        "GET", f"/services/data/v{info['api_version']}/limits/recordCount", params={"sObjects": ",".join(names)}
    ).json()
    names = largest_first(names, {o["name"]: o["count"] for o in body["sObjects"]})
    conn = _connection(info)
    out = []
    for name in names:
        d = client.request("GET", f"/services/data/v{info['api_version']}/sobjects/{name}/describe").json()
        fields = {f["name"] for f in d["fields"]}
        out.append(
            jobs_pb2.JobSpec(
                session_id=session,
                job_id=f"data-{name}",
                type=ev.JOB_TYPE_DATA,
                org_id="bench",
                policy_id="bench",
                object_name=name,
                connection=conn,
                salesforce_org_id=info["org_id"],
                instance_url=info["instance_url"],
                data=jobs_pb2.DataJob(
                    fields=[
                        jobs_pb2.FieldSpec(name=f["name"], sf_type=f["type"], calculated=bool(f["calculated"]))
                        for f in d["fields"]
                    ],
                    key_prefix=d.get("keyPrefix") or "",
                    bulk_supported=name != "Attachment",
                    queryall_supported="IsDeleted" in fields,
                    has_system_modstamp="SystemModstamp" in fields,
                    replicateable=bool(d.get("replicateable")),
                    describe_json=json.dumps(d).encode(),
                ),
            )
        )
    return out


class Collector:
    def __init__(self) -> None:
        self.finished: dict[tuple[str, str], ev.JobFinished] = {}
        self.changed = asyncio.Event()

    async def on_msg(self, msg: Any) -> None:
        env = events.decode(msg.data)
        self.finished[(env.session_id, env.job_id)] = env.job_finished
        self.changed.set()

    async def wait(self, keys: list[tuple[str, str]]) -> list[ev.JobFinished]:
        while not all(k in self.finished for k in keys):
            self.changed.clear()
            await self.changed.wait()
        return [self.finished[k] for k in keys]


def in_session(specs: list[jobs_pb2.JobSpec], session: str) -> list[jobs_pb2.JobSpec]:
    """Copies of the jobs for another session (an incremental run of the same objects)."""
    out = [jobs_pb2.JobSpec.FromString(s.SerializeToString()) for s in specs]
    for spec in out:
        spec.session_id = session
    return out


async def _session(bus: Bus, collector: Collector, specs: list[jobs_pb2.JobSpec]) -> tuple[float, int, int]:
    started = time.perf_counter()
    for spec in specs:
        await bus.enqueue_job(spec)
    done = await collector.wait([(s.session_id, s.job_id) for s in specs])
    elapsed = time.perf_counter() - started
    bad = [d.message for d in done if d.outcome != ev.JOB_OUTCOME_SUCCESS]
    if bad:
        print(f"   !! {len(bad)} jobs not successful: {bad[:3]}")
    if os.environ.get("BENCH_BACKUP_CALLS"):  # which jobs took more than one API call
        several = sorted(
            (s.object_name, d.counts.api_calls) for s, d in zip(specs, done, strict=True) if d.counts.api_calls > 1
        )
        print("   more than one API call: " + ", ".join(f"{obj} {n}" for obj, n in several))
    return elapsed, sum(d.counts.received for d in done), sum(d.counts.api_calls for d in done)


def _source_ceiling(info: dict[str, Any], specs: list[jobs_pb2.JobSpec]) -> tuple[int, int, float]:
    """Every object's Bulk results downloaded and discarded: what Salesforce (sforg) can deliver, in rows and
    bytes (the CSV as the org serves it: the records' size on the wire)."""
    client = OrgClient(_creds(info))
    base = f"/services/data/v{info['api_version']}/jobs/query"
    rows, size, started = 0, 0, time.perf_counter()
    for spec in specs:
        if not spec.data.bulk_supported:
            continue
        names = [f.name for f in spec.data.fields if f.sf_type not in ("address", "location", "base64")]
        body = {"operation": "queryAll", "query": f"SELECT {', '.join(names)} FROM {spec.object_name}"}
        created = client.request("POST", base, json=body).json()
        if not isinstance(created, dict):
            print(f"   source ceiling: {spec.object_name} refused: {created}")
            continue
        job = created["id"]
        client.request("GET", f"{base}/{job}")
        locator = ""
        while True:
            params: dict[str, Any] = {"maxRecords": 50000, **({"locator": locator} if locator else {})}
            resp: requests.Response = client.request("GET", f"{base}/{job}/results", params=params, stream=True)
            for block in resp.iter_content(1 << 20):
                size += len(block)
            rows += int(resp.headers["Sforce-NumberOfRecords"])
            locator = resp.headers.get("Sforce-Locator", "null")
            if locator in ("", "null"):
                break
    return rows, size, time.perf_counter() - started


def _sink_ceiling(url: str) -> tuple[int, float]:
    """COPY of the stored rows (their canonical JSON) into a scratch table: what PostgreSQL can take."""
    with psycopg.connect(url, autocommit=True) as conn:
        data = [r[0] for r in conn.execute("SELECT data::text FROM storage.record_versions")]
        conn.execute("CREATE UNLOGGED TABLE IF NOT EXISTS bench_sink (id bigserial, data jsonb)")
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY bench_sink (data) FROM STDIN") as copy:
            for row in data:
                copy.write_row((row,))
        return len(data), time.perf_counter() - started


def _drop_scratch(url: str) -> None:
    """The ceilings' scratch tables dropped (two million rows PostgreSQL would otherwise vacuum and analyse
    during the incremental runs) and their writes checkpointed: the incremental runs measure sfvault, not the
    ceilings' aftermath."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_sink, bench_copy")
        conn.execute("CHECKPOINT")


def _jobrunner_env(url: str, nats_url: str, storage_port: int, log_level_var: str) -> dict[str, str]:
    """A jobrunner's environment against this PostgreSQL, NATS and storage process (log level from log_level_var)."""
    return {
        **os.environ,
        "SFVAULT_DATABASE_URL": url,
        "SFVAULT_NATS_URL": nats_url,
        "SFVAULT_STORAGE_ADDR": f"127.0.0.1:{storage_port}",
        "SFVAULT_LOG_LEVEL": os.environ.get(log_level_var, "WARNING"),
    }


def _start_jobrunner(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A jobrunner in its own process (so its peak RSS is its own), on a fresh port, serving (its health SERVING:
    its start-up, imports and connections, is not counted in what a bench times next)."""
    port = free_port()
    env["SFVAULT_JOBRUNNER_PORT"] = str(port)
    proc = subprocess.Popen([sys.executable, "-m", "services.jobrunner"], env=env)
    ServiceProcess("jobrunner", port, {}, Path("the bench's output"), proc=proc).wait_serving()
    return proc


def _cpu_start(parts: dict[str, list[int]], url: str) -> dict[str, dict[int, float]]:
    """The CPU seconds so far of each part's processes and of PostgreSQL's (for _cpu_spent)."""
    return {**{name: _cpu_s(pids) for name, pids in parts.items()}, "PostgreSQL": _cpu_s(_postgres_pids(url))}


def _cpu_spent(parts: dict[str, list[int]], url: str, before: dict[str, dict[int, float]]) -> dict[str, float]:
    """The CPU seconds each part, then PostgreSQL, spent since _cpu_start's `before`."""
    cpu = {name: _cpu_since(before[name], pids) for name, pids in parts.items()}
    cpu["PostgreSQL"] = _cpu_since(before["PostgreSQL"], _postgres_pids(url))
    return cpu


async def _collecting_bus(nats_url: str) -> tuple[Bus, Collector]:
    """A bus whose Collector receives every JobFinished event."""
    bus = await Bus.connect(BusConfig(nats_url), producer="bench")
    collector = Collector()
    # a plain subscription, made before any job is enqueued: each JobFinished as it is published (an ordered
    # JetStream consumer sometimes handed one over seconds late, and the wait counted in the figures)
    await bus.nc.subscribe(bus.config.events_subject("*.JobFinished"), cb=collector.on_msg)
    return bus, collector


async def _main(url: str, nats_url: str, work: Path) -> None:
    os.environ["SFVAULT_AUTH_DISABLED"] = "true"  # storage and jobrunner processes on a private loopback
    print(f"   generating sforg at scale {SCALE} ...", flush=True)
    with running_org(work / "org", scale=SCALE, seed=3, timeout=3600) as info:
        os.environ[SECRET_ENV] = info["client_secret"]
        admin = Admin(info)
        storage = StorageProcess(url, nats_url, str(work / "files"))
        jr_env = _jobrunner_env(url, nats_url, storage.port, "BENCH_BACKUP_LOG_LEVEL")
        if "BENCH_BACKUP_CONCURRENCY" in os.environ:  # else the jobrunner's default, as deployed
            jr_env["SFVAULT_JOBRUNNER_CONCURRENCY"] = os.environ["BENCH_BACKUP_CONCURRENCY"]
        jobrunner = _start_jobrunner(jr_env)
        bus, collector = await _collecting_bus(nats_url)
        try:
            specs = _specs(info, "initial")
            parts = {"sforg": [info["pid"]], "jobrunner": [jobrunner.pid], "storage": [storage.proc.pid]}
            cpu_before = _cpu_start(parts, url)
            elapsed, records, calls = await _session(bus, collector, specs)
            cpu = _cpu_spent(parts, url, cpu_before)
            rss = _rss_peak_mb(jobrunner.pid)
            print(f"initial: {records:,} records in {elapsed:.1f} s = {records / elapsed:,.0f} records/s")
            print(
                f"initial: CPU per record {sum(cpu.values()) / records * 1e6:.0f} us ("
                + ", ".join(f"{name} {s / records * 1e6:.1f}" for name, s in cpu.items())
                + f"); wall {elapsed / records * 1e6:.1f} us on {os.cpu_count()} CPUs"
            )
            print(f"initial: {calls} API calls ({calls / max(records, 1) * 10000:.2f} per 10,000 records)")
            print(f"jobrunner peak RSS: {rss:.0f} MB")
            with psycopg.connect(url, autocommit=True) as conn:
                size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
            # the capacity model's disk: the whole database (every schema, indexes, TOAST) over the records in it
            print(f"PostgreSQL after the initial: {size / 1e9:.2f} GB, {size / max(records, 1):,.0f} bytes per record")
            src_rows, src_bytes, src_s = _source_ceiling(info, specs)
            print(f"source ceiling: {src_rows:,} rows in {src_s:.1f} s = {src_rows / src_s:,.0f} rows/s")
            # bytes/s: the records' size as the org serves them (Bulk CSV), over the initial backup's wall time
            mb = src_bytes * records / max(src_rows, 1) / 1e6
            print(
                f"initial: {mb:,.0f} MB of records ({src_bytes / max(src_rows, 1):,.0f} bytes each as Bulk CSV)"
                f" in {elapsed:.1f} s = {mb / elapsed:,.1f} MB/s"
            )
            loose_rows, loose_s = _sink_ceiling(url)
            print(
                f"  (COPY into an unlogged, unindexed table, not crash-safe: {loose_rows:,} rows in {loose_s:.1f} s"
                f" = {loose_rows / loose_s:,.0f} rows/s)"
            )
            sink_rows, sink_s, _cpu = _copy_baseline(url, None)
            print(
                f"sink ceiling (COPY into a table logged, partitioned and indexed like record_versions, as in the"
                f" storage benchmark): {sink_rows:,} rows in {sink_s:.1f} s = {sink_rows / sink_s:,.0f} rows/s"
            )
            ceiling = min(src_rows / src_s, sink_rows / sink_s)
            print(f"initial vs 0.5 x min(ceilings): {records / elapsed:,.0f} vs {0.5 * ceiling:,.0f}")
            _drop_scratch(url)
            for label, fraction in (("1 %", 0.01), ("0 %", 0.0)):
                if fraction:
                    for spec in specs:  # the objects a user can change (not field history, feeds)
                        if json.loads(spec.data.describe_json).get("updateable", True):
                            admin.update(spec.object_name, fraction=fraction)
                admin.advance_clock(SESSION_INTERVAL_S)
                session = f"inc{int(fraction * 100)}"
                cpu_before = _cpu_start(parts, url)
                t, r, c = await _session(bus, collector, in_session(specs, session))
                cpu = _cpu_spent(parts, url, cpu_before)
                print(
                    f"incremental {label}: {t:.1f} s ({t / elapsed * 100:.1f} % of the initial), {r:,} records,"
                    f" {c} API calls ({c / len(specs):.1f} per object); CPU per job "
                    + ", ".join(f"{name} {s / len(specs) * 1e3:.1f}" for name, s in cpu.items())
                    + " ms"
                )
            print(f"jobrunner peak RSS (whole run): {_rss_peak_mb(jobrunner.pid):.0f} MB")
        finally:
            await stop_all(jobrunner, storage, bus)


async def stop_all(jobrunner: subprocess.Popen[bytes], storage: StorageProcess, bus: Bus) -> None:
    """A bench's jobrunner and storage processes stopped, its bus closed."""
    jobrunner.terminate()
    jobrunner.wait(60)
    storage.stop()
    await bus.close()


def with_services(main: Callable[[str, str, Path], Coroutine[Any, Any, None]]) -> None:
    """`main(database URL, NATS URL, work folder)` run against a PostgreSQL and a NATS of its own."""
    with tempfile.TemporaryDirectory(prefix="sfvault-bench-") as tmp, postgres_server() as url, nats_server() as nats:
        asyncio.run(main(url, nats, Path(tmp)))


def run() -> None:
    with_services(_main)
