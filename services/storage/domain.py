"""The storage rules, free of I/O: Id and name validation of requests, chunk counts and digests. The canonical
form of a record and its hash (what counts as a change) are the shared contract in services.common.canonical,
re-exported here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.common.canonical import (
    AUDIT_FIELDS,
    CANONICAL_RULES,
    MAX_NAME_LENGTH,
    CanonicalRecord,
    Deleted,
    FieldDef,
    FieldType,
    ObjectSchema,
    RecordCanonicalizer,
    canon_boolean,
    canon_date,
    canon_datetime,
    canon_double,
    canon_integer,
    canon_reference,
    canon_string,
    canon_time,
    check_api_name,
    content_hash,
    fingerprint,
    guess_id,
    id_suffix,
    normalize_id,
)
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.errors import RequestError as StorageError

__all__ = [
    "AUDIT_FIELDS",
    "CANONICAL_RULES",
    "MAX_NAME_LENGTH",
    "CanonicalRecord",
    "ChunkDigest",
    "Counts",
    "Deleted",
    "FailedPrecondition",
    "FieldDef",
    "FieldType",
    "InvalidArgument",
    "NotFound",
    "ObjectSchema",
    "RecordCanonicalizer",
    "StorageError",
    "canon_boolean",
    "canon_date",
    "canon_datetime",
    "canon_double",
    "canon_integer",
    "canon_reference",
    "canon_string",
    "canon_time",
    "check_api_name",
    "check_chunk_seq",
    "check_token",
    "classify",
    "content_hash",
    "dedupe_last",
    "fingerprint",
    "guess_id",
    "id_suffix",
    "normalize_id",
    "normalize_org_id",
]


def normalize_org_id(value: str) -> str:
    org = normalize_id(value, "org_id")
    if not org.startswith("00D"):
        raise InvalidArgument(f"org_id {value!r} is not an Organization Id (they start with 00D)")
    return org


_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")


def check_token(value: str, what: str) -> str:
    """session_id and job_id become NATS subject tokens: letters, digits, '_' and '-' only."""
    if not _TOKEN.match(value or ""):
        raise InvalidArgument(f"{what} {value!r} must be 1-200 letters, digits, '_' or '-'")
    return value


def check_chunk_seq(seq: int) -> int:
    if seq < 1:
        raise InvalidArgument(f"chunk_seq must be 1 or more, got {seq}")
    return seq


# --- chunk counts ---------------------------------------------------------------------------------------


@dataclass
class Counts:
    received: int = 0
    new_versions: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    bytes: int = 0
    files: int = 0
    metadata_components: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Counts:
        return cls(**{k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__})

    def add(self, other: Counts) -> Counts:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))
        return self


def classify(received: int, transitions: Iterable[tuple[bool, Deleted]]) -> Counts:
    """Counts of a chunk from the head transitions it caused: (first sight?, new deleted state) per version."""
    counts = Counts(received=received)
    for first, state in transitions:
        if first:
            counts.new_versions += 1
        elif state != Deleted.LIVE:
            counts.deleted += 1
        else:
            counts.changed += 1
    counts.unchanged = received - counts.new_versions - counts.changed - counts.deleted
    return counts


@dataclass
class ChunkDigest:
    """Fingerprint of a chunk's content: a redelivery must carry the same content as the first delivery."""

    _h: Any = field(default_factory=lambda: hashlib.blake2b(digest_size=16))

    def update(self, *parts: bytes | str | memoryview) -> None:
        for p in parts:
            b = p.encode() if isinstance(p, str) else p
            self._h.update(len(b).to_bytes(8, "big"))
            self._h.update(b)

    def add(self, part: bytes) -> None:
        """update(part) for one bytes part, cheaper (it runs once per record of a chunk)."""
        self._h.update(len(part).to_bytes(8, "big"))
        self._h.update(part)

    def digest(self) -> bytes:
        return bytes(self._h.digest())


def dedupe_last(records: Iterable[CanonicalRecord]) -> dict[str, CanonicalRecord]:
    """One version per Id in a chunk: a record listed twice keeps its last occurrence (the newest read)."""
    chosen = records if isinstance(records, list) else list(records)
    return dict(zip([r[0] for r in chosen], chosen, strict=True))
