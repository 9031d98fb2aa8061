"""File repositories (local directory and S3 through moto's server) beyond their contract
(test_file_repository_contract.py): what an abort leaves, privacy, the sweep; file and metadata chunks through
the application against a real PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.storage.application import ChunkRef, FileHeaderIn, MetadataComponentIn
from services.storage.domain import FailedPrecondition, InvalidArgument, NotFound
from services.storage.files import FileRepository, LocalFileRepository, open_repository
from tests.storage.conftest import FILE, METADATA, ORG, Harness, file_body, file_header, sf_id
from tests.storage.test_file_repository_contract import _read, _upload, moto_endpoint, real_repository  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "s3"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> FileRepository:
    return real_repository(request, tmp_path)


async def test_an_aborted_upload_leaves_nothing_visible(repo: FileRepository, tmp_path: Path) -> None:
    up = await repo.begin()
    await up.write(os.urandom(6 << 20))
    await up.abort()
    if isinstance(repo, LocalFileRepository):
        assert list((tmp_path / "files").rglob("*")) == [tmp_path / "files" / ".tmp"]
    else:
        listed = repo.client.list_objects_v2(Bucket=repo.bucket).get("KeyCount", 0)
        uploads = repo.client.list_multipart_uploads(Bucket=repo.bucket).get("Uploads", [])
        assert listed == 0 and uploads == []


def test_repository_urls() -> None:
    assert isinstance(open_repository("file:///tmp/x"), LocalFileRepository)
    with pytest.raises(ValueError, match="no bucket"):
        open_repository("s3:///prefix")
    with pytest.raises(ValueError, match="use file"):
        open_repository("ftp://host/x")


# --- through the application -----------------------------------------------------------------------------


async def test_file_uploads_are_versioned_deduplicated_and_idempotent(harness: Harness) -> None:
    s = harness.storage
    await s.begin_job(ORG, "s1", "f1", FILE, "")
    body = os.urandom(100_000)
    first = await s.upload_file(file_header(1, 1, body, file_name="a.pdf"), file_body(body))
    assert first.result["new_version"] and not first.result["deduplicated"]
    assert (first.counts.files, first.counts.bytes, first.counts.new_versions) == (1, 100_000, 1)
    # the same body for another record: a new file version, no new body
    other = await s.upload_file(file_header(2, 2, body), file_body(body))
    assert other.result["deduplicated"] and other.counts.files == 0 and other.counts.new_versions == 1
    # a redelivered upload returns the first result
    replay = await s.upload_file(file_header(1, 1, body, file_name="a.pdf"), file_body(body))
    assert replay.replayed and replay.result == first.result
    # a known sha256 lets the body be skipped
    skipped = await s.upload_file(file_header(3, 1, body, sha256=first.result["sha256"]), file_body(b""))
    assert skipped.counts.unchanged == 1
    assert await harness.count("files") == 1 and await harness.count("file_versions") == 2

    version, _loc, size, stream = await s.open_file(ORG, "", "ContentVersion", sf_id("068", 1), None)
    assert version is not None and version.file_name == "a.pdf" and size == 100_000
    assert b"".join([c async for c in stream]) == body
    _v, _loc, _size, stream = await s.open_file(ORG, first.result["sha256"], "", "", None)
    assert b"".join([c async for c in stream]) == body
    assert len(await s.file_versions(ORG, "ContentVersion", sf_id("068", 2))) == 1


async def test_a_wrong_size_or_checksum_stores_nothing(harness: Harness) -> None:
    s = harness.storage
    await s.begin_job(ORG, "s1", "f1", FILE, "")
    body = b"x" * 10_000
    with pytest.raises(InvalidArgument, match="larger than its size"):
        await s.upload_file(file_header(1, 1, body[:100]), file_body(body))
    with pytest.raises(InvalidArgument, match="header says"):
        await s.upload_file(file_header(1, 1, body + b"more"), file_body(body))
    with pytest.raises(InvalidArgument, match="SHA-256"):
        await s.upload_file(file_header(1, 1, body, sha256="0" * 64), file_body(body))
    assert await harness.count("files") == 0 and await harness.count("chunks") == 0
    assert [p for p in harness.files_dir.rglob("*") if p.is_file()] == []
    with pytest.raises(NotFound):
        await s.open_file(ORG, "", "ContentVersion", sf_id("068", 1), None)
    with pytest.raises(FailedPrecondition, match="call BeginJob first"):
        await s.upload_file(
            FileHeaderIn(ChunkRef(ORG, "s1", "nope", 1), "ContentVersion", sf_id("068", 1), 1), file_body(b"x")
        )


async def test_metadata_components_are_versioned_when_they_change(harness: Harness) -> None:
    s = harness.storage
    await s.begin_job(ORG, "s1", "m1", METADATA, "")
    layout = MetadataComponentIn("Layout", "Account-Account Layout", b"<Layout>v1</Layout>")
    klass = MetadataComponentIn("ApexClass", "Hello", b"public class Hello {}")
    first = await s.put_metadata(ChunkRef(ORG, "s1", "m1", 1), [layout, klass])
    assert first.counts.new_versions == 2
    changed = MetadataComponentIn("Layout", "Account-Account Layout", b"<Layout>v2</Layout>")
    second = await s.put_metadata(ChunkRef(ORG, "s1", "m1", 2), [changed, klass])
    assert (second.counts.changed, second.counts.unchanged) == (1, 1)
    gone = await s.put_metadata(
        ChunkRef(ORG, "s1", "m1", 3), [MetadataComponentIn("ApexClass", "Hello", b"", deleted=True)]
    )
    assert gone.counts.deleted == 1
    assert (await s.put_metadata(ChunkRef(ORG, "s1", "m1", 2), [changed, klass])).replayed
    versions = await s.metadata_versions(ORG, "Layout", "", 0)
    assert [v.size for v in versions] == [19, 19]
    row, content = await s.metadata_as_of(ORG, "Layout", "Account-Account Layout", None)
    assert content == b"<Layout>v2</Layout>" and not row.deleted
    row, content = await s.metadata_as_of(ORG, "ApexClass", "Hello", None)
    assert row.deleted
    with pytest.raises(NotFound):
        await s.metadata_as_of(ORG, "ApexClass", "Missing", None)


async def test_a_local_repository_is_private_directories_0700_bodies_0600(tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir(mode=0o755)  # made by an older version
    repo = LocalFileRepository(root)
    key = await _upload(repo, [b"secret body"])
    _sha, small, _envelope = await repo.put_bytes(b"metadata component")
    for body in (root / key, root / small):
        assert body.stat().st_mode & 0o777 == 0o600, body
    dirs = [root, root / ".tmp", *(p for p in root.rglob("*") if p.is_dir())]
    assert len(dirs) >= 4  # the root, .tmp and the two fan-out levels
    for d in dirs:
        assert d.stat().st_mode & 0o777 == 0o700, d


async def test_temporary_bodies_of_killed_uploads_are_swept_after_the_grace_period(
    repo: FileRepository, tmp_path: Path
) -> None:
    killed = await repo.begin()  # an upload whose process died: never committed nor aborted
    await killed.write(b"x" * (6 << 20))  # S3: one part of a multipart upload
    await killed.write(b"y")
    in_flight = await repo.begin()
    await in_flight.write(b"z" * (6 << 20))
    if isinstance(repo, LocalFileRepository):
        stale = repo.root / ".tmp" / "left-by-a-killed-upload"
        stale.write_bytes(b"partial")
        os.utime(stale, (1_000_000_000, 1_000_000_000))  # 2001
        assert await repo.sweep_temporary(3600) == 1  # only the old one; the young ones may be in flight
        assert not stale.exists()
    else:
        assert await repo.sweep_temporary(3600) == 0
    assert await repo.sweep_temporary(-1) == 2  # past the grace: both temporary bodies go
    key = await _upload(repo, [b"after the sweep"])
    assert await _read(repo, key) == b"after the sweep"


async def test_a_negative_metadata_limit_is_refused_by_storage_itself(harness: Harness) -> None:
    s = harness.storage
    await s.begin_job(ORG, "s1", "m1", METADATA, "")
    with pytest.raises(InvalidArgument, match="limit must be 0"):
        await s.metadata_versions(ORG, "", "", -5)
    assert await s.metadata_versions(ORG, "", "", 0) == []
