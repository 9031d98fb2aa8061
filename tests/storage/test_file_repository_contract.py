"""The file repository port (services/storage/ports.FileRepository) as one contract, run against the in-memory
fake (tests/storage/fakes.py) and the real adapters: a local directory and S3 (moto's server)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from devstack.embedded import free_port
from services.storage.files import LocalFileRepository, S3FileRepository, content_key
from services.storage.ports import FileRepository
from tests.storage.fakes import InMemoryFileRepository


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def real_repository(request: pytest.FixtureRequest, tmp_path: Path) -> FileRepository:
    if request.param == "local":
        return LocalFileRepository(tmp_path / "files")
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"b{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return S3FileRepository(bucket, "backups/org1", endpoint_url=endpoint, part_size=5 << 20)


async def _read(repo: FileRepository, key: str) -> bytes:
    return b"".join([c async for c in repo.read(key)])


async def _upload(repo: FileRepository, pieces: list[bytes]) -> str:
    up = await repo.begin()
    for p in pieces:
        await up.write(p)
    return await up.commit(hashlib.sha256(b"".join(pieces)).hexdigest())


async def test_bodies_are_content_addressed_and_stored_once(repo: FileRepository) -> None:
    await repo.check()
    key = await _upload(repo, [b"hello ", b"world"])
    assert key == content_key(hashlib.sha256(b"hello world").hexdigest())
    assert await _upload(repo, [b"hello world"]) == key
    assert await _read(repo, key) == b"hello world"
    digest, small_key, _envelope = await repo.put_bytes(b"<xml/>")
    assert digest == hashlib.sha256(b"<xml/>").hexdigest() and await _read(repo, small_key) == b"<xml/>"


async def test_large_bodies_go_through_multipart_and_round_trip(repo: FileRepository) -> None:
    piece = os.urandom(1 << 20)
    pieces = [piece] * 11  # 11 MiB: three parts of a 5 MiB multipart upload on S3
    key = await _upload(repo, pieces)
    assert hashlib.sha256(await _read(repo, key)).digest() == hashlib.sha256(b"".join(pieces)).digest()


@pytest.fixture(params=["fake", "local", "s3"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> FileRepository:
    return InMemoryFileRepository() if request.param == "fake" else real_repository(request, tmp_path)


async def test_a_fresh_repository_is_usable_and_has_nothing_to_sweep(repo: FileRepository) -> None:
    await repo.check()
    assert await repo.sweep_temporary(0) == 0


async def test_an_upload_is_visible_only_at_its_content_address_once_committed(repo: FileRepository) -> None:
    body = os.urandom(3000)
    up = await repo.begin()
    await up.write(body)
    key = await up.commit(hashlib.sha256(body).hexdigest())
    assert key == content_key(hashlib.sha256(body).hexdigest())
    assert [len(c) for c in [c async for c in repo.read(key, chunk_size=1024)]] == [1024, 1024, 952]
