"""Files benchmark (issue 21, "Files"): an sforg org holding BENCH_FILES_COUNT files (default 10,000; sizes as in
a real org: most of a few KB, some of a few MB; ContentVersions and Attachments, one in ten a repeat of an earlier
body) and one BENCH_FILES_BIG_MB file (default 2048: a 2 GB ContentVersion), backed up by the file job of a
jobrunner process into a storage process (bench/backup.py's set-up). Prints files/s and MB/s of the whole job, of
the small files and of the 2 GB file alone; beside them, measured in the same run, what the org serves with one
call per file, what it serves of the 2 GB body alone, and the disk's own copy speed (the 2 GB body copied and
fsync'd on the file repository's filesystem); jobrunner and storage peak RSS during the small files and during
the 2 GB file; every stored body's SHA-256 checked against the org's. Then a table: each figure, its target, met.

The org's bodies are generated from a seed when read (sforg serves them block by block: no byte on disk, none held
in memory); the org itself (its rows and the bodies' digests) is built once into BENCH_FILES_CACHE (default
.state/bench-files) and reused.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2

from bench import backup as bb
from bench.storage import StorageProcess
from services.sfclient import OrgClient
from services.storage.files import content_key
from sforg.org import Org
from sforg.store import table
from sforg.testing import Admin, running_org

COUNT = int(os.environ.get("BENCH_FILES_COUNT", 10_000))
BIG_MB = int(os.environ.get("BENCH_FILES_BIG_MB", 2048))
CACHE = Path(os.environ.get("BENCH_FILES_CACHE", ".state/bench-files"))
SEED = 5
CONTENT_VERSIONS = 0.7  # of the small files; the others are Attachments
OBJECTS = ("ContentVersion", "Attachment", "Document")  # the objects holding files
RSS_FLAT_MB = 50  # "RSS flat": the 2 GB file raises neither process's peak RSS by more than this
SHARE = 0.8  # of min(what the org serves, what the disk copies): issue 21's share of the records' ceilings
SAMPLE_S = 0.05  # how often the RSS sampler looks


def small_sizes(count: int, seed: int = SEED) -> list[tuple[int, int]]:
    """(content seed, size) of `count` files as a real org holds them: 85 % of 1 to 64 KB, 14 % up to 2 MB, 1 % up
    to 16 MB; one in ten repeats an earlier file's body (a file attached twice)."""
    rng = random.Random(f"{seed}:bench-files")
    out: list[tuple[int, int]] = []
    for k in range(count):
        if out and rng.random() < 0.1:
            out.append(out[rng.randrange(len(out))])
            continue
        r = rng.random()
        low, high = (1 << 10, 64 << 10) if r < 0.85 else ((64 << 10, 2 << 20) if r < 0.99 else (2 << 20, 16 << 20))
        out.append((seed * 1_000_000 + k, rng.randrange(low, high)))
    return out


def _bodies(org: Org) -> int:
    """How many files (rows with a body) the org holds."""
    conn = org.store.conn()
    return sum(conn.execute(f"SELECT COUNT(*) FROM {table(o)} WHERE _blob IS NOT NULL").fetchone()[0] for o in OBJECTS)


