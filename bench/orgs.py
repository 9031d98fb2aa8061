"""Many-orgs benchmark (issue 21, "Many orgs"): BENCH_ORGS_COUNT sforg orgs (50; the first with a big object:
BENCH_ORGS_BIG records, the others `tiny`) on one stack (PostgreSQL, NATS, one storage and one jobrunner process
at its default concurrency, as deployed), their backups published within a second or two, as a schedule firing
for all of them in the same hour would: each org's policy covers the objects holding records
(BENCH_ORGS_SCOPE=all: every queryable object) with a per-run API budget of BENCH_ORGS_BUDGET calls, shared
between its jobs as discovery shares it (split_budget). Then the same without the big org, under new org ids.
Prints the sessions that ended Success, the wall time, the queueing delay of each job (JobSpec published ->
JobStarted) and of each org's first job, each org's session duration, the big object's effect on the others,
API calls per org against its budget, and a table: figure, target, met. Run on request: `make bench-orgs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2

from bench.backup import (
    SECRET_ENV,
    Collector,
    _collecting_bus,
    _creds,
    _jobrunner_env,
    _specs,
    _start_jobrunner,
    stop_all,
    with_services,
)
from bench.storage import StorageProcess
from services.discovery.domain import Policy, split_budget
from services.jobrunner.consumers import DEFERRALS
from services.platform import events
from services.platform.bus import Bus
from services.sfclient import OrgClient
from sforg.testing import running_org

COUNT = int(os.environ.get("BENCH_ORGS_COUNT", "50"))
BIG = int(os.environ.get("BENCH_ORGS_BIG", "200000"))
SCOPE = os.environ.get("BENCH_ORGS_SCOPE", "records")
BUDGET = int(os.environ.get("BENCH_ORGS_BUDGET", "1000"))
SLOTS = 4  # the jobrunner's default concurrency: one org's fair part is one slot at most


@dataclass
class Org:
    org_id: str
    info: dict[str, Any]
    specs: list[jobs_pb2.JobSpec]


@dataclass
class Times:
    """When each job's JobSpec was published, its first JobStarted and its JobFinished seen (perf_counter)."""

    published: dict[tuple[str, str], float] = field(default_factory=dict)
    started: dict[tuple[str, str], float] = field(default_factory=dict)
    finished: dict[tuple[str, str], float] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    deferred: int = 0  # JobSpecs the jobrunner published again to the back of JOBS (fairness)

    async def on_job(self, msg: Any) -> None:
        if (msg.headers or {}).get(DEFERRALS):
            self.deferred += 1

    async def on_msg(self, msg: Any) -> None:
        env = events.decode(msg.data)
        into = self.started if events.event_type(env) == "JobStarted" else self.finished
        into.setdefault((env.session_id, env.job_id), time.perf_counter())
        self.changed.set()

    async def wait(self, keys: list[tuple[str, str]]) -> None:
        """Until every job of `keys` was seen started and finished."""
        while not all(k in self.finished and k in self.started for k in keys):
            self.changed.clear()
            await self.changed.wait()


def pct(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (0 for no value)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))] if ordered else 0.0


def _start_orgs(work: Path, stack: contextlib.ExitStack) -> list[dict[str, Any]]:
    """The orgs' sforg processes, started a few at once: the first with BIG records, the others tiny."""
    lock = threading.Lock()

    def one(i: int) -> dict[str, Any]:
        cm = running_org(work / f"org{i}", scale=BIG if i == 0 else "tiny", seed=3 + i, timeout=1800)
        info = cm.__enter__()
        with lock:
            stack.push(cm.__exit__)
        return info

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(COUNT)))


def _org(i: int, info: dict[str, Any], suffix: str = "") -> Org:
    """The org's backup jobs as discovery plans them for its policy: its objects (holding records, or all),
    largest first, each with its share of the policy's per-run budget; its secret under a variable of its own."""
    org_id = f"org-{i:02d}{suffix}"
    os.environ[SECRET_ENV] = info["client_secret"]
    specs = _specs(info, f"s-{org_id}")
    if SCOPE == "records":
        client = OrgClient(_creds(info))
        names = ",".join(s.object_name for s in specs)
        body = client.request(
            "GET", f"/services/data/v{info['api_version']}/limits/recordCount", params={"sObjects": names}
        ).json()
        held = {o["name"] for o in body["sObjects"] if o["count"] > 0}
        specs = [s for s in specs if s.object_name in held]
    secret = f"SFVAULT_SECRET_BENCH_ORG_{i}"
    os.environ[secret] = info["client_secret"]
    budget = split_budget(Policy(f"p-{org_id}", org_id, per_run_cap=BUDGET), len(specs), 0)
    for spec in specs:
        spec.org_id, spec.policy_id = org_id, f"p-{org_id}"
        spec.connection.client_secret_ref = f"env:{secret}"
        spec.api_call_cap, spec.api_reserve_percent = budget.api_call_cap, budget.api_reserve_percent
    return Org(org_id, info, specs)


