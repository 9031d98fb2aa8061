"""Adversity, each reconciled against the org's ground truth afterwards: a timestamp tie read through expiring
query locators, late-visible commits (caught by the next run's overlap), formula drift and a purged recycle bin
(caught by the Id reconciliation), 503s with expiring tokens (an identical result), REQUEST_LIMIT_EXCEEDED and a
spent API budget (an error now, the next session completes)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sfvault.events.v1 import events_pb2 as ev

from sforg.testing import Admin
from tests.jobrunner.conftest import Stack, data_spec, reconcile

pytestmark = pytest.mark.integration
REST_ONLY = {"jobrunner_bulk_threshold": 1_000_000, "jobrunner_rest_batch": 200, "jobrunner_chunk_records": 500}
RECONCILE_NOW = dt.timedelta(seconds=1)


@pytest.fixture(autouse=True)
def clean_org(admin: Admin) -> Iterator[None]:
    yield
    admin.clear_faults()
    admin.settings(locator_ttl=900.0, token_ttl=7200.0, late_commit_delay=0.0, formula_drift=False)
    admin.api_usage(used=0)


async def _ok(stack: Stack, spec: Any, outcome: int = ev.JOB_OUTCOME_SUCCESS) -> ev.JobFinished:
    done = await stack.run(spec)
    assert done.outcome == outcome, done.message
    return done


WARNED = ev.JOB_OUTCOME_WARNING  # completed, with a fallback taken (said in the message): not a plain success


async def _clean(stack: Stack, org: dict[str, Any], admin: Admin, spec: Any, formulas: bool = True) -> None:
    truth = admin.ground_truth(objects=[spec.object_name])
    result = reconcile(truth, await stack.export(org["org_id"], spec.object_name), spec, formulas=formulas)
    assert result.clean, f"{spec.object_name}: {result}"


async def test_a_timestamp_tie_read_through_expiring_locators(stack: Stack, org: dict[str, Any], admin: Admin) -> None:
    await stack.start_jobrunner(**REST_ONLY)
    await _ok(stack, data_spec(org, "Lead", "s1", "j1"))
    admin.create("Lead", n=1500)
    tie = admin.mass_update("Lead", fraction=1.0)  # every Lead gets one SystemModstamp
    admin.advance_clock(400)
    admin.settings(locator_ttl=0.5)
    admin.fault(endpoint="query_more", latency=0.3)
    spec = data_spec(org, "Lead", "s2", "j1")
    done = await _ok(stack, spec)
    assert "incremental" in done.message
    assert done.counts.received >= len(tie["ids"])
    await _clean(stack, org, admin, spec)


async def test_late_visible_commits_are_caught_by_the_next_runs_overlap(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    await stack.start_jobrunner()
    await _ok(stack, data_spec(org, "Opportunity", "s1", "j1"))
    admin.late_commits(500)  # visible 500 s after their SystemModstamp
    late = admin.update("Opportunity", n=4)["ids"]
    admin.advance_clock(400)  # inside the next window, not yet visible
    await _ok(stack, data_spec(org, "Opportunity", "s2", "j1"))
    admin.advance_clock(400)  # now visible, below the mark
    truth = admin.ground_truth(objects=["Opportunity"])
    assert truth["pending"] == 0
    done = await _ok(stack, data_spec(org, "Opportunity", "s3", "j1"))
    assert done.counts.changed == len(late), "the overlap re-read the late commits"
    await _clean(stack, org, admin, data_spec(org, "Opportunity", "s3", "j1"))


async def test_formula_drift_and_a_purged_recycle_bin_are_caught_by_the_reconciliation(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    await stack.start_jobrunner()
    await _ok(stack, data_spec(org, "Invoice__c", "s1", "j1"))
    admin.formula_drift(True)
    purged = admin.soft_delete("Invoice__c", n=3)["ids"]
    admin.purge_recycle_bin("Invoice__c")
    admin.advance_clock(400)
    spec = data_spec(org, "Invoice__c", "s2", "j1")
    done = await _ok(stack, spec)  # a window: the purged records never show up in it, but the count check sees them
    assert "count check" in done.message and done.counts.deleted == len(purged), done.message
    stored = await stack.export(org["org_id"], "Invoice__c")
    assert not any(i in stored for i in purged)
    spec = data_spec(org, "Invoice__c", "s3", "j1", reconcile_every=RECONCILE_NOW)
    done = await _ok(stack, spec)
    assert "reconciled" in done.message and done.counts.deleted == 0
    stored = await stack.export(org["org_id"], "Invoice__c")
    assert not any(i in stored for i in purged)
    # formula values are re-read by the reconciliation's full read; storage keeps a formula-only change
    # without a new version unless SFVAULT_STORAGE_COUNT_FORMULA_CHANGES is set, so compare the rest
    await _clean(stack, org, admin, spec, formulas=False)


async def test_503s_and_expiring_tokens_give_an_identical_result(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    await stack.start_jobrunner(jobrunner_rest_batch=200, jobrunner_bulk_threshold=100, jobrunner_bulk_page=50)
    admin.fault(endpoint="*", error_rate=0.05)
    admin.settings(token_ttl=1.0)
    for name in ("Contact", "Case"):
        spec = data_spec(org, name, "s1", f"j-{name}")
        await _ok(stack, spec)
        admin.clear_faults()
        await _clean(stack, org, admin, spec)
        admin.fault(endpoint="*", error_rate=0.05)


async def test_request_limit_exceeded_stops_with_an_error_and_the_next_session_completes(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    await stack.start_jobrunner(jobrunner_bulk_threshold=10)
    limits = admin.api_usage()
    admin.api_usage(used=int(limits["max"]) - 1)  # the REST probe passes, the Bulk job is refused
    spec = data_spec(org, "Task", "s1", "j1")
    done = await stack.run(spec)
    assert done.outcome == ev.JOB_OUTCOME_ERROR
    assert "REQUEST_LIMIT_EXCEEDED" in done.message
    admin.api_usage(used=0)
    capped = data_spec(org, "Task", "s2", "j1", api_call_cap=1)
    done = await stack.run(capped)
    assert done.outcome == ev.JOB_OUTCOME_ERROR and "budget" in done.message
    spec = data_spec(org, "Task", "s3", "j1")
    await _ok(stack, spec)
    await _clean(stack, org, admin, spec)


async def test_a_refused_bulk_job_falls_back_to_rest_and_a_wide_object_goes_to_bulk(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    await stack.start_jobrunner(jobrunner_bulk_threshold=10)
    admin.fault(endpoint="bulk2_create", error_rate=1.0, error="FEATURENOTENABLED")
    spec = data_spec(org, "Case", "s1", "j-case")
    done = await _ok(stack, spec, WARNED)
    assert "warning: Bulk API unavailable for Case (FEATURENOTENABLED): read through REST" in done.message
    admin.clear_faults()
    await _clean(stack, org, admin, spec)

    admin.add_object("Wide__c", records=30)
    for i in range(450):  # about 17 KB of field names: more than a REST request line may carry
        admin.add_field("Wide__c", f"A_Rather_Long_Field_Name_{i:03d}", "string")
    admin.create("Wide__c", n=5, values={"A_Rather_Long_Field_Name_007__c": "x"})
    wide = data_spec(org, "Wide__c", "s1", "j-wide")
    assert len(wide.data.fields) > 450
    await _ok(stack, wide)
    await _clean(stack, org, admin, wide)
    admin.update("Wide__c", n=3, values={"A_Rather_Long_Field_Name_100__c": "changed"})
    admin.advance_clock(400)
    done = await _ok(stack, data_spec(org, "Wide__c", "s2", "j-wide"))
    assert "incremental" in done.message and done.counts.changed == 3
    await _clean(stack, org, admin, wide)


async def test_an_object_the_bulk_api_does_not_take_is_reconciled_through_rest_without_a_warning(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    # a real org lists objects the Bulk API refuses (INVALIDENTITY): a documented limit, not a fault to warn of
    # every night
    await stack.start_jobrunner(jobrunner_bulk_threshold=10)
    spec = data_spec(org, "UndecidedEventRelation", "s1", "j-uer")
    await _ok(stack, spec)
    admin.advance_clock(400)
    done = await _ok(stack, data_spec(org, "UndecidedEventRelation", "s2", "j-uer"))  # read whole: reconciled
    assert "reconciled" in done.message and "warning" not in done.message, done.message
    await _clean(stack, org, admin, spec)


def _timeout_once(admin: Admin, *endpoints: str) -> None:
    for endpoint in endpoints:
        admin.fault(endpoint=endpoint, error_rate=1.0, error="QUERY_TIMEOUT", count=1)


async def test_query_timeouts_are_retried_on_every_path(stack: Stack, org: dict[str, Any], admin: Admin) -> None:
    """QUERY_TIMEOUT (HTTP 400) once on each call a job makes: retried where it happens, no fallback taken."""
    await stack.start_jobrunner(jobrunner_bulk_threshold=10, jobrunner_bulk_page=20)
    admin.reset_accounting()
    # Bulk: the REST probe, job creation, polling, result pages
    _timeout_once(admin, "query", "bulk2_create", "bulk2_job", "bulk2_results")
    spec = data_spec(org, "Contact", "s1", "j1")
    done = await _ok(stack, spec)
    assert "warning" not in done.message, done.message
    calls = admin.accounting()["calls"]
    assert calls["bulk2_create"] == 2 and calls["bulk2_results"] > 2, "read through Bulk, not REST"
    await _clean(stack, org, admin, spec)

    # REST: the first page, the next pages, the delete log of the window
    await stack.runners.pop().stop(5)
    await stack.start_jobrunner(**REST_ONLY)
    admin.create("Contact", n=60)
    admin.update("Contact", fraction=1.0)  # more than one REST page in the window
    admin.advance_clock(400)
    admin.reset_accounting()
    _timeout_once(admin, "query", "query_more", "deleted")
    # each read alone (the composite request of an incremental job's first reads refused: asked one by one)
    admin.fault(endpoint="composite", error_rate=1.0, error="FEATURENOTENABLED")
    spec = data_spec(org, "Contact", "s2", "j1")
    done = await _ok(stack, spec)
    assert "incremental" in done.message and "warning" not in done.message, done.message
    calls = admin.accounting()["calls"]
    assert calls["deleted"] == 2 and calls["query_more"] >= 2 and "bulk2_create" not in calls
    admin.clear_faults()
    await _clean(stack, org, admin, spec)


async def test_an_unchanged_object_costs_one_api_call(stack: Stack, org: dict[str, Any], admin: Admin) -> None:
    """Issue 21: an incremental job of an object with nothing changed sends its window's read, its delete log and
    its count check as one /composite request, which Salesforce counts as one call; what it answers is as if each
    was asked alone (a change in the window is read, a delete in the log is stored)."""
    await stack.start_jobrunner(**REST_ONLY)
    spec = data_spec(org, "Lead", "s1", "j-lead")
    await _ok(stack, spec)
    admin.advance_clock(400)
    again = data_spec(org, "Lead", "s2", "j-lead")  # (discovery's describe)
    admin.reset_accounting()
    done = await _ok(stack, again)
    assert "incremental" in done.message and "count check:" in done.message, done.message
    assert _api_calls(admin) == {"composite": 1}
    assert done.counts.api_calls == 1

    changed = set(admin.update("Lead", n=3)["ids"])
    leads = sorted(admin.ground_truth(objects=["Lead"], values=False)["objects"]["Lead"])
    admin.soft_delete("Lead", ids=[i for i in leads if i not in changed][:2])
    admin.advance_clock(400)
    again = data_spec(org, "Lead", "s3", "j-lead")
    admin.reset_accounting()
    done = await _ok(stack, again)
    assert done.counts.changed == 3 and done.counts.deleted == 2, done
    assert _api_calls(admin) == {"composite": 1}
    await _clean(stack, org, admin, spec)


def _api_calls(admin: Admin) -> dict[str, int]:
    """sforg's accounting of the calls Salesforce counts (a login is not one)."""
    return {k: v for k, v in admin.accounting()["calls"].items() if k not in ("oauth", "soap_login")}


