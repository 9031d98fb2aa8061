"""CompareLive (issue 18): the backup at a point compared with the org now -- the records added, deleted and
changed in the org since, with the fields that changed (and their values when asked).

Per object: the backup's live records at `from` (storage's ReadRecordsAsOf `all`: Id and hash only are kept), then
the org's live records (a REST query of the fields the backup had at `from` that the org still has; counted
against the org's API budget like any read of it), each canonicalised by the one canonicaliser
(services/canonical.py, as the jobrunner does) and hashed: an Id not in the backup is added, a hash that differs is a
candidate, an Id of the backup the org no longer returns is deleted. Only the candidates' backed-up values are read
(ReadRecordsAsOf by `ids`) and compared field by field over the fields hashed at `from` that the org returned.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import grpc
from sfvault.storage.v1 import storage_pb2, storage_pb2_grpc

from services import sfclient as sfc
from services.canonical import (
    ComparePiece,
    FieldDef,
    FieldType,
    ObjectSchema,
    ObjectSummary,
    RecordCanonicalizer,
    RecordChange,
    changed_fields,
)
from services.discovery import domain as d
from services.discovery.ports import DescribeFailed
from services.platform import errors, timestamps

log = logging.getLogger("sfvault.discovery")

DEFAULT_BATCH, MAX_BATCH = 1_000, 10_000
PROBE_ID = "000000000000000"  # a well-formed Id no object's records have (key prefix 000)
IDS_PER_READ = 10_000  # candidates' backed-up values read by Ids, this many a call
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,254}$")


# ---- pure rules --------------------------------------------------------------------------------------------


def check_names(names: Iterable[str], what: str) -> list[str]:
    out: list[str] = []
    for name in names:
        if not _API_NAME.match(name):
            raise errors.InvalidArgument(f"{what} {name!r} is not a Salesforce API name")
        if name.lower() not in {n.lower() for n in out}:
            out.append(name)
    return out


def check_request(
    objects: Sequence[str], fields: Sequence[str], batch_size: int, limit: int
) -> tuple[list[str], list[str], int]:
    names = check_names(objects, "object")
    if not names:
        raise errors.InvalidArgument("objects: name at least one object (a live read costs API calls)")
    if batch_size < 0 or batch_size > MAX_BATCH:
        raise errors.InvalidArgument(f"batch_size must be between 0 and {MAX_BATCH} (0: {DEFAULT_BATCH})")
    if limit < 0:
        raise errors.InvalidArgument(f"limit must be 0 (no limit) or more, got {limit}")
    return names, check_names(fields, "field"), batch_size or DEFAULT_BATCH


def queried_fields(backup: Sequence[FieldDef], org_fields: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The fields to read from the org: those the backup had that the org still has (its spelling found
    case-insensitively in the backup's), never base64 bodies (SOQL reads them one record at a time); Id first."""
    in_org = {name.lower() for name in org_fields}
    names = [f.name for f in backup if f.name.lower() in in_org and f.type != FieldType.BASE64]
    names.sort(key=lambda n: (n.lower() != "id", n))
    return names


# ---- ports ------------------------------------------------------------------------------------------------


class LiveOrg(Protocol):
    """The org side: a logged-in org's current fields and live records (blocking: run in a worker thread)."""

    @property
    def salesforce_org_id(self) -> str: ...
    @property
    def api_calls(self) -> int: ...
    def fields(self, object_name: str) -> dict[str, dict[str, Any]]: ...
    def records(self, object_name: str, fields: Sequence[str]) -> Iterator[dict[str, Any]]: ...


@dataclasses.dataclass(frozen=True)
class BackupBatch:
    fields: tuple[FieldDef, ...]  # the first batch only
    records: list[tuple[str, bytes, str]]  # (Id, hash, values JSON)


class BackupRecords(Protocol):
    """The storage side: the backup's live records at a point, in batches (the first carries the fields)."""

    def read(
        self, salesforce_org_id: str, object_name: str, as_of: dt.datetime | None, ids: Sequence[str] = ()
    ) -> AsyncIterator[BackupBatch]: ...


# ---- adapters ---------------------------------------------------------------------------------------------


