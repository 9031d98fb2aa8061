"""File and metadata jobs store what the org's ground truth says, and later runs store only what changed; a file
job interrupted and resumed reports what an uninterrupted one does; a Metadata SOAP fault that is transient is
retried, one that is not fails the job with its code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sfvault.events.v1 import events_pb2 as ev
from sfvault.storage.v1 import storage_pb2 as spb

from sforg.testing import Admin
from tests.jobrunner.conftest import Stack, file_spec, metadata_spec

COUNTED = ("received", "new_versions", "changed", "unchanged", "bytes", "files")

pytestmark = pytest.mark.integration


async def _file_shas(stack: Stack, org_id: str, truth: dict[str, Any]) -> dict[str, str]:
    out = {}
    for rid, f in truth["files"].items():
        resp = await stack.stub.ListFileVersions(
            spb.ListFileVersionsRequest(org_id=org_id, object_name=f["object"], record_id=rid)
        )
        if resp.versions:
            out[rid] = resp.versions[-1].sha256
    return out


def _assert_counts(stack: Stack, key: tuple[str, str], done: ev.JobFinished, truth: dict[str, Any]) -> None:
    """A first file job's counts, whatever happened on the way: one version and one reception per file, one stored
    body per distinct body (`files`, `bytes`), and the job's report equal to the sum of its chunks."""
    bodies = {f["sha256"]: f["size"] for f in truth["files"].values()}
    # the file job also stores the files' links (ContentDocumentLink records): one version each
    records = len(truth["files"]) + len(truth["objects"]["ContentDocumentLink"])
    want = {"received": records, "new_versions": records, "changed": 0, "unchanged": 0}
    want |= {"files": len(bodies)}
    assert {k: getattr(done.counts, k) for k in want} == want, done.message
    assert done.counts.bytes > sum(bodies.values())  # the bodies, and the links' records
    chunks = stack.chunk_counts[key]
    assert sorted(chunks) == list(range(1, done.chunks + 1))
    uploaded = {k: sum(getattr(c, k) for c in chunks.values()) for k in COUNTED}
    assert uploaded == {k: getattr(done.counts, k) for k in COUNTED}