def cached_org(count: int = COUNT, big_mb: int = BIG_MB, cache: Path = CACHE) -> tuple[Path, dict[str, Any]]:
    """The folder of an org of `count` files and one of `big_mb` MB (built the first time, reused after), and what
    the build recorded: the big file's Id and size."""
    folder = cache / f"org-{count}-{big_mb}mb-seed{SEED}-fast"  # bodies of sforg's fast generator
    if (folder / "bench.json").exists():
        print(f"   org of {count:,} files and one of {big_mb:,} MB: cached in {folder}", flush=True)
        return folder, json.loads((folder / "bench.json").read_text())
    shutil.rmtree(folder, ignore_errors=True)  # a build cut short starts again
    print(f"   building an org of {count:,} files and one of {big_mb:,} MB into {folder} ...", flush=True)
    started = time.perf_counter()
    org = Org(folder, "tiny", SEED)
    rng = random.Random(SEED)
    parents = [r[0] for r in org.store.conn().execute(f'SELECT "Id" FROM {table("Account")} LIMIT 100')]
    with org.store.transaction():
        for n, (seed, size) in enumerate(small_sizes(count - _bodies(org))):
            obj = "ContentVersion" if rng.random() < CONTENT_VERSIONS else "Attachment"
            org.add_generated_file(obj, seed, size, parent_id=parents[n % len(parents)])
        # the last version created: the highest Id, so the file job reads it after the other versions
        big = org.add_generated_file("ContentVersion", SEED * 1_000_000 - 1, big_mb << 20)
    built = {"big_id": big["ContentVersionId"], "big_size": big_mb << 20, "files": _bodies(org)}
    org.flush()
    org.store.conn().close()
    (folder / "bench.json").write_text(json.dumps(built))  # written last: the org is complete
    print(f"   built in {time.perf_counter() - started:.0f} s", flush=True)
    return folder, built


