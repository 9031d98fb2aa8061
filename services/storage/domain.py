"""The storage rules, free of I/O: Id and name validation of requests, chunk counts and digests. The canonical
form of a record and its hash (what counts as a change) are the shared contract in services.canonical,
re-exported here.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import xxhash

from services.canonical import (
    AUDIT_FIELDS,
    CANONICAL_RULES,
    MAX_NAME_LENGTH,
    CanonicalColumnsIn,
    CanonicalRecord,
    Deleted,
    FieldDef,
    FieldType,
    ObjectSchema,
    RecordCanonicalizer,
    canonical_json,
    check_api_name,
    content_hash,
    has_escaped_nul,
    id_suffix,
    join_values,
    normalize_id,
    split_column_texts,
    values_hash,
)
from services.platform.counts import Counts, RestoreCounts
from services.platform.errors import FailedPrecondition, InvalidArgument, NotFound
from services.platform.errors import RequestError as StorageError

__all__ = [
    "AUDIT_FIELDS",
    "CANONICAL_RULES",
    "MAX_NAME_LENGTH",
    "CanonicalRecord",
    "ChunkDigest",
    "ChunkOutcome",
    "Counts",
    "Deleted",
    "FailedPrecondition",
    "FieldDef",
    "FieldType",
    "FileVersionRow",
    "HeadState",
    "InvalidArgument",
    "JobRef",
    "MetadataComponentIn",
    "MetadataVersionRow",
    "NotFound",
    "ObjectSchema",
    "PendingEvent",
    "PreparedColumns",
    "ReadEntry",
    "RecordCanonicalizer",
    "RecordSelection",
    "RecordVersionRow",
    "RecordsChunk",
    "RestoreCounts",
    "RestoreIntentRow",
    "RestoreOutcome",
    "RestorePointRow",
    "SchemaRef",
    "Scope",
    "ScopeHistory",
    "StorageError",
    "check_api_name",
    "check_chunk_seq",
    "check_outcome",
    "check_token",
    "classify",
    "content_hash",
    "dedupe_last",
    "id_map_entries",
    "id_suffix",
    "normalize_id",
    "normalize_org_id",
    "prepare_chunk",
    "rescope",
    "restore_counts",
    "restore_digest",
    "scope_history",
    "select_records",
    "values_hash",
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


def classify(received: int, transitions: Iterable[tuple[bool, Deleted]]) -> Counts:
    """Counts of a chunk from the head transitions it caused: (first sight?, new deleted state) per version."""
    new_versions = deleted = changed = 0
    for first, state in transitions:
        if first:
            new_versions += 1
        elif state != Deleted.LIVE:
            deleted += 1
        else:
            changed += 1
    unchanged = received - new_versions - changed - deleted
    return Counts(received=received, new_versions=new_versions, changed=changed, unchanged=unchanged, deleted=deleted)


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


# --- a chunk of records (PutRecords): canonical records column by column, validated at C speed -------------------

# A chunk column by column: Ids, values, other values, modstamps ("" for none), deleted flags (0 or 1), hashes of
# the values, fast-path fingerprints
PreparedColumns = tuple[
    Sequence[str], Sequence[bytes], Sequence[bytes], Sequence[str], Sequence[int], Sequence[bytes], Sequence[bytes]
]
_MODSTAMPS = re.compile(r"(?:(?:\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)?\n)*", re.ASCII)
_CANONICAL_PRINT_SEED = 0x5F7A_0C4E  # "sfvault-canon"
_make_record = functools.partial(tuple.__new__, CanonicalRecord)  # a NamedTuple's own __new__ is a Python call


@functools.lru_cache(maxsize=256)
def _ids_pattern(prefix: str) -> re.Pattern[str]:
    """Lines of 18-character Ids (of this key prefix), each with its checksum in upper case."""
    head = re.escape(prefix) + "[A-Za-z0-9]{" + str(15 - len(prefix)) + "}"
    return re.compile(f"(?:{head}[A-Z0-5]{{3}}\\n)*")


def _json_objects(lines: bytes, count: int, *, lines_counted: bool = False) -> bool:
    """`lines` is `count` JSON objects, each a line ending in a newline, none holding a raw newline, carriage
    return or tab, or an escaped NUL (what would break a COPY row). `lines_counted`: it is known to hold count
    newlines, the last one at its end."""
    return (
        lines[:1] == b"{"
        and lines[-2:] == b"}\n"
        and (lines_counted or lines.count(b"\n") == count)
        and lines.count(b"}\n{") == count - 1
        and b"\r" not in lines
        and b"\t" not in lines
        and not has_escaped_nul(lines)
    )


def _utf8(*texts: bytes) -> bool:
    try:
        for text in texts:
            text.decode()
    except UnicodeDecodeError:
        return False
    return True


def canonical_print(content_hash_: bytes, deleted: int, other_values: bytes) -> bytes:
    """The fast path's fingerprint of a canonical record: of its values' hash (which stands for the values), its
    deleted flag and its other values. Seeded: never equal to a content hash of the same bytes."""
    return xxhash.xxh3_128_digest(b"%s%d%s" % (content_hash_, deleted, other_values), seed=_CANONICAL_PRINT_SEED)


@dataclass(frozen=True)
class RecordsChunk:
    """A validated chunk of canonical records (prepare_chunk): what PostgresStore.put_records stores.

    `records(positions)` gives the records at those positions as CanonicalRecords, one in `check_every` of them
    canonicalised again (it must come out identical: a sender that disagrees with storage is refused); records
    the fast path finds unchanged are never built. `rescope` compares records with their heads across a change
    of the object's fields (only when `scopes` is given: the object's schema versions differ in their fields)."""

    digest: bytes
    columns: PreparedColumns
    canonicalizer: RecordCanonicalizer
    check_every: int
    schema_version: int = 0
    scopes: ScopeHistory | None = None

    def __len__(self) -> int:
        return len(self.columns[0])

    @property
    def ids(self) -> Sequence[str]:
        return self.columns[0]

    @property
    def prints(self) -> Sequence[bytes]:
        return self.columns[6]

    def _build(self, positions: Sequence[int]) -> list[CanonicalRecord]:
        ids, cores, others, modstamps, flags, hashes, fps = self.columns
        if len(positions) != len(ids):
            picked = [[column[i] for i in positions] for column in self.columns]
            ids, cores, others, modstamps, flags, hashes, fps = picked  # type: ignore[assignment]
        deleted = [Deleted.SOFT if flag else Deleted.LIVE for flag in flags]
        stamps = [m or None for m in modstamps]
        rows = zip(ids, map(join_values, cores, others), hashes, stamps, deleted, fps, strict=True)
        return list(map(_make_record, rows))

    def spot_check(self, records: Sequence[CanonicalRecord], positions: Sequence[int]) -> None:
        """One in `check_every` of these records (at these positions) canonicalised again must come out identical."""
        every, canon = self.check_every, self.canonicalizer.canonicalize
        for rec, i in zip(records[::every], positions[::every], strict=True):
            normalize_id(rec.record_id, f"record {i} Id")  # its checksum
            if canon(rec.data, i, rec.raw_hash) != rec:
                raise InvalidArgument(
                    f"record {i} ({rec.record_id}) is not in canonical form (rules {CANONICAL_RULES}):"
                    " canonicalised again it differs; the sender's canonicaliser and this storage's disagree"
                )

    def records(self, positions: Sequence[int]) -> dict[str, CanonicalRecord]:
        """The records at these positions, checked, one per Id (the last occurrence of an Id listed twice)."""
        built = self._build(positions)
        self.spot_check(built, positions)
        return dedupe_last(built)

    def checked_columns(self) -> PreparedColumns:
        """All the records column by column (first versions), their sample canonicalised again."""
        sample = list(range(0, len(self), self.check_every))
        self.spot_check(self._build(sample), sample)
        return self.columns

    def rescope(self, states: Sequence[HeadState], records: dict[str, CanonicalRecord]) -> set[str]:
        """Records compared with their heads (whose hash differs) across a change of scope (domain.rescope): they
        are replaced in `records`; returns the Ids whose version is scope-only."""
        assert self.scopes is not None
        history = self.scopes
        now = history.scopes[self.schema_version]
        scope_only = set()
        for state in states:
            then = history.scopes.get(state.schema_version, now)
            record, quiet = rescope(records[state.record_id], state, now, then, history.unhashed)
            records[state.record_id] = record
            if quiet:
                scope_only.add(state.record_id)
        return scope_only


def _lines_matching(pattern: re.Pattern[str], lines: list[str], refusal: Callable[[int, str], str]) -> str:
    """The lines joined, each one checked to match `pattern` (a pattern of lines): the whole text at once, and
    only when it fails line by line, to name the first one at fault (InvalidArgument, `refusal`'s message)."""
    text = "\n".join(lines)
    if not pattern.fullmatch(text + "\n"):
        for i, line in enumerate(lines):
            if not pattern.fullmatch(line + "\n"):
                raise InvalidArgument(refusal(i, line))
    return text


def prepare_chunk(
    columns_in: CanonicalColumnsIn,
    object_name: str,
    canonicalizer: RecordCanonicalizer,
    *,
    check_every: int,
    schema_version: int = 0,
    scopes: ScopeHistory | None = None,
) -> RecordsChunk:
    """A chunk of canonical columns validated chunk by chunk at C speed (18-character Ids of the object's key
    prefix, JSON objects without raw tab/newline/NUL, canonical SystemModstamps: each check fails for the whole
    chunk, then the record at fault is looked for and named), hashed, fingerprinted and digested."""
    ids, cores, others, modstamps, flags, cores_text, others_text = split_column_texts(columns_in)
    prefix = canonicalizer.schema.key_prefix
    if ids:
        # described, never quoted: a sender that mixed up its columns would put values here
        ids_text = _lines_matching(
            _ids_pattern(prefix),
            ids,
            lambda i, rid: (
                f"record {i} Id (a {type(rid).__name__} of {len(rid)} characters) is not an 18-character"
                " Id (checksum in upper case)"
                + (f" starting with {prefix}, the key prefix of {object_name}" if prefix else "")
            ),
        )
        if not (
            _json_objects(cores_text, len(ids), lines_counted=True)
            and _json_objects(others_text, len(ids), lines_counted=True)
            and _utf8(cores_text, others_text)
        ):
            for i, parts in enumerate(zip(cores, others, strict=True)):
                if not all(_json_objects(part + b"\n", 1) and _utf8(part) for part in parts):
                    raise InvalidArgument(f"record {i} ({ids[i]}): its values are not a canonical JSON object")
        modstamps_text = _lines_matching(
            _MODSTAMPS,
            modstamps,
            lambda i, modstamp: (
                f"record {i} ({ids[i]}): system_modstamp (of {len(modstamp)} characters) is not"
                " canonical (2024-01-02T03:04:05.000Z)"
            ),
        )
    hashes = list(map(content_hash, cores))
    fps = list(map(canonical_print, hashes, flags, others))
    digest = ChunkDigest()
    if ids:
        digest.update(
            object_name.lower(),
            "canonical",
            ids_text,
            modstamps_text,
            b"".join(hashes),
            bytes(flags),
            memoryview(others_text)[:-1],  # without its last newline, as the digest always was
        )
    columns = (ids, cores, others, modstamps, flags, hashes, fps)
    return RecordsChunk(digest.digest(), columns, canonicalizer, max(1, check_every), schema_version, scopes)


# --- what the store ports take and give (rows of storage's tables) --------------------------------------------


@dataclass(frozen=True)
class JobRef:
    job_key: int
    org_key: int
    org_id: str
    session_id: str
    job_id: str
    job_type: int
    object_name: str


@dataclass(frozen=True)
class SchemaRef:
    object_key: int
    object_name: str
    schema_version: int
    schema: ObjectSchema


@dataclass(frozen=True)
class ChunkOutcome:
    result: dict[str, Any]  # {"counts": {...}, ...}: what the call returned the first time
    replayed: bool

    @property
    def counts(self) -> Counts:
        return Counts.from_json(self.result["counts"])

    @property
    def restore(self) -> tuple[RestoreCounts, ...]:
        """A restore chunk's counts per object (none for other chunks)."""
        return tuple(RestoreCounts.from_json(r) for r in self.result.get("restore") or ())


@dataclass(frozen=True)
class PendingEvent:
    """A committed chunk whose ChunkUploaded is in the outbox (not acknowledged by the stream yet)."""

    job_key: int
    chunk_seq: int
    session_id: str
    job_id: str
    counts: Counts
    committed_at: dt.datetime
    restore: tuple[RestoreCounts, ...] = ()  # a restore chunk's counts per object


@dataclass(frozen=True)
class ReadEntry:
    """One read in the read audit: who, which RPC, of what, how much; never a value."""

    at: dt.datetime
    actor: str
    role: str
    token_id: str
    method: str
    outcome: str
    org_id: str
    object_name: str
    target: str
    as_of: dt.datetime | None
    count: int
    entry_id: int = 0  # set once stored


@dataclass(frozen=True)
class RecordVersionRow:
    record_id: str
    version_id: int
    session_id: str
    job_id: str
    captured_at: dt.datetime
    system_modstamp: dt.datetime | None
    deleted: Deleted
    hash: bytes
    values_json: str
    schema_version: int
    scope_only: bool = False  # only adds values of fields that joined the scope: no restore point


@dataclass(frozen=True)
class FileVersionIn:
    """A record's file as a chunk stores it: which record, its body (content address, size, where it is) and
    its name and type."""

    object_name: str
    record_id: str
    sha256: bytes
    size: int
    location: str
    file_name: str
    content_type: str


@dataclass(frozen=True)
class FileVersionRow:
    object_name: str
    record_id: str
    sha256: bytes
    size: int
    file_name: str
    content_type: str
    session_id: str
    captured_at: dt.datetime
    location: str


@dataclass(frozen=True)
class MetadataVersionRow:
    type: str
    full_name: str
    version_id: int
    session_id: str
    captured_at: dt.datetime
    last_modified_date: dt.datetime | None
    sha256: bytes
    size: int
    deleted: bool
    file_name: str
    location: str


@dataclass(frozen=True)
class RestorePointRow:
    session_id: str
    first_capture: dt.datetime
    last_capture: dt.datetime
    counts: Counts
    jobs: int


@dataclass(frozen=True)
class MetadataComponentIn:
    """A Metadata API component as PutMetadata carries it (storage.v1.MetadataComponent) and as MetadataStore stores
    it: its body's SHA-256 (computed once) and size come from its content."""

    type: str
    full_name: str
    content: bytes
    deleted: bool = False
    last_modified_date: dt.datetime | None = None
    file_name: str = ""

    @functools.cached_property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.content).digest()

    @property
    def size(self) -> int:
        return len(self.content)


