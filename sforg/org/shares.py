"""Owner sharing rows: a real org holds, for every Account, Opportunity, Case and Lead, one row of its Share object
for the record's owner (RowCause `Owner`, the object's access level `All`: Object Reference, AccountShare,
OpportunityShare, CaseShare, LeadShare). They come with the record and follow its owner.

Every insert writes its records' rows along (Store.on_insert: one statement for all of them), and a SQLite
trigger moves a row with its record's owner, so every path that creates a record or changes its owner (REST,
collections, composite, Bulk ingest, admin changes, late commits) keeps them; a new org's generated records get
theirs when the org first opens. Deletes take them along as any cascade child (the share's lookup cascades), into the
recycle bin and back on undelete; a hard delete or a purge removes them for good."""

from __future__ import annotations

from sforg.org.history import ALONG_N, along, id_sql
from sforg.related import OWNER_SHARES
from sforg.schema import ObjectDef
from sforg.store import Store, table

POD = "sh"


def _values(obj: ObjectDef, share: ObjectDef, n: str, row: str) -> tuple[str, str]:
    """The share row's columns and the SQL values of each, for a record read as `row` (NEW, or a table alias)."""
    key, levels = OWNER_SHARES[obj.name]
    cols = ["Id", key, "UserOrGroupId", *levels, "RowCause", "LastModifiedDate", "LastModifiedById", "IsDeleted"]
    access = [f"'{level}'" for level in levels.values()]
    values = [
        id_sql(share.key_prefix, POD, n),
        f'{row}."Id"',
        f'{row}."OwnerId"',
        *access,
        "'Owner'",
        f'{row}."SystemModstamp"',
        f'{row}."LastModifiedById"',
        f'{row}."IsDeleted"',
    ]
    return ", ".join(f'"{c}"' for c in cols), ", ".join(values)


def share_created(obj: ObjectDef, share: ObjectDef) -> str:
    """A created record's owner row (Store.on_insert's statement)."""
    cols, values = _values(obj, share, ALONG_N, "NEW")
    return along(obj.name, share.name, cols, values)


def share_triggers(obj: ObjectDef, share: ObjectDef) -> list[str]:
    """The trigger moving the owner row with the record's owner, and the share's index on its record (its row on
    create: share_created)."""
    key, _levels = OWNER_SHARES[obj.name]
    return [
        f'DROP TRIGGER IF EXISTS "share_{obj.name}_created"',  # an earlier version's: share_created now
        f'CREATE TRIGGER IF NOT EXISTS "share_{obj.name}_owner" AFTER UPDATE OF "OwnerId" ON {table(obj.name)} '
        f'WHEN OLD."OwnerId" IS NOT NEW."OwnerId" BEGIN '
        f'UPDATE {table(share.name)} SET "UserOrGroupId" = NEW."OwnerId", "LastModifiedDate" = NEW."SystemModstamp", '
        f'"LastModifiedById" = NEW."LastModifiedById" WHERE "{key}" = NEW."Id" AND "RowCause" = \'Owner\'; END',
        f'CREATE INDEX IF NOT EXISTS "ix_{share.name}_{key}" ON {table(share.name)} ("{key}")',
    ]


def backfill(obj: ObjectDef, share: ObjectDef) -> str:
    """The owner rows of a new org's generated records (run once, on an empty share table): each numbered as its
    record's row, so that later rows (MAX + 1) never collide."""
    key, _levels = OWNER_SHARES[obj.name]
    cols, values = _values(obj, share, "r._rowid", "r")
    return (
        f"INSERT INTO {table(share.name)} (_rowid, {cols}) SELECT r._rowid, {values} FROM {table(obj.name)} r "
        f'WHERE NOT EXISTS (SELECT 1 FROM {table(share.name)} s WHERE s."{key}" = r."Id")'
    )


def install(store: Store, catalogue: dict[str, ObjectDef]) -> None:
    """The owner share triggers (idempotent), and the generated records' rows the first time the org opens."""
    statements: list[str] = []
    fills: list[str] = []
    for name in OWNER_SHARES:
        share = catalogue.get(f"{name}Share")
        if name in catalogue and share is not None and share.key_prefix:
            statements += share_triggers(catalogue[name], share)
            fills.append(backfill(catalogue[name], share))
            store.on_insert(name, share_created(catalogue[name], share))
    with store.write_lock:
        c = store.conn()
        for statement in statements:
            c.execute(statement)
        if store.get_meta("owner_shares") is None:
            for fill in fills:
                c.execute(fill)
            store.set_meta("owner_shares", True)