class SalesforceLive:
    """LiveOrg over discovery's Salesforce adapter (salesforce.SalesforceOrg): describe and REST query."""

    def __init__(self, org: Any, page_size: int = 2000, reserve_percent: int = 0) -> None:
        self.org = org
        self.page_size = page_size  # records per query page (Salesforce: 200 to 2,000)
        # the share of the org's daily API requests sfvault leaves alone: checked before every call (on the usage
        # the org's last answer reported)
        self.reserve_percent = reserve_percent

    def _check_budget(self) -> None:
        try:
            self.org.client.check_budget(self.reserve_percent)
        except sfc.ApiLimitExceeded as exc:
            raise errors.FailedPrecondition(f"the org's API budget for sfvault is spent: {exc}") from None

    @property
    def salesforce_org_id(self) -> str:
        return str(self.org.salesforce_org_id)

    @property
    def api_calls(self) -> int:
        return int(self.org.api_calls)

    def fields(self, object_name: str) -> dict[str, dict[str, Any]]:
        self._check_budget()
        try:
            fetched = self.org.describe(object_name)
        except sfc.ApiLimitExceeded as exc:
            raise errors.FailedPrecondition(f"the org's API budget for sfvault is spent: {exc}") from None
        except DescribeFailed as exc:
            raise errors.FailedPrecondition(f"cannot describe {object_name} in the org: {exc}") from None
        body = fetched.body or {}
        return {f["name"]: f for f in body.get("fields", []) if isinstance(f, dict) and f.get("name")}

    def records(self, object_name: str, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        """The live records, page by page (REST query, `page_size` a page: one API call each; memory stays a page)."""
        soql = f"SELECT {', '.join(fields)} FROM {object_name}"
        path = f"/services/data/v{self.org.version}/query?q={urllib.parse.quote(soql)}"
        while path:
            self._check_budget()
            try:
                response = self.org.client.request(
                    "GET", path, headers={"Sforce-Query-Options": f"batchSize={self.page_size}"}
                )
            except sfc.ApiLimitExceeded as exc:
                raise errors.FailedPrecondition(f"the org's API budget for sfvault is spent: {exc}") from None
            if response.status_code != 200:
                raise errors.FailedPrecondition(
                    f"the org refused the query of {object_name}: HTTP {response.status_code} {_error_code(response)}"
                )
            body = response.json()
            yield from body.get("records", [])
            path = "" if body.get("done", True) else str(body.get("nextRecordsUrl", ""))


def _error_code(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    first = body[0] if isinstance(body, list) and body else body
    return str(first.get("errorCode", "")) if isinstance(first, dict) else ""


def _field(f: storage_pb2.FieldSchema) -> FieldDef:
    try:
        kind = FieldType(int(f.type))
    except ValueError:
        kind = FieldType.STRING
    return FieldDef(f.name, kind, f.calculated, f.sf_type, f.label)


class StorageBackup:
    """BackupRecords over storage's ReadRecordsAsOf (discovery's own token: the service role)."""

    def __init__(self, stub: storage_pb2_grpc.StorageServiceStub) -> None:
        self.stub = stub

    async def read(
        self, salesforce_org_id: str, object_name: str, as_of: dt.datetime | None, ids: Sequence[str] = ()
    ) -> AsyncIterator[BackupBatch]:
        request = storage_pb2.ReadRecordsAsOfRequest(org_id=salesforce_org_id, object_name=object_name, batch_size=5000)
        if ids:
            request.ids.extend(ids)
        else:
            request.all = True
        if as_of is not None:
            request.as_of.CopyFrom(timestamps.to_pb(as_of))
        try:
            async for batch in self.stub.ReadRecordsAsOf(request):
                yield BackupBatch(
                    tuple(_field(f) for f in batch.fields),
                    [(r.record_id, bytes.fromhex(r.hash), r.values_json.decode()) for r in batch.records],
                )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise errors.NotFound(f"{object_name} has no backup in org {salesforce_org_id}") from None
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise errors.InvalidArgument(exc.details() or "storage refused the read") from None
            raise errors.Unavailable(f"storage could not read {object_name}: {exc.code().name}") from None


# ---- the use case -----------------------------------------------------------------------------------------


async def org_reserve(list_policies: Callable[[str], Awaitable[Sequence[d.Policy]]], org_id: str) -> int:
    """The share of the org's daily API requests a compare leaves alone: 100 less the largest daily share its
    policies give sfvault (none: the default share)."""
    shares = [p.daily_share_percent or d.DEFAULT_DAILY_SHARE for p in await list_policies(org_id)]
    return 100 - max(shares, default=d.DEFAULT_DAILY_SHARE)


@dataclasses.dataclass
class LiveCompare:
    get_org: Callable[[str], Awaitable[d.Org]]
    connect: Callable[[d.Connection, int], LiveOrg]  # (connection, reserve percent) -> a logged-in org
    backup: BackupRecords
    reserve: Callable[[str], Awaitable[int]] | None = None  # org id -> the API reserve (org_reserve)

    async def compare(
        self,
        org_id: str,
        since: dt.datetime | None,
        objects: Sequence[str],
        *,
        fields: Sequence[str] = (),
        values: bool = False,
        batch_size: int = 0,
        limit: int = 0,
    ) -> AsyncIterator[ComparePiece]:
        names, wanted, size = check_request(objects, fields, batch_size, limit)
        org = await self.get_org(org_id)
        reserve = await self.reserve(org_id) if self.reserve is not None else 0
        try:
            live = await asyncio.to_thread(self.connect, org.connection, reserve)
        except (sfc.SecretError, sfc.AuthenticationRefused, sfc.OrgUnreachable, sfc.ApiLimitExceeded) as exc:
            raise errors.FailedPrecondition(f"cannot log in to org {org_id!r}: {exc}") from None
        sf_org = live.salesforce_org_id
        # every object's fields at `from` first (a read of one Id that is never stored: the first batch carries
        # them), so an unknown object or field is refused before the org is read
        schemas: dict[str, tuple[FieldDef, ...]] = {}
        for name in sorted(names, key=str.lower):
            async for batch in self.backup.read(sf_org, name, since, [PROBE_ID]):
                schemas.setdefault(name, batch.fields)
        only: list[str] | None = None
        if wanted:
            known = {f.name.lower(): f.name for schema in schemas.values() for f in schema}
            missing = [f for f in wanted if f.lower() not in known]
            if missing:
                raise errors.InvalidArgument(f"field {missing[0]} is not a field of any compared object at from")
            only = [known[f.lower()] for f in wanted]

        piece = ComparePiece()
        summaries: list[ObjectSummary] = []
        sent = 0
        truncated = False
        for name, schema in schemas.items():
            summary = ObjectSummary(name)
            summaries.append(summary)
            # one object's Ids and hashes at a time in memory (about 100 bytes a record)
            hashes: dict[str, bytes] = {}
            async for batch in self.backup.read(sf_org, name, since):
                hashes.update((rid, h) for rid, h, _values in batch.records)
            changes = await self._object(live, sf_org, name, since, schema, hashes, only, values)
            for change in changes:
                summary.count(change.change)
                if limit and sent >= limit:
                    truncated = True
                    continue
                piece.changes.append(change)
                sent += 1
                if len(piece.changes) >= size:
                    yield piece
                    piece = ComparePiece()
        log.info("compare with org %s read it in %d API calls", org_id, live.api_calls)
        piece.summaries, piece.truncated = summaries, truncated
        yield piece

    async def _object(
        self,
        live: LiveOrg,
        sf_org: str,
        name: str,
        since: dt.datetime | None,
        schema: tuple[FieldDef, ...],
        hashes: dict[str, bytes],
        only: list[str] | None,
        values: bool,
    ) -> list[RecordChange]:
        """The changes of one object, in Id order."""
        org_fields = await asyncio.to_thread(live.fields, name)
        selected = queried_fields(schema, org_fields)
        if not selected:
            raise errors.FailedPrecondition(f"{name} has none of the backup's fields in the org now")
        canonicalizer = RecordCanonicalizer(ObjectSchema(name, schema))
        comparable = canonicalizer.hashed_fields & set(selected)
        remaining = set(hashes)

        def scan() -> tuple[list[str], dict[str, dict[str, Any]]]:
            added: list[str] = []
            differing: dict[str, dict[str, Any]] = {}
            for i, raw in enumerate(live.records(name, selected)):
                record = canonicalizer.canonicalize(raw, i)
                rid = record.record_id
                stored = hashes.get(rid)
                if stored is None:
                    added.append(rid)
                    continue
                remaining.discard(rid)
                if stored != record.hash:
                    differing[rid] = json.loads(record.data)
            return added, differing

        added, differing = await asyncio.to_thread(scan)
        out = [RecordChange(name, rid, "added") for rid in added]
        out += [RecordChange(name, rid, "deleted") for rid in remaining]
        candidates = sorted(differing)
        for i in range(0, len(candidates), IDS_PER_READ):
            async for batch in self.backup.read(sf_org, name, since, candidates[i : i + IDS_PER_READ]):
                for rid, _hash, text in batch.records:
                    found = changed_fields(json.loads(text), differing[rid], comparable, only=only, values=values)
                    if found:
                        out.append(RecordChange(name, rid, "changed", found))
        out.sort(key=lambda c: c.record_id)
        return out
