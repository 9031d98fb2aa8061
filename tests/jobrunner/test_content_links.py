"""The file job backs up the links of the files it sees (ContentDocumentLink, which cannot be read as a table):
after it, storage holds every link the org has, with the fields a restore needs to link a file to its records
again, read in few queries (200 documents a query); a link gone from the org is marked deleted by the next job.
sforg, real storage, PostgreSQL and NATS (tests/jobrunner/conftest.py)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from sfvault.events.v1 import events_pb2 as ev
from sfvault.storage.v1 import storage_pb2 as spb

from services.jobrunner.file_job import LINK_DOCUMENTS_PER_QUERY
from sforg.testing import Admin
from tests.jobrunner.conftest import Stack, file_spec

pytestmark = pytest.mark.integration

LINK_FIELDS = ("ContentDocumentId", "LinkedEntityId", "ShareType", "Visibility")


def _links(admin: Admin) -> dict[str, dict[str, Any]]:
    return dict(admin.ground_truth(objects=["ContentDocumentLink"])["objects"]["ContentDocumentLink"])


async def test_a_file_job_stores_the_links_of_the_files_it_sees(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    await stack.start_jobrunner()
    truth = _links(admin)
    documents = {link["ContentDocumentId"] for link in truth.values()}
    assert len(truth) > len(documents) > 0  # the seeded org links each document to its owner and to a record
    admin.reset_accounting()
    done = await stack.run(file_spec(org, "s1", "files"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert f"{len(truth)} file links read" in done.message, done.message

    stored = await stack.export(org["org_id"], "ContentDocumentLink")
    assert set(stored) == set(truth)
    for rid, link in truth.items():
        assert {f: stored[rid][f] for f in LINK_FIELDS} == {f: link[f] for f in LINK_FIELDS}, rid
    one = next(iter(truth))
    version = await stack.stub.GetRecordAsOf(
        spb.GetRecordAsOfRequest(org_id=org["org_id"], object_name="ContentDocumentLink", record_id=one)
    )
    assert version.record_id == one
    # one query per 200 documents (plus the listings of the three file objects)
    queries = admin.accounting()["calls"].get("query", 0)
    assert queries <= 3 + math.ceil(len(documents) / LINK_DOCUMENTS_PER_QUERY), admin.accounting()["calls"]

    # a new file brings its link; a link removed from the org is marked deleted in the backup
    added = admin.add_file_version(b"linked body " * 100, title="Linked")
    removed = next(rid for rid, link in truth.items() if link["ShareType"] == "V")
    admin.hard_delete("ContentDocumentLink", ids=[removed])
    done = await stack.run(file_spec(org, "s2", "files"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert "1 gone" in done.message, done.message
    now = await stack.export(org["org_id"], "ContentDocumentLink")
    assert set(now) == set(_links(admin))
    assert removed not in now
    assert any(link["ContentDocumentId"] == added["ContentDocumentId"] for link in now.values())
