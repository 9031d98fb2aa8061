"""Sensitive field values (issue 18): the use-case side of sensitive.py -- each org's value key (made on first
need, wrapped by the KEK, cached opened), the sealing of a chunk's values and the opening of what reads return.
Written against ports.py only."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from services.canonical import ObjectSchema
from services.platform.encryption import KEY_SETTING, Keyring
from services.platform.errors import FailedPrecondition
from services.storage.domain import RecordVersionRow
from services.storage.ports import Store
from services.storage.sensitive import (
    FieldSealer,
    ValueKey,
    compared_values,
    has_sealed,
    no_key_message,
    open_json,
    open_values,
)

Opener = Callable[[str], str]
log = logging.getLogger(__name__)


def _unchanged(text: str) -> str:
    return text


def _opened_versions(rows: list[RecordVersionRow], opened: Opener) -> list[RecordVersionRow]:
    return [dataclasses.replace(r, values_json=opened(r.values_json)) for r in rows]


def _sealed_rows(sealer: FieldSealer, rows: Sequence[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    return [(rid, version, sealer.seal_json(text.encode()).decode()) for rid, version, text in rows]


class SensitiveValues:
    def __init__(self, store: Store, keyring: Keyring | None) -> None:
        self.store = store
        self.keyring = keyring
        self._keys: dict[int, ValueKey] = {}
        self._ever: dict[tuple[int, int], tuple[str, ...]] = {}
        self._resealing: set[asyncio.Task[int]] = set()

    def check_schema(self, schema: ObjectSchema) -> None:
        """A schema with sensitive fields needs a key: refused (FAILED_PRECONDITION naming the setting) without."""
        if schema.sensitive_fields and self.keyring is None:
            raise FailedPrecondition(no_key_message(schema.object_name, schema.sensitive_fields))

    async def key(self, org_key: int, *, create: bool) -> ValueKey | None:
        """The org's value key, opened (None: it has none and `create` is false)."""
        key = self._keys.get(org_key)
        if key is not None:
            return key
        keyring = self.keyring
        if keyring is None:
            if not create and await self.store.value_key(org_key, None) is None:
                return None
            raise FailedPrecondition(
                f"values of sensitive fields of this org are stored encrypted: set {KEY_SETTING} (and the former"
                " keys' references) to read or write them"
            )
        envelope = await self.store.value_key(org_key, (lambda: keyring.new_data_key()[1]) if create else None)
        if envelope is None:
            return None
        key = self._keys[org_key] = ValueKey(keyring.unwrap(envelope))
        return key

    async def fields_ever(self, object_key: int, object_name: str, schema_version: int) -> tuple[str, ...]:
        """The object's fields sensitive in any of its schema versions up to this one: across a change of scope a
        field's value may be carried from the head into a version whose schema no longer has the field."""
        cache = (object_key, schema_version)
        found = self._ever.get(cache)
        if found is None:
            history = await self.store.schema_history(object_key, object_name)
            names = {f.name: None for v in sorted(history) for f in history[v].fields if f.sensitive}
            found = self._ever[cache] = tuple(names)
        return found

    async def sealing(
        self, org_key: int, object_name: str, sensitive: Sequence[str], *, rescoped: bool
    ) -> tuple[Callable[[bytes], bytes] | None, Opener | None]:
        """(seal, unseal) of a chunk of this object: seal the `sensitive` fields' values when there are any;
        unseal when its heads may be read back across a change of scope and the org has sealed values."""
        if not sensitive and not rescoped:
            return None, None
        key = await self.key(org_key, create=bool(sensitive))
        if key is None:
            return None, None
        seal = FieldSealer(key, object_name, sensitive).seal_json if sensitive else None
        return seal, functools.partial(open_json, key, object_name) if rescoped else None

    async def opener(self, org_key: int, object_name: str, texts: Sequence[str]) -> Opener:
        """What opens these values' texts: nothing to do unless one of them holds a sealed value."""
        if not any(map(has_sealed, texts)):
            return _unchanged
        key = await self.key(org_key, create=False)
        if key is None:
            raise FailedPrecondition(f"sealed values of {object_name} without a value key for their org")
        return functools.partial(open_json, key, object_name)

    async def open_versions(
        self, org_key: int, object_name: str, rows: list[RecordVersionRow]
    ) -> list[RecordVersionRow]:
        opened = await self.opener(org_key, object_name, [r.values_json for r in rows])
        if opened is _unchanged:
            return rows
        return await asyncio.to_thread(_opened_versions, rows, opened)  # CPU-bound: off the event loop

    async def open_values(self, org_key: int, object_name: str, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """(Id, values text) pairs with their sealed values opened."""
        opened = await self.opener(org_key, object_name, [text for _rid, text in pairs])
        if opened is _unchanged:
            return pairs
        return await asyncio.to_thread(lambda: [(rid, opened(text)) for rid, text in pairs])

    async def open_batch(
        self, org_key: int, object_name: str, batch: list[tuple[str, int, str]]
    ) -> list[tuple[str, int, str]]:
        opened = await self.opener(org_key, object_name, [b[2] for b in batch])
        if opened is _unchanged:
            return batch
        return await asyncio.to_thread(lambda: [(rid, state, opened(text)) for rid, state, text in batch])

    async def compared(self, org_key: int, object_name: str, text: str, *, values: bool) -> dict[str, Any]:
        """A version's values as compare compares them: sealed ones by their keyed equality hash, or opened when
        the values are to be shown."""
        parsed = json.loads(text)
        if not has_sealed(text):
            return parsed  # type: ignore[no-any-return]
        if not values:
            return compared_values(parsed)
        key = await self.key(org_key, create=False)
        if key is None:
            raise FailedPrecondition(f"sealed values of {object_name} without a value key for their org")
        return open_values(key, object_name, parsed)

    async def search_hashes(self, org_key: int, value: str, pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
        """{object, lower case: the value's keyed search hashes} in these (object, field)s -- none given: in every
        field of the org ever marked sensitive -- for erasure to find the value where it is sealed."""
        key = await self.key(org_key, create=False)
        if key is None:
            return {}
        if not pairs:
            pairs = [
                (name, f.name)
                for object_key, name in await self.store.org_objects(org_key)
                for schema in (await self.store.schema_history(object_key, name)).values()
                for f in schema.fields
                if f.sensitive
            ]
        out: dict[str, list[str]] = {}
        for obj, field in dict.fromkeys((o.lower(), f.lower()) for o, f in pairs):
            out.setdefault(obj, []).append(key.search_hash(obj, field, value))
        return out

    async def reseal(self, org_key: int, object_key: int, object_name: str, *, batch: int = 1000) -> int:
        """Seals the values stored in clear before their field was marked sensitive (every version of the object,
        one pass, in batches; idempotent, safe beside writes and another replica doing the same). Returns the
        versions rewritten."""
        history = await self.store.schema_history(object_key, object_name)
        fields = tuple({f.name: None for v in sorted(history) for f in history[v].fields if f.sensitive})
        if not fields:
            return 0
        key = await self.key(org_key, create=True)
        assert key is not None
        sealer = FieldSealer(key, object_name, fields)
        after, done = ("", 0), 0
        while rows := await self.store.versions_in_clear(org_key, object_key, fields, after, batch):
            sealed = await asyncio.to_thread(
                lambda: [(r[0], r[1], sealer.seal_json(r[2].encode()).decode()) for r in rows]
            )
            done += await self.store.replace_values(org_key, object_key, sealed)
            after = (rows[-1][0], rows[-1][1])
        return done

    async def newly_marked(self, object_key: int, object_name: str, version: int) -> bool:
        """Whether this schema version marks sensitive a field the one before did not (values may be in clear)."""
        history = await self.store.schema_history(object_key, object_name)
        previous = history.get(version - 1)
        before = {f.name.lower() for f in previous.fields if f.sensitive} if previous else set()
        return any(f.name.lower() not in before for f in history[version].fields if f.sensitive)

    async def reseal_all(self) -> int:
        """reseal of every object (`python -m services.storage reseal`)."""
        done = 0
        for org_key, object_key, name in await self.store.every_object():
            done += await self.reseal(org_key, object_key, name)
        return done

    def reseal_soon(self, org_key: int, object_key: int, object_name: str) -> None:
        """reseal in the background (a field just marked sensitive: its past values); a failure is logged and
        `python -m services.storage reseal` finishes the work."""
        task = asyncio.create_task(self.reseal(org_key, object_key, object_name), name=f"reseal-{object_name}")
        self._resealing.add(task)
        task.add_done_callback(self._resealed)

    def _resealed(self, task: asyncio.Task[int]) -> None:
        self._resealing.discard(task)
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            log.warning(
                "sealing past values of %s failed (%s); `python -m services.storage reseal` retries",
                task.get_name(),
                type(exc).__name__,
            )
        elif task.result():
            log.info("%s: %d versions' values sealed", task.get_name(), task.result())

    async def idle(self) -> None:
        """Waits for the background reseals (tests; a draining service cancels them instead)."""
        while self._resealing:
            await asyncio.gather(*self._resealing, return_exceptions=True)

    def cancel(self) -> None:
        for task in self._resealing:
            task.cancel()
