"""Schema changes: custom fields and custom objects added and removed (describe and metadata follow)."""

from __future__ import annotations

from typing import Any

from sforg import schema
from sforg.org.base import OrgError
from sforg.org.metadata import Metadata
from sforg.org.records import Records


class SchemaChanges(Records, Metadata):
    def add_field(self, obj: str, name: str, type: str = "string", **kw: Any) -> dict[str, Any]:
        o = self.obj(obj)
        if not name.endswith("__c"):
            name += "__c"
        if o.field(name):
            raise OrgError(400, "DUPLICATE_DEVELOPER_NAME", f"field {name} already exists")
        f = schema.F(name, type, **kw)
        o.fields.append(f)
        o.reindex()
        self.store.add_column(o.name, f)
        self.save_catalogue(o.name)
        self._metadata_upsert("CustomField", f"{o.name}.{name}", f"objects/{o.name}.object", "", "00N")
        return {"object": o.name, "field": name}

    def remove_field(self, obj: str, name: str) -> dict[str, Any]:
        o = self.obj(obj)
        f = o.field(name)
        if f is None or not f.custom:
            raise OrgError(400, "INVALID_FIELD", f"cannot remove field {name}")
        o.fields = [x for x in o.fields if x is not f and x.compound != f.name]
        o.reindex()
        if f.stored:
            self.store.drop_column(o.name, f.name)
        self.save_catalogue(o.name)
        with self.store.write_lock:
            self.store.conn().execute(
                "DELETE FROM metadata WHERE type='CustomField' AND full_name=?", (f"{o.name}.{f.name}",)
            )
        return {"object": o.name, "field": f.name}

    def add_object(self, name: str, label: str | None = None, records: int = 0) -> dict[str, Any]:
        if not name.endswith("__c"):
            name += "__c"
        if name in self.catalogue:
            raise OrgError(400, "DUPLICATE_DEVELOPER_NAME", f"object {name} already exists")
        used = {o.key_prefix for o in self.catalogue.values()}
        prefix = next(f"a{i:02d}" for i in range(2, 99) if f"a{i:02d}" not in used)
        value = schema.F("Value__c", "double", precision=18, scale=2)
        o = schema.custom_object(name, prefix, label or name[:-3], [value], name_label="Name")
        self.catalogue[name] = o
        self.store.create_object(o)
        self.counters[name] = 1
        self.save_catalogue(name)
        self._metadata_upsert("CustomObject", name, f"objects/{name}.object", "", "01I")
        if records:
            self.create_records(name, records)
        return {"object": name, "keyPrefix": prefix}

    def remove_object(self, name: str) -> dict[str, Any]:
        o = self.obj(name)
        if not o.custom:
            raise OrgError(400, "INVALID_TYPE", f"cannot remove standard object {name}")
        del self.catalogue[o.name]
        self.store.drop_object(o.name)
        self.save_catalogue(o.name)
        with self.store.write_lock:
            self.store.conn().execute(
                "DELETE FROM metadata WHERE (type='CustomObject' AND full_name=?) OR "
                "(type='CustomField' AND full_name LIKE ?)",
                (o.name, o.name + ".%"),
            )
        return {"object": o.name}
