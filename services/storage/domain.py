"""The storage rules, free of I/O: Id and name validation of requests, chunk counts and digests. The canonical
form of a record and its hash (what counts as a change) are the shared contract in services.canonical,
re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.canonical import (
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
    canonical_json,
    check_api_name,
    content_hash,
    fingerprint,
    guess_id,
    id_suffix,
    normalize_id,
    values_hash,
)
from services.platform.errors import FailedPrecondition, InvalidArgument, NotFound
from services.platform.errors import RequestError as StorageError

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
    "HeadState",
    "InvalidArgument",
    "NotFound",
    "ObjectSchema",
    "RecordCanonicalizer",
    "Scope",
    "ScopeHistory",
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
    "rescope",
    "scope_history",
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


# --- the scope of a backup: fields joining or leaving it ------------------------------------------------------
#
# A field leaves the scope when the integration user can no longer see it (or it is deleted), and joins it
# when it becomes visible (again) or is created. That is a change of the schema, not of the records:
# - a field absent from the chunk's scope carries its last backed-up value (the head's): the record is compared
#   with its head, and a new version written, as if the field were still there with that value;
# - a field newly in scope whose value the head never had (not in its last version, nor in the scope that
#   version was written under) makes no restore point by itself: when it is all that differs, the record's
#   values (the new field's included) are kept as a *scope-only* version -- stored, read by as-of reads and
#   exports, listed in the history with `scope_only`, counted as unchanged in the chunk's counts (no restore
#   point in the session report). Any other difference is a change, as always.
# Only records whose hash differs from their head's pay for this (a JSON parse and a hash), and only for an
# object whose schema versions do not all have one field set: the common case takes no extra step.


@dataclass(frozen=True)
class Scope:
    """What one schema version backs up: all its fields, and the hashed ones (whose values count for a change)."""

    fields: frozenset[str]
    hashed: frozenset[str]


@dataclass(frozen=True)
class ScopeHistory:
    """The scopes of an object's schema versions, and the fields never hashed under any of them (audit fields,
    and formula fields unless formula changes count)."""

    scopes: Mapping[int, Scope]
    unhashed: frozenset[str]

    @property
    def uniform(self) -> bool:
        """Every schema version has the same fields: no record can be compared across a change of scope."""
        return len({s.fields for s in self.scopes.values()}) <= 1


@dataclass(frozen=True)
class HeadState:
    """A record's head whose hash differs from an incoming record's, with its last version's values."""

    record_id: str
    hash: bytes
    deleted: int
    schema_version: int  # of the last version
    data: str  # the last version's values (JSON)


def rescope(
    record: CanonicalRecord, head: HeadState, now: Scope, then: Scope, unhashed: frozenset[str]
) -> tuple[CanonicalRecord, bool]:
    """The record as compared with its head across a change of scope: (the record, its hash and values with
    the fields out of scope carried from the head's last version; whether all it adds to the head is values of
    fields that joined the scope -- a scope-only version)."""
    values = json.loads(record.data)
    last = json.loads(head.data)
    carried = {k: v for k, v in last.items() if k not in now.fields and k not in values}
    if carried:
        values.update(carried)
        core = {k: v for k, v in values.items() if k in now.hashed or (k not in now.fields and k not in unhashed)}
        record = record._replace(data=canonical_json(values), hash=values_hash(core))
    else:
        core = {k: v for k, v in values.items() if k in now.hashed}
    if record.hash == head.hash or int(record.deleted) != head.deleted:
        return record, False
    joined = [k for k in core if k not in then.fields and k not in last]
    if not joined:
        return record, False
    for k in joined:
        del core[k]
    return record, values_hash(core) == head.hash


def scope_history(schemas: Mapping[int, ObjectSchema], *, count_formula_changes: bool) -> ScopeHistory:
    """The scopes of an object's schema versions, the hashed fields as RecordCanonicalizer decides them."""
    scopes = {
        version: Scope(
            frozenset(f.name for f in schema.fields),
            RecordCanonicalizer(schema, count_formula_changes=count_formula_changes).hashed_fields,
        )
        for version, schema in schemas.items()
    }
    unhashed = set(AUDIT_FIELDS)
    for version, schema in schemas.items():
        unhashed |= {f.name for f in schema.fields if f.name not in scopes[version].hashed}
    return ScopeHistory(scopes, frozenset(unhashed))
