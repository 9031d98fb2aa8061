"""File and metadata jobs store what the org's ground truth says, and later runs store only what changed."""

from __future__ import annotations

from typing import Any

import pytest
from sfvault.events.v1 import events_pb2 as ev
from sfvault.storage.v1 import storage_pb2 as spb

from sforg.testing import Admin
from tests.jobrunner.conftest import Stack, file_spec, metadata_spec

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


async def test_files_are_stored_once_and_new_versions_only(stack: Stack, org: dict[str, Any], admin: Admin) -> None:
    await stack.start_jobrunner()
    done = await stack.run(file_spec(org, "s1", "files"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    truth = admin.ground_truth(values=False)
    stored = await _file_shas(stack, org["org_id"], truth)
    assert stored == {rid: f["sha256"] for rid, f in truth["files"].items()}
    assert done.counts.files == len(truth["files"])

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