async def test_a_job_whose_secret_is_not_an_orgs_secret_fails_before_any_login(
    stack: Stack, org: dict[str, Any], admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SFVAULT_AUTH_KEY", "the-signing-key")
    await stack.start_jobrunner()
    spec = data_spec(org, "Lead", "s1", "j1")
    spec.connection.client_secret_ref = "env:SFVAULT_AUTH_KEY"  # as an admin could have registered it
    admin.reset_accounting()
    done = await stack.run(spec)
    assert done.outcome == ev.JOB_OUTCOME_ERROR and "SFVAULT_SECRET_ENV_PREFIX" in done.message, done.message
    assert "the-signing-key" not in done.message
    assert "oauth" not in admin.accounting()["calls"]


async def test_a_result_page_that_stalls_mid_body_is_read_again(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    """A Bulk result page sends its headers and a few bytes, then nothing: the read times out in the jobrunner's
    own streaming (urllib3's ReadTimeoutError, not requests'), the job is handed back and resumes at that page."""
    await stack.start_jobrunner(jobrunner_bulk_threshold=10, jobrunner_bulk_page=50, jobrunner_http_timeout_s=1.0)
    admin.fault(endpoint="bulk2_results", stall_after=2000, count=1)
    spec = data_spec(org, "Task", "s1", "j1")
    done = await _ok(stack, spec)
    assert stack.started.count(("s1", "j1")) == 2 and "warning" not in done.message, done.message
    await _clean(stack, org, admin, spec)


async def test_a_resumed_job_still_tells_the_fallback_an_earlier_attempt_took(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    first = await stack.start_jobrunner(
        jobrunner_bulk_threshold=10, jobrunner_chunk_records=20, jobrunner_rest_batch=200
    )
    admin.create("Contact", n=30)  # more than one REST page of 200
    admin.fault(endpoint="bulk2_create", error_rate=1.0, error="FEATURENOTENABLED")
    admin.fault(endpoint="query_more", latency=2.0)  # the first attempt is stopped while it waits for page two
    spec = data_spec(org, "Contact", "s1", "j1")
    await stack.enqueue(spec)
    await stack.wait_for(lambda: len(stack.chunks.get(("s1", "j1"), ())) >= 2)
    await first.stop(30)  # SIGTERM's path: handed back at its next chunk boundary
    stack.runners.remove(first)
    admin.clear_faults()
    assert ("s1", "j1") not in stack.finished
    await stack.start_jobrunner(jobrunner_bulk_threshold=10, jobrunner_chunk_records=20, jobrunner_rest_batch=200)
    done = await stack.wait_finished("s1", "j1")
    assert done.outcome == WARNED, done.message
    assert "Bulk API unavailable for Contact (FEATURENOTENABLED): read through REST" in done.message
    await _clean(stack, org, admin, spec)