@dataclass
class Sampler:
    """Samples, until stopped, the resident set of some processes (time, MB of each) and the bodies being written
    in the file repository's temporary folder (when each was first seen, its largest size): when the big file's
    transfer began, with several files in flight."""

    pids: dict[str, int]
    uploads: Path
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    seen: dict[str, tuple[float, int]] = field(default_factory=dict)  # temporary body -> (first seen, largest size)
    done: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Sampler:
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _sample(self) -> None:
        while not self.done.wait(SAMPLE_S):  # a sampling period, not a wait for a condition
            now = time.time()
            self.samples.append((now, {name: _rss_mb(pid) for name, pid in self.pids.items()}))
            with contextlib.suppress(FileNotFoundError), os.scandir(self.uploads) as entries:
                for entry in entries:
                    with contextlib.suppress(FileNotFoundError):  # committed meanwhile
                        first, _size = self.seen.get(entry.name, (now, 0))
                        self.seen[entry.name] = (first, entry.stat().st_size)

    def began(self, size: int) -> float | None:
        """When the body of `size` bytes was first seen being written (None: never seen)."""
        return min((first for first, largest in self.seen.values() if largest >= size // 2), default=None)

    def peak(self, name: str, inside: tuple[float, float], within: bool = True) -> float:
        """The highest sample of `name` inside the window (or outside it, within=False)."""
        lo, hi = inside
        return max((s[name] for t, s in self.samples if (lo <= t <= hi) == within), default=0.0)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _file_spec(info: dict[str, Any], session: str) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(
        session_id=session,
        job_id="files",
        type=ev.JOB_TYPE_FILE,
        org_id="bench",
        policy_id="bench",
        connection=bb._connection(info),
        salesforce_org_id=info["org_id"],
        instance_url=info["instance_url"],
        file=jobs_pb2.FileJob(content_versions=True, attachments=True, documents=True),
    )


def _stored(url: str) -> list[tuple[str, str, int, float]]:
    """(record Id, SHA-256 hex, size, when stored) of every file version storage holds, oldest first."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT record_id, encode(sha256, 'hex'), size, extract(epoch FROM captured_at)::float8"
            " FROM storage.file_versions ORDER BY captured_at"
        ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2]), float(r[3])) for r in rows]


def _served(info: dict[str, Any], files: dict[str, dict[str, Any]]) -> tuple[int, int, float]:
    """Every body downloaded and discarded, one call each, one after the other as the file job reads them: what
    the org serves (files, bytes, seconds)."""
    client = OrgClient(bb._creds(info))
    base = f"/services/data/v{info['api_version']}/sobjects"
    fields = {"ContentVersion": "VersionData", "Attachment": "Body", "Document": "Body"}
    size, started = 0, time.perf_counter()
    for rid, f in files.items():
        resp = client.request("GET", f"{base}/{f['object']}/{rid}/{fields[f['object']]}", stream=True)
        for block in resp.iter_content(1 << 20):
            size += len(block)
        resp.close()
    return len(files), size, time.perf_counter() - started


def _disk_copy(path: Path) -> float:
    """Seconds to copy `path` beside itself, fsync'd (the copy removed after)."""
    copy = path.with_name(path.name + ".bench-copy")
    started = time.perf_counter()
    shutil.copyfile(path, copy)
    with open(copy, "rb") as fh:
        os.fsync(fh.fileno())
    seconds = time.perf_counter() - started
    copy.unlink()
    return seconds


@dataclass
class Figures:
    files: int = 0
    mb: float = 0.0
    seconds: float = 0.0
    small_files: int = 0
    small_mb: float = 0.0
    small_seconds: float = 0.0
    big_mb: float = 0.0
    big_seconds: float = 0.0
    served_files_s: float = 0.0
    served_mb_s: float = 0.0
    served_big_mb_s: float = 0.0
    disk_mb_s: float = 0.0
    rss: dict[str, tuple[float, float]] = field(default_factory=dict)  # process: (small files, 2 GB file)
    digests_ok: bool = False


def table_of(f: Figures) -> str:
    big = f.big_mb / max(f.big_seconds, 1e-9)
    big_name = f"{f.big_mb / 1e3:.1f} GB" if f.big_mb >= 1e3 else f"{f.big_mb:.0f} MB"
    small_rate = f.small_files / max(f.small_seconds, 1e-9)
    ceiling = min(f.served_big_mb_s, f.disk_mb_s)
    rows = [
        (
            "small files/s",
            f"{small_rate:,.0f}",
            f">= {SHARE} x the org's one call per file ({f.served_files_s:,.0f})",
            small_rate >= SHARE * f.served_files_s,
        ),
        (
            f"{big_name} file MB/s",
            f"{big:,.0f}",
            f">= {SHARE} x min(org serves {f.served_big_mb_s:,.0f}, disk copies {f.disk_mb_s:,.0f})",
            big >= SHARE * ceiling,
        ),
        *(
            (
                f"{name} peak RSS MB (small files / {big_name} file)",
                f"{small:.0f} / {during:.0f}",
                f"{big_name} file <= small files + {RSS_FLAT_MB}",
                during <= small + RSS_FLAT_MB,
            )
            for name, (small, during) in f.rss.items()
        ),
        ("bodies' SHA-256 = the org's", "yes" if f.digests_ok else "NO", "every file", f.digests_ok),
    ]
    head = ("figure", "measured", "target (issue 21)", "met")
    cells = [head, *((n, m, t, "yes" if ok else "NO") for n, m, t, ok in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(4)).rstrip() for c in cells)


async def _main(url: str, nats_url: str, work: Path) -> None:
    os.environ["SFVAULT_AUTH_DISABLED"] = "true"  # storage and jobrunner processes on a private loopback
    folder, built = cached_org()
    out = Figures()
    with running_org(folder, scale="tiny", seed=SEED, timeout=600) as info:
        os.environ[bb.SECRET_ENV] = info["client_secret"]
        admin = Admin(info)
        admin.api_usage(used=0)  # the cached org's daily counter, after earlier runs
        truth = admin.ground_truth(objects=list(OBJECTS), values=False)["files"]
        storage = StorageProcess(url, nats_url, str(work / "files"))
        jobrunner = bb._start_jobrunner(bb._jobrunner_env(url, nats_url, storage.port, "BENCH_FILES_LOG_LEVEL"))
        bus, collector = await bb._collecting_bus(nats_url)
        try:
            parts = {"sforg": [info["pid"]], "jobrunner": [jobrunner.pid], "storage": [storage.proc.pid]}
            before = bb._cpu_start(parts, url)
            pids = {"jobrunner": jobrunner.pid, "storage": storage.proc.pid}
            with Sampler(pids, work / "files" / ".tmp") as sampler:
                out.seconds, _received, calls = await bb._session(bus, collector, [_file_spec(info, "files")])
            cpu = bb._cpu_spent(parts, url, before)
        finally:
            await bb.stop_all(jobrunner, storage, bus)
        stored = _stored(url)
        out.files, out.mb = len(stored), sum(s[2] for s in stored) / 1e6
        out.digests_ok = {s[0]: s[1] for s in stored} == {rid: f["sha256"] for rid, f in truth.items()}
        big = next(s for s in stored if s[0] == built["big_id"])
        # from when its body began to be written (other files commit meanwhile) to its commit
        start = sampler.began(big[2]) or max((s[3] for s in stored if s[3] < big[3]), default=big[3] - out.seconds)
        window = (start, big[3])
        out.big_mb, out.big_seconds = big[2] / 1e6, big[3] - start
        out.small_files, out.small_mb = out.files - 1, out.mb - out.big_mb
        out.small_seconds = out.seconds - out.big_seconds
        out.rss = {name: (sampler.peak(name, window, False), sampler.peak(name, window)) for name in sampler.pids}
        print(
            f"file job: {out.files:,} files, {out.mb:,.0f} MB in {out.seconds:.1f} s = {out.files / out.seconds:,.0f}"
            f" files/s, {out.mb / out.seconds:,.1f} MB/s; {calls} API calls; CPU s "
            + ", ".join(f"{name} {s:.1f}" for name, s in cpu.items())
            + f"; load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        print(
            f"  small files: {out.small_files:,}, {out.small_mb:,.0f} MB in {out.small_seconds:.1f} s ="
            f" {out.small_files / out.small_seconds:,.0f} files/s, {out.small_mb / out.small_seconds:,.1f} MB/s",
            flush=True,
        )
        print(
            f"  the {out.big_mb:,.0f} MB file alone: {out.big_seconds:.1f} s ="
            f" {out.big_mb / out.big_seconds:,.1f} MB/s",
            flush=True,
        )
        for name, (small, during) in out.rss.items():
            print(f"  {name} peak RSS: {small:.0f} MB during the small files, {during:.0f} MB during the big file")
        print(f"  bodies' SHA-256 = the org's: {out.digests_ok} ({len(stored):,} stored, {len(truth):,} in the org)")
        small_truth = {rid: f for rid, f in truth.items() if rid != built["big_id"]}
        n, size, seconds = _served(info, small_truth)
        out.served_files_s, out.served_mb_s = n / seconds, size / 1e6 / seconds
        print(
            f"org serves (one call per file, one after the other): {n:,} files, {size / 1e6:,.0f} MB in"
            f" {seconds:.1f} s = {out.served_files_s:,.0f} files/s, {out.served_mb_s:,.1f} MB/s",
            flush=True,
        )
        _n, size, seconds = _served(info, {built["big_id"]: truth[built["big_id"]]})
        out.served_big_mb_s = size / 1e6 / seconds
        print(f"org serves the big file: {size / 1e6:,.0f} MB in {seconds:.1f} s = {out.served_big_mb_s:,.1f} MB/s")
    body = work / "files" / content_key(big[1])
    seconds = _disk_copy(body)
    out.disk_mb_s = big[2] / 1e6 / seconds
    print(
        f"disk copy (the big body copied beside itself and fsync'd, {shutil.disk_usage(body).free / 1e9:,.0f} GB"
        f" free): {big[2] / 1e6:,.0f} MB in {seconds:.1f} s = {out.disk_mb_s:,.1f} MB/s;"
        f" the big file's backup at {out.big_mb / out.big_seconds / out.disk_mb_s:.0%} of it",
        flush=True,
    )
    print(table_of(out))


def run() -> None:
    bb.with_services(_main)  # its PostgreSQL, NATS and work folder (the stored bodies) removed on the way out