# --- restore (issue 17) ------------------------------------------------------------------------------------------

# restore.v1.RecordState: what happened (or would happen) to one record
SKIPPED, UPDATED, UNDELETED, CREATED, FAILED = 1, 2, 3, 4, 5
RECORD_STATES = {SKIPPED: "skipped", UPDATED: "updated", UNDELETED: "undeleted", CREATED: "created", FAILED: "failed"}
MAX_TEXT = 10_000  # an outcome's error_code, message and note are cut to this many characters
MAX_BATCH_KEY = 200


@dataclass(frozen=True)
class RestoreOutcome:
    """One record's outcome (restore.v1.RecordOutcome), its Ids in the 18-character form."""

    object_name: str
    source_id: str
    target_id: str
    state: int
    error_code: str = ""
    message: str = ""
    changed_fields: tuple[str, ...] = ()
    note: str = ""


def _text(value: str) -> str:
    # PostgreSQL text holds no NUL; an org's messages can be long
    return value.replace("\x00", "")[:MAX_TEXT]


@functools.lru_cache(maxsize=4096)
def _is_api_name(value: str) -> bool:
    """Whether check_api_name accepts the name (cached: a chunk's outcomes name the same fields again and again)."""
    try:
        check_api_name(value)
    except InvalidArgument:
        return False
    return True


