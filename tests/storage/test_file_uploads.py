"""UploadFile's body path against a real PostgreSQL: a chunk sent again is recognised only when it is recorded (no
look before its body), answered as replayed once and counted once; a body larger than HASH_AT (hashed in a worker
thread, a piece at a time) gets the SHA-256 of its bytes, however they are cut."""

from __future__ import annotations

import hashlib
import os

import pytest

from services.storage.application import HASH_AT
from services.storage.domain import FailedPrecondition, InvalidArgument
from tests.storage.conftest import FILE, ORG, Harness, file_body, file_header, sf_id

pytestmark = pytest.mark.integration


async def test_a_chunk_sent_again_is_answered_replayed_once_and_counted_once(harness: Harness) -> None:
    s = harness.storage
    await s.begin_job(ORG, "s1", "f1", FILE, "")
    one, two = os.urandom(70_000), os.urandom(50_000)
    first = await s.upload_file(file_header(1, 1, one), file_body(one, 4096))
    await s.upload_file(file_header(2, 2, two), file_body(two, 4096))
    _last, _chunks, before = await s.begin_job(ORG, "s1", "f1", FILE, "")
    events = len(harness.publisher.published)

    again = await s.upload_file(file_header(1, 1, one), file_body(one, 1000))  # a resumed job sends chunk 1 again
    assert again.replayed and again.result == first.result

    last, chunks, after = await s.begin_job(ORG, "s1", "f1", FILE, "")
    assert (last, chunks) == (2, 2) and after == before  # neither a chunk nor a count more
    assert after.received == 2 and after.files == 2 and after.bytes == 120_000
    assert len(harness.publisher.published) == events  # no second ChunkUploaded
    assert await harness.count("file_versions") == 2 and await harness.count("files") == 2
    assert [p for p in (harness.files_dir / ".tmp").iterdir()] == []  # the body received again is not kept

    # the same chunk naming another file: refused once its body is in (the body is garbage, as a crash leaves)
    with pytest.raises(FailedPrecondition, match="other content"):
        await s.upload_file(file_header(1, 3, one), file_body(one, 4096))
    assert (await s.begin_job(ORG, "s1", "f1", FILE, ""))[2] == before
    assert await harness.count("files") == 2


@pytest.mark.parametrize("piece", [1 << 20, 3 * 1000 * 1000, 1 << 22])
async def test_a_body_larger_than_hash_at_gets_the_sha256_of_its_bytes(harness: Harness, piece: int) -> None:
    s = harness.storage
    await s.begin_job(ORG, "s1", "f1", FILE, "")
    body = os.urandom(2 * HASH_AT + 12_345)  # pieces that do not end on HASH_AT, and a short last one
    stored = await s.upload_file(file_header(1, 1, body), file_body(body, piece))
    assert stored.result["sha256"] == hashlib.sha256(body).hexdigest()
    _v, _loc, size, stream = await s.open_file(ORG, "", "ContentVersion", sf_id("068", 1), None)
    assert size == len(body) and b"".join([c async for c in stream]) == body
    with pytest.raises(InvalidArgument, match="SHA-256"):
        await s.upload_file(file_header(2, 2, body, sha256="0" * 64), file_body(body, piece))
    with pytest.raises(InvalidArgument, match="header says"):
        await s.upload_file(file_header(2, 2, body + b"x"), file_body(body, piece))
    assert await harness.count("files") == 1
