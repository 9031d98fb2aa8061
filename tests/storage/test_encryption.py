"""Encryption at rest (issue 18): the framing and the keyring without I/O; the encrypting repository over a local
directory and S3 (moto); file and metadata bodies through the application against a real PostgreSQL (no
plaintext in the repository's bytes, transparent reads, dedup by the plaintext's SHA-256, a missing or wrong KEK,
rotation and `rewrap`, a tampered body, bodies stored before encryption)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sfvault.storage.v1 import storage_pb2 as pb
from sfvault.storage.v1 import storage_pb2_grpc

from services.platform.auth import aio_channel
from services.platform.encryption import (
    SEGMENT,
    BodyDamaged,
    Envelope,
    Keyring,
    KeyUnavailable,
    Opener,
    Sealer,
    kek_id_of,
    parse_key,
    sealed_size,
)
from services.platform.secrets import SecretError
from services.storage import config, service
from services.storage.application import ChunkRef, MetadataComponentIn, Storage
from services.storage.files import EncryptedFileRepository, FileRepository, LocalFileRepository, is_encrypted_address
from services.storage.rewrap import rewrap
from tests.auth import AUTH_KEY, token
from tests.storage.conftest import FILE, METADATA, ORG, Harness, file_body, file_header, sf_id
from tests.storage.test_file_repository_contract import moto_endpoint, real_repository  # noqa: F401

KEK1 = bytes(range(32))
KEK2 = bytes(range(100, 132))


def _seal(data: bytes, key: bytes, piece: int) -> bytes:
    sealer = Sealer(key)
    out = [sealer.feed(data[i : i + piece]) for i in range(0, len(data), piece)]
    return b"".join([*out, sealer.finish()])


def _open(sealed: bytes, key: bytes, piece: int = 65536) -> bytes:
    opener = Opener(key, "test")
    out = [opener.feed(sealed[i : i + piece]) for i in range(0, len(sealed), piece)]
    return b"".join([*out, opener.finish()])


# --- pure --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT, 2 * SEGMENT + 12345])
def test_bodies_round_trip_in_segments_whatever_the_pieces(size: int) -> None:
    key = os.urandom(32)
    data = os.urandom(size)
    for piece in (7000, SEGMENT, 3 * SEGMENT):
        sealed = _seal(data, key, piece)
        assert len(sealed) == sealed_size(size)
        assert _open(sealed, key, piece=4099) == data


def test_a_tampered_truncated_or_reordered_body_fails() -> None:
    key = os.urandom(32)
    data = os.urandom(3 * SEGMENT + 10)
    sealed = _seal(data, key, SEGMENT)
    head, seg = 12, SEGMENT + 16
    flipped = bytearray(sealed)
    flipped[head + seg + 5] ^= 1
    segments = [sealed[head + i * seg : head + (i + 1) * seg] for i in range(4)]
    for damaged in (
        bytes(flipped),  # one bit changed
        sealed[:-1],  # cut short inside the last segment
        sealed[: head + 3 * seg],  # cut after a whole segment: no segment says it is the last
        sealed[:head] + segments[1] + segments[0] + segments[2] + segments[3],  # reordered
        sealed[:5],  # not even a header
    ):
        with pytest.raises(BodyDamaged):
            _open(damaged, key)
    with pytest.raises(BodyDamaged):
        _open(sealed, os.urandom(32))  # another data key


def test_keyring_wraps_names_and_rotates() -> None:
    old = Keyring(KEK1)
    data_key, envelope = old.new_data_key()
    assert envelope.kek_id == kek_id_of(KEK1) and data_key not in envelope.wrapped_key
    rotated = Keyring(KEK2, [KEK1])
    assert rotated.unwrap(envelope) == data_key  # an old body stays readable
    moved = rotated.rewrap(envelope)
    assert moved.kek_id == kek_id_of(KEK2) and Keyring(KEK2).unwrap(moved) == data_key
    with pytest.raises(KeyUnavailable, match=envelope.kek_id):
        Keyring(KEK2).unwrap(envelope)  # the old KEK dropped before the rewrap
    forged = Envelope(envelope.kek_id, envelope.wrapped_key[:-1] + bytes([envelope.wrapped_key[-1] ^ 1]))
    with pytest.raises(KeyUnavailable, match="does not open"):
        old.unwrap(forged)


def test_keys_are_read_as_hex_or_base64(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_key(KEK1.hex(), "x") == KEK1
    assert parse_key(base64.b64encode(KEK1).decode(), "x") == KEK1
    for bad in ("00" * 31, "not a key", base64.b64encode(b"short").decode()):
        with pytest.raises(SecretError, match="32 bytes"):
            parse_key(bad, "x")
    monkeypatch.setenv("TEST_KEK", KEK2.hex())
    (tmp_path / "old").write_text(base64.b64encode(KEK1).decode() + "\n")
    ring = Keyring.from_refs("env:TEST_KEK", [f"file:{tmp_path / 'old'}"])
    assert ring.current_id == kek_id_of(KEK2) and ring.ids == sorted([kek_id_of(KEK1), kek_id_of(KEK2)])
    with pytest.raises(SecretError, match="NOPE"):
        Keyring.from_refs("env:NOPE")


# --- the repository (local directory, S3) ----------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def plain_repo(request: pytest.FixtureRequest, tmp_path: Path) -> FileRepository:
    return real_repository(request, tmp_path)


def _stored_bytes(repo: FileRepository, key: str) -> bytes:
    if isinstance(repo, LocalFileRepository):
        return (repo.root / key).read_bytes()
    return bytes(repo.client.get_object(Bucket=repo.bucket, Key=repo.prefix + key)["Body"].read())  # type: ignore[attr-defined]


@pytest.mark.integration
async def test_the_repository_stores_ciphertext_at_a_random_address(plain_repo: FileRepository) -> None:
    envelopes: dict[str, Envelope] = {}

    async def envelope_of(key: str) -> Envelope | None:
        return envelopes.get(key)

    repo = EncryptedFileRepository(plain_repo, Keyring(KEK1), envelope_of)
    data = b"confidential contract " * 300_000  # 6.6 MB: several segments, an S3 multipart upload
    sha = hashlib.sha256(data).hexdigest()
    up = await repo.begin()
    for i in range(0, len(data), 1 << 16):
        await up.write(data[i : i + (1 << 16)])
    key = await up.commit(sha)
    assert up.envelope is not None
    envelopes[key] = up.envelope
    assert is_encrypted_address(key) and sha not in key
    stored = _stored_bytes(plain_repo, key)
    assert b"confidential" not in stored and len(stored) == sealed_size(len(data))
    assert b"".join([c async for c in repo.read(key)]) == data
    _sha, small, envelope = await repo.put_bytes(b"<Profile>secret</Profile>")
    assert envelope is not None and b"secret" not in _stored_bytes(plain_repo, small)
    envelopes[small] = envelope
    assert b"".join([c async for c in repo.read(small)]) == b"<Profile>secret</Profile>"
    # without the key: a clear refusal naming the key
    for keyring in (None, Keyring(KEK2)):
        locked = EncryptedFileRepository(plain_repo, keyring, envelope_of)
        with pytest.raises(KeyUnavailable, match=kek_id_of(KEK1)):
            _ = [c async for c in locked.read(key)]


# --- through the application (PostgreSQL) ------------------------------------------------------------------


def _encrypted(harness: Harness, keyring: Keyring | None) -> Storage:
    """The harness's application with its repository wrapped (as service.start wraps it)."""
    s = harness.storage
    inner = s.files.inner if isinstance(s.files, EncryptedFileRepository) else s.files
    s.files = EncryptedFileRepository(inner, keyring, harness.store.body_envelope)
    s.erasures.files = s.files
    return s


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