def check_outcome(o: RestoreOutcome, i: int) -> RestoreOutcome:
    """An outcome as stored: known state, valid Ids (target_id may be empty: a failed record, or a dry run's
    would-be creation), names that are API names. InvalidArgument names the outcome at fault."""
    if o.state not in RECORD_STATES:
        raise InvalidArgument(f"outcome {i}: unknown state {o.state} (one of {sorted(RECORD_STATES)})")
    if not _is_api_name(o.object_name):
        check_api_name(o.object_name, f"outcome {i} object_name")
    source = normalize_id(o.source_id, f"outcome {i} source_id")
    target = normalize_id(o.target_id, f"outcome {i} target_id") if o.target_id else ""
    for name in o.changed_fields:
        if not _is_api_name(name):
            check_api_name(name, f"outcome {i} changed field")
    return RestoreOutcome(
        o.object_name,
        source,
        target,
        o.state,
        _text(o.error_code) if o.error_code else "",
        _text(o.message) if o.message else "",
        tuple(o.changed_fields),
        _text(o.note) if o.note else "",
    )


def restore_counts(outcomes: Sequence[RestoreOutcome], *, write_calls: int, files: int) -> tuple[RestoreCounts, ...]:
    """Counts per object, objects in the order they first appear. The chunk's write calls and files go to its
    first object (a chunk is usually one object's); a chunk without outcomes that wrote or restored files counts
    them under the object name ""."""
    per: dict[str, dict[str, int]] = {}
    for o in outcomes:
        counts = per.setdefault(o.object_name, {})
        state = RECORD_STATES[o.state]
        counts[state] = counts.get(state, 0) + 1
    if not per and (write_calls or files):
        per[""] = {}
    out = []
    for n, (name, counts) in enumerate(per.items()):
        extra = {"write_calls": write_calls, "files": files} if n == 0 else {}
        out.append(RestoreCounts(name, **counts, **extra))
    return tuple(out)


