"""Erasure's use cases (Erase, VerifyErasure) and the tombstone cache the backup's hot path consults.

The cache: every org's erased Ids by (org_key, object_key), loaded once and reloaded when the erasures table's
last sequence number moves -- looked at most every `refresh_s` (a replica that did not erase learns of another's
erasure within that time) and at once after an erasure made here. With no erasure stored it is empty and a chunk
pays nothing but a dictionary lookup.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from services.platform.auth import Principal
from services.storage.application_sensitive import SensitiveValues
from services.storage.domain import InvalidArgument, NotFound, normalize_org_id
from services.storage.erasure import (
    BodyScanner,
    Erasure,
    ErasureResult,
    ValueSought,
    VerificationResult,
    body_needles,
    check_value,
    erase_request,
    keyed_hash,
    parse_fields,
)
from services.storage.ports import FileRepository, Store

log = logging.getLogger(__name__)
EMPTY: frozenset[str] = frozenset()


class TombstoneCache:
    def __init__(self, store: Store, *, refresh_s: float = 2.0) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._generation = -1
        self._checked_at = float("-inf")
        self._erased: dict[tuple[int, int], frozenset[str]] = {}

    def invalidate(self) -> None:
        self._checked_at = float("-inf")

    async def of(self, org_key: int, object_key: int) -> frozenset[str]:
        """The object's erased Ids (usually none)."""
        now = time.monotonic()
        if now - self._checked_at >= self.refresh_s:
            generation = await self.store.erasure_generation()
            if generation != self._generation:
                self._erased = await self.store.tombstones() if generation else {}
                self._generation = generation
            self._checked_at = now
        return self._erased.get((org_key, object_key), EMPTY)


class Erasures:
    def __init__(
        self,
        store: Store,
        files: FileRepository,
        tombstones: TombstoneCache,
        org_key: Callable[[str], Awaitable[int]],
        sensitive: SensitiveValues | None = None,
    ) -> None:
        self.store = store
        self.sensitive = sensitive or SensitiveValues(store, None)  # finds values sealed in sensitive fields
        self.files = files
        self.tombstones = tombstones
        self._org_key = org_key  # Storage's: the org's key, NOT_FOUND for an org storage never saw

    async def erase(
        self,
        org_id: str,
        object_name: str,
        ids: Sequence[str],
        value: str,
        fields: Sequence[str],
        reason: str,
        *,
        dry_run: bool,
        eraser: Principal,
    ) -> ErasureResult:
        request = erase_request(object_name, ids, value, fields, reason, dry_run=dry_run)
        org_key = await self._org_key(org_id)
        value_hash = keyed_hash(await self.store.erasure_key(), request.value) if request.by_value else None
        erasure_id = f"er-{uuid.uuid4().hex}"
        sealed = {}
        if request.by_value:
            pairs = [(f.object_name, f.field) for f in request.fields]
            sealed = await self.sensitive.search_hashes(org_key, request.value, pairs)
        erasure = Erasure(request, erasure_id, eraser, value_hash, sealed)
        result = await self.store.erase(org_key, erasure, self._delete_bodies)
        if not dry_run:
            self.tombstones.invalidate()
            # names and counts only: never the value
            log.info(
                "erasure %s by %s: %d records, %d versions, %d file bodies",
                erasure_id,
                eraser.name,
                len(result.records),
                result.versions,
                result.file_bodies,
            )
        return result

    async def _delete_bodies(self, locations: Sequence[str]) -> None:
        for location in locations:
            await self.files.delete(location)

    async def verify(self, org_id: str, value: str, fields: Sequence[str], erasure_id: str) -> VerificationResult:
        """Whether any stored version (any field, or the given ones) or file body of the org still holds the
        value; and/or whether anything of an erasure's records is still stored."""
        if not value and not erasure_id:
            raise InvalidArgument("give the value to look for, or an erasure_id")
        if fields and not value:
            raise InvalidArgument("fields need the value to look for")
        checked_fields = parse_fields(fields) if fields else ()
        checked_value = check_value(value) if value else ""
        org_key = await self._org_key(org_id)
        result = VerificationResult()
        if erasure_id and not await self.store.erasure_leftovers(org_key, erasure_id, result):
            raise NotFound(f"erasure {erasure_id[:100]!r} is not known for org {normalize_org_id(org_id)}")
        if checked_value:
            pairs = [(f.object_name, f.field) for f in checked_fields]
            sealed = await self.sensitive.search_hashes(org_key, checked_value, pairs)
            await self.store.versions_holding(org_key, ValueSought(checked_value, pairs, sealed), result)
            await self._scan_bodies(org_key, checked_value, result)
        return result

    async def _scan_bodies(self, org_key: int, value: str, result: VerificationResult) -> None:
        """Every body the org's file and metadata versions reference, searched as bytes."""
        needles = body_needles(value)
        for location, owners in (await self.store.org_bodies(org_key)).items():
            scanner = BodyScanner(needles)
            try:
                async for piece in self.files.read(location):
                    if scanner.feed(piece):
                        break
            except FileNotFoundError:
                continue  # a body already gone holds nothing
            if scanner.found:
                result.file_bodies_holding += 1
                for owner in owners:
                    result.add_sample(owner)