async def _read_file(s: Storage, record: int) -> bytes:
    _v, _loc, _size, stream = await s.open_file(ORG, "", "ContentVersion", sf_id("068", record), None)
    return b"".join([c async for c in stream])


@pytest.mark.integration
async def test_file_and_metadata_bodies_are_encrypted_and_read_back(harness: Harness) -> None:
    s = _encrypted(harness, None)
    await s.begin_job(ORG, "s1", "f1", FILE, "")
    before = b"PLAIN-BEFORE-ENCRYPTION " * 100
    await s.upload_file(file_header(1, 1, before), file_body(before))  # stored before encryption was turned on
    s = _encrypted(harness, Keyring(KEK1))
    secret = b"TOP-SECRET-PAYLOAD " * 120_000  # 2.3 MB
    first = await s.upload_file(file_header(2, 2, secret), file_body(secret, 1 << 16))
    assert not first.result["deduplicated"] and first.result["sha256"] == hashlib.sha256(secret).hexdigest()
    # dedup still works on the plaintext's SHA-256: the same body again stores nothing new
    again = await s.upload_file(file_header(3, 3, secret), file_body(secret, 1 << 16))
    assert again.result["deduplicated"] and again.counts.files == 0
    await s.begin_job(ORG, "s1", "m1", METADATA, "")
    profile = b"<Profile><custom>SECRET-METADATA-VALUE</custom></Profile>"
    await s.put_metadata(ChunkRef(ORG, "s1", "m1", 1), [MetadataComponentIn("Profile", "Admin", profile)])

    repository = _all_bytes(harness.files_dir)
    assert b"TOP-SECRET" not in repository and b"SECRET-METADATA" not in repository
    assert b"PLAIN-BEFORE" in repository  # not rewritten: it stays readable as it is
    bodies = [p for p in harness.files_dir.rglob("*") if p.is_file() and ".tmp" not in p.parts]
    assert len(bodies) == 3  # the racing duplicate's body is not left behind
    assert await _read_file(s, 2) == secret and await _read_file(s, 3) == secret
    assert await _read_file(s, 1) == before
    _row, content = await s.metadata_as_of(ORG, "Profile", "Admin", None)
    assert content == profile
    # erasure's verification decrypts to search
    found = await s.erasures.verify(ORG, "SECRET-METADATA-VALUE", [], "")
    assert found.file_bodies_holding == 1

    # no key (or another one): a clear FAILED_PRECONDITION naming the key, never the plaintext
    for keyring in (None, Keyring(KEK2)):
        locked = _encrypted(harness, keyring)
        with pytest.raises(KeyUnavailable, match=kek_id_of(KEK1)):
            await _read_file(locked, 2)
        assert await _read_file(locked, 1) == before


