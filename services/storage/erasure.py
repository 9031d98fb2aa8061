"""Erasure (GDPR Article 17), the rules: what an Erase request may ask, the keyed hash the audit keeps instead of the
value, the bytes a value is looked for with, and the tombstones that keep an erased record from coming back.

An erasure removes records -- by Id, or every record of given objects whose any version holds a value in given
fields -- from every version, head, file version and file body only they referenced. What is kept: who, when, why,
and what (object and Id, counts, a keyed hash of the value; never the value). A tombstone per erased record makes the
next backups skip it while the org has it deleted (or no longer has it); an org that holds it live again has it
stored again (the org still holds the data: erase it there first).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.storage.domain import InvalidArgument, RecordsChunk, check_api_name, normalize_id

if TYPE_CHECKING:
    from services.platform.auth import Principal  # a type only: the rules import no gRPC

MAX_ERASE_IDS = 10_000  # Ids of one Erase request
MAX_VALUE = 1_000  # characters of a value looked for
MAX_SAMPLES = 20  # "Object:Id" samples of a VerifyErasure
MAX_REASON = 2_000


DeleteBodies = Callable[[Sequence[str]], Awaitable[None]]


@dataclass
class ErasedRecordRow:
    object_name: str
    record_id: str
    versions: int = 0
    file_bodies: int = 0


@dataclass
class ErasureResult:
    erasure_id: str
    records: list[ErasedRecordRow] = field(default_factory=list)
    versions: int = 0
    file_bodies: int = 0


@dataclass
class VerificationResult:
    versions_holding: int = 0
    file_bodies_holding: int = 0
    samples: list[str] = field(default_factory=list)

    def add_sample(self, text: str) -> None:
        if len(self.samples) < MAX_SAMPLES and text not in self.samples:
            self.samples.append(text)


@dataclass(frozen=True)
class FieldRef:
    object_name: str
    field: str


@dataclass(frozen=True)
class EraseRequest:
    """A checked Erase: by Ids of one object, or by a value in fields (never both)."""

    object_name: str
    ids: tuple[str, ...]
    value: str
    fields: tuple[FieldRef, ...]
    reason: str
    dry_run: bool = False

    @property
    def by_value(self) -> bool:
        return bool(self.value)

    def objects(self) -> list[str]:
        """The objects the request is about, each once (case-insensitively), in request order."""
        names = [self.object_name] if not self.by_value else [f.object_name for f in self.fields]
        seen: dict[str, str] = {}
        for n in names:
            seen.setdefault(n.lower(), n)
        return list(seen.values())

    def fields_of(self, object_name: str) -> list[str]:
        return [f.field for f in self.fields if f.object_name.lower() == object_name.lower()]


@dataclass(frozen=True)
class Erasure:
    """An erasure as ErasureStore.erase runs it: the checked request, its id, who erases, the keyed hash of the
    value (the audit keeps it, never the value) and the value's keyed search hashes in sensitive fields
    ({object, lower case: hashes}: sealed values are found by them)."""

    request: EraseRequest
    erasure_id: str
    eraser: Principal  # who erases (the caller's token), for the audit
    value_hash: bytes | None = None
    sealed: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ValueSought:
    """What a VerifyErasure looks for in the versions: the value, the (object, field)s it is looked in (none: any
    field), and its keyed search hashes in sensitive fields ({object, lower case: hashes})."""

    value: str
    fields: Sequence[tuple[str, str]] = ()
    sealed: Mapping[str, Sequence[str]] = field(default_factory=dict)


def parse_fields(fields: Sequence[str]) -> tuple[FieldRef, ...]:
    """ "Object.Field" names, checked; each once."""
    out: dict[tuple[str, str], FieldRef] = {}
    for i, text in enumerate(fields):
        obj, dot, field = text.strip().partition(".")
        if not dot or not obj or not field:
            raise InvalidArgument(f"fields[{i}] {text[:100]!r} is not Object.Field (e.g. Contact.Email)")
        check_api_name(obj, f"fields[{i}] object")
        check_api_name(field, f"fields[{i}] field")
        out.setdefault((obj.lower(), field.lower()), FieldRef(obj, field))
    return tuple(out.values())


def check_value(value: str) -> str:
    """The value looked for: not blank, bounded. Its text is never quoted back (it is personal data)."""
    v = value.strip()
    if not v:
        raise InvalidArgument("value is blank: give the personal data to look for (e.g. an e-mail address)")
    if len(v) > MAX_VALUE:
        raise InvalidArgument(f"value is longer than {MAX_VALUE} characters")
    if "\x00" in v:
        raise InvalidArgument("value holds a NUL character")
    return v


def erase_request(
    object_name: str, ids: Sequence[str], value: str, fields: Sequence[str], reason: str, *, dry_run: bool = False
) -> EraseRequest:
    """Checks an Erase: a reason, and either an object with Ids or a value with fields (INVALID_ARGUMENT)."""
    why = reason.strip()
    if not why:
        raise InvalidArgument("reason is required: say why these records are erased (it is kept in the audit)")
    if len(why) > MAX_REASON:
        raise InvalidArgument(f"reason is longer than {MAX_REASON} characters")
    by_ids = bool(ids) or bool(object_name)
    by_value = bool(value) or bool(fields)
    if by_ids and by_value:
        raise InvalidArgument("give either object_name with ids, or value with fields; not both")
    if by_ids:
        if not object_name:
            raise InvalidArgument("ids need their object_name")
        check_api_name(object_name)
        if not ids:
            raise InvalidArgument(f"object_name {object_name} needs the ids to erase")
        if len(ids) > MAX_ERASE_IDS:
            raise InvalidArgument(f"{len(ids)} ids; at most {MAX_ERASE_IDS} per Erase")
        checked = tuple(dict.fromkeys(normalize_id(i, f"ids[{n}]") for n, i in enumerate(ids)))
        return EraseRequest(object_name, checked, "", (), why, dry_run)
    if not by_value:
        raise InvalidArgument("nothing to erase: give object_name with ids, or value with fields")
    if not fields:
        raise InvalidArgument("value needs the fields to look in (Object.Field, e.g. Contact.Email)")
    return EraseRequest("", (), check_value(value), parse_fields(fields), why, dry_run)


def value_key(value: str) -> str:
    """How a value is compared: trimmed, case-insensitive (an e-mail address in any case is the same person's)."""
    return value.strip().lower()


def keyed_hash(key: bytes, value: str) -> bytes:
    """What the audit keeps of a value: HMAC-SHA256 under the installation's erasure key, so the same value erased
    twice is recognisable while the value itself cannot be read back from it (nor guessed without the key)."""
    return hmac.new(key, value_key(value).encode(), hashlib.sha256).digest()


def json_needle(value: str) -> str:
    """The value as it appears inside a stored version's JSON text (escaped as JSON escapes it), lower-cased."""
    return json.dumps(value_key(value), ensure_ascii=False)[1:-1]


def body_needles(value: str) -> list[bytes]:
    """The byte forms looked for in file bodies (lower-cased bodies are searched): UTF-8, and UTF-16 (LE)."""
    v = value_key(value)
    return list(dict.fromkeys([v.encode(), v.encode("utf-16-le")]))


class BodyScanner:
    """Looks for needles in a body streamed in pieces (ASCII case-insensitively), across piece boundaries."""

    def __init__(self, needles: Sequence[bytes]) -> None:
        self.needles = [n for n in needles if n]
        self._keep = max((len(n) for n in self.needles), default=1) - 1
        self._tail = b""
        self.found = False

    def feed(self, piece: bytes) -> bool:
        if self.found:
            return True
        window = self._tail + piece.lower()
        if any(n in window for n in self.needles):
            self.found = True
        self._tail = window[-self._keep :] if self._keep else b""
        return self.found


def sample(object_name: str, record_id: str) -> str:
    return f"{object_name}:{record_id}"


# --- tombstones: the hot path's check --------------------------------------------------------------------------


def tombstoned_positions(chunk: RecordsChunk, erased: Collection[str], heads: Mapping[str, object]) -> list[int]:
    """Positions of the chunk's records to leave out: an erased Id read deleted (IsDeleted) from the org, with no
    head (it was erased; a record stored again since -- live in the org -- has one and is compared as usual)."""
    ids, flags = chunk.columns[0], chunk.columns[4]
    return [i for i, rid in enumerate(ids) if flags[i] and rid in erased and rid not in heads]


def without_positions(chunk: RecordsChunk, drop: Collection[int]) -> RecordsChunk:
    """The chunk without the records at these positions (its digest unchanged: a redelivery is recognised)."""
    gone = set(drop)
    keep = [i for i in range(len(chunk)) if i not in gone]
    columns = tuple([column[i] for i in keep] for column in chunk.columns)
    return dataclasses.replace(chunk, columns=columns)  # type: ignore[arg-type]
