"""Field history: a change of a tracked field writes a row into the object's history object (AccountHistory,
ContactHistory, OpportunityFieldHistory, …: Field, DataType, OldValue, NewValue, CreatedById, CreatedDate), and a
created record a `created` row, as Salesforce does once history tracking is on for an object; a stage, amount,
close date or probability change of an opportunity also writes an OpportunityHistory row.

SQLite triggers write a change's rows, so every path that changes a record (REST, collections, composite, Bulk
ingest, admin changes, late commits) records its history; every insert (Store.insert_many, the one way a record
is written first) writes its records' `created` rows along, in one statement for all of them (Store.on_insert:
the same rows a trigger would write one by one, at a fraction of the cost). Both are installed when an org opens,
after a new org's generation: the generated records carry no history, as in an org whose tracking was switched
on after its data was loaded."""

from __future__ import annotations

from sforg.ids import BASE62
from sforg.related import DATA_TYPE, FIELD_HISTORY
from sforg.schema import ObjectDef
from sforg.store import Store, table

_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
# Each history object's Ids get a pod of their own: they share the key prefix 017 and must not collide.
PODS = {name: f"h{i}" for i, (name, _key, _tracked) in enumerate(FIELD_HISTORY.values())} | {"OpportunityHistory": "hs"}
STAGE_FIELDS = ["StageName", "Amount", "CloseDate", "Probability"]


def id_sql(prefix: str, pod: str, n: str) -> str:
    """SQL computing ids.make_id(prefix, n, pod) for an integer SQL expression n (the next _rowid)."""
    digits = [f"(({n}) / {62 ** (8 - k)}) % 62" for k in range(9)]
    chars = " || ".join(f"substr('{BASE62}', {d} + 1, 1)" for d in digits)
    first = sum(1 << i for i, ch in enumerate((prefix + pod)[:5]) if "A" <= ch <= "Z")
    # chunk two: the reserved '0' then digits 0-3; chunk three: digits 4-8 (upper case: base62 10..35)
    second = " + ".join(f"(({d}) BETWEEN 10 AND 35) * {1 << (k + 1)}" for k, d in enumerate(digits[:4]))
    third = " + ".join(f"(({d}) BETWEEN 10 AND 35) * {1 << k}" for k, d in enumerate(digits[4:]))
    suffix = f"'{_SUFFIX[first]}' || substr('{_SUFFIX}', {second} + 1, 1) || substr('{_SUFFIX}', {third} + 1, 1)"
    return f"'{prefix}{pod}0' || {chars} || {suffix}"


def next_row(name: str) -> str:
    """The FROM clause of a trigger's INSERT … SELECT: the next _rowid of `name` as `n`, looked up once a row (the
    Id's expression uses n eighteen times)."""
    return f"FROM (SELECT IFNULL(MAX(_rowid), 0) + 1 AS n FROM {table(name)})"


# The number of an inserted record's row in another table, in along()'s statement: the next _rowids after the
# table's largest, in the records' order (an insert's records have the consecutive _rowids after ?1).
ALONG_N = "(m.last + NEW._rowid - ?1)"


def along(source: str, target: str, cols: str, values: str) -> str:
    """The statement (Store.on_insert's) writing a `target` row for every `source` record one insert wrote: `values`
    over the record as NEW and its row's number as ALONG_N, the rows numbered on from target's largest _rowid as
    an AFTER INSERT trigger numbers them one at a time (the same Ids, the same rows)."""
    return (
        f"INSERT INTO {table(target)} (_rowid, {cols}) SELECT {ALONG_N}, {values} FROM {table(source)} NEW, "
        f"(SELECT IFNULL(MAX(_rowid), 0) AS last FROM {table(target)}) m WHERE NEW._rowid > ?1"
    )


HISTORY_COLUMNS = (
    '"Id", "IsDeleted", "{key}", "CreatedById", "CreatedDate", "Field", "DataType", "OldValue", "NewValue"'
)


def history_triggers(obj: ObjectDef, history: ObjectDef) -> list[str]:
    """The triggers writing a tracked field's change, and the history's index on its record."""
    name, key, tracked = FIELD_HISTORY[obj.name]
    new_id = id_sql(history.key_prefix, PODS[name], "n")
    cols = HISTORY_COLUMNS.format(key=key)
    out = []
    for field in tracked:
        f = obj.field(field)
        if f is None or not f.stored:
            continue
        out.append(
            f'CREATE TRIGGER IF NOT EXISTS "hist_{obj.name}_{field}" AFTER UPDATE OF "{field}" ON {table(obj.name)} '
            f'WHEN OLD."{field}" IS NOT NEW."{field}" BEGIN '
            f'INSERT INTO {table(name)} ({cols}) SELECT {new_id}, 0, NEW."Id", NEW."LastModifiedById", '
            f"NEW.\"SystemModstamp\", '{field}', '{DATA_TYPE.get(f.type, 'Text')}', OLD.\"{field}\", "
            f'NEW."{field}" {next_row(name)}; END'
        )
    out.append(f'CREATE INDEX IF NOT EXISTS "ix_{name}_{key}" ON {table(name)} ("{key}")')
    return out


