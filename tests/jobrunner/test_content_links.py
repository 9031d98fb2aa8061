"""The file job backs up the links of the files it sees (ContentDocumentLink, which cannot be read as a table):
after it, storage holds every link the org has, with the fields a restore needs to link a file to its records
again, read in few queries (200 documents a query); a link gone from the org is marked deleted by the next job.
sforg, real storage, PostgreSQL and NATS (tests/jobrunner/conftest.py)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sfvault.events.v1 import events_pb2 as ev
from sfvault.storage.v1 import storage_pb2 as spb

from services.jobrunner import file_job
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


async def test_a_file_job_interrupted_among_its_links_resumes_after_the_last_stored_query(
    stack: Stack, org: dict[str, Any], admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two documents a query and a chunk per query: the attempt ends as it announces its second chunk of links
    (the jobrunner's database went away); the next attempt goes on after the documents already stored, so every
    link is read and stored exactly once, as in an uninterrupted job."""
    monkeypatch.setattr(file_job, "LINK_DOCUMENTS_PER_QUERY", 2)
    running = await stack.start_jobrunner(jobrunner_chunk_records=1)
    store = running.runner.store
    save: Callable[..., None] = store.save_checkpoint
    announced: list[str] = []

    def lost_at_the_second_links_chunk(session_id: str, job_id: str, checkpoint: dict[str, Any]) -> None:
        pos = checkpoint.get("pos") or {}
        if pos.get("phase") == "links" and pos["after"] not in announced:
            announced.append(pos["after"])
            if len(announced) == 2:
                raise psycopg.OperationalError("the jobrunner's database went away")
        save(session_id, job_id, checkpoint)

    store.save_checkpoint = lost_at_the_second_links_chunk
    truth = _links(admin)
    done = await stack.run(file_spec(org, "s1", "files"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    assert stack.started.count(("s1", "files")) == 2  # interrupted once, resumed
    documents = len({link["ContentDocumentId"] for link in truth.values()})
    assert len(announced) == math.ceil(documents / 2) >= 3
    files = len(admin.ground_truth(values=False)["files"])
    assert done.counts.received == done.counts.new_versions == files + len(truth), done.message
    assert done.counts.unchanged == 0
    assert set(await stack.export(org["org_id"], "ContentDocumentLink")) == set(truth)
