"""Restore benchmark: BENCH_RESTORE_RECORDS (default 100,000) records across Account / Contact / Opportunity
in sforg, backed up by a jobrunner process into a storage process (timed, as bench/backup.py does), then every
one of them hard-deleted, then restored as of the backup (all Created, lookups through the Id map) by the same
jobrunner. Prints records/s of the backup and of the restore, restore wall / backup wall (target <= 3), API
calls per 10,000 records restored (from sforg's accounting; target <= 10) and the jobrunner's peak RSS
(target <= 300 MB).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2
from sfvault.restore.v1 import restore_pb2 as rs
from sfvault.storage.v1 import storage_pb2 as st
from sfvault.storage.v1 import storage_pb2_grpc

from bench import backup as bb
from bench.storage import StorageProcess, _rss_peak_mb
from services.platform.bus import Bus
from sforg.testing import Admin, running_org

OBJECTS = ("Account", "Contact", "Opportunity")
RECORDS = int(os.environ.get("BENCH_RESTORE_RECORDS", "100000"))
SHARE = 0.40  # of an sforg org's records, Account + Contact + Opportunity (sforg.generate.WEIGHTS)
NOT_API = ("oauth", "soap_login")  # logins: not API requests in Salesforce's daily count


def _restore_spec(info: dict[str, Any], as_of: dt.datetime) -> jobs_pb2.JobSpec:
    conn = bb._connection(info)
    point = Timestamp()
    point.FromDatetime(as_of.replace(tzinfo=None))
    spec = rs.RestoreSpec(
        source_org_id="bench",
        target_org_id="bench",
        as_of=point,
        selections=[rs.RestoreSelection(object_name=o, all=True) for o in OBJECTS],
        parents=0,
        children=0,
        confirmed=True,
    )
    return jobs_pb2.JobSpec(
        session_id="restore",
        job_id="restore",
        type=ev.JOB_TYPE_RESTORE,
        org_id="bench",
        connection=conn,
        salesforce_org_id=info["org_id"],
        instance_url=info["instance_url"],
        restore=jobs_pb2.RestoreJob(
            spec=spec,
            target_connection=conn,
            target_salesforce_org_id=info["org_id"],
            target_instance_url=info["instance_url"],
            target_is_production=False,
        ),
    )


def _failures(port: int) -> dict[str, int]:
    """The restore's Failed records counted by Salesforce's error code (from storage's outcomes)."""
    by_code: dict[str, int] = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        token = ""
        while True:
            request = st.ListRestoreRecordsRequest(
                session_id="restore", state=rs.RECORD_STATE_FAILED, page_size=5000, page_token=token
            )
            page = stub.ListRestoreRecords(request, timeout=60)
            for o in page.outcomes:
                key = f"{o.object_name} {o.error_code}: {o.message[:80]}"
                by_code[key] = by_code.get(key, 0) + 1
            token = page.next_page_token
            if not token:
                return dict(sorted(by_code.items(), key=lambda kv: -kv[1])[:5])


def _api_calls(accounting: dict[str, Any]) -> int:
    return sum(n for endpoint, n in accounting.get("calls", {}).items() if endpoint not in NOT_API)


async def _run(bus: Bus, collector: bb.Collector, specs: list[jobs_pb2.JobSpec]) -> tuple[float, list[ev.JobFinished]]:
    started = time.perf_counter()
    for spec in specs:
        await bus.enqueue_job(spec)
    done = await collector.wait([(s.session_id, s.job_id) for s in specs])
    return time.perf_counter() - started, done


def _cpu_line(cpu: dict[str, float], records: int, wall: float) -> str:
    """CPU per record of each process (the machine is shared: CPU says where the time goes)."""
    per = ", ".join(f"{name} {s / max(records, 1) * 1e6:.0f}" for name, s in cpu.items())
    n = max(records, 1)
    return f"CPU per record {sum(cpu.values()) / n * 1e6:.0f} us ({per}); wall {wall / n * 1e6:.0f} us"


async def _main(url: str, nats_url: str, work: Path) -> None:
    os.environ["SFVAULT_AUTH_DISABLED"] = "true"  # storage and jobrunner processes on a private loopback
    total = int(RECORDS / SHARE)
    print(f"   generating sforg with {total:,} records ({RECORDS:,} in {', '.join(OBJECTS)}) ...", flush=True)
    with running_org(work / "org", scale=total, seed=5, timeout=3600) as info:
        os.environ[bb.SECRET_ENV] = info["client_secret"]
        admin = Admin(info)
        storage = StorageProcess(url, nats_url, str(work / "files"))
        jr_env = bb._jobrunner_env(url, nats_url, storage.port, "BENCH_RESTORE_LOG_LEVEL")
        # its own process for each part, so each peak RSS is its own
        jobrunner = bb._start_jobrunner(jr_env)
        bus, collector = await bb._collecting_bus(nats_url)
        try:
            specs = [s for s in bb._specs(info, "backup") if s.object_name in OBJECTS]
            admin.reset_accounting()
            parts = {"sforg": [info["pid"]], "jobrunner": [jobrunner.pid], "storage": [storage.proc.pid]}
            before = bb._cpu_start(parts, url)
            backup_s, done = await _run(bus, collector, specs)
            cpu = bb._cpu_spent(parts, url, before)
            backed_up = sum(d.counts.received for d in done)
            backup_accounting = admin.accounting()
            backup_calls = _api_calls(backup_accounting)
            bad = [d.message for d in done if d.outcome != ev.JOB_OUTCOME_SUCCESS]
            if bad:
                print(f"   !! {len(bad)} backup jobs not successful: {bad[:3]}")
            print(f"backup: {backed_up:,} records in {backup_s:.1f} s = {backed_up / backup_s:,.0f} records/s")
            print(f"backup: {_cpu_line(cpu, backed_up, backup_s)}")
            per_10k = backup_calls / max(backed_up, 1) * 10000
            calls_by_endpoint = dict(sorted(backup_accounting.get("calls", {}).items()))
            print(f"backup: {backup_calls} API calls ({per_10k:.2f} per 10,000 records): {calls_by_endpoint}")
            as_of = dt.datetime.now(dt.UTC)
            truth = admin.ground_truth(objects=list(OBJECTS), values=False)["objects"]
            live = {o: len(truth[o]) for o in OBJECTS}
            for obj in reversed(OBJECTS):  # children first
                admin.call("hard_delete", obj=obj, fraction=1.0)
            print(f"   hard-deleted {sum(live.values()):,} records ({live})", flush=True)
            print(f"jobrunner peak RSS (backup): {_rss_peak_mb(jobrunner.pid):.0f} MB")
            jobrunner.terminate()
            jobrunner.wait(60)
            jobrunner = bb._start_jobrunner(jr_env)

            admin.reset_accounting()
            parts["jobrunner"] = [jobrunner.pid]
            before = bb._cpu_start(parts, url)
            restore_s, (finished,) = await _run(bus, collector, [_restore_spec(info, as_of)])
            cpu = bb._cpu_spent(parts, url, before)
            accounting = admin.accounting()
            calls, writes = _api_calls(accounting), accounting.get("writes", 0)
            per = {c.object_name: c for c in finished.restore}
            created = sum(c.created for c in per.values())
            failed = sum(c.failed for c in per.values())
            if finished.outcome != ev.JOB_OUTCOME_SUCCESS:
                print(f"   !! restore job {ev.JobOutcome.Name(finished.outcome)}: {finished.message[:300]}")
            after = admin.ground_truth(objects=list(OBJECTS), values=False)["objects"]
            back = {o: len(after[o]) for o in OBJECTS}
            print(
                f"restore: {created:,} records created ({failed:,} failed; the org holds {back} again of {live}) in"
                f" {restore_s:.1f} s = {created / restore_s:,.0f} records/s"
            )
            print(f"restore: {_cpu_line(cpu, created + failed, restore_s)}")
            if failed:
                print(f"   !! failed records by error: {_failures(storage.port)}")
            v = finished.verification
            print(
                f"restore: verification done={v.done} verified={v.verified},",
                f"matching={v.matching:,} differing={v.differing:,}",
                f"{list(v.samples)[:3]}" if v.differing else "",
            )
            print(f"restore wall / backup wall: {restore_s / backup_s:.2f} (target <= 3)")
            print(
                f"restore: {calls} API calls, {writes} of them writes ({calls / max(created, 1) * 10000:.2f} per 10,000"
                f" records; target <= 10): {dict(sorted(accounting.get('calls', {}).items()))}"
            )
            print(f"jobrunner peak RSS (restore): {_rss_peak_mb(jobrunner.pid):.0f} MB (target <= 300)")
        finally:
            await bb.stop_all(jobrunner, storage, bus)


def run() -> None:
    bb.with_services(_main)