def history_created(obj: ObjectDef, history: ObjectDef) -> str:
    """A created record's `created` row (Store.on_insert's statement)."""
    name, key, _tracked = FIELD_HISTORY[obj.name]
    new_id = id_sql(history.key_prefix, PODS[name], ALONG_N)
    values = f'{new_id}, 0, NEW."Id", NEW."CreatedById", NEW."CreatedDate", \'created\', NULL, NULL, NULL'
    return along(obj.name, name, HISTORY_COLUMNS.format(key=key), values)


STAGE_COLUMNS = (
    '"Id", "IsDeleted", "OpportunityId", "CreatedById", "CreatedDate", "StageName", "Amount", "ExpectedRevenue", '
    '"CloseDate", "Probability", "PrevAmount", "PrevCloseDate", "SystemModstamp"'
)


def _stage_values(history: ObjectDef, n: str, who: str, prev_amount: str, prev_close: str) -> str:
    new_id = id_sql(history.key_prefix, PODS["OpportunityHistory"], n)
    return (
        f'{new_id}, 0, NEW."Id", NEW."{who}", NEW."SystemModstamp", NEW."StageName", NEW."Amount", '
        f'NEW."ExpectedRevenue", NEW."CloseDate", NEW."Probability", {prev_amount}, {prev_close}, NEW."SystemModstamp"'
    )


def stage_triggers(opportunity: ObjectDef, history: ObjectDef) -> list[str]:
    """OpportunityHistory: a row on every change of the stage, amount, close date or probability (and one on
    create: stage_created)."""
    values = _stage_values(history, "n", "LastModifiedById", 'OLD."Amount"', 'OLD."CloseDate"')
    changed = " OR ".join(f'OLD."{c}" IS NOT NEW."{c}"' for c in STAGE_FIELDS if opportunity.field(c))
    return [
        f'CREATE TRIGGER IF NOT EXISTS "stage_changed" AFTER UPDATE ON {table("Opportunity")} WHEN {changed} BEGIN '
        f"INSERT INTO {table('OpportunityHistory')} ({STAGE_COLUMNS}) SELECT {values} "
        f"{next_row('OpportunityHistory')}; END",
        # named as validation's lookup index of the field: one index, whichever creates it first
        f'CREATE INDEX IF NOT EXISTS "ix_OpportunityHistory_OpportunityId" '
        f'ON {table("OpportunityHistory")} ("OpportunityId")',
    ]


def stage_created(history: ObjectDef) -> str:
    """A created opportunity's OpportunityHistory row (Store.on_insert's statement)."""
    values = _stage_values(history, ALONG_N, "CreatedById", "NULL", "NULL")
    return along("Opportunity", "OpportunityHistory", STAGE_COLUMNS, values)


# the AFTER INSERT triggers of earlier versions (an org built by one keeps them): on_insert statements now
OLD_TRIGGERS = ["stage_created", *(f"hist_{obj}_created" for obj in FIELD_HISTORY)]


def install(store: Store, catalogue: dict[str, ObjectDef]) -> None:
    """The history triggers of every tracked object present (idempotent: an org reopened keeps its own), and the
    `created` rows each insert writes along (Store.on_insert)."""
    statements: list[str] = [f'DROP TRIGGER IF EXISTS "{name}"' for name in OLD_TRIGGERS]
    along_: list[tuple[str, str]] = []
    for obj_name, (name, _key, _tracked) in FIELD_HISTORY.items():
        if obj_name in catalogue and name in catalogue:
            statements += history_triggers(catalogue[obj_name], catalogue[name])
            along_.append((obj_name, history_created(catalogue[obj_name], catalogue[name])))
    if "Opportunity" in catalogue and "OpportunityHistory" in catalogue:
        statements += stage_triggers(catalogue["Opportunity"], catalogue["OpportunityHistory"])
        along_.append(("Opportunity", stage_created(catalogue["OpportunityHistory"])))
    with store.write_lock:
        c = store.conn()
        for statement in statements:
            c.execute(statement)
    for obj_name, statement in along_:
        store.on_insert(obj_name, statement)