def id_map_entries(outcomes: Sequence[RestoreOutcome], *, dry_run: bool) -> dict[str, str]:
    """{backup Id: target Id} of the records that are (now) in the target org under another Id: every outcome
    but a failed one whose target_id is set and differs (Created; matched in another org). A dry run: none."""
    if dry_run:
        return {}
    return {
        o.source_id: o.target_id for o in outcomes if o.state != FAILED and o.target_id and o.target_id != o.source_id
    }


def restore_digest(
    source_org: str, target_org: str, outcomes: Sequence[RestoreOutcome], resolved: Sequence[str], dry_run: bool
) -> bytes:
    """A restore chunk's identity: its records' outcomes (object, Ids, state), the intents it resolves, dry run.
    A redelivery with the same identity returns the first result; messages and call counts may differ."""
    digest = ChunkDigest()
    digest.update(source_org, target_org, b"1" if dry_run else b"0", str(len(outcomes)))
    for o in outcomes:
        digest.update(o.object_name.lower(), o.source_id, o.target_id, str(o.state))
    digest.update(str(len(resolved)), *resolved)
    return digest.digest()


@dataclass(frozen=True)
class RestoreIntentRow:
    batch_key: str
    object_name: str
    source_ids: tuple[str, ...]
    sent_at: dt.datetime


