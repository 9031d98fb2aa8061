"""sforg's SQLite store: changes of columns while a thread's connection still reads."""

from __future__ import annotations

import threading
from pathlib import Path

from sforg import schema
from sforg.schema import ObjectDef
from sforg.store import Store, table


def test_a_column_added_elsewhere_can_be_dropped_while_a_read_is_left_open(tmp_path: Path) -> None:
    # a query page not read to its last row keeps its thread's connection in a read transaction whose snapshot
    # predates later changes: DROP COLUMN on that connection found "no such column" (a flaky admin test)
    store = Store(tmp_path / "org.db")
    obj = ObjectDef("Widget__c", "a02", "Widget", "Widgets", [*schema.system_fields(), schema.F("Name", "string")])
    store.create_object(obj)
    store.insert_many(obj.name, ["Id", "Name"], [(f"a02{n:015d}", "w") for n in range(5)])
    reading = store.conn().execute(f"SELECT * FROM {table(obj.name)}")
    reading.fetchone()  # left open, on this thread's connection
    added = threading.Thread(target=store.add_column, args=(obj.name, schema.F("Tier__c", "picklist")))
    added.start()
    added.join()
    store.drop_column(obj.name, "Tier__c")
    reading.fetchall()
    assert "Tier__c" not in store.table_columns(obj.name)


def test_an_insert_writes_along_each_of_its_records_rows_numbered_as_a_trigger_numbers_them(tmp_path: Path) -> None:
    # Store.on_insert: one statement for all of an insert's records (history's `created` rows, owner shares),
    # each row numbered on from its table's largest _rowid and its Id made from that number, in the records' order
    from sforg.ids import make_id
    from sforg.org.history import ALONG_N, along, id_sql

    store = Store(tmp_path / "org.db")
    widget = ObjectDef("Widget__c", "a02", "Widget", "Widgets", [*schema.system_fields(), schema.F("Name", "string")])
    trail = ObjectDef("Trail__c", "a03", "Trail", "Trails", [*schema.system_fields(), schema.F("Widget__c", "string")])
    for obj in (widget, trail):
        store.create_object(obj)
    values = f'{id_sql("a03", "tt", ALONG_N)}, NEW."Id"'
    store.on_insert(widget.name, along(widget.name, trail.name, '"Id", "Widget__c"', values))
    store.on_insert(widget.name, along(widget.name, trail.name, '"Id", "Widget__c"', values))  # once only
    store.insert_many(trail.name, ["Id"], [("a03tt0000000000007",)])  # rows before: numbering goes on after them
    first = [(f"a02{n:015d}", f"w{n}") for n in range(3)]
    store.insert_many(widget.name, ["Id", "Name"], first)
    store.insert_many(widget.name, ["Id", "Name"], [(f"a02{n:015d}", f"w{n}") for n in range(3, 5)])
    rows = store.conn().execute(f'SELECT _rowid, "Id", "Widget__c" FROM {table(trail.name)} ORDER BY _rowid').fetchall()
    assert [r[2] for r in rows] == [None, *(f"a02{n:015d}" for n in range(5))]
    assert [(r[0], r[1]) for r in rows[1:]] == [(n, make_id("a03", n, "tt")) for n in range(2, 7)]