@pytest.mark.integration
async def test_rotation_and_rewrap_keep_bodies_readable_without_rewriting_them(harness: Harness) -> None:
    s = _encrypted(harness, Keyring(KEK1))
    await s.begin_job(ORG, "s1", "f1", FILE, "")
    old_body = os.urandom(50_000)
    await s.upload_file(file_header(1, 1, old_body), file_body(old_body))
    s = _encrypted(harness, Keyring(KEK2, [KEK1]))  # KEK2 current, KEK1 still listed
    new_body = os.urandom(50_000)
    await s.upload_file(file_header(2, 2, new_body), file_body(new_body))
    assert await _read_file(s, 1) == old_body and await _read_file(s, 2) == new_body
    async with harness.store.pool.connection() as conn:
        cur = await conn.execute("SELECT kek_id FROM storage.files ORDER BY stored_at")
        assert [r[0] for r in await cur.fetchall()] == [kek_id_of(KEK1), kek_id_of(KEK2)]
    snapshot = {p: p.read_bytes() for p in harness.files_dir.rglob("*") if p.is_file()}

    assert await rewrap(harness.store, Keyring(KEK2, [KEK1]), batch=1) == 1
    assert await rewrap(harness.store, Keyring(KEK2, [KEK1])) == 0  # nothing left
    assert {p: p.read_bytes() for p in harness.files_dir.rglob("*") if p.is_file()} == snapshot  # untouched
    s = _encrypted(harness, Keyring(KEK2))  # KEK1 retired
    assert await _read_file(s, 1) == old_body and await _read_file(s, 2) == new_body
    with pytest.raises(KeyUnavailable, match=kek_id_of(KEK2)):
        await rewrap(harness.store, Keyring(KEK1))  # a rewrap needs the key the bodies are under


@pytest.mark.integration
async def test_a_tampered_body_fails_to_read(harness: Harness) -> None:
    s = _encrypted(harness, Keyring(KEK1))
    await s.begin_job(ORG, "s1", "f1", FILE, "")
    body = os.urandom(SEGMENT + 100)
    await s.upload_file(file_header(1, 1, body), file_body(body))
    (stored,) = [p for p in harness.files_dir.rglob("*") if p.is_file() and ".tmp" not in p.parts]
    damaged = bytearray(stored.read_bytes())
    damaged[-3] ^= 0x40
    stored.write_bytes(bytes(damaged))
    with pytest.raises(BodyDamaged, match="fails authentication"):
        await _read_file(s, 1)


