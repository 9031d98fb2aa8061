"""A body larger than every piece and buffer on its way (sforg's 64 KiB blocks, the jobrunner's 1 MiB pieces,
storage's reads) goes from the org to storage's file repository intact: storage's SHA-256 of it is the org's, and
reading it back gives the same bytes. sforg, real storage, PostgreSQL and NATS (tests/jobrunner/conftest.py)."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from sfvault.events.v1 import events_pb2 as ev
from sfvault.storage.v1 import storage_pb2 as spb

from sforg.testing import Admin
from tests.jobrunner.conftest import Stack, file_spec

pytestmark = pytest.mark.integration

SIZE = 5 * (1 << 20) + 12_345  # five 1 MiB pieces and a partial one


async def test_a_body_of_several_mib_is_stored_intact_and_its_digest_is_the_orgs(
    stack: Stack, org: dict[str, Any], admin: Admin
) -> None:
    await stack.start_jobrunner()
    content = random.Random(21).randbytes(SIZE)
    added = admin.add_file_version(content, title="Large")
    assert added["sha256"] == hashlib.sha256(content).hexdigest()
    done = await stack.run(file_spec(org, "s1", "files"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    versions = await stack.stub.ListFileVersions(
        spb.ListFileVersionsRequest(
            org_id=org["org_id"], object_name="ContentVersion", record_id=added["ContentVersionId"]
        )
    )
    assert [(v.sha256, v.size) for v in versions.versions] == [(added["sha256"], SIZE)]
    truth = admin.ground_truth(values=False)["files"]
    assert truth[added["ContentVersionId"]]["sha256"] == added["sha256"]
    read = b""
    async for piece in stack.stub.GetFile(spb.GetFileRequest(org_id=org["org_id"], sha256=added["sha256"])):
        read += piece.data
    assert hashlib.sha256(read).hexdigest() == added["sha256"] and read == content
