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
