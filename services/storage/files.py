"""File repositories: content-addressed bodies (files, metadata components) in a local directory or any
S3-compatible store. A body is written under a temporary name and becomes visible only once complete
(rename, or multipart complete + copy), at the address derived from its SHA-256, so identical contents are
stored once and a crash never leaves a partial body at a real address. A local repository is private to the
service's user (directories 0700, bodies 0600); temporary bodies a killed upload left behind are removed at
start-up once older than a grace period (`sweep_temporary`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from services.platform.encryption import (
    KEY_SETTING,
    OLD_KEYS_SETTING,
    Envelope,
    Keyring,
    KeyUnavailable,
    Opener,
    Sealer,
)
from services.storage.ports import READ_CHUNK, FileRepository, Upload

DIR_MODE = 0o700  # a local repository is readable by the service's user only
FILE_MODE = 0o600
WRITE_AT = 4 << 20  # a local body's pieces are written to disk this many bytes at a time
log = logging.getLogger(__name__)


def content_key(sha256_hex: str) -> str:
    """The repository-relative address of a body; two levels of fan-out keep directories small."""
    return f"{sha256_hex[:2]}/{sha256_hex[2:4]}/{sha256_hex}"


# --- local directory ------------------------------------------------------------------------------------


async def _pieces(body: BinaryIO, chunk_size: int) -> AsyncIterator[bytes]:
    """A body (an open file, an S3 object's stream) read in pieces off the event loop, then closed."""
    try:
        while chunk := await asyncio.to_thread(body.read, chunk_size):
            yield chunk
    finally:
        body.close()


class _LocalUpload:
    """A body written to a temporary file in the worker threads, never on the event loop: pieces are gathered up to
    WRITE_AT bytes and written in one hop, so a small body (most files) costs one hop in all (written, fsync'd and
    renamed together at its commit) and a large one a hop per WRITE_AT, never more than that in memory."""

    envelope: Envelope | None = None  # a plain body

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp" / uuid.uuid4().hex
        self._fh: BinaryIO | None = None
        self._pieces: list[bytes] = []
        self._gathered = 0

    def _write_gathered(self) -> BinaryIO:
        """In a worker thread: the gathered pieces written (the file created at the first ones)."""
        if self._fh is None:
            # 0600 from its creation (not chmod-ed later: never readable by others, not even for a moment)
            self._fh = os.fdopen(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb")
        self._fh.writelines(self._pieces)
        self._pieces, self._gathered = [], 0
        return self._fh

    async def write(self, data: bytes) -> None:
        self._pieces.append(data)
        self._gathered += len(data)
        if self._gathered >= WRITE_AT:
            await asyncio.to_thread(self._write_gathered)

    async def commit(self, sha256_hex: str) -> str:
        return await self.commit_at(content_key(sha256_hex))

    async def commit_at(self, key: str) -> str:
        target = self.root / key

        def finish() -> None:
            fh = self._write_gathered()
            fh.flush()
            os.fsync(fh.fileno())  # durable before it becomes visible
            fh.close()
            _private_dirs(self.root, target.parent)
            if target.exists():
                self.tmp.unlink()  # identical content already stored
            else:
                os.replace(self.tmp, target)

        await asyncio.to_thread(finish)
        return key

    async def abort(self) -> None:
        self._pieces = []
        if self._fh is not None:
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


def _private_dirs(root: Path, directory: Path) -> None:
    """`directory` (inside `root`) and each missing level between them, created 0700."""
    missing = []
    while directory != root and not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another upload created it meanwhile
            d.mkdir(mode=DIR_MODE)


class LocalFileRepository:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / ".tmp").mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        # also a repository created by an older version (0755): private from the top, whatever is inside
        for d in (self.root, self.root / ".tmp"):
            if d.stat().st_mode & 0o777 != DIR_MODE:
                try:
                    os.chmod(d, DIR_MODE)
                except PermissionError:  # a mount point owned by another user: its owner decides
                    log.warning("file repository %s is not 0700 and cannot be made so (not its owner)", d)

    async def begin(self) -> Upload:
        return _LocalUpload(self.root)

    async def put_bytes(self, data: bytes) -> tuple[str, str, Envelope | None]:
        digest = hashlib.sha256(data).hexdigest()
        up = await self.begin()
        try:
            await up.write(data)
            return digest, await up.commit(digest), None
        except BaseException:
            await up.abort()
            raise

    async def read(self, key: str, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        async for chunk in _pieces(await asyncio.to_thread(open, self.root / key, "rb"), chunk_size):
            yield chunk

    async def delete(self, key: str) -> None:
        """Removes a body (retention: no version references it any more); a missing one is already gone."""
        await asyncio.to_thread((self.root / key).unlink, missing_ok=True)

    async def check(self) -> None:
        probe = self.root / ".tmp" / f"probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()

    async def sweep_temporary(self, older_than_s: float) -> int:
        def sweep() -> int:
            # an upload in flight writes its body as it receives it: its modification time stays recent
            cutoff = time.time() - older_than_s
            removed = 0
            with os.scandir(self.root / ".tmp") as entries:
                for entry in entries:
                    with contextlib.suppress(FileNotFoundError):  # another replica swept it first
                        if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                            os.unlink(entry.path)
                            removed += 1
            return removed

        return await asyncio.to_thread(sweep)


# --- S3-compatible --------------------------------------------------------------------------------------


class _S3Upload:
    """Small bodies are one put_object at the final key; larger ones a multipart upload to a temporary key,
    completed and then copied to the content address (server-side, no bytes through this service)."""

    envelope: Envelope | None = None  # a plain body

    def __init__(self, repo: S3FileRepository) -> None:
        self.repo = repo
        self.tmp_key = f"{repo.prefix}.tmp/{uuid.uuid4().hex}"
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    async def write(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= self.repo.part_size:
            await self._flush_part()

    async def _flush_part(self) -> None:
        s3, bucket = self.repo.client, self.repo.bucket
        if self.upload_id is None:
            started = await asyncio.to_thread(s3.create_multipart_upload, Bucket=bucket, Key=self.tmp_key)
            self.upload_id = started["UploadId"]
        number = len(self.parts) + 1
        body = bytes(self.buffer)
        self.buffer.clear()
        part = await asyncio.to_thread(
            s3.upload_part, Bucket=bucket, Key=self.tmp_key, UploadId=self.upload_id, PartNumber=number, Body=body
        )
        self.parts.append({"PartNumber": number, "ETag": part["ETag"]})

    async def commit(self, sha256_hex: str) -> str:
        return await self.commit_at(content_key(sha256_hex))

    async def commit_at(self, key: str) -> str:
        s3, bucket, final = self.repo.client, self.repo.bucket, self.repo.prefix + key
        if await self.repo.exists(final):
            await self.abort()
            return key
        if self.upload_id is None:
            await asyncio.to_thread(s3.put_object, Bucket=bucket, Key=final, Body=bytes(self.buffer))
            self.buffer.clear()
            return key
        if self.buffer:
            await self._flush_part()
        await asyncio.to_thread(
            s3.complete_multipart_upload,
            Bucket=bucket,
            Key=self.tmp_key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )
        self.upload_id = None
        await asyncio.to_thread(
            s3.copy_object, Bucket=bucket, Key=final, CopySource={"Bucket": bucket, "Key": self.tmp_key}
        )
        await asyncio.to_thread(s3.delete_object, Bucket=bucket, Key=self.tmp_key)
        return key

    async def abort(self) -> None:
        self.buffer.clear()
        if self.upload_id is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    self.repo.client.abort_multipart_upload,
                    Bucket=self.repo.bucket,
                    Key=self.tmp_key,
                    UploadId=self.upload_id,
                )
            self.upload_id = None


class S3FileRepository:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        part_size: int = 8 << 20,
        client: Any = None,
    ) -> None:
        import boto3  # imported here: only the S3 backend needs it

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.part_size = max(part_size, 5 << 20)  # S3's minimum part size (except the last)
        # credentials come from boto3's usual chain (environment, profile, instance role); never from here
        self.client = client or boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        )

    async def exists(self, full_key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=full_key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    async def begin(self) -> Upload:
        return _S3Upload(self)

    async def put_bytes(self, data: bytes) -> tuple[str, str, Envelope | None]:
        digest = hashlib.sha256(data).hexdigest()
        key = content_key(digest)
        if not await self.exists(self.prefix + key):
            await asyncio.to_thread(self.client.put_object, Bucket=self.bucket, Key=self.prefix + key, Body=data)
        return digest, key, None

    async def read(self, key: str, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        obj = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=self.prefix + key)
        async for chunk in _pieces(obj["Body"], chunk_size):
            yield chunk

    async def delete(self, key: str) -> None:
        """Removes a body (retention); S3 answers a missing key as deleted."""
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self.prefix + key)

    async def check(self) -> None:
        await asyncio.to_thread(self.client.head_bucket, Bucket=self.bucket)

    async def sweep_temporary(self, older_than_s: float) -> int:
        """Temporary objects and multipart uploads under `<prefix>.tmp/` older than the grace period."""
        tmp_prefix = f"{self.prefix}.tmp/"

        def sweep() -> int:
            import datetime as dt

            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=older_than_s)
            removed = 0
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=tmp_prefix):
                for obj in page.get("Contents", []):
                    if obj["LastModified"] < cutoff:
                        self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])
                        removed += 1
            uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=tmp_prefix)
            for upload in uploads.get("Uploads", []):
                # an upload in flight keeps adding parts: its last part's time, not when it began, says it is alive
                parts = self.client.list_parts(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                touched = max([p["LastModified"] for p in parts.get("Parts", [])], default=upload["Initiated"])
                if touched < cutoff:
                    with contextlib.suppress(Exception):  # completed or aborted meanwhile
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        removed += 1
            return removed

        return await asyncio.to_thread(sweep)


def open_repository(url: str, *, s3_endpoint_url: str | None = None) -> FileRepository:
    """file:///path (or a plain path) for a local directory, s3://bucket/prefix for S3-compatible stores."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme == "file" else url
        if parsed.scheme == "file" and parsed.netloc:  # file://relative/dir
            path = parsed.netloc + parsed.path
        return LocalFileRepository(path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"file repository {url!r} names no bucket (s3://bucket/prefix)")
        return S3FileRepository(parsed.netloc, parsed.path, endpoint_url=s3_endpoint_url)
    raise ValueError(f"file repository {url!r}: use file:///path or s3://bucket/prefix")


# --- encryption at rest (encryption.py) -----------------------------------------------------------------

ENCRYPTED_PREFIX = "enc/"  # encrypted bodies live at random addresses under it: their name reveals nothing


def encrypted_address() -> str:
    name = uuid.uuid4().hex
    return f"{ENCRYPTED_PREFIX}{name[:2]}/{name[2:4]}/{name}"


def is_encrypted_address(key: str) -> bool:
    return key.startswith(ENCRYPTED_PREFIX)


class _SealedUpload:
    """Encrypts what it is given segment by segment into the inner upload; commits at a random address (the
    row of `files` maps the plaintext's SHA-256 to it, with `envelope`)."""

    envelope: Envelope | None

    def __init__(self, inner: Upload, keyring: Keyring) -> None:
        self.inner = inner
        data_key, self.envelope = keyring.new_data_key()
        self.sealer = Sealer(data_key)

    async def write(self, data: bytes) -> None:
        sealed = self.sealer.feed(data)
        if sealed:
            await self.inner.write(sealed)

    async def commit(self, sha256_hex: str) -> str:
        return await self.commit_at(encrypted_address())

    async def commit_at(self, key: str) -> str:
        await self.inner.write(self.sealer.finish())
        return await self.inner.commit_at(key)

    async def abort(self) -> None:
        await self.inner.abort()


class EncryptedFileRepository:
    """A file repository whose new bodies are encrypted (when a keyring is configured) and whose encrypted
    bodies are decrypted as they are read, with the envelope `envelope_of` finds for their address (the body's
    row). Plain bodies (stored before encryption was turned on) are read as they are."""

    def __init__(
        self,
        inner: FileRepository,
        keyring: Keyring | None,
        envelope_of: Callable[[str], Awaitable[Envelope | None]],
    ) -> None:
        self.inner = inner
        self.keyring = keyring
        self.envelope_of = envelope_of

    async def begin(self) -> Upload:
        upload = await self.inner.begin()
        return upload if self.keyring is None else _SealedUpload(upload, self.keyring)

    async def put_bytes(self, data: bytes) -> tuple[str, str, Envelope | None]:
        if self.keyring is None:
            return await self.inner.put_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        up = await self.begin()
        try:
            await up.write(data)
            return digest, await up.commit(digest), up.envelope
        except BaseException:
            await up.abort()
            raise

    async def read(self, key: str, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        if not is_encrypted_address(key):
            async for chunk in self.inner.read(key, chunk_size):
                yield chunk
            return
        envelope = await self.envelope_of(key)
        if envelope is None:
            raise KeyUnavailable(f"encrypted body {key} has no key recorded in its row")
        if self.keyring is None:
            raise KeyUnavailable(
                f"the body is encrypted with key {envelope.kek_id} and encryption is not configured"
                f" (set {KEY_SETTING} or {OLD_KEYS_SETTING})"
            )
        opener = Opener(self.keyring.unwrap(envelope), key)
        async for chunk in self.inner.read(key, chunk_size):
            plain = opener.feed(chunk)
            if plain:
                yield plain
        last = opener.finish()
        if last:
            yield last

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def check(self) -> None:
        await self.inner.check()

    async def sweep_temporary(self, older_than_s: float) -> int:
        return await self.inner.sweep_temporary(older_than_s)
