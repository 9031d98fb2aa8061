"""`python -m services.storage rewrap`: after a key rotation, re-wraps the data key of every encrypted body
(and every org's value key of its sensitive fields, sensitive.py) still under a former KEK with the current one
(SFVAULT_STORAGE_ENCRYPTION_KEY_REF), in the rows only: no body or value is read or rewritten. The former KEKs must
still be listed in SFVAULT_STORAGE_ENCRYPTION_OLD_KEY_REFS while it runs; once it reports none left, they can be
retired. Safe to run again, or beside a running storage (a row re-wrapped meanwhile by another run is left as it
is)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from services.platform.encryption import Keyring
from services.storage.ports import FileStore, ValueKeyStore

if TYPE_CHECKING:
    from services.storage.store import PostgresStore


class RewrapStore(FileStore, ValueKeyStore, Protocol):
    pass


async def rewrap(store: RewrapStore, keyring: Keyring, *, batch: int = 500) -> int:
    """How many data keys were re-wrapped (of bodies, and the orgs' value keys of sensitive fields); raises
    KeyUnavailable (naming the key) for one whose KEK is not configured."""
    done = 0
    for org_key, envelope in await store.value_keys_not_under(keyring.current_id):
        if await store.replace_value_key(org_key, envelope, keyring.rewrap(envelope)):
            done += 1
    after = ""
    while rows := await store.envelopes_not_under(keyring.current_id, after, batch):
        for location, envelope in rows:
            if await store.replace_envelope(location, envelope, keyring.rewrap(envelope)):
                done += 1
        after = rows[-1][0]
    return done


async def _command(name: str, work: Callable[[PostgresStore, Keyring], Awaitable[dict[str, Any]]]) -> int:
    """A maintenance command over storage's database with its configured keys: prints what `work` did as JSON;
    exit status 2 without a usable current key, 1 with a message naming a key that is missing."""
    import json
    import sys

    from services.platform.errors import FailedPrecondition
    from services.platform.secrets import SecretError
    from services.storage import config
    from services.storage.store import PostgresStore, open_store_pool

    settings = config.load()
    try:
        keyring = settings.keyring()
    except SecretError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    if keyring is None:
        print(f"{name}: SFVAULT_STORAGE_ENCRYPTION_KEY_REF is not set: no current key", file=sys.stderr)
        return 2
    pool = await open_store_pool(settings.database_url, max_size=2)
    try:
        store = PostgresStore(pool)
        await store.migrate(count_formula_changes=settings.storage_count_formula_changes)
        try:
            done = await work(store, keyring)
        except FailedPrecondition as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(done))
        return 0
    finally:
        await pool.close()


async def main() -> int:
    """`python -m services.storage rewrap`: prints `{"rewrapped": N, "current_key": ID}`."""

    async def work(store: PostgresStore, keyring: Keyring) -> dict[str, Any]:
        return {"rewrapped": await rewrap(store, keyring), "current_key": keyring.current_id}

    return await _command("rewrap", work)


async def reseal_main() -> int:
    """`python -m services.storage reseal`: the values stored in clear before their field was marked sensitive,
    sealed (storage does it in the background when a schema marks a field; this finishes what was cut short).
    Prints `{"resealed": N}`."""
    from services.storage.application_sensitive import SensitiveValues

    async def work(store: PostgresStore, keyring: Keyring) -> dict[str, Any]:
        return {"resealed": await SensitiveValues(store, keyring).reseal_all()}

    return await _command("reseal", work)