def _rewrap_cli(database_url: str, current: bytes, *old: bytes) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFVAULT_")}
    env.update(
        SFVAULT_DATABASE_URL=database_url,
        SFVAULT_NATS_URL="nats://127.0.0.1:1",  # required by the settings; rewrap never connects
        SFVAULT_AUTH_DISABLED="true",
        SFVAULT_STORAGE_ENCRYPTION_KEY_REF="env:TEST_KEK_CURRENT",
        TEST_KEK_CURRENT=current.hex(),
        SFVAULT_STORAGE_ENCRYPTION_OLD_KEY_REFS=",".join(f"env:TEST_KEK_OLD{i}" for i in range(len(old))),
        **{f"TEST_KEK_OLD{i}": base64.b64encode(k).decode() for i, k in enumerate(old)},
    )
    cmd = [sys.executable, "-m", "services.storage", "rewrap"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.integration
async def test_the_rewrap_command(harness: Harness, database_url: str) -> None:
    s = _encrypted(harness, Keyring(KEK1))
    await s.begin_job(ORG, "s1", "f1", FILE, "")
    body = os.urandom(1000)
    await s.upload_file(file_header(1, 1, body), file_body(body))
    refused = _rewrap_cli(database_url, KEK2)  # KEK1 not listed: nothing changes, the key is named
    assert refused.returncode == 1 and kek_id_of(KEK1) in refused.stderr and KEK1.hex() not in refused.stderr
    done = _rewrap_cli(database_url, KEK2, KEK1)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"rewrapped": 1, "current_key": kek_id_of(KEK2)}
    assert await _read_file(_encrypted(harness, Keyring(KEK2)), 1) == body


# --- the service: settings and the status a client sees ------------------------------------------------------


@pytest.mark.integration
async def test_the_service_encrypts_and_a_client_sees_failed_precondition_without_the_key(
    database_url: str,
    nats_url: str,
    bus_namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in {
        "SFVAULT_DATABASE_URL": database_url,
        "SFVAULT_NATS_URL": nats_url,
        "SFVAULT_BUS_NAMESPACE": bus_namespace,
        "SFVAULT_STORAGE_PORT": "0",
        "SFVAULT_FILE_REPOSITORY": f"file://{tmp_path / 'files'}",
        "SFVAULT_AUTH_KEY": AUTH_KEY.decode(),
        "SFVAULT_STORAGE_ENCRYPTION_KEY_REF": "env:TEST_KEK",
        "TEST_KEK": KEK1.hex(),
    }.items():
        monkeypatch.setenv(name, value)
    body = b"API-LEVEL-SECRET " * 5000
    get = pb.GetFileRequest(org_id=ORG, object_name="ContentVersion", record_id=sf_id("068", 1))

    async def upload() -> AsyncIterator[pb.UploadFileRequest]:
        header = pb.FileHeader(org_id=ORG, session_id="s1", job_id="f1", chunk_seq=1, object_name="ContentVersion",
                               record_id=sf_id("068", 1), size=len(body))  # fmt: skip
        yield pb.UploadFileRequest(header=header)
        yield pb.UploadFileRequest(data=body)

    async def started(key: bytes) -> tuple[Any, grpc.aio.Channel]:
        monkeypatch.setenv("TEST_KEK", key.hex())
        running = await service.start(config.load())
        return running, aio_channel(f"127.0.0.1:{running.port}", token("service", "jobrunner"))

    running, channel = await started(KEK1)
    try:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        await stub.BeginJob(pb.BeginJobRequest(org_id=ORG, session_id="s1", job_id="f1", type=FILE))
        assert (await stub.UploadFile(upload())).new_version
        assert b"".join([p.data async for p in stub.GetFile(get)]) == body
    finally:
        await channel.close()
        await running.stop(1)
    assert b"API-LEVEL-SECRET" not in _all_bytes(tmp_path / "files")

    caplog.set_level(logging.WARNING, logger="services.storage.service")
    running, channel = await started(KEK2)  # the key was changed without listing the former one
    assert f"key(s) {kek_id_of(KEK1)} cannot be read" in caplog.text  # said at start-up
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            _ = [p async for p in storage_pb2_grpc.StorageServiceStub(channel).GetFile(get)]
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert kek_id_of(KEK1) in str(refused.value.details()) and KEK1.hex() not in str(refused.value.details())
    finally:
        await channel.close()
        await running.stop(1)

    monkeypatch.setenv("TEST_KEK", "not a key")
    with pytest.raises(config.ConfigError, match=r"SFVAULT_STORAGE_ENCRYPTION_KEY_REF.*32 bytes"):
        await service.start(config.load())
