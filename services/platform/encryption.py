"""Encryption at rest of the bodies in the file repository (issue 18): AES-256-GCM with envelope keys.

Each body gets its own random 256-bit data key; the data key is wrapped (AES-256-GCM, the KEK id as associated
data) by the key-encryption key (KEK) read from a secret reference, and the wrapped key and the KEK id are kept
in the body's row of `files` (never in the repository). A body is framed so that a large one is never held
whole: a header (magic, segment size) then segments of at most `SEGMENT` plaintext bytes, each sealed with
nonce = its index and associated data = header + index + whether it is the last. A segment moved, dropped,
altered or a body cut short after any segment fails to decrypt. The plaintext's SHA-256 stays the dedup key (in
the database only): an encrypted body is stored at a random address, so neither its bytes nor its name reveal it.

Key rotation: a new KEK becomes current for new bodies; the old ones stay readable while their KEK is listed in
the old key references, and `rewrap` (python -m services.storage rewrap) re-wraps their data keys under the
current KEK without touching the bodies. The module is pure (no I/O but reading the secret references).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.platform.errors import FailedPrecondition
from services.platform.secrets import SecretError, read_secret

MAGIC = b"SFVENC01"
SEGMENT = 1 << 20  # plaintext bytes per segment
TAG = 16
_HEADER = struct.Struct(">8sI")
HEADER_SIZE = _HEADER.size
KEY_SETTING = "SFVAULT_STORAGE_ENCRYPTION_KEY_REF"
OLD_KEYS_SETTING = "SFVAULT_STORAGE_ENCRYPTION_OLD_KEY_REFS"


class KeyUnavailable(FailedPrecondition):
    """The KEK a body was wrapped with is not configured (or the wrapped key does not open with it)."""


class BodyDamaged(FailedPrecondition):
    """An encrypted body failed its authentication: altered, truncated or reordered."""


@dataclass(frozen=True)
class Envelope:
    """What the body's row keeps: the id of the KEK and the data key wrapped by it."""

    kek_id: str
    wrapped_key: bytes


def kek_id_of(kek: bytes) -> str:
    """A stable, non-secret name of a KEK (derived from it: the same key always has the same id)."""
    return "kek-" + hashlib.sha256(b"sfvault storage kek id\0" + kek).hexdigest()[:16]


def parse_key(text: str, where: str) -> bytes:
    """32 bytes given as 64 hex digits or base64 (the error names the reference, never the value)."""
    text = text.strip()
    key: bytes | None = None
    if len(text) == 64:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = None
    if key is None:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            key = None
    if key is None or len(key) != 32:
        raise SecretError(f"{where}: the key must be 32 bytes, as 64 hex digits or base64")
    return key


class Keyring:
    """The current KEK (for new bodies) and the old ones (to read what they wrapped)."""

    def __init__(self, current: bytes, old: Iterable[bytes] = ()) -> None:
        self.current_id = kek_id_of(current)
        self._keks = {kek_id_of(k): k for k in old}
        self._keks[self.current_id] = current

    @classmethod
    def from_refs(cls, current_ref: str, old_refs: Iterable[str] = ()) -> Keyring:
        current = parse_key(read_secret(current_ref, KEY_SETTING), f"{KEY_SETTING} ({current_ref})")
        old = [parse_key(read_secret(r, OLD_KEYS_SETTING), f"{OLD_KEYS_SETTING} ({r})") for r in old_refs]
        return cls(current, old)

    @property
    def ids(self) -> list[str]:
        return sorted(self._keks)

    def new_data_key(self) -> tuple[bytes, Envelope]:
        data_key = AESGCM.generate_key(bit_length=256)
        return data_key, self.wrap(data_key)

    def wrap(self, data_key: bytes) -> Envelope:
        nonce = os.urandom(12)
        sealed = AESGCM(self._keks[self.current_id]).encrypt(nonce, data_key, self.current_id.encode())
        return Envelope(self.current_id, nonce + sealed)

    def unwrap(self, envelope: Envelope) -> bytes:
        kek = self._keks.get(envelope.kek_id)
        if kek is None:
            raise KeyUnavailable(
                f"the body is encrypted with key {envelope.kek_id}, which is not configured"
                f" (add its reference to {OLD_KEYS_SETTING}); configured: {', '.join(self.ids)}"
            )
        wrapped = envelope.wrapped_key
        try:
            return AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], envelope.kek_id.encode())
        except InvalidTag:
            raise KeyUnavailable(f"the data key wrapped by key {envelope.kek_id} does not open with it") from None

    def rewrap(self, envelope: Envelope) -> Envelope:
        """The same data key under the current KEK (the body is untouched)."""
        return self.wrap(self.unwrap(envelope))


