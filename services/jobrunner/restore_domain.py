"""The restore's rules as pure functions (issue 17): what of an object can be written, in which order objects
are restored (parents first, cycles broken by a second pass), a backup's canonical values turned into what
Salesforce accepts, references mapped to the new Ids, masking for another org, the per-record decision
(skip, update, undelete, create), matching creates after a lost answer, and the read-back proof.
No I/O here: every rule is unit-testable in milliseconds."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class State(enum.Enum):
    """A record's outcome; .value is sfvault.restore.v1.RecordState's number."""

    SKIPPED = 1
    UPDATED = 2
    UNDELETED = 3
    CREATED = 4
    FAILED = 5


@dataclass(frozen=True)
class FieldInfo:
    name: str
    sf_type: str
    createable: bool
    updateable: bool
    nillable: bool
    calculated: bool
    reference_to: tuple[str, ...]
    relationship_name: str | None
    external_id: bool
    unique: bool
    defaulted_on_create: bool
    cascade_delete: bool = False  # master-detail (relationshipOrder / cascadeDelete)


@dataclass(frozen=True)
class ChildRelationship:
    child_object: str
    field: str
    cascade_delete: bool


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    key_prefix: str
    fields: Mapping[str, FieldInfo]
    children: tuple[ChildRelationship, ...]


def object_info(describe: Mapping[str, Any]) -> ObjectInfo:
    """An object's write-side facts from a REST sobjects/X/describe JSON."""
    raise NotImplementedError


def restorable_fields(info: ObjectInfo, selected: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(the fields written, the selected ones that cannot be written). Written: createable or updateable, not
    calculated/auto-number/system/audit/Id/compound parents (their components are written). selected None:
    every field of the object."""
    raise NotImplementedError


def restore_order(infos: Mapping[str, ObjectInfo]) -> tuple[list[str], dict[str, set[str]]]:
    """Objects parents-first by their reference fields among the given objects. Cycles and self-lookups are
    broken: the second value maps object -> reference fields written in a second pass (patch) after all
    creates."""
    raise NotImplementedError


def to_salesforce(values: Mapping[str, Any], info: ObjectInfo) -> dict[str, Any]:
    """A backup record's canonical values (values_json decoded) -> the JSON values Salesforce accepts on write
    (dates, datetimes, numbers, booleans, multipicklists, references as 18-char Ids; base64 left out)."""
    raise NotImplementedError


def rewrite_references(
    values: dict[str, Any], info: ObjectInfo, id_map: Mapping[str, str], present: Callable[[str], bool]
) -> tuple[dict[str, Any], list[str]]:
    """Every reference value mapped through id_map (old Id -> new Id). A reference to a record neither present
    in the target nor mapped is dropped from the write (lookup left empty) and named in the second value as
    a reason; for a master-detail field the reason reads "parent Account 001... not restored" and the record
    is to fail."""
    raise NotImplementedError


def mask_values(
    object_name: str, values: dict[str, Any], masks: Sequence[tuple[str, str, str]], *, secret: bytes
) -> dict[str, Any]:
    """masks: (object, field, rule). Rules: null, email (a deterministic fake address from HMAC(secret,
    value)), phone, pseudonym ("Name 1a2b3c"), fixed:VALUE. An unknown rule -> ValueError. Deterministic for
    one secret."""
    raise NotImplementedError


@dataclass(frozen=True)
class Decision:
    source_id: str
    target_id: str | None
    state: State
    write: dict[str, Any]  # values to send
    undelete: bool
    changed_fields: tuple[str, ...]
    note: str = ""


def decide(
    source_id: str,
    backup: Mapping[str, Any],
    target: Mapping[str, Any] | None,
    *,
    target_id: str | None,
    target_deleted: bool,
    fields: Sequence[str],
    info: ObjectInfo,
    restore_empty: bool,
) -> Decision:
    """backup and target are Salesforce-shaped values (to_salesforce output, after rewrite/mask). Compared on
    `fields` only with Salesforce's equality. Exists & equal -> SKIPPED (write {}); exists & differs ->
    UPDATED (write = the differing updateable fields); deleted -> UNDELETED (+ the differing fields);
    target None -> CREATED (write = createable fields with a value; nulls only when restore_empty)."""
    raise NotImplementedError


def match_created(
    expected: Mapping[str, Mapping[str, Any]], candidates: Sequence[Mapping[str, Any]], fields: Sequence[str]
) -> dict[str, str]:
    """Resume after a lost answer: expected = source_id -> values written; candidates = rows (with "Id") the
    restoring user created since the batch was sent. Matched by equality on `fields`, each candidate used
    once. Returns source_id -> new Id for the matched ones."""
    raise NotImplementedError


def differences(expected: Mapping[str, Any], actual: Mapping[str, Any], fields: Sequence[str]) -> list[str]:
    """The read-back proof: the fields whose values differ (decide's equality); names only."""
    raise NotImplementedError


def sample_line(object_name: str, source_id: str, fields: Sequence[str], reason: str) -> str:
    """One line for a sample of failures or differences; field names, never values."""
    raise NotImplementedError