@dataclass
class Round:
    label: str
    wall: float
    success: dict[str, bool]  # by org
    calls: dict[str, int]  # by org
    queueing: list[float]  # per job
    first: dict[str, float]  # by org: its first job's queueing delay
    session: dict[str, float]  # by org: first publication -> last JobFinished
    big_job: tuple[float, float] | None  # the big object's JobStarted and JobFinished, from the round's start
    big_share: float  # the big org's part of all jobs' running time until the last small org's session ended
    deferred: int  # jobs sent to the back of JOBS


async def _round(label: str, bus: Bus, collector: Collector, times: Times, orgs: list[Org]) -> Round:
    began = time.perf_counter()
    for org in orgs:  # one org's session after another, as a schedule fires them
        for spec in org.specs:
            await bus.enqueue_job(spec)
            times.published[(spec.session_id, spec.job_id)] = time.perf_counter()
    keys = [(s.session_id, s.job_id) for o in orgs for s in o.specs]
    done = dict(zip(keys, await collector.wait(keys), strict=True))
    await times.wait(keys)  # the same events on our own subscription: a moment behind at most
    if os.environ.get("BENCH_ORGS_ORDER"):  # the order jobs started in: org, object, seconds from the start
        order = sorted((times.started[k] - began, k) for k in keys)
        print("   started: " + ", ".join(f"{k[0][2:]}/{k[1][5:]} {t:.2f}" for t, k in order))
    wall = time.perf_counter() - began
    out = Round(label, wall, {}, {}, [], {}, {}, None, 0.0, times.deferred)
    times.deferred = 0
    for org in orgs:
        mine = [(s.session_id, s.job_id) for s in org.specs]
        out.success[org.org_id] = all(done[k].outcome == ev.JOB_OUTCOME_SUCCESS for k in mine)
        out.calls[org.org_id] = sum(done[k].counts.api_calls for k in mine)
        delays = [times.started[k] - times.published[k] for k in mine]
        out.queueing += delays
        first_published = min(times.published[k] for k in mine)
        out.first[org.org_id] = min(times.started[k] for k in mine) - first_published
        out.session[org.org_id] = max(times.finished[k] for k in mine) - first_published
    if orgs[0].org_id == "org-00":
        big = (orgs[0].specs[0].session_id, orgs[0].specs[0].job_id)  # largest first: its big object
        out.big_job = (times.started[big] - began, times.finished[big] - began)
        small_end = max(times.finished[(s.session_id, s.job_id)] for o in orgs[1:] for s in o.specs)

        def ran(k: tuple[str, str]) -> float:
            return max(0.0, min(times.finished[k], small_end) - times.started[k])

        big_keys = [(s.session_id, s.job_id) for s in orgs[0].specs]
        out.big_share = sum(ran(k) for k in big_keys) / max(sum(ran(k) for k in keys), 1e-9)
    return out


def _report(r: Round) -> None:
    ok = sum(r.success.values())
    print(
        f"{r.label}: {ok}/{len(r.success)} sessions Success, {len(r.queueing)} jobs in {r.wall:.1f} s"
        f" ({r.deferred} deferrals to the back of JOBS)"
    )
    print(
        f"{r.label}: queueing delay per job (JobSpec published -> JobStarted): p50 {pct(r.queueing, 50):.2f} s,"
        f" p95 {pct(r.queueing, 95):.2f} s, max {max(r.queueing):.2f} s"
    )
    first = list(r.first.values())
    print(
        f"{r.label}: each org's first job started after p50 {pct(first, 50):.2f} s, p95 {pct(first, 95):.2f} s,"
        f" max {max(first):.2f} s"
    )
    others = [v for k, v in r.session.items() if k != "org-00"]
    print(f"{r.label}: session duration of the small orgs: p50 {pct(others, 50):.1f} s, p95 {pct(others, 95):.1f} s")
    if r.big_job is not None:
        print(
            f"{r.label}: the big org's session {r.session['org-00']:.1f} s; its largest object ran from"
            f" {r.big_job[0]:.1f} s to {r.big_job[1]:.1f} s; its jobs had {r.big_share * 100:.0f} % of the jobs'"
            " running time until the small orgs' sessions ended"
        )
    ratio = max(r.calls[o] / BUDGET for o in r.calls)
    print(
        f"{r.label}: API calls per org: max {max(r.calls.values())}, p50 {pct(list(r.calls.values()), 50):.0f},"
        f" budget {BUDGET} per run (max used {ratio * 100:.1f} %)"
    )