def _aad(index: int, last: bool) -> bytes:
    return _HEADER.pack(MAGIC, SEGMENT) + struct.pack(">QB", index, 1 if last else 0)


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")  # unique per segment; the data key is unique per body


class Sealer:
    """Encrypts a body as it arrives: `feed` returns the ciphertext ready (whole segments), `finish` the rest."""

    def __init__(self, data_key: bytes) -> None:
        self._aead = AESGCM(data_key)
        self._pending = bytearray()
        self._index = 0
        self._started = False

    def _header(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return _HEADER.pack(MAGIC, SEGMENT)

    def _seal(self, piece: bytes | bytearray | memoryview, last: bool = False) -> bytes:
        sealed = self._aead.encrypt(_nonce(self._index), piece, _aad(self._index, last))
        self._index += 1
        return sealed

    def feed(self, data: bytes) -> bytes:
        # a segment is sealed only once more data follows it: the last one must be known as the last. Whole
        # segments are sealed straight from `data`; only what is left of a segment is copied aside.
        out = [head] if (head := self._header()) else []
        view = memoryview(data)
        at = 0
        if self._pending:
            at = min(SEGMENT - len(self._pending), len(view))
            self._pending += view[:at]
            if at == len(view):
                return b"".join(out)
            out.append(self._seal(self._pending))  # full, and more follows
            self._pending.clear()
        while len(view) - at > SEGMENT:
            out.append(self._seal(view[at : at + SEGMENT]))
            at += SEGMENT
        self._pending += view[at:]
        return b"".join(out)

    def finish(self) -> bytes:
        head = self._header()
        last = self._seal(bytes(self._pending), last=True)
        self._pending.clear()
        return head + last


class Opener:
    """Decrypts a body as its pieces are read; `finish` checks it ended with its last segment."""

    def __init__(self, data_key: bytes, where: str) -> None:
        self._aead = AESGCM(data_key)
        self._buffer = bytearray()
        self._index = 0
        self._header_seen = False
        self._where = where

    def _open(self, sealed: bytes | memoryview, last: bool) -> bytes:
        try:
            return self._aead.decrypt(_nonce(self._index), sealed, _aad(self._index, last))
        except InvalidTag:
            raise BodyDamaged(
                f"encrypted body {self._where} fails authentication at segment {self._index}"
                " (altered, truncated or reordered)"
            ) from None

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        if not self._header_seen:
            if len(self._buffer) < HEADER_SIZE:
                return b""
            magic, segment = _HEADER.unpack(bytes(self._buffer[:HEADER_SIZE]))
            if magic != MAGIC or segment != SEGMENT:
                raise BodyDamaged(f"body {self._where} is not an encrypted body of this version")
            del self._buffer[:HEADER_SIZE]
            self._header_seen = True
        sealed = SEGMENT + TAG
        full = (len(self._buffer) - 1) // sealed  # the last segment stays until the end is known
        if full <= 0:
            return b""
        out = []
        with memoryview(self._buffer) as view:
            for i in range(full):
                out.append(self._open(view[i * sealed : (i + 1) * sealed], False))
                self._index += 1
        del self._buffer[: full * sealed]
        return b"".join(out)

    def finish(self) -> bytes:
        if not self._header_seen or len(self._buffer) < TAG:
            raise BodyDamaged(f"encrypted body {self._where} is cut short")
        plain = self._open(bytes(self._buffer), True)
        self._buffer.clear()
        return plain


def sealed_size(plain_size: int) -> int:
    """Bytes an encrypted body of `plain_size` bytes takes in the repository."""
    segments = max(1, -(-plain_size // SEGMENT))
    return HEADER_SIZE + plain_size + segments * TAG