async def test_files_are_stored_once_and_new_versions_only(stack: Stack, org: dict[str, Any], admin: Admin) -> None:
    await stack.start_jobrunner()
    done = await stack.run(file_spec(org, "s1", "files"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    truth = admin.ground_truth(values=False)
    stored = await _file_shas(stack, org["org_id"], truth)
    assert stored == {rid: f["sha256"] for rid, f in truth["files"].items()}
    _assert_counts(stack, ("s1", "files"), done, truth)

    added = admin.add_file_version(b"new body " * 1000, title="Added")
    done = await stack.run(file_spec(org, "s2", "files"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert done.counts.files == 1, done.message
    truth = admin.ground_truth(values=False)
    stored = await _file_shas(stack, org["org_id"], truth)
    assert stored == {rid: f["sha256"] for rid, f in truth["files"].items()}
    assert added


async def test_metadata_components_and_only_changed_ones_later(stack: Stack, org: dict[str, Any], admin: Admin) -> None:
    await stack.start_jobrunner()
    done = await stack.run(metadata_spec(org, "s1", "md"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    truth = admin.ground_truth(objects=["Account"], values=False)["metadata"]
    resp = await stack.stub.ListMetadataVersions(spb.ListMetadataVersionsRequest(org_id=org["org_id"], limit=10000))
    stored = {(v.type, v.full_name): v.sha256 for v in resp.versions}
    assert set(stored) == {(m["type"], m["fullName"]) for m in truth}
    for m in truth:
        if m["type"] not in ("CustomField", "CustomObject"):  # fields live inside their object's file
            assert stored[(m["type"], m["fullName"])] == m["sha256"], m["fullName"]

    target = next(m for m in truth if m["type"] == "ApexClass")
    admin.change_metadata("ApexClass", target["fullName"], content="public class Changed {}")
    done = await stack.run(metadata_spec(org, "s2", "md"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert "1 retrieved" in done.message, done.message
    resp = await stack.stub.ListMetadataVersions(
        spb.ListMetadataVersionsRequest(org_id=org["org_id"], type="ApexClass", full_name=target["fullName"])
    )
    assert len(resp.versions) == 2


async def test_a_file_job_resumed_after_its_own_record_was_lost_counts_as_an_uninterrupted_one(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    """The attempt ends between storage's commit of a file and the jobrunner's record of it (its database went
    away): the job is handed back, resumed from its checkpoint, and neither downloads that file again nor counts it
    twice; the bodies stored before the interruption (two versions share one body) count as in one run."""
    running = await stack.start_jobrunner()
    store = running.runner.store
    recorded: Callable[..., None] = store.file_stored
    calls = 0

    def lost_on_the_seventh(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 7:
            raise psycopg.OperationalError("the jobrunner's database went away")
        recorded(*args)

    store.file_stored = lost_on_the_seventh
    done = await stack.run(file_spec(org, "s1", "files"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert calls > 7 and stack.started.count(("s1", "files")) == 2  # interrupted once, resumed
    truth = admin.ground_truth(values=False)
    await stack.wait_for(lambda: len(stack.chunks.get(("s1", "files"), ())) >= done.chunks)
    _assert_counts(stack, ("s1", "files"), done, truth)


async def test_metadata_soap_faults_transient_retried_others_fail_with_their_code(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    await stack.start_jobrunner()
    try:
        admin.fault(endpoint="metadata", error_rate=1.0, error="SERVER_UNAVAILABLE", count=1)  # a SOAP 500
        done = await stack.run(metadata_spec(org, "s1", "md"))
        assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
        admin.fault(endpoint="metadata", error_rate=1.0, error="500", count=2)  # UNKNOWN_EXCEPTION
        done = await stack.run(metadata_spec(org, "s2", "md"))
        assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
        admin.reset_accounting()
        admin.fault(endpoint="metadata", error_rate=1.0, error="INVALID_TYPE")
        done = await stack.run(metadata_spec(org, "s3", "md"))
        assert done.outcome == ev.JOB_OUTCOME_ERROR and "INVALID_TYPE" in done.message, done.message
        assert admin.accounting()["calls"]["metadata"] == 1  # not retried
    finally:
        admin.clear_faults()


async def test_a_download_that_keeps_breaking_hands_the_job_back_instead_of_failing_it(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    """Every attempt at a body stalls mid-way: the job's own three tries fail, the job is handed back as the org's
    transient failure (it was reported as storage refusing the file) and its next delivery completes it."""
    await stack.start_jobrunner(jobrunner_http_timeout_s=1.0)
    admin.fault(endpoint="blob", stall_after=1000, count=3)
    try:
        done = await stack.run(file_spec(org, "s1", "files"))
    finally:
        admin.clear_faults()
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert stack.started.count(("s1", "files")) == 2
    truth = admin.ground_truth(values=False)
    await stack.wait_for(lambda: len(stack.chunks.get(("s1", "files"), ())) >= done.chunks)
    _assert_counts(stack, ("s1", "files"), done, truth)


async def test_a_file_deleted_between_the_listing_and_its_download_is_skipped_with_a_warning(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    await stack.start_jobrunner()
    admin.fault(endpoint="blob", error_rate=1.0, error="ENTITY_IS_DELETED", count=1)  # the first body asked for
    try:
        done = await stack.run(file_spec(org, "s1", "files"))
    finally:
        admin.clear_faults()
    assert done.outcome == ev.JOB_OUTCOME_WARNING, done.message
    assert "warning: 1 files were gone from the org" in done.message, done.message
    truth = admin.ground_truth(values=False)
    links = len(truth["objects"]["ContentDocumentLink"])  # the file job also stores the files' links
    assert done.counts.received == len(truth["files"]) - 1 + links
    done = await stack.run(file_spec(org, "s2", "files"))  # the next session reads it
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS and done.counts.received == 1 + links, done.message
    assert done.counts.new_versions == 1 and done.counts.unchanged == links, done.message


async def test_a_listed_component_missing_from_the_retrieve_is_a_warning_and_asked_for_again(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    """listMetadata lists it, retrieve leaves it out ("cannot be found"): the rest is stored, the job completes
    with a warning naming it (it failed the whole metadata job, at every session), the next session asks again."""
    await stack.start_jobrunner()
    truth = admin.ground_truth(objects=["Account"], values=False)["metadata"]
    target = next(m for m in truth if m["type"] == "ApexClass")
    admin.settings(unretrievable_metadata=[f"ApexClass:{target['fullName']}"])
    try:
        done = await stack.run(metadata_spec(org, "s1", "md"))
    finally:
        admin.settings(unretrievable_metadata=[])
    assert done.outcome == ev.JOB_OUTCOME_WARNING, done.message
    assert f"1 listed components were not in the retrieve (ApexClass {target['fullName']})" in done.message
    assert done.counts.metadata_components == len(truth) - 1
    done = await stack.run(metadata_spec(org, "s2", "md"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS and "1 retrieved" in done.message, done.message