@dataclass(frozen=True)
class RecordSelection:
    """Which records of an object ReadRecordsAsOf reads (exactly one kind; Ids 18 characters)."""

    ids: tuple[str, ...] = ()
    deleted_since: dt.datetime | None = None
    changed_since: dt.datetime | None = None
    all: bool = False
    where_field: str = ""
    where_in: tuple[str, ...] = ()


MAX_SELECTED_IDS = 100_000


def select_records(asked: RecordSelection) -> RecordSelection:
    """The selection a ReadRecordsAsOf asked for, validated: exactly one of ids / deleted_since / changed_since /
    all / where_field (with where_in); Ids checked and widened to 18 characters, duplicates dropped."""
    ids, deleted_since, changed_since = asked.ids, asked.deleted_since, asked.changed_since
    all_, where_field, where_in = asked.all, asked.where_field, asked.where_in
    given = [
        name
        for name, present in (
            ("ids", bool(ids)),
            ("deleted_since", deleted_since is not None),
            ("changed_since", changed_since is not None),
            ("all", all_),
            ("where_field", bool(where_field)),
        )
        if present
    ]
    if len(given) != 1:
        raise InvalidArgument(
            "exactly one of ids, deleted_since, changed_since, all, where_field selects the records; "
            + (f"got {', '.join(given)}" if given else "got none")
        )
    if where_in and not where_field:
        raise InvalidArgument("where_in needs where_field (the reference field to match)")
    if where_field and not where_in:
        raise InvalidArgument(f"where_field {where_field!r} needs where_in (the Ids it may reference)")
    for name, values in (("ids", ids), ("where_in", where_in)):
        if len(values) > MAX_SELECTED_IDS:
            raise InvalidArgument(f"{name} holds {len(values)} Ids; at most {MAX_SELECTED_IDS} per call")
    if where_field:
        check_api_name(where_field, "where_field")
    return RecordSelection(
        tuple(dict.fromkeys(normalize_id(i, "ids entry") for i in ids)),
        deleted_since,
        changed_since,
        all_,
        where_field,
        tuple(dict.fromkeys(normalize_id(i, "where_in entry") for i in where_in)),
    )
