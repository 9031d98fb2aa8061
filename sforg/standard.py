"""Standard fields as real orgs describe them: FieldDefs built from describe responses captured from orgs
(`standard_fields.json`, its `source` names where they come from), so their every describe attribute is the
real one and not a guess."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from sforg.schema import F, FieldDef, ObjectDef

DATA = Path(__file__).with_name("standard_fields.json")
DOCUMENTED = Path(__file__).with_name("documented_fields.json")
# FieldDef attributes read as they are from a describe entry's keys.
DESCRIBE_KEYS = {
    "name": "name",
    "type": "type",
    "label": "label",
    "length": "length",
    "precision": "precision",
    "scale": "scale",
    "digits": "digits",
    "relationship_name": "relationshipName",
    "nillable": "nillable",
    "createable": "createable",
    "updateable": "updateable",
    "compound": "compoundFieldName",
    "name_field": "nameField",
    "external_id": "externalId",
    "unique": "unique",
    "id_lookup": "idLookup",
    "defaulted": "defaultedOnCreate",
    "auto_number": "autoNumber",
    "extra_type_info": "extraTypeInfo",
}
# What Salesforce maintains on every record (sforg's `system` fields: required, never written by the API).
SYSTEM_NAMES = frozenset(
    {"Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp"}
)


@cache
def _captured() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATA.read_text())["objects"]
    return data


def captured_objects() -> list[str]:
    return list(_captured())


def child_relationships(parent: str) -> list[dict[str, Any]]:
    """The childRelationships of a captured describe."""
    return list(_captured()[parent]["childRelationships"])


def _child_of(child: str, field: str, targets: list[str]) -> dict[str, Any]:
    """The captured parent's childRelationships entry for a lookup (empty when no parent was captured)."""
    for parent in targets:
        if parent in _captured():
            for rel in _captured()[parent]["childRelationships"]:
                if rel["childSObject"] == child and rel["field"] == field:
                    return dict(rel)
    return {}


def field_from_describe(obj: str, d: dict[str, Any], **overrides: Any) -> FieldDef:
    """A FieldDef carrying a real describe entry: sforg's own attributes read from it, the entry kept whole
    (`real`) for describe; `overrides` replace describe keys (where sforg deliberately differs)."""
    d = {**d, **overrides}
    rel = _child_of(obj, d["name"], d["referenceTo"]) if d["type"] == "reference" else {}
    system = d["name"] in SYSTEM_NAMES
    return FieldDef(
        **{attr: d[key] for attr, key in DESCRIBE_KEYS.items()},
        reference_to=list(d["referenceTo"]),
        child_relationship=rel.get("relationshipName"),
        picklist=[v["value"] for v in d["picklistValues"] if v["active"]],
        cascade_delete=bool(rel.get("cascadeDelete")),
        restricted_delete=bool(rel.get("restrictedDelete")),
        system=system,
        real=d,
    )


def standard_fields(obj: str, **overrides: dict[str, Any]) -> list[FieldDef]:
    """Every captured standard field of an object, in the captured order; `overrides` maps a field name to
    describe keys sforg sets otherwise."""
    return [field_from_describe(obj, d, **overrides.get(d["name"], {})) for d in _captured()[obj]["fields"]]


# The Properties line of Salesforce's Object Reference ("Create, Filter, Group, Nillable, Sort, Update") and the
# describe attributes each word stands for.
PROPERTIES = {
    "Create": "createable",
    "Update": "updateable",
    "Nillable": "nillable",
    "Defaulted on create": "defaultedOnCreate",
    "Filter": "filterable",
    "Group": "groupable",
    "Sort": "sortable",
    "Restricted picklist": "restrictedPicklist",
    "idLookup": "idLookup",
}


def documented(name: str, type_: str, properties: str, **kw: Any) -> FieldDef:
    """A standard field as Salesforce's Object Reference documents it: its type, the length/precision of the
    Field Reference tables, and its Properties line, which sets the describe flags."""
    said = {p.strip() for p in properties.split(",")}
    unknown = said - set(PROPERTIES)
    assert not unknown, unknown
    flags = {attr: word in said for word, attr in PROPERTIES.items()}
    f = F(
        name,
        type_,
        createable=flags["createable"],
        updateable=flags["updateable"],
        nillable=flags["nillable"],
        defaulted=flags["defaultedOnCreate"],
        id_lookup=flags["idLookup"],
        **kw,
    )
    f.real = {k: flags[k] for k in ("filterable", "groupable", "sortable", "restrictedPicklist")}
    return f


@cache
def _documented() -> dict[str, list[dict[str, Any]]]:
    data: dict[str, list[dict[str, Any]]] = json.loads(DOCUMENTED.read_text())["objects"]
    return data


def documented_fields(obj: str) -> list[FieldDef]:
    """The object's fields as documented_fields.json has them from Salesforce's documentation."""
    return [
        documented(spec["name"], spec["type"], spec["properties"], **{k: v for k, v in spec.items() if k not in NAMED})
        for spec in _documented()[obj]
    ]


NAMED = ("name", "type", "properties")


# Describe keys a captured describe does not override on a field sforg already models: they steer sforg's own
# behaviour (validation, generation, relationships) or name objects sforg lacks (WhatId's 60 targets); where a
# capture differs on them, sforg's value stays (tests/sforg/test_wide_schema.py lists the differences).
KEPT = frozenset(
    {
        "createable",
        "updateable",
        "nillable",
        "defaultedOnCreate",
        "calculated",
        "calculatedFormula",
        "compoundFieldName",
        "referenceTo",
        "relationshipName",
        "picklistValues",
        "nameField",
        "type",
        "soapType",
    }
)
ALIGNED = ("Opportunity", "Case", "Lead", "Event", "OpportunityContactRole")


def align_with_capture(obj: ObjectDef) -> None:
    """An object sforg models field by field, made to describe itself as the captured one: every captured standard
    field it lacks is added (in the captured order, after its own), and each field it has takes the captured
    describe attributes but those in KEPT."""
    present = {f.name for f in obj.fields}
    for d in _captured()[obj.name]["fields"]:
        f = obj.field(d["name"])
        if f is None:
            obj.fields.append(field_from_describe(obj.name, d))
        elif d["name"] in present and not f.custom:
            f.real = {**f.real, **{k: v for k, v in d.items() if k not in KEPT}}
            f.length, f.id_lookup = d["length"], d["idLookup"]
    obj.reindex()
