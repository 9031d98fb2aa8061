"""The rest of a real org's describeGlobal: every object the captured one lists (schema.captured_global, from a
real org's describeGlobal) that sforg does not model in depth. Each gets its captured flags, label and key prefix,
and the fields of its family: a history, share, feed or change event object those of the same family of the
objects sforg models (related.py), a localization its parent, label and language (Object Reference,
"Localization objects"), any other object its Id, system audit fields and a name field. They hold no records:
a query answers an empty result, as a real org with none of them in use does."""

from __future__ import annotations

from typing import Any

from sforg.related import change_event, feed, history_object, share_object
from sforg.schema import F, FieldDef, ObjectDef, captured_global, ref, system_fields

# Queryable, but Bulk API 2.0 refuses them (INVALIDENTITY), as Airbyte's list of such objects records
# (UNSUPPORTED_BULK_API_SALESFORCE_OBJECTS).
BULK_REFUSED = frozenset({"UndecidedEventRelation", "WorkOrderLineItemStatus", "WorkOrderStatus"})
# Name fields that are not Name (Object Reference: WorkOrder.WorkOrderNumber, WorkOrderLineItem.LineItemNumber,
# both auto-numbers).
AUTO_NUMBERS = {"WorkOrder": "WorkOrderNumber", "WorkOrderLineItem": "LineItemNumber"}
NAME_FIELD: dict[str, Any] = {"nillable": False, "name_field": True}


def _label(entry: dict[str, Any]) -> tuple[str, str]:
    return entry["label"], entry["labelPlural"]


def _own_fields(name: str, entry: dict[str, Any]) -> list[FieldDef]:
    if entry["createable"] or entry["replicateable"]:
        fields = system_fields(owner=False, deletable=entry["deletable"], created=True)
    else:  # a read-only setup view: its Id only
        fields = [f for f in system_fields(owner=False, deletable=False, created=False) if f.name == "Id"]
    if name in AUTO_NUMBERS:
        fields.append(
            F(
                AUTO_NUMBERS[name],
                "string",
                length=30,
                auto_number=True,
                createable=False,
                updateable=False,
                defaulted=True,
                **NAME_FIELD,
            )
        )
    elif entry["layoutable"] or entry["createable"]:
        fields.append(F("Name", "string", length=80, **NAME_FIELD))
    return fields


def _localization(parent: ObjectDef) -> list[FieldDef]:
    return [
        *system_fields(owner=False),
        ref("ParentId", [parent.name], "Parent", "Localization", nillable=False, cascade_delete=True),
        F("Language", "picklist", length=40, nillable=False, picklist=["en_US", "de", "fr", "es", "ja"]),
        F("Value", "string", length=255, nillable=False, label="Translation"),
    ]


def listed_objects(catalogue: dict[str, ObjectDef]) -> list[ObjectDef]:
    """The captured describeGlobal's objects the catalogue lacks, in its order (parents built before their
    associated objects)."""
    entries = [e for e in captured_global().values() if e["name"] not in catalogue]
    made: dict[str, ObjectDef] = {}
    for e in entries:
        family = e["associateEntityType"]
        if family is None:
            label, plural = _label(e)
            obj = ObjectDef(e["name"], e["keyPrefix"] or "", label, plural, _own_fields(e["name"], e))
            obj.bulk_supported = e["name"] not in BULK_REFUSED
            made[e["name"]] = obj
    for e in entries:
        family, parent_name = e["associateEntityType"], e["associateParentEntity"]
        if family is None:
            continue
        parent = made.get(parent_name) or catalogue[parent_name]
        if family == "History":
            obj = history_object(parent, e["name"], f"{parent.name}Id", [])
        elif family == "Share":
            obj = share_object(parent)
        elif family == "Feed":
            obj = feed(parent)
        elif family == "ChangeEvent":
            obj = change_event(parent, e["name"])
        else:  # Localization
            label, plural = _label(e)
            obj = ObjectDef(e["name"], "", label, plural, _localization(parent))
        obj.key_prefix = e["keyPrefix"] or ""
        obj.label, obj.label_plural = _label(e)
        made[e["name"]] = obj
    for e in entries:  # every object's flags as captured
        made[e["name"]].flags = {k: v for k, v in e.items() if k != "urls"}
    return [made[e["name"]] for e in entries]