def _table(with_big: Round, without: Round) -> None:
    rows: list[tuple[str, str, str, bool | None]] = []
    ok = sum(with_big.success.values()) + sum(without.success.values())
    n = len(with_big.success) + len(without.success)
    rows.append(("sessions Success (both rounds)", f"{ok}/{n}", "all", ok == n))
    p95 = pct(with_big.queueing, 95)
    rows.append(("p95 queueing delay per job (with the big org)", f"{p95:.2f} s", "reported", None))
    assert with_big.big_job is not None
    big_end = with_big.big_job[1]
    waited = sum(1 for k, v in with_big.first.items() if k != "org-00" and v > big_end)
    rows.append(("orgs whose first job started after the big object ended", str(waited), "0", waited == 0))
    a = pct([v for k, v in with_big.session.items() if k != "org-00"], 95)
    b = pct(list(without.session.values()), 95)
    rows.append(
        (
            "small orgs' p95 session duration, with / without the big org",
            f"{a / b:.2f} ({a:.1f} / {b:.1f} s)",
            "<= 1.25",
            a / b <= 1.25,
        )
    )
    share = with_big.big_share
    rows.append(
        (
            "the big org's part of the running time while the others ran",
            f"{share * 100:.0f} %",
            f"<= {100 / SLOTS:.0f} %",
            share <= 1 / SLOTS,
        )
    )
    used = max(max(r.calls.values()) for r in (with_big, without))
    rows.append(("max API calls of an org's session / its budget", f"{used} / {BUDGET}", "<= 100 %", used <= BUDGET))
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'value':<22} {'target':<10} met")
    for name, value, target, met in rows:
        print(f"{name:<{width}}  {value:<22} {target:<10} {'-' if met is None else ('yes' if met else 'NO')}")


async def _main(url: str, nats_url: str, work: Path) -> None:
    os.environ["SFVAULT_AUTH_DISABLED"] = "true"  # storage and jobrunner processes on a private loopback
    print(f"   starting {COUNT} sforg orgs (org-00 with {BIG:,} records, the others tiny) ...", flush=True)
    with contextlib.ExitStack() as stack:
        infos = _start_orgs(work, stack)
        orgs = [_org(i, info) for i, info in enumerate(infos)]
        again = [_org(i, info, "b") for i, info in enumerate(infos) if i]  # the second round: new org ids
        big = orgs[0].specs[0]
        print(
            f"   {sum(len(o.specs) for o in orgs)} jobs; the big object: {big.object_name} of org-00"
            f" ({len(orgs[0].specs)} objects); a small org: {len(orgs[1].specs) if COUNT > 1 else 0} objects",
            flush=True,
        )
        storage = StorageProcess(url, nats_url, str(work / "files"))
        env = _jobrunner_env(url, nats_url, storage.port, "BENCH_ORGS_LOG_LEVEL")
        jobrunner = _start_jobrunner(env)  # serving before the clock starts
        bus, collector = await _collecting_bus(nats_url)
        times = Times()
        for kind in ("JobStarted", "JobFinished"):
            await bus.nc.subscribe(bus.config.events_subject(f"*.{kind}"), cb=times.on_msg)
        await bus.nc.subscribe(bus.config.jobs_subject(), cb=times.on_job)
        try:
            with_big = await _round("with the big org", bus, collector, times, orgs)
            _report(with_big)
            without = await _round("without it", bus, collector, times, again)
            _report(without)
            _table(with_big, without)
        finally:
            await stop_all(jobrunner, storage, bus)


def run() -> None:
    with_services(_main)
