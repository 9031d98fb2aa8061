"""Look rather than read (issue 20) on a real backup, every service a separate process: `sfvault session trace`
shows the session's tree from the local stack's trace file, each service's Prometheus endpoint has the named
metrics with the backup's numbers, and every panel of the Grafana dashboard has data in those scrapes.

The stack is started once for the module: a backup runs, each service's /metrics is scraped while it runs, and
the stack is stopped (every service flushes its spans into the trace file on SIGTERM) before the tests look."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api

from devstack.localstack import SERVICES, local_stack
from services.cli import local
from services.cli import trace as trace_command
from services.cli.client import Clients
from services.platform import metrics, tracefile
from tests.e2e.conftest import endpoints, register
from tests.e2e.prometheus import Prometheus, prometheus
from tests.e2e.test_backup import run_session

pytestmark = pytest.mark.e2e
DASHBOARD = Path(__file__).resolve().parents[2] / "k8s" / "components" / "observability" / "dashboards" / "sfvault.json"

# what each service's endpoint has once a backup has run (Prometheus names: OTel's dots as underscores, the
# unit as a suffix, _total on counters)
EXPECTED = {
    "storage": {
        "sfvault_records_backed_up_total",
        "sfvault_bytes_stored_bytes_total",
        "sfvault_chunk_duration_seconds_count",
    },
    "jobrunner": {
        "sfvault_jobs_finished_total",
        "sfvault_jobs_running",
        "sfvault_salesforce_api_calls_total",
        "sfvault_salesforce_api_requests_left",
        "sfvault_consumer_lag",
    },
    "session": {
        "sfvault_sessions_finished_total",
        "sfvault_session_duration_seconds_count",
        "sfvault_jobs_stall_terminations_total",
        "sfvault_consumer_lag",
    },
    "discovery": {"sfvault_salesforce_api_calls_total", "sfvault_consumer_lag"},
}
Samples = dict[str, list[tuple[dict[str, str], float]]]  # sample name -> (labels, value) of every series


@dataclass
class Observed:
    home: Path
    session: api.Session
    jobs: dict[str, api.Job]
    samples: dict[str, Samples]  # by service
    prometheus: Prometheus  # a real one that scraped every service through the backup
    at: float  # when it had scraped them all after the backup (epoch seconds), before the stack stopped


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def scraped_when_complete(port: int, names: set[str], timeout: float = 60.0) -> Samples:
    """The service's samples once all `names` are there: a job's outcome and a session's duration are recorded
    just after the events that end the session, so the first scrape may come a moment before them."""
    deadline = time.monotonic() + timeout
    while True:
        found = scrape(port)
        if names <= found.keys() or time.monotonic() > deadline:
            return found
        time.sleep(0.2)  # another process's counters: no event to await


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, stack_database: str) -> Iterator[Observed]:
    home = tmp_path_factory.mktemp("observed")
    env = local.prepare_auth(home) | {
        tracefile.VARIABLE: str(home / trace_command.FILE_NAME),
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    ports = {name: free_port() for name in SERVICES}
    with (
        prometheus(ports, home / "prometheus") as prom,
        local_stack(
            home, with_org="tiny", org_seed=5, extra_env=env, database_url=stack_database, start=False
        ) as stack,
    ):
        for name, svc in stack.services.items():
            svc.env[metrics.PORT_VARIABLE] = str(ports[name])  # one endpoint per service
            svc.start()
        for svc in stack.services.values():
            svc.wait_serving()
        assert stack.org is not None
        c = Clients(endpoints(stack, home))
        try:
            register(c, stack.org, home)
            session, jobs = run_session(c)
            samples = {name: scraped_when_complete(ports[name], EXPECTED[name]) for name in SERVICES}
            # Prometheus has what the endpoints show now, in two scrapes at least: a series the backup's last
            # second created needs two samples for rate() and increase() to answer
            for _ in range(2):
                prom.wait_scraped_since(time.time(), len(SERVICES))
            at = time.time()
        finally:
            c.close()
        for svc in stack.services.values():
            svc.stop()  # SIGTERM: each service flushes its spans into the trace file on the way out
        # Prometheus keeps running for the tests, which query it as of `at`
        yield Observed(home, session, jobs, samples, prom, at)


def sfvault(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SFVAULT_HOME": str(home)}
    env.pop(tracefile.VARIABLE, None)
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


# ---- sfvault session trace ---------------------------------------------------------------------------------------


def test_session_trace_is_a_tree_of_services_jobs_and_chunks(observed: Observed) -> None:
    assert observed.session.status == pb.SESSION_STATUS_SUCCESS, observed.session.reason
    session_id = observed.session.session_id
    shown = sfvault(observed.home, "session", "trace", session_id[:8])
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"session {session_id}: ")
    assert "StartSession" in lines[1]  # the trace's root: the call that started the session
    text = shown.stdout
    for job_id in observed.jobs:  # every job, under the service that ran it
        assert any(f"job={job_id}" in line and "jobrunner" in line for line in lines), job_id
    assert "discovery process SessionRequested" in text  # the hop across NATS, the publish left out
    assert "jobrunner→storage PutRecords" in text  # a gRPC call by both its sides
    assert "storage sql put_records" in text  # a chunk's transaction, with its records
    assert "publish JobSpec" not in text

    # with every span shown, the chunks' records add up to what the jobs counted
    every = sfvault(observed.home, "session", "trace", session_id, "--limit", "0", "--json")
    assert every.returncode == 0, every.stderr
    spans = json.loads(every.stdout)
    assert {s["service"] for s in spans} == set(SERVICES)
    assert len({s["trace_id"] for s in spans}) == 1
    data = {job_id: j.counts.received for job_id, j in observed.jobs.items() if j.type == pb.JOB_TYPE_DATA}
    chunks: dict[str, int] = {}
    for s in spans:
        if s["name"] == "sql put_records" and s["attributes"]["sfvault.job_id"] in data:
            job_id = s["attributes"]["sfvault.job_id"]
            chunks[job_id] = chunks.get(job_id, 0) + s["attributes"]["sfvault.chunk.records"]
    assert sum(data.values()) > 0 and chunks == {job_id: n for job_id, n in data.items() if n}


def test_session_trace_of_an_unknown_session_is_not_found(observed: Observed) -> None:
    missing = sfvault(observed.home, "session", "trace", "zz-no-such-session")
    assert missing.returncode == 1
    assert "error (not_found)" in missing.stderr and "zz-no-such-session" in missing.stderr


# ---- the Prometheus endpoints ------------------------------------------------------------------------------------


def test_each_service_serves_its_metrics_with_the_backups_numbers(observed: Observed) -> None:
    for name, expected in EXPECTED.items():
        assert expected <= observed.samples[name].keys(), (name, expected - observed.samples[name].keys())
    storage, jobrunner, session = (observed.samples[n] for n in ("storage", "jobrunner", "session"))
    data = [j for j in observed.jobs.values() if j.type == pb.JOB_TYPE_DATA]
    assert sum(j.counts.received for j in data) > 0
    for j in data:  # by object: each data job's records
        assert total(storage, "sfvault_records_backed_up_total", sfvault_object=j.object_name) == j.counts.received
    assert total(storage, "sfvault_bytes_stored_bytes_total", sfvault_kind="records") > 0
    assert total(jobrunner, "sfvault_jobs_finished_total", sfvault_job_outcome="success") == len(observed.jobs)
    assert total(session, "sfvault_sessions_finished_total", sfvault_session_status="SUCCESS") == 1
    assert total(session, "sfvault_session_duration_seconds_count", sfvault_session_status="SUCCESS") == 1
    assert total(session, "sfvault_jobs_stall_terminations_total") == 0
    assert total(jobrunner, "sfvault_salesforce_api_requests_left") > 0


# ---- the Grafana dashboard ---------------------------------------------------------------------------------------

METRIC = re.compile(r"\bsfvault_[a-z_]+\b")
GROUPED_BY = re.compile(r"\bby \(([^)]*)\)")


def added_by_prometheus() -> set[str]:
    """The labels a scrape adds (job, instance, and those prometheus.yml's relabelling sets): not in an
    endpoint's text."""
    config = yaml.safe_load((DASHBOARD.parents[1] / "prometheus.yml").read_text())
    relabelled = {r["target_label"] for job in config["scrape_configs"] for r in job.get("relabel_configs", [])}
    return {"job", "instance"} | relabelled


def test_every_dashboard_panel_has_data_after_a_backup(observed: Observed) -> None:
    """Each panel's PromQL checked by its parts against the endpoints (the next test evaluates it whole in a real
    Prometheus). Every metric it names has samples in the services'
    /metrics after the backup, with every label it groups by; the trace panel's Jaeger search (service and
    tag) matches spans of the session in the trace file."""
    dashboard = json.loads(DASHBOARD.read_text())
    scraped: Samples = {}
    for samples in observed.samples.values():
        for name, series in samples.items():
            scraped.setdefault(name, []).extend(series)
    used: set[str] = set()
    added = added_by_prometheus()
    assert "service" in added  # the API calls panel groups by it
    session_spans = [
        s
        for s in tracefile.read(observed.home / trace_command.FILE_NAME)
        if s.attributes.get("sfvault.session_id") == observed.session.session_id
    ]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            if target["datasource"]["type"] == "prometheus":
                names = METRIC.findall(GROUPED_BY.sub("", target["expr"]))  # labels grouped by start so too
                assert names, (panel["title"], target["expr"])
                for name in names:
                    assert scraped.get(name), (panel["title"], name)
                    for label in {g.strip() for by in GROUPED_BY.findall(target["expr"]) for g in by.split(",")}:
                        if label not in added:
                            assert any(label in labels for labels, _ in scraped[name]), (panel["title"], label)
                used |= set(names)
            else:  # the session's trace, found by its id
                assert target["datasource"]["type"] == "jaeger" and target["queryType"] == "search"
                key, value = target["tags"].split("=")
                assert value == "$session_id" and key == "sfvault.session_id"
                assert any(s.service == target["service"] for s in session_spans), panel["title"]
    # what issue 20 names: records and bytes per second, API calls and budget left, jobs by outcome, session
    # durations, stall terminations, consumer lag
    assert {
        "sfvault_records_backed_up_total",
        "sfvault_bytes_stored_bytes_total",
        "sfvault_salesforce_api_calls_total",
        "sfvault_salesforce_api_requests_left",
        "sfvault_jobs_finished_total",
        "sfvault_session_duration_seconds_bucket",
        "sfvault_jobs_stall_terminations_total",
        "sfvault_consumer_lag",
    } <= used
    assert any(v["name"] == "session_id" for v in dashboard["templating"]["list"])


def test_every_panel_query_returns_data_in_a_real_prometheus(observed: Observed) -> None:
    """The dashboard's PromQL as Grafana sends it ($__rate_interval and $__range filled in), evaluated by a real
    Prometheus (Debian's) that scraped every service through the backup: each query returns series."""
    dashboard = json.loads(DASHBOARD.read_text())
    empty = []
    asked = 0
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            if target["datasource"]["type"] != "prometheus":
                continue
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$__range", "5m")
            asked += 1
            if not observed.prometheus.query(expr, observed.at):
                empty.append(f"{panel['title']}: {expr}")
    assert asked >= 10 and not empty, empty
    # and the numbers are the backup's: the records stored, by object, are what the jobs counted
    stored = observed.prometheus.query("sum by (sfvault_object) (sfvault_records_backed_up_total)", observed.at)
    by_object = {r["metric"]["sfvault_object"]: float(r["value"][1]) for r in stored}
    data = {j.object_name: j.counts.received for j in observed.jobs.values() if j.type == pb.JOB_TYPE_DATA}
    assert {name: by_object.get(name) for name, n in data.items() if n} == {name: n for name, n in data.items() if n}
    endpoint = {
        labels["sfvault_object"]: v for labels, v in observed.samples["storage"]["sfvault_records_backed_up_total"]
    }
    assert by_object == endpoint  # the file job's ContentDocumentLinks too
