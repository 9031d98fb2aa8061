"""services/platform/metrics.py: the hooks' metrics and their attributes (in memory), and its settings. The
Prometheus endpoints of a real backup: tests/e2e/test_observability.py."""

from __future__ import annotations

import datetime as dt

import pytest
from sfvault.events.v1 import events_pb2 as ev

from services.platform import metrics, telemetry
from tests.telemetry.conftest import Captured


def test_the_hooks_record_by_names_and_outcomes(captured: Captured) -> None:
    metrics.job_finished(ev.JOB_TYPE_DATA, ev.JOB_OUTCOME_SUCCESS)
    metrics.job_finished(ev.JOB_TYPE_DATA, ev.JOB_OUTCOME_SUCCESS)
    metrics.job_finished(ev.JOB_TYPE_FILE, ev.JOB_OUTCOME_ERROR)
    jobs = {tuple(sorted(p.attributes.items())): p.value for p in captured.metric_points("sfvault.jobs.finished")}
    assert jobs == {
        (("sfvault.job.outcome", "success"), ("sfvault.job_type", "data")): 2,
        (("sfvault.job.outcome", "error"), ("sfvault.job_type", "file")): 1,
    }
    start = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
    metrics.session_ended("SUCCESS", start, start + dt.timedelta(seconds=42))
    metrics.session_ended("FAILED", None, start)  # never started: no duration
    [duration] = captured.metric_points("sfvault.session.duration")
    assert (duration.count, duration.sum, dict(duration.attributes)) == (1, 42.0, {"sfvault.session.status": "SUCCESS"})
    ended = {
        p.attributes["sfvault.session.status"]: p.value for p in captured.metric_points("sfvault.sessions.finished")
    }
    assert ended == {"SUCCESS": 1, "FAILED": 1}  # every end counted, with or without a duration
    metrics.consumer_lag("jobrunner", 7)
    metrics.consumer_lag("jobrunner", 3)
    [lag] = captured.metric_points("sfvault.consumer.lag")
    assert lag.value == 3 and dict(lag.attributes) == {"messaging.consumer.group.name": "jobrunner"}
    metrics.bytes_stored("records", 1000)
    metrics.bytes_stored("files", 24)
    stored = {p.attributes["sfvault.kind"]: p.value for p in captured.metric_points("sfvault.bytes.stored")}
    assert stored == {"records": 1000, "files": 24}


@pytest.mark.parametrize("port", ["http", "0", "65536", "-1"])
def test_a_bad_metrics_port_is_a_configuration_error(port: str) -> None:
    with pytest.raises(SystemExit, match="SFVAULT_METRICS_PORT"):
        metrics.setup("storage", telemetry.Telemetry(), {metrics.PORT_VARIABLE: port})


def test_without_a_port_or_a_trace_file_nothing_is_added() -> None:
    tel = metrics.setup("storage", telemetry.Telemetry(), {})
    assert tel.tracer_provider is None and tel.meter_provider is None
