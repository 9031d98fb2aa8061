"""Field history: a change of a tracked field writes a row into the object's history object (AccountHistory,
ContactHistory, OpportunityFieldHistory, …: Field, DataType, OldValue, NewValue, CreatedById, CreatedDate), and a
created record a `created` row, as Salesforce does once history tracking is on for an object; a stage, amount,
close date or probability change of an opportunity also writes an OpportunityHistory row.

SQLite triggers write them, so every path that changes a record (REST, collections, composite, Bulk ingest,
admin changes, late commits) records its history. They are installed when an org opens, after a new org's
generation: the generated records carry no history, as in an org whose tracking was switched on after its data
was loaded."""

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


def history_triggers(obj: ObjectDef, history: ObjectDef) -> list[str]:
    name, key, tracked = FIELD_HISTORY[obj.name]
    new_id = id_sql(history.key_prefix, PODS[name], "n")
    cols = f'"Id", "IsDeleted", "{key}", "CreatedById", "CreatedDate", "Field", "DataType", "OldValue", "NewValue"'
    out = [
        f'CREATE TRIGGER IF NOT EXISTS "hist_{obj.name}_created" AFTER INSERT ON {table(obj.name)} BEGIN '
        f'INSERT INTO {table(name)} ({cols}) SELECT {new_id}, 0, NEW."Id", NEW."CreatedById", NEW."CreatedDate", '
        f"'created', NULL, NULL, NULL {next_row(name)}; END"
    ]
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


def stage_triggers(opportunity: ObjectDef, history: ObjectDef) -> list[str]:
    """OpportunityHistory: a row on create and on every change of the stage, amount, close date or probability."""
    new_id = id_sql(history.key_prefix, PODS["OpportunityHistory"], "n")
    cols = (
        '"Id", "IsDeleted", "OpportunityId", "CreatedById", "CreatedDate", "StageName", "Amount", "ExpectedRevenue", '
        '"CloseDate", "Probability", "PrevAmount", "PrevCloseDate", "SystemModstamp"'
    )

    def row(who: str, prev_amount: str, prev_close: str) -> str:
        return (
            f'INSERT INTO {table("OpportunityHistory")} ({cols}) SELECT {new_id}, 0, NEW."Id", NEW."{who}", '
            'NEW."SystemModstamp", NEW."StageName", NEW."Amount", NEW."ExpectedRevenue", NEW."CloseDate", '
            f'NEW."Probability", {prev_amount}, {prev_close}, NEW."SystemModstamp" '
            f"{next_row('OpportunityHistory')}; END"
        )

    changed = " OR ".join(f'OLD."{c}" IS NOT NEW."{c}"' for c in STAGE_FIELDS if opportunity.field(c))
    return [
        f'CREATE TRIGGER IF NOT EXISTS "stage_created" AFTER INSERT ON {table("Opportunity")} BEGIN '
        + row("CreatedById", "NULL", "NULL"),
        f'CREATE TRIGGER IF NOT EXISTS "stage_changed" AFTER UPDATE ON {table("Opportunity")} WHEN {changed} BEGIN '
        + row("LastModifiedById", 'OLD."Amount"', 'OLD."CloseDate"'),
        # named as validation's lookup index of the field: one index, whichever creates it first
        f'CREATE INDEX IF NOT EXISTS "ix_OpportunityHistory_OpportunityId" '
        f'ON {table("OpportunityHistory")} ("OpportunityId")',
    ]


def install(store: Store, catalogue: dict[str, ObjectDef]) -> None:
    """The history triggers of every tracked object present (idempotent: an org reopened keeps its own)."""
    statements: list[str] = []
    for obj_name, (name, _key, _tracked) in FIELD_HISTORY.items():
        if obj_name in catalogue and name in catalogue:
            statements += history_triggers(catalogue[obj_name], catalogue[name])
    if "Opportunity" in catalogue and "OpportunityHistory" in catalogue:
        statements += stage_triggers(catalogue["Opportunity"], catalogue["OpportunityHistory"])
    with store.write_lock:
        c = store.conn()
        for statement in statements:
            c.execute(statement)
